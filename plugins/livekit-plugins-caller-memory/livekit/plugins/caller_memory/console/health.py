"""The health page's numbers, in three kinds, each said as what it is.

- **Exact, every time** (a handful of commands, whatever the size of the store): the store's
  health check, the server's memory, calls in progress and orphaned calls (the sorted set of
  calls in progress), erasure requests waiting (their sorted set), keys without a TTL in the
  whole database (``INFO keyspace``: its keys less those with an expiry), calls saved since the
  last full count (the saves by version that every save adds to), and the local outbox.
- **Estimated, every time**: callers, calls held in full and memory per caller, from
  :data:`SAMPLE_KEYS` keys drawn at random scaled to the database's size, each with its
  99.9 % margin (a Wilson interval). One read-only script (``sample.lua``: ``DBSIZE``,
  ``RANDOMKEY``, the keys counted by kind and a few callers' ``MEMORY USAGE`` inside Redis, so
  only counts cross the wire) draws it; on a cluster it runs on each primary, with a share in
  proportion to its keys. No ``SCAN``: the page costs the same at 100 callers and at 100,000.
  The sample is reused for ``MEMORY_CONSOLE_STATS_TTL_S``.
- **The full count**, only when an operator asks for it (a button): every key of the prefix
  read, as ``caller-memory stats`` does, with calls per hour from each profile's remembered
  calls and each caller's index of the calls held. It runs in the background (seconds at
  10,000 callers); its result is shown with the time it was made until the next one.

In-process memory has no network to spare: its numbers are counted exactly every time.
Reading renews no TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from ..config import RedisConfig
from ..log import logger
from ..outbox import Outbox
from ..store import InMemoryStore, MemoryStore, RedisMemoryStore
from ..store.codec import UnreadableValue, decode_profile, text

__all__ = [
    "CHART_HOURS",
    "SAMPLE_KEYS",
    "Census",
    "Estimate",
    "FullCount",
    "Health",
    "HealthMonitor",
    "HourBar",
    "Now",
    "Sample",
    "store_kind",
]

CHART_HOURS = 24
"""The chart of calls per hour covers this many hours, the current one last."""
SAMPLE_KEYS = 4000
"""Keys drawn at random for the estimates (one script, ``sample.lua``, on each primary)."""
_MEMORY_SAMPLE = 200
"""Callers whose keys are measured (``MEMORY USAGE``) by the full count."""
_MEMORY_SAMPLE_NOW = 20
"""Callers of the random draw whose keys are measured for the estimate."""
_SAMPLE_SCRIPT = resources.files(__package__).joinpath("sample.lua").read_text()
_SAMPLE_SHA = hashlib.sha1(_SAMPLE_SCRIPT.encode()).hexdigest()
_Z = 3.29
"""The margins' normal quantile: the true count is within them 999 times in 1,000."""


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


@dataclass(frozen=True)
class Estimate:
    """A count with its 99.9 % margin (0 when it is exact)."""

    value: int
    margin: int

    @property
    def exact(self) -> bool:
        """True when the count is exact."""
        return self.margin == 0


@dataclass(frozen=True)
class Sample:
    """Keys drawn at random, by kind, and the database's size they scale to."""

    at: datetime
    db_keys: int
    """Keys of the whole database (``DBSIZE``; the sum over a cluster's primaries)."""
    drawn: int
    """Keys drawn (with replacement); every key when ``exact``."""
    kinds: dict[str, int]
    """Drawn keys by :meth:`~..store.keys.Keys.kind` (``other``: not of this prefix)."""
    exact: bool
    memory_per_caller: int | None
    memory_sampled: int

    def estimate(self, kind: str) -> Estimate:
        """How many keys of ``kind`` the database holds, with the 99.9 % margin of the draw."""
        hits = self.kinds.get(kind, 0)
        if self.exact:
            return Estimate(hits, 0)
        if not self.drawn or not self.db_keys:
            return Estimate(0, 0)
        low, high = _wilson(hits, self.drawn)
        value = round(self.db_keys * hits / self.drawn)
        margin = math.ceil(self.db_keys * max(high - hits / self.drawn, hits / self.drawn - low))
        return Estimate(value, max(margin, 1))


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
        self._counting_since = _utcnow()
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
        started, clock = self._counting_since or _utcnow(), time.perf_counter()
        try:
            saves_then = await self._saves()
            census = await self._count()
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
        in_progress = await _zcard(store, store.keys.open_calls())
        orphans = await store.orphans_waiting(config.orphan_after_s)
        requests = await _zcard(store, store.keys.erasure_requests())
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
            drawn = await _sample(store.client, store.keys.prefix, self._sample_keys)
            return Sample(
                at=_utcnow(),
                db_keys=drawn.db_keys,
                drawn=drawn.drawn,
                kinds=drawn.kinds,
                exact=False,
                memory_per_caller=round(sum(drawn.sizes) / len(drawn.sizes))
                if drawn.sizes
                else None,
                memory_sampled=len(drawn.sizes),
            )
        kinds: dict[str, int] = {}
        keys = [key async for key in _scan(store, "*")]
        for key in keys:
            kind = store.keys.kind(key)
            kinds[kind] = kinds.get(kind, 0) + 1
        return Sample(
            at=_utcnow(),
            db_keys=len(keys),
            drawn=len(keys),
            kinds=kinds,
            exact=True,
            memory_per_caller=None,  # in-process memory cannot say
            memory_sampled=0,
        )

    # -- the full count, when asked ----------------------------------------------------------

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
            at=_utcnow(),
            stats=stats,
            orphans_waiting=await store.orphans_waiting(config.orphan_after_s),
            erasure_requests=await _zcard(store, store.keys.erasure_requests()),
            memory_per_caller=round(sum(sizes) / len(sizes)) if sizes else None,
            memory_sampled=len(sizes),
            calls_per_hour=_per_hour(when.values()),
        )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _wilson(hits: int, n: int) -> tuple[float, float]:
    """The 99.9 % Wilson score interval of a proportion (sound at 0 hits, unlike p ± 1.96 se)."""
    p = hits / n
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


async def _zcard(store: MemoryStore, key: str) -> int:
    if isinstance(store, RedisMemoryStore):
        return int(await store.client.zcard(key))
    return len(await store.read_members(key))


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


@dataclass(frozen=True)
class _Drawn:
    """What :data:`_SAMPLE_SCRIPT` answered, summed over the nodes it ran on."""

    db_keys: int
    drawn: int
    kinds: dict[str, int]
    sizes: list[int]
    """Bytes of each caller measured (phone, profile and session-list keys)."""


async def _sample(client: Any, prefix: str, n: int) -> _Drawn:
    """The random sample of ``n`` keys in one EVALSHA of ``sample.lua``; on a cluster, one on
    each primary with its share of ``n`` in proportion to its keys (``DBSIZE`` first)."""
    if not isinstance(client, aioredis.RedisCluster):
        return _drawn(await _run_sample(client, None, prefix, n, _MEMORY_SAMPLE_NOW))
    primaries = client.get_primaries()
    sizes = await asyncio.gather(
        *(client.execute_command("DBSIZE", target_nodes=node) for node in primaries)
    )
    total = sum(int(size) for size in sizes)
    if not total:
        return _Drawn(0, 0, {}, [])
    shares = [round(n * int(size) / total) for size in sizes]
    answers = await asyncio.gather(
        *(
            _run_sample(client, node, prefix, share, _MEMORY_SAMPLE_NOW)
            for node, share in zip(primaries, shares, strict=True)
            if share
        )
    )
    kinds: dict[str, int] = {}
    drawn, measured = 0, []
    for found in map(_drawn, answers):
        drawn += found.drawn
        measured += found.sizes
        for kind, count in found.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    # Each node's share was rounded: weigh by what was drawn, not by what was asked; the size
    # is the one the shares were taken from.
    return _Drawn(total, drawn, kinds, measured[:_MEMORY_SAMPLE_NOW])


async def _run_sample(client: Any, node: Any, prefix: str, n: int, measure: int) -> Any:
    """EVALSHA of the sample script (on ``node`` of a cluster); loaded once where unknown."""
    args = [prefix, n, measure]
    target = {} if node is None else {"target_nodes": node}
    try:
        return await client.execute_command("EVALSHA", _SAMPLE_SHA, 0, *args, **target)
    except NoScriptError:
        await client.execute_command("SCRIPT LOAD", _SAMPLE_SCRIPT, **target)
        return await client.execute_command("EVALSHA", _SAMPLE_SHA, 0, *args, **target)


def _drawn(answer: Any) -> _Drawn:
    size, drawn, flat, sizes = answer
    kinds = {text(flat[i]) or "": int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return _Drawn(int(size), int(drawn), kinds, [int(s) for s in sizes])


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
    async with store.client.pipeline(transaction=False) as pipe:
        for key in (keys.phone(user_id), keys.profile(user_id), keys.sessions(user_id)):
            pipe.memory_usage(key)
        found = await pipe.execute()
    return sum(int(size or 0) for size in found)
