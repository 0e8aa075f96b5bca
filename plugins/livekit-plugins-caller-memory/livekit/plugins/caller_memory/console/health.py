"""The health page's numbers, in three kinds, each said as what it is.

- **Exact, every time** (a handful of commands, whatever the size of the store): the store's
  health check, the server's memory, calls in progress and orphaned calls (the sorted set of
  calls in progress), erasure requests waiting (their sorted set), keys without a TTL in the
  whole database (``INFO keyspace``: its keys less those with an expiry), calls saved since the
  last full count (the saves by version that every save adds to), and the local outbox.
- **Estimated, every time**: callers, calls held in full and memory per caller, from keys
  drawn at random inside Redis scaled to the database's size, each with its 99.9 % margin
  (:mod:`.sampling`: no ``SCAN``, the page costs the same at 100 callers and at 100,000). The
  sample is reused for ``MEMORY_CONSOLE_STATS_TTL_S``.
- **The full count**, only when an operator asks for it (a button): every key of the prefix
  read (:mod:`.census`). It runs in the background; its result is shown with the time it was
  made until the next one.

In-process memory has no network to spare: its numbers are counted exactly every time.
Reading renews no TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..config import RedisConfig
from ..log import logger
from ..models import utcnow
from ..outbox import Outbox
from ..store import InMemoryStore, MemoryStore, RedisMemoryStore
from ..store.codec import UnreadableValue
from .census import Census, take_census
from .sampling import SAMPLE_KEYS, Estimate, Sample, draw_sample
from .store_reads import scan_keys, zcard

__all__ = ["FullCount", "Health", "HealthMonitor", "Now", "store_kind"]


@dataclass(frozen=True)
class Now:
    """What is exact and cheap: one small command each."""

    calls_in_progress: int
    orphans_waiting: int
    erasure_requests: int
    keys_without_ttl: int | None
    """Keys of the whole database without an expiry (``INFO keyspace``); None when the store
    cannot say."""
    used_memory_bytes: int | None
    saves: int | None
    """Every save recorded by the saves by version (workers from 0.2.0 on); None for
    in-process memory, which keeps its own."""


@dataclass(frozen=True)
class FullCount:
    """A full count an operator asked for, and when."""

    census: Census
    started: datetime
    took_s: float
    saves_then: int | None


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
    now: Now | None
    """None when the store could not be read (see ``error``)."""
    sample: Sample | None
    full: FullCount | None
    """The last full count, if one was asked for."""
    counting_since: datetime | None = None
    """When the full count under way started (None: none is)."""
    full_error: str | None = None
    """Why the last full count failed."""
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """The store answered."""
        return bool(self.check.get("healthy"))

    @property
    def saves_since_full(self) -> int | None:
        """Calls saved since the full count started (exact; None without both numbers)."""
        if self.full is None or self.now is None:
            return None
        if self.full.saves_then is None or self.now.saves is None:
            return None
        return max(0, self.now.saves - self.full.saves_then)

    @property
    def calls_held(self) -> Estimate | None:
        """Calls held in full: session keys less the calls in progress (their journals)."""
        if self.sample is None or self.now is None:
            return None
        sessions = self.sample.estimate("session")
        return Estimate(max(0, sessions.value - self.now.calls_in_progress), sessions.margin)


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
    """Computes :class:`Health`: the exact numbers every time, the random sample at most every
    ``stats_ttl_s``, and a full count only through :meth:`start_full_count`.

    Args:
        store: The memory store.
        outbox: This machine's outbox.
        kind: :func:`store_kind` of the store.
        stats_ttl_s: How long a random sample is reused.
        sample_keys: Keys drawn for a sample.
    """

    def __init__(
        self,
        store: MemoryStore,
        outbox: Outbox,
        kind: str,
        stats_ttl_s: float,
        *,
        sample_keys: int = SAMPLE_KEYS,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._kind = kind
        self._ttl = stats_ttl_s
        self._sample_keys = sample_keys
        self._sample: tuple[float, Sample] | None = None
        self._sampling = asyncio.Lock()
        self._full: FullCount | None = None
        self._full_error: str | None = None
        self._counting: asyncio.Task[None] | None = None
        self._counting_since: datetime | None = None

    async def health(self) -> Health:
        """The store's health now: exact numbers, the sample's estimates, the last full count."""
        check = await self._store.health_check()
        now, sample, error = None, None, None
        if check.get("healthy"):
            try:
                now = await self._now()
                sample = await self._current_sample()
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
            now=now,
            sample=sample,
            full=self._full,
            counting_since=self._counting_since if self.counting else None,
            full_error=self._full_error,
            error=error,
        )

    @property
    def counting(self) -> bool:
        """A full count is under way."""
        return self._counting is not None and not self._counting.done()

    def start_full_count(self) -> bool:
        """Start a full count in the background; False when one is already under way."""
        if self.counting:
            return False
        self._counting_since = utcnow()
        self._counting = asyncio.get_running_loop().create_task(
            self._full_count(), name="caller_memory.console.full_count"
        )
        return True

    async def wait_for_full_count(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the full count under way; True when none is."""
        task = self._counting
        if task is None or task.done():
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        return task.done()

    async def aclose(self) -> None:
        """Stop a full count under way (the console is closing its store)."""
        task, self._counting = self._counting, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _full_count(self) -> None:
        started, clock = self._counting_since or utcnow(), time.perf_counter()
        try:
            saves_then = await self._saves()
            census = await take_census(self._store)
        except (RedisError, OSError, UnreadableValue) as e:
            logger.warning("console: the full count failed", extra={"error": type(e).__name__})
            self._full_error = type(e).__name__
            return
        self._full_error = None
        self._full = FullCount(census, started, time.perf_counter() - clock, saves_then)

    # -- exact, every time ------------------------------------------------------------------

    async def _now(self) -> Now:
        store = self._store
        config = store.config
        in_progress = await zcard(store, store.keys.open_calls())
        orphans = await store.orphans_waiting(config.orphan_after_s)
        requests = await zcard(store, store.keys.erasure_requests())
        if isinstance(store, RedisMemoryStore):
            no_ttl, used = await _keyspace(store)
        else:
            no_ttl, used = (await store.stats())["keys_without_ttl"], None
        return Now(
            calls_in_progress=in_progress,
            orphans_waiting=orphans,
            erasure_requests=requests,
            keys_without_ttl=no_ttl,
            used_memory_bytes=used,
            saves=await self._saves(),
        )

    async def _saves(self) -> int | None:
        if not isinstance(self._store, RedisMemoryStore):
            return None
        return sum(v.saves for v in await self._store.saves_by_version())

    # -- estimated, every time ---------------------------------------------------------------

    async def _current_sample(self) -> Sample:
        async with self._sampling:
            now = time.monotonic()
            if self._sample is None or now - self._sample[0] >= self._ttl:
                self._sample = (now, await self._draw())
            return self._sample[1]

    async def _draw(self) -> Sample:
        store = self._store
        if isinstance(store, RedisMemoryStore):
            drawn = await draw_sample(store.client, store.keys.prefix, self._sample_keys)
            return Sample(
                at=utcnow(),
                db_keys=drawn.db_keys,
                drawn=drawn.drawn,
                kinds=drawn.kinds,
                exact=drawn.whole,
                memory_per_caller=round(sum(drawn.sizes) / len(drawn.sizes))
                if drawn.sizes
                else None,
                memory_sampled=len(drawn.sizes),
            )
        kinds: dict[str, int] = {}
        keys = [key async for key in scan_keys(store, "*")]
        for key in keys:
            kind = store.keys.kind(key)
            kinds[kind] = kinds.get(kind, 0) + 1
        return Sample(
            at=utcnow(),
            db_keys=len(keys),
            drawn=len(keys),
            kinds=kinds,
            exact=True,
            memory_per_caller=None,  # in-process memory cannot say
            memory_sampled=0,
            in_process=True,
        )


async def _keyspace(store: RedisMemoryStore) -> tuple[int | None, int | None]:
    """Keys without an expiry in the database (every primary of a cluster), and the memory
    the server uses."""
    client = store.client
    if isinstance(client, aioredis.RedisCluster):
        # Primaries only: a replica holds the same keys again.
        primaries = aioredis.RedisCluster.PRIMARIES
        keyspace = await client.info("keyspace", target_nodes=primaries)
        memory = await client.info("memory", target_nodes=primaries)
        if "used_memory" in memory:  # one primary: its own answer, not one per node
            keyspace, memory = {"node": keyspace}, {"node": memory}
        nodes = [v for v in keyspace.values() if isinstance(v, dict)]
        spaces = [space for node in nodes for space in node.values() if isinstance(space, dict)]
        used = sum(int(v.get("used_memory", 0)) for v in memory.values() if isinstance(v, dict))
    else:
        keyspace = await client.info("keyspace")
        memory = await client.info("memory")
        db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
        found = keyspace.get(f"db{db}")
        spaces = [found] if isinstance(found, dict) else []
        used = int(memory.get("used_memory", 0))
    no_ttl = sum(int(s.get("keys", 0)) - int(s.get("expires", 0)) for s in spaces)
    return no_ttl, used
