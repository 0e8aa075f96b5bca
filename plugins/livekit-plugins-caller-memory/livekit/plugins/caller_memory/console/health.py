"""The health page's numbers: the store's own health check and stats, the local outbox, the
orphaned calls waiting for recovery, memory per caller, and calls per hour.

Calls per hour come from what the plugin already keeps, no counter of its own: each profile's
remembered calls (``calls[].at``, the last ``MEMORY_MAX_SUMMARIES`` of each caller) and each
caller's index of the calls whose data is held (``user:{id}:calls``, scored by when the data
expires: saved at ``score - MEMORY_SESSION_TTL_HOURS``), one entry per session id.

The counts read every key of the prefix (as ``caller-memory stats`` does): they are computed at
most every ``MEMORY_CONSOLE_STATS_TTL_S`` and reused in between. Reading renews no TTL.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from redis.exceptions import RedisError

from ..config import RedisConfig
from ..log import logger
from ..outbox import Outbox
from ..store import InMemoryStore, MemoryStore, RedisMemoryStore
from ..store.codec import UnreadableValue, decode_profile, text

__all__ = ["CHART_HOURS", "Census", "Health", "HealthMonitor", "HourBar", "store_kind"]

CHART_HOURS = 24
"""The chart of calls per hour covers this many hours, the current one last."""
_MEMORY_SAMPLE = 200
"""Callers whose keys are measured (``MEMORY USAGE``) for the memory per caller."""


@dataclass(frozen=True)
class HourBar:
    """Calls in one hour of the chart."""

    start: datetime
    calls: int


@dataclass(frozen=True)
class Census:
    """The counts that need a scan of the prefix (reused for ``stats_ttl_s``)."""

    at: datetime
    stats: dict[str, Any]
    """:meth:`~..store.MemoryStore.stats`."""
    orphans_waiting: int
    """Calls in progress with no heartbeat for ``MEMORY_ORPHAN_AFTER_S``: a dead worker's,
    waiting for recovery (:meth:`~..store.MemoryStore.orphans_waiting`)."""
    erasure_requests: int
    memory_per_caller: int | None
    """Mean bytes of a caller's phone, profile and session-list keys (sampled); None when the
    store cannot say (in-process memory)."""
    memory_sampled: int
    calls_per_hour: list[HourBar] = field(default_factory=list)

    @property
    def chart_peak(self) -> int:
        """The largest hourly count (at least 1, the chart's scale)."""
        return max([1, *(bar.calls for bar in self.calls_per_hour)])


@dataclass(frozen=True)
class Health:
    """Everything the health page shows."""

    kind: str
    """``Redis``, ``Redis Cluster``, ``private server`` (the embedded one) or
    ``in-process memory``."""
    check: dict[str, Any]
    """:meth:`~..store.MemoryStore.health_check`."""
    outbox_waiting: int
    outbox_unreadable: int
    census: Census | None
    """None when the store could not be read (see ``census_error``)."""
    census_error: str | None = None

    @property
    def healthy(self) -> bool:
        """The store answered."""
        return bool(self.check.get("healthy"))


def store_kind(store: MemoryStore, requested: RedisConfig) -> str:
    """What kind of store ``store`` is; ``requested``: the settings before a private server was
    picked for them."""
    if isinstance(store, InMemoryStore):
        return "in-process memory"
    if isinstance(store, RedisMemoryStore) and store.is_cluster:
        return "Redis Cluster"
    if not requested.is_explicit and store.config.is_explicit:
        return "private server"
    return "Redis"


class HealthMonitor:
    """Computes :class:`Health`, reusing the scan-based :class:`Census` for ``stats_ttl_s``.

    Args:
        store: The memory store.
        outbox: This machine's outbox.
        kind: :func:`store_kind` of the store.
        stats_ttl_s: How long a census is reused.
    """

    def __init__(self, store: MemoryStore, outbox: Outbox, kind: str, stats_ttl_s: float) -> None:
        self._store = store
        self._outbox = outbox
        self._kind = kind
        self._ttl = stats_ttl_s
        self._census: tuple[float, Census] | None = None
        self._lock = asyncio.Lock()

    async def health(self) -> Health:
        """The store's health now, and the last census (made again when older than the TTL)."""
        check = await self._store.health_check()
        census, error = None, None
        if check.get("healthy"):
            try:
                census = await self._current_census()
            except (RedisError, OSError, UnreadableValue) as e:
                logger.warning(
                    "console: the store could not be counted", extra={"error": type(e).__name__}
                )
                error = type(e).__name__
        return Health(
            kind=self._kind,
            check=check,
            outbox_waiting=len(self._outbox),
            outbox_unreadable=self._outbox.unreadable,
            census=census,
            census_error=error,
        )

    async def _current_census(self) -> Census:
        async with self._lock:
            now = time.monotonic()
            if self._census is None or now - self._census[0] >= self._ttl:
                self._census = (now, await self._count())
            return self._census[1]

    async def _count(self) -> Census:
        store, config = self._store, self._store.config
        stats = await store.stats()
        when: dict[str, float] = {}  # session id -> when the call was saved (Unix s)
        sizes: list[int] = []
        async for key in _scan(store, f"{store.keys.prefix}:user:*"):
            kind = store.keys.kind(key)
            if kind == "calls":
                for session_id, expires in await store.read_scores(key):
                    when.setdefault(session_id, expires - config.session_ttl_seconds)
            elif kind == "profile":
                raw = await store.read(key)
                try:
                    profile = decode_profile(raw) if raw is not None else None
                except UnreadableValue:
                    profile = None
                for call in profile.calls if profile else []:
                    when[call.session_id] = call.at.timestamp()  # the exact time wins
                if profile is not None and len(sizes) < _MEMORY_SAMPLE:
                    size = await _caller_bytes(store, profile.user_id)
                    if size is not None:
                        sizes.append(size)
        return Census(
            at=datetime.now(timezone.utc).replace(microsecond=0),
            stats=stats,
            orphans_waiting=await store.orphans_waiting(config.orphan_after_s),
            erasure_requests=len(await store.erasure_requests()),
            memory_per_caller=round(sum(sizes) / len(sizes)) if sizes else None,
            memory_sampled=len(sizes),
            calls_per_hour=_per_hour(when.values()),
        )


def _per_hour(times: Any) -> list[HourBar]:
    now = datetime.now(timezone.utc)
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=CHART_HOURS - 1)
    counts = [0] * CHART_HOURS
    for at in times:
        index = int((at - first.timestamp()) // 3600)
        if 0 <= index < CHART_HOURS:
            counts[index] += 1
    return [HourBar(first + timedelta(hours=i), n) for i, n in enumerate(counts)]


async def _scan(store: MemoryStore, match: str) -> AsyncIterator[str]:
    """The keys matching a pattern: SCAN on Redis (every master of a cluster)."""
    if isinstance(store, RedisMemoryStore):
        async for key in store.client.scan_iter(match=match, count=1000):
            yield text(cast("bytes | str", key)) or ""
    elif isinstance(store, InMemoryStore):
        for key in list(store.dump()):
            if fnmatch.fnmatchcase(key, match):
                yield key


async def _caller_bytes(store: MemoryStore, user_id: str) -> int | None:
    if not isinstance(store, RedisMemoryStore):
        return None
    keys = store.keys
    total = 0
    for key in (keys.phone(user_id), keys.profile(user_id), keys.sessions(user_id)):
        total += int(await store.client.memory_usage(key) or 0)
    return total
