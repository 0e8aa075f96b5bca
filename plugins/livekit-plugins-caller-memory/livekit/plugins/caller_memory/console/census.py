"""The health page's full count: every key of the prefix read, only when an operator asks.

As ``caller-memory stats`` does, with calls per hour from each profile's remembered calls and
each caller's index of the calls held. Seconds at 10,000 callers: the health page runs it in
the background. Reading renews no TTL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..models import utcnow
from ..store import MemoryStore, RedisMemoryStore
from ..store.codec import UnreadableValue, decode_profile
from .store_reads import bounded, scan_keys, zcard

__all__ = ["CHART_HOURS", "Census", "HourBar", "take_census"]

CHART_HOURS = 24
"""The chart of calls per hour covers this many hours, the current one last."""
_MEMORY_SAMPLE = 200
"""Callers whose keys are measured (``MEMORY USAGE``) by the full count."""


@dataclass(frozen=True)
class HourBar:
    """Calls in one hour of the chart."""

    start: datetime
    calls: int


@dataclass(frozen=True)
class Census:
    """The counts that need a read of every key of the prefix (the full count)."""

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


async def take_census(store: MemoryStore) -> Census:
    """Read every key of the store's prefix (``SCAN``) and count."""
    config = store.config
    stats = await store.stats()
    when: dict[str, float] = {}  # session id -> when the call was saved (Unix s)
    sizes: list[int] = []
    async for key in scan_keys(store, f"{store.keys.prefix}:user:*"):
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
        at=utcnow(),
        stats=stats,
        orphans_waiting=await store.orphans_waiting(config.orphan_after_s),
        erasure_requests=await zcard(store, store.keys.erasure_requests()),
        memory_per_caller=round(sum(sizes) / len(sizes)) if sizes else None,
        memory_sampled=len(sizes),
        calls_per_hour=_per_hour(when.values()),
    )


def _per_hour(times: Iterable[float]) -> list[HourBar]:
    now = datetime.now(timezone.utc)
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=CHART_HOURS - 1)
    counts = [0] * CHART_HOURS
    for at in times:
        index = int((at - first.timestamp()) // 3600)
        if 0 <= index < CHART_HOURS:
            counts[index] += 1
    return [HourBar(first + timedelta(hours=i), n) for i, n in enumerate(counts)]


async def _caller_bytes(store: MemoryStore, user_id: str) -> int | None:
    if not isinstance(store, RedisMemoryStore):
        return None
    keys = store.keys
    async with bounded(store), store.client.pipeline(transaction=False) as pipe:
        for key in (keys.phone(user_id), keys.profile(user_id), keys.sessions(user_id)):
            pipe.memory_usage(key)
        found = await pipe.execute()
    return sum(int(size or 0) for size in found)
