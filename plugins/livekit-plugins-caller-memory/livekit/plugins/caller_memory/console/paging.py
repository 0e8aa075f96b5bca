"""Lists that can grow without bound, a page at a time: the erasure requests waiting.

A page is read by score (the time a request was made, to the millisecond), never the whole
sorted set: a ``ZRANGE ... BYSCORE LIMIT`` from the cursor, and a ``ZCOUNT`` or two for the
position and the links. The cursor is a time and how many requests of that very millisecond
came before (ordered as Redis orders them, by user id): a request answered on one page does not
shift the next, pages hold exactly :data:`PAGE_SIZE`, and the cursor holds no user id (it is in
the page's URL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import cast

from ..store import MemoryStore, RedisMemoryStore
from ..store.codec import text
from .store_reads import bounded

__all__ = [
    "PAGE_SIZE",
    "Cursor",
    "RequestPage",
    "erasure_request_page",
    "parse_cursor",
    "request_time",
]

PAGE_SIZE = 50
"""Erasure requests a page shows."""

Cursor = tuple[float, int]
"""A place in the list: a time, and how many requests of that same time come before it."""


@dataclass(frozen=True)
class RequestPage:
    """One page of the erasure requests, oldest first."""

    requests: list[tuple[str, datetime]]
    """``(user id, when it was asked)``."""
    total: int
    """Requests waiting, on every page."""
    first: int
    """The position of the first request shown (1 for the first page; 0 when none is)."""
    next_after: str | None
    """The cursor of the next page, or None when this is the last."""
    previous_before: str | None
    """The cursor of the previous page, or None when this is the first."""


def parse_cursor(value: str | None) -> Cursor | None:
    """A cursor from a URL (``TIME_SKIP``), or None when it is missing or malformed."""
    when, _, skip = (value or "").partition("_")
    try:
        found, count = float(when), int(skip or "0")
    except ValueError:
        return None
    return (found, count) if math.isfinite(found) and 0 <= count < 1_000_000 else None


def _cursor(at: float, skip: int) -> str:
    return f"{at!r}_{skip}"


async def erasure_request_page(
    store: MemoryStore,
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    size: int = PAGE_SIZE,
) -> RequestPage:
    """The ``size`` erasure requests that come after ``after`` (or, with ``before``, the
    ``size`` that come just before it; neither: the first ``size``)."""
    key = store.keys.erasure_requests()
    if before is not None:
        found = await _before(store, key, before, size)
    elif after is not None:
        found = await _after(store, key, after, size)
    else:
        found = await _by_score(store, key, "-inf", "+inf", 0, size, rev=False)
    total = await _count(store, key, "-inf", "+inf")
    if not found:
        return RequestPage([], total, 0, None, None)
    (first_user, first_at), (last_user, last_at) = found[0], found[-1]
    first_skip = await _tied_before(store, key, first_at, first_user)
    last_skip = await _tied_before(store, key, last_at, last_user) + 1
    first = await _count(store, key, "-inf", f"({first_at!r}") + first_skip + 1
    return RequestPage(
        requests=[(user, datetime.fromtimestamp(at, timezone.utc)) for user, at in found],
        total=total,
        first=first,
        next_after=_cursor(last_at, last_skip) if first + len(found) - 1 < total else None,
        previous_before=_cursor(first_at, first_skip) if first > 1 else None,
    )


async def _after(
    store: MemoryStore, key: str, cursor: Cursor, size: int
) -> list[tuple[str, float]]:
    at, skip = cursor
    tied = await _by_score(store, key, repr(at), repr(at), skip, size, rev=False)
    later = await _by_score(store, key, f"({at!r}", "+inf", 0, size - len(tied), rev=False)
    return tied + later


async def _before(
    store: MemoryStore, key: str, cursor: Cursor, size: int
) -> list[tuple[str, float]]:
    at, skip = cursor
    tied = await _by_score(store, key, repr(at), repr(at), 0, skip, rev=False) if skip else []
    tied = tied[-size:]
    earlier = await _by_score(store, key, f"({at!r}", "-inf", 0, size - len(tied), rev=True)
    return list(reversed(earlier)) + tied


async def _tied_before(store: MemoryStore, key: str, at: float, user: str) -> int:
    """How many requests of the very same time come before ``user``'s (a few at most)."""
    tied = await _by_score(store, key, repr(at), repr(at), 0, None, rev=False)
    return next((i for i, (member, _) in enumerate(tied) if member == user), 0)


async def request_time(store: MemoryStore, user_id: str) -> float | None:
    """When ``user_id``'s erasure request was made, or None when none is waiting."""
    key = store.keys.erasure_requests()
    if isinstance(store, RedisMemoryStore):
        async with bounded(store):
            found = await store.client.zscore(key, user_id)
        return None if found is None else float(found)
    return dict(await store.read_scores(key)).get(user_id)


async def _by_score(
    store: MemoryStore,
    key: str,
    start: str,
    stop: str,
    offset: int,
    count: int | None,
    *,
    rev: bool,
) -> list[tuple[str, float]]:
    """``ZRANGE key start stop BYSCORE [REV] LIMIT offset count WITHSCORES``."""
    if count is not None and count <= 0:
        return []
    if isinstance(store, RedisMemoryStore):
        async with bounded(store):
            found = await store.client.zrange(
                key,
                start,
                stop,
                byscore=True,
                desc=rev,
                offset=offset if count is not None else None,
                num=count,
                withscores=True,
            )
        pairs = cast("list[tuple[bytes, float]]", found)
        return [(text(member) or "", float(score)) for member, score in pairs]
    entries = sorted(await store.read_scores(key), key=lambda e: (e[1], e[0]), reverse=rev)
    kept = [e for e in entries if _within(e[1], start, stop, rev)][offset:]
    return kept if count is None else kept[:count]


async def _count(store: MemoryStore, key: str, low: str, high: str) -> int:
    if isinstance(store, RedisMemoryStore):
        async with bounded(store):
            return int(await store.client.zcount(key, low, high))
    return sum(_within(at, low, high, False) for _, at in await store.read_scores(key))


def _within(score: float, start: str, stop: str, rev: bool) -> bool:
    low, high = (stop, start) if rev else (start, stop)
    return _above(score, low) and _below(score, high)


def _above(score: float, bound: str) -> bool:
    if bound.startswith("("):
        return score > float(bound[1:])
    return bound == "-inf" or score >= float(bound)


def _below(score: float, bound: str) -> bool:
    if bound.startswith("("):
        return score < float(bound[1:])
    return bound == "+inf" or score <= float(bound)
