"""Which memory an operator's command reads: the Redis, and the key prefix that holds callers.

Every deployment writes under its own prefix (``MEMORY_KEY_PREFIX``): the plugin's default is
``callmem``, Sarah's ``sarah``, and one Redis may hold several. A command run without
``MEMORY_KEY_PREFIX`` (``caller-memory stats`` right after ``sarah replay``) must not read an
empty ``callmem`` while Sarah's callers sit under ``sarah``; so the commands look, with a
bounded ``SCAN`` of the callers' phone keys (``{prefix}:phone:{hash}``, see
:mod:`.store.keys`), which prefixes hold callers, and say which one they read:

- ``MEMORY_KEY_PREFIX`` set: that prefix, always;
- else the default prefix when it holds callers, or when none does;
- else the only prefix that holds callers, when the search saw every key;
- else (several, none of them the default) the default, naming the others.

The Redis is the workers' (``localhost:6379`` first when none is named), except for a command
about callers already remembered when ``localhost:6379`` holds none and this machine's private
server does: ``sarah replay`` writes there on a machine that runs another Redis on 6379.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .config import RedisConfig
from .exceptions import StoreUnavailableError
from .server import EmbeddedRedis, resolve_default_redis
from .server.connect import ensure_local_redis
from .store import RedisMemoryStore
from .store.codec import text
from .store.keys import Keys

__all__ = [
    "CallerPrefixes",
    "ChosenPrefix",
    "OperatorMemory",
    "choose_prefix",
    "find_caller_prefixes",
    "open_operator_memory",
    "where",
]

SCAN_KEYS = 100_000
"""Keys a search for prefixes looks at, at most: a few tenths of a second on a loopback Redis."""
SCAN_SECONDS = 2.0
"""And the time it may take, at most (a remote Redis, a busy one)."""
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class CallerPrefixes:
    """What a search for prefixes found."""

    callers: dict[str, int] = field(default_factory=dict)
    """Callers (phone keys) per prefix, most first."""
    complete: bool = True
    """False when the search stopped at :data:`SCAN_KEYS` or :data:`SCAN_SECONDS`."""
    examined: int = 0
    """Keys looked at."""
    error: str | None = None
    """Why Redis refused the search (an ACL without ``SCAN``), if it did."""


@dataclass(frozen=True)
class ChosenPrefix:
    """The prefix a command reads, and why."""

    prefix: str
    why: str
    others: dict[str, int]
    """Other prefixes holding callers, and how many."""


async def find_caller_prefixes(
    store: RedisMemoryStore, *, max_keys: int = SCAN_KEYS, max_seconds: float = SCAN_SECONDS
) -> CallerPrefixes:
    """Count the callers of every prefix in the store's Redis (a bounded ``SCAN``). A Redis
    that refuses the search gives an empty, incomplete result saying why."""
    try:
        return await _search(store, max_keys, max_seconds)
    except ResponseError as e:  # NOPERM: an ACL user without SCAN
        return CallerPrefixes(complete=False, error=str(e).split(" ", 1)[0] or "refused")


async def _search(store: RedisMemoryStore, max_keys: int, max_seconds: float) -> CallerPrefixes:
    client = store.client
    pattern = Keys.caller_pattern()
    counts: dict[str, int] = {}
    give_up = time.monotonic() + max_seconds
    examined = 0
    complete = False
    if isinstance(client, aioredis.RedisCluster):
        # A cluster's SCAN goes node by node; its cursor cannot be kept across nodes here.
        found = client.scan_iter(match=pattern, count=1000)
        complete = True
        async for key in found:
            _count(counts, text(key) or "")
            examined += 1
            if examined >= max_keys or time.monotonic() > give_up:
                complete = False
                break
    else:
        cursor = 0
        while True:
            cursor, keys = await client.scan(cursor, match=pattern, count=1000)
            examined += 1000
            for key in keys:
                _count(counts, text(key) or "")
            if cursor == 0:
                complete = True
                break
            if examined >= max_keys or time.monotonic() > give_up:
                break
    ordered = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return CallerPrefixes(ordered, complete, examined)


def _count(counts: dict[str, int], key: str) -> None:
    prefix = Keys.prefix_of_phone_key(key)
    if prefix is not None and _PREFIX.fullmatch(prefix):
        counts[prefix] = counts.get(prefix, 0) + 1


def choose_prefix(config: RedisConfig, found: CallerPrefixes) -> ChosenPrefix:
    """The prefix to read (see the module docs)."""
    default = config.key_prefix
    if "key_prefix" in config.model_fields_set:
        why = "MEMORY_KEY_PREFIX"
        prefix = default
    elif found.callers.get(default):
        why = "the default; MEMORY_KEY_PREFIX is not set"
        prefix = default
    elif len(found.callers) == 1 and found.complete:
        prefix = next(iter(found.callers))
        why = "the only prefix holding callers here; MEMORY_KEY_PREFIX is not set"
    elif found.callers:
        # Several, or a search cut short: the default may hold callers past it. None guessed.
        prefix = default
        why = "the default; MEMORY_KEY_PREFIX is not set, and other prefixes hold callers"
    else:
        prefix = default
        why = "the default; MEMORY_KEY_PREFIX is not set, and no prefix holds callers here"
    others = {p: n for p, n in found.callers.items() if p != prefix}
    return ChosenPrefix(prefix, why, others)


def where(config: RedisConfig, chosen: ChosenPrefix, found: CallerPrefixes, server: str) -> str:
    """The one line a command says about the memory it reads: which Redis (no password), which
    prefix and why, and the other prefixes that hold callers.

    Args:
        server: What the Redis is, e.g. ``Redis 127.0.0.1:6379/0`` or ``the private server
            127.0.0.1:41234/0 (data in ...)``.
    """
    callers = found.callers.get(chosen.prefix, 0)
    count = f"{callers:,} caller{'' if callers == 1 else 's'}"
    line = f"memory: {server}, prefix {chosen.prefix} ({chosen.why}; {count})"
    if chosen.others:
        named = ", ".join(f"{p} ({n:,})" for p, n in chosen.others.items())
        line += f"; other prefixes holding callers: {named} (MEMORY_KEY_PREFIX=... to read one)"
    elif found.complete:
        line += "; no other prefix holds callers"
    if found.error is not None:
        line += f" (Redis refused the search for other prefixes: {found.error})"
    elif not found.complete:
        line += f" (searched the first {found.examined:,} keys only)"
    return line


@dataclass
class OperatorMemory:
    """The memory an operator's command reads (:func:`open_operator_memory`)."""

    store: RedisMemoryStore
    """Connected, under the prefix chosen."""
    line: str
    """What :func:`where` says of it, for standard error."""
    opened: _Opened


@dataclass
class _Opened:
    """What was opened on the way: every store, and the private servers started."""

    stores: list[RedisMemoryStore] = field(default_factory=list)
    servers: list[EmbeddedRedis] = field(default_factory=list)

    async def connected(self, config: RedisConfig) -> RedisMemoryStore:
        store = RedisMemoryStore(config)
        self.stores.append(store)
        if not await store.connect():
            raise StoreUnavailableError(store.last_error or "Redis is not reachable")
        return store

    def started(self, server: EmbeddedRedis | None) -> None:
        if server is not None:
            self.servers.append(server)

    async def aclose(self, *, stop_servers: bool = True) -> None:
        for store in reversed(self.stores):
            await store.disconnect()
        if stop_servers:
            for server in self.servers:
                server.stop()


async def open_operator_memory(config: RedisConfig, *, callers: bool = True) -> OperatorMemory:
    """Connect to the memory a command reads, under the prefix that holds callers; close it
    with ``await memory.opened.aclose()``.

    Args:
        config: The settings (``MEMORY_PERSISTENCE`` on).
        callers: The command reads callers already remembered (``stats``, ``export``,
            ``forget``): with no Redis named and ``localhost:6379`` holding no callers, this
            machine's private server is read when it holds some.

    Raises:
        StoreUnavailableError: Redis cannot be reached (the guide's text is logged).
    """
    opened = _Opened()
    try:
        resolved, started = resolve_default_redis(config)
        opened.started(started)
        store = await opened.connected(resolved)
        found = await find_caller_prefixes(store)
        label = _label(config, store)
        if callers and not found.callers and found.complete and _private_data(config, resolved):
            url, started = ensure_local_redis(config.data_dir)
            opened.started(started)
            private = await opened.connected(config.replaced(url=url))
            private_found = await find_caller_prefixes(private)
            if private_found.callers:
                why = f"{config.describe_server()} answers but holds no callers"
                store, found, label = private, private_found, _label(config, private, why)
        chosen = choose_prefix(config, found)
        if chosen.prefix != store.config.key_prefix:
            # The same connection (this store does not own it) under the prefix chosen.
            store = RedisMemoryStore(
                store.config.replaced(key_prefix=chosen.prefix), client=store.client
            )
            opened.stores.append(store)
    except BaseException:
        await opened.aclose()
        raise
    return OperatorMemory(store, where(config, chosen, found, label), opened)


def _named(config: RedisConfig) -> bool:
    """Whether a Redis is named (``REDIS_URL`` or ``REDIS_HOST``), as for the workers:
    ``REDIS_PORT`` alone moves the guide's default, and the private server is used when
    nothing answers there."""
    return config.is_explicit


def _label(config: RedisConfig, store: RedisMemoryStore, why: str = "") -> str:
    """Which Redis a store reads, for :func:`where`: no password."""
    used = store.config
    at = store.server if store.is_cluster else f"{store.server}/{used.database}"
    kind = "Redis Cluster" if store.is_cluster else "Redis"
    if _named(config):
        return f"{kind} {at}"
    if used.url is None:
        return f"{kind} {at} (no REDIS_URL or REDIS_HOST: the guide's default answers there)"
    why = f"; {why}" if why else ""
    data = config.data_dir / "redis"
    return f"the private server {at} (no REDIS_URL or REDIS_HOST; data in {data}{why})"


def _private_data(config: RedisConfig, resolved: RedisConfig) -> bool:
    """Whether this machine's private server may hold callers the Redis chosen has not: no
    Redis named, ``localhost:6379`` chosen, and the private server has run here."""
    return (
        not _named(config)
        and config.embedded_redis
        and resolved.url is None
        and (config.data_dir / "redis" / "port").is_file()
    )
