"""The Redis store: the guide's ``RedisMemoryStore`` on ``redis.asyncio``.

Each atomic operation of :class:`~.base.MemoryStore` is one round trip here: a Lua script from
``scripts/`` (one billed command on Upstash) or a pipeline. Every operation holds one slot of a
semaphore as large as the connection pool, so that past it callers queue in order instead of the
pool raising ``MaxConnectionsError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from collections.abc import Callable, Sequence
from importlib import resources
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import LONGEST_TTL_SECONDS, RedisConfig
from ..identity import PhoneHasher
from ..log import announce_store, logger, once
from ..persistence import volatile_warning
from ..server.connect import resolve_default_redis
from ..timeouts import ContendedTimeout, LoopLateTimeout, deadline
from ..troubleshooting import Diagnosis, diagnose
from ..version import __version__
from . import codec
from .base import MemoryStore
from .records import CallWrite, Fetched, MovedCaller, WriteOutcome

__all__ = ["Client", "RedisMemoryStore"]

Client = aioredis.Redis | aioredis.RedisCluster
"""A plain or a cluster ``redis.asyncio`` client."""

_PURGE_WAIT_S = 10.0
"""How long an erasure waits for Redis to rewrite its append-only file."""

_CLAIMS = 20
"""Orphans leased per recovery pass: the work of one pass stays bounded."""

_BEATS_PER_COMMAND = 1000
"""Calls per heartbeat script: its arguments stay far below Lua's stack limit."""


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()


_SCRIPTS = {
    name: _script(name)
    for name in (
        "lookup",
        "save_call",
        "append_journal",
        "claim_orphan",
        "beat",
        "add_now",
        "mark_erased",
        "drop_identity",
        "move_caller",
        "replace_value",
    )
}
_SHAS = {
    name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for name, source in _SCRIPTS.items()
}


class RedisMemoryStore(MemoryStore):
    """Caller memory in Redis, with the key table of the guide.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        client: An existing ``redis.asyncio.Redis`` to use instead of opening one. It is left
            open by :meth:`disconnect`: close only what you opened.
        hasher: The phone-number hasher; built from the settings when omitted.
        on_close: Called by :meth:`disconnect` once the client is closed (a private server the
            store owns is stopped this way).

    Example:
        >>> store = RedisMemoryStore(RedisConfig.from_env())
        >>> if await store.connect():
        ...     user_id = await store.get_or_create_user_id(phone_number="+1234567890")
        >>> await store.disconnect()
    """

    def __init__(
        self,
        config: RedisConfig | None = None,
        *,
        client: Client | None = None,
        hasher: PhoneHasher | None = None,
        on_close: Any = None,
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._client = client
        self._owns_client = client is None
        self._on_close = on_close
        # Nothing to resolve with a client given: it is connected to whatever it is.
        self._resolved = client is not None
        self._connecting: asyncio.Task[bool] | None = None
        self._cluster = (
            bool(self._config.cluster)
            or bool(self._config.cluster_nodes)
            or isinstance(client, aioredis.RedisCluster)
        )
        self._slots = asyncio.Semaphore(self._config.max_connections)

    @property
    def client(self) -> Client:
        """The ``redis.asyncio`` client: a ``Redis``, or a ``RedisCluster`` on a cluster."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    @property
    def is_cluster(self) -> bool:
        """True when the store talks to a Redis Cluster (``REDIS_CLUSTER``, or detected)."""
        return self._cluster

    @property
    def server(self) -> str:
        """``host:port`` of the server (no credentials)."""
        return self._config.describe_server()

    def _make_client(self) -> Client:
        config = self._config
        options: dict[str, Any] = {
            # Bytes: a large profile is stored compressed; text is decoded where it is read.
            "decode_responses": False,
            # No socket_timeout: redis-py would wrap every send in asyncio.wait_for (a task per
            # command). Each operation runs under a deadline of its own instead (_op).
            "socket_timeout": None,
            "socket_connect_timeout": config.socket_timeout,
            # A blip is retried once, fast; the call-start budget bounds the rest.
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
            "health_check_interval": 30,
            "client_name": "caller-memory",
            "max_connections": config.max_connections,
        }
        url = config.redis_url()
        if config.uses_tls:
            options["ssl_cert_reqs"] = "required"
            if config.ssl_ca_certs:
                options["ssl_ca_certs"] = config.ssl_ca_certs
        if config.url is not None and config.username and "@" not in url:
            options["username"] = config.username
        if self._cluster:
            # Ride through a failover: slot moves and a dead master are retried with backoff.
            options["retry"] = Retry(ExponentialBackoff(cap=0.5, base=0.02), 6)
            for option in ("retry_on_error", "health_check_interval", "client_name"):
                options.pop(option)
            # A cluster has no databases: drop the /db of the URL.
            # REDIS_CLUSTER_NODES: tried first, then the node the URL names (any live one
            # gives the cluster's map).
            nodes = [ClusterNode(host, port) for host, port in config.cluster_startup_nodes]
            return aioredis.RedisCluster.from_url(
                urlunsplit(urlsplit(url)._replace(path="")), startup_nodes=nodes, **options
            )
        return aioredis.Redis.from_url(url, **options)

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Connect and PING. On failure, log the guide's troubleshooting text and return False.

        With no Redis named (neither ``REDIS_URL`` nor ``REDIS_HOST``), the store goes where
        :func:`~livekit.plugins.caller_memory.store.open_store` and ``caller-memory check``
        go: ``localhost:6379`` when a server answers there, else this machine's private
        server, found or started (``MEMORY_EMBEDDED_REDIS=false`` turns that off). A server
        this store started is stopped by :meth:`disconnect`.
        """
        await self._resolve_default_server()
        try:
            async with self._op():
                await self._first_ping()
                if self._config.cluster is None and not self._cluster:
                    await self._detect_cluster()
                await self._measure_clock()
        except (RedisError, OSError) as e:
            diagnosis = diagnose(e, self._config)
            if diagnosis.reason.startswith("Connection closed") and not self._config.uses_tls:
                diagnosis = await self._diagnose_closed(diagnosis)
            self.last_error = diagnosis.message
            logger.error(diagnosis.render(self.server))
            await self._drop_client()
            return False
        self.last_error = None
        announce_store(self.server)
        if once(f"persistence:{self.server}"):
            await self._warn_if_volatile()
        return True

    async def persistence_warning(self) -> str | None:
        """One line when the server keeps nothing across a restart (no append-only file, no
        RDB snapshots), naming the setting to change; None when it persists, or when it will
        not say (``CONFIG`` refused). See :mod:`..persistence`.

        Raises:
            redis.exceptions.RedisError: The server could not be asked.
        """
        async with self._op():
            return await volatile_warning(self.client, self.server)

    async def _warn_if_volatile(self) -> None:
        # Once per process, like the store's announcement: a restart of this Redis loses the
        # calls it acknowledged, and nothing else would say so.
        try:
            warning = await self.persistence_warning()
        except (RedisError, OSError, TimeoutError):
            return  # not worth a failed connect: the question only informs
        if warning is not None:
            logger.warning(warning, extra={"caller_memory.persistence": "none"})

    async def _resolve_default_server(self) -> None:
        if self._resolved or self._client is not None:
            return
        self._resolved = True
        if self._config.is_explicit or not self._config.persistence:
            return  # a named Redis is that one, and only that one: nothing to look for
        # A worker thread may start the server: it still dies with this process (embedded.py).
        config, embedded = await asyncio.to_thread(resolve_default_redis, self._config)
        self._config = config
        if embedded is not None:
            self._on_close = _chain(embedded.stop, self._on_close)

    def connect_soon(self) -> None:
        """Connect in the background (the troubleshooting text is logged if it fails)."""
        self._connecting = asyncio.get_running_loop().create_task(
            self.connect(), name="caller_memory.connect"
        )

    async def _detect_cluster(self) -> None:
        client = self.client
        if isinstance(client, aioredis.RedisCluster):
            return
        try:
            info = await client.info("cluster")
        except ResponseError as e:  # NOPERM: an ACL user without INFO (docs: Redis ACL users)
            if once(f"info-refused:{self.server}"):
                logger.info(
                    "Redis refused INFO (%s): not asked whether it is a Redis Cluster; on a "
                    "cluster set REDIS_CLUSTER=true",
                    _code(e),
                )
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            await self._drop_client()
            self._cluster = True
            await self.client.ping()
            logger.info("Redis Cluster detected", extra={"server": self.server})

    async def _measure_clock(self) -> None:
        """TIME: how far this process's clock is from the server's (see
        :meth:`~.base.MemoryStore.clock_ms`)."""
        try:
            seconds, micros = await self.client.time()
        except ResponseError:  # refused (an ACL): the scripts' own TIME still orders what counts
            return
        self._clock_seen(int(seconds) * 1000 + int(micros) // 1000, time.time())

    async def _first_ping(self) -> None:
        """PING; with TLS, find out early when the server speaks plain TCP: it never answers
        a TLS hello, which would otherwise look like a timeout seconds later."""
        if not self._config.uses_tls:
            await self.client.ping()
            return
        ping = asyncio.ensure_future(self.client.ping())
        try:
            done, _ = await asyncio.wait({ping}, timeout=_TLS_PROBE_AFTER_S)
            if not done and await _answers_plain(*self._host_port()):
                raise ssl.SSLError("SSL handshake failed: the server speaks plain TCP")
            await ping
        finally:
            if not ping.done():
                ping.cancel()
            with contextlib.suppress(BaseException):
                await ping

    async def _diagnose_closed(self, diagnosis: Diagnosis) -> Diagnosis:
        # A plain client to a TLS-only server is dropped: say so when the port speaks TLS.
        if await _answers_tls(*self._host_port()):
            return diagnose(ssl.SSLError("SSL handshake failed"), self._config)
        return diagnosis

    def _host_port(self) -> tuple[str, int]:
        host, _, port = self.server.rpartition(":")
        return host.strip("[]"), int(port) if port.isdigit() else 6379

    async def disconnect(self) -> None:
        """Close the connection pool if this store opened it, then run ``on_close``."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        await self._drop_client()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            await asyncio.to_thread(on_close)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        elif client is not None:
            self._client = client

    async def health_check(self) -> dict[str, Any]:
        """PING the server and time it.

        Returns:
            ``{"healthy": True, "latency_ms": 0.21, "server": "localhost:6379",
            "redis_version": "7.0.15", "used_memory_human": "1.2M"}``, or ``healthy`` False
            with the guide's ``error`` text.
        """
        try:
            async with self._op():
                start = time.perf_counter()
                await self.client.ping()
                latency_ms = (time.perf_counter() - start) * 1000
                try:
                    info = await self.client.info()
                except ResponseError:  # INFO refused (an ACL user): it answers all the same
                    info = {}
        except (RedisError, OSError) as e:
            error = diagnose(e, self._config).message
            return {"healthy": False, "error": error, "server": self.server}
        return {
            "healthy": True,
            "latency_ms": round(latency_ms, 3),
            "server": self.server,
            "redis_version": info.get("redis_version") or info.get("valkey_version"),
            "used_memory_human": info.get("used_memory_human"),
        }

    async def stats(self, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Counts for operators: callers, sessions, keys by kind, keys without a TTL and keys
        whose TTL is past any setting's longest (:data:`~..config.LONGEST_TTL_SECONDS`: an
        older version's unbounded setting; both must be zero), and the server's memory. Scans
        the prefix: for a terminal, not a call; ``progress`` is told of each key read.
        """
        kinds: dict[str, int] = {}
        no_ttl: list[str] = []
        too_long: list[str] = []
        journals = 0
        client = self.client
        keys = client.scan_iter(match=self._keys.pattern(), count=1000).__aiter__()
        while True:
            async with self._op():
                try:
                    key = codec.text(await keys.__anext__()) or ""
                except StopAsyncIteration:
                    break
                if progress is not None:
                    progress(1)
                kind = self._keys.kind(key)
                kinds[kind] = kinds.get(kind, 0) + 1
                ttl = await client.ttl(key)
                if ttl == -1:
                    no_ttl.append(key)
                elif ttl > LONGEST_TTL_SECONDS:
                    too_long.append(key)
                if kind == "session":
                    journals += codec.is_journal(await client.getrange(key, 0, 11))
        async with self._op():
            info = await client.info("memory")
        if isinstance(client, aioredis.RedisCluster):
            used = sum(int(v.get("used_memory", 0)) for v in info.values() if isinstance(v, dict))
        else:
            used = int(info.get("used_memory", 0))
        return {
            "server": self.server,
            "cluster": self._cluster,
            "callers": kinds.get("phone", 0),
            "profiles": kinds.get("profile", 0),
            "sessions_kept": kinds.get("session", 0) - journals,
            "calls_in_progress": journals,
            "keys_by_kind": kinds,
            "keys_set_aside": kinds.get("unreadable", 0),
            "keys_without_ttl": len(no_ttl),
            "keys_without_ttl_sample": no_ttl[:5],
            "keys_past_longest_ttl": len(too_long),
            "keys_past_longest_ttl_sample": too_long[:5],
            "used_memory_bytes": used,
        }

    # -- the atomic operations -------------------------------------------------------------

    async def fetch_caller(
        self, phone_key: str, profile_key: str, sessions_key: str, *, mint: str | None, ttl: int
    ) -> Fetched:
        """One EVALSHA of ``lookup.lua``. Where Redis takes no writes (a read-only replica,
        out of memory, an ACL user without them), plain reads instead: a returning caller is
        still recognized, and the save renews the TTLs later."""
        script_keys = [phone_key, profile_key, sessions_key, f"{phone_key}:unreadable"]
        try:
            async with self._op():
                found, profile, sessions, aside, at_ms = await self._run(
                    "lookup", script_keys, [mint or "", ttl, codec.MAX_PROFILE_BYTES]
                )
            self._clock_seen(int(at_ms), time.time())
        except ResponseError as e:
            refusal = _write_refusal(e)
            if refusal is None:
                raise
            _warn_once(refusal)
            return await self._read_caller(phone_key, profile_key, sessions_key)
        wrong_type = isinstance(profile, list)  # the script's marker for a wrong type
        return Fetched(
            user_id=codec.text(found),
            profile=None if wrong_type else profile,
            profile_wrong_type=wrong_type,
            session_ids=[codec.text(s) or "" for s in sessions],
            phone_set_aside=bool(aside),
            at_ms=int(at_ms),
        )

    async def _read_caller(self, phone_key: str, profile_key: str, sessions_key: str) -> Fetched:
        # GET, STRLEN, GET (when not too large), LRANGE: reads only, each failing on its own.
        async with self._op(), self.client.pipeline(transaction=False) as pipe:
            pipe.get(phone_key)
            pipe.strlen(profile_key)
            pipe.lrange(sessions_key, 0, -1)
            found, size, sessions = await pipe.execute(raise_on_error=False)
        profile: bytes | None = None
        unreadable = isinstance(size, Exception) or size > codec.MAX_PROFILE_BYTES
        if not unreadable:
            async with self._op():
                try:
                    profile = cast("bytes | None", await self.client.get(profile_key))
                except ResponseError:
                    unreadable = True
        return Fetched(
            user_id=None if isinstance(found, Exception) else codec.text(found),
            profile=profile,
            profile_wrong_type=unreadable,
            session_ids=[]
            if isinstance(sessions, Exception)
            else [codec.text(s) or "" for s in sessions],
        )

    async def fetch_profile(self, profile_key: str, sessions_key: str, ttl: int) -> Fetched:
        """GETEX and LRANGE in one pipeline."""
        async with self._op(), self.client.pipeline(transaction=False) as pipe:
            pipe.getex(profile_key, ex=ttl)
            pipe.lrange(sessions_key, 0, -1)
            pipe.expire(sessions_key, ttl)
            profile, sessions, _ = await pipe.execute(raise_on_error=False)
        for result in (profile, sessions):
            # A WRONGTYPE key is the caller's bad luck, not an outage: anything else raises.
            if isinstance(result, Exception) and not isinstance(result, ResponseError):
                raise result
        wrong_type = isinstance(profile, ResponseError)
        return Fetched(
            user_id=None,
            profile=None if wrong_type else profile,
            profile_wrong_type=wrong_type,
            session_ids=[]
            if isinstance(sessions, ResponseError)
            else [codec.text(s) or "" for s in sessions],
        )

    async def adopt_previous(
        self, phone_key: str, old_phone_keys: Sequence[str], *, ttl: int
    ) -> str | None:
        """Read the old mappings, then move the first found to ``phone_key``."""
        client = self.client
        async with self._op(), client.pipeline(transaction=False) as pipe:
            for key in old_phone_keys:
                pipe.get(key)
            found = [codec.text(v) for v in await pipe.execute()]
        user_id = next((uid for uid in found if uid), None)
        if user_id is None:
            return None
        async with self._op():
            if not await client.set(phone_key, user_id, nx=True, ex=ttl):
                user_id = codec.text(await client.get(phone_key)) or user_id
            await client.delete(*[k for k, uid in zip(old_phone_keys, found, strict=True) if uid])
        return user_id

    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        """One EVALSHA of ``save_call.lua`` (plus a pipeline for the other slots on a cluster)."""
        keys, config = self._keys, self._config
        script_keys = [
            keys.profile(write.user_id),
            keys.sessions(write.user_id),
            keys.unreadable_profile(write.user_id),
            keys.calls(write.user_id),
            keys.erased(write.user_id),
        ]
        others = [keys.session(write.session_id), keys.open_calls(), keys.versions()]
        if write.phone_hash is not None:
            others.append(keys.phone(write.phone_hash))
        if not self._cluster:
            script_keys += others
        args = [
            write.expected_profile or b"",
            write.profile,
            write.session_id,
            write.session,
            config.profile_ttl_seconds,
            config.session_ttl_seconds,
            config.max_sessions,
            "1" if write.set_aside else "0",
            write.started_ms,
            0,  # unused: the script reads the server's clock
            codec.MAX_PROFILE_BYTES,
            __version__,
        ]
        async with self._op():
            result = await self._run("save_call", script_keys, args)
            outcome = int(result[0])
            if outcome == 2:
                return "erased", None
            if outcome != 1:
                return "changed", (result[1] or None)
            now = int(result[1])  # the server's clock, in seconds
            if self._cluster:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.set(others[0], write.session, ex=config.session_ttl_seconds)
                    pipe.zrem(others[1], write.session_id)
                    pipe.zincrby(others[2], 1, f"saves:{__version__}")
                    pipe.zadd(others[2], {f"last:{__version__}": now})
                    pipe.expire(others[2], config.profile_ttl_seconds)
                    if write.phone_hash is not None:
                        pipe.expire(others[3], config.profile_ttl_seconds)
                    await pipe.execute()
        return "written", None

    async def write_journal_header(self, session_id: str, header: str) -> None:
        """One EVALSHA of ``add_now.lua``: SET with the session TTL, and ZADD to the calls in
        progress at the server's time (on a cluster, the SET first: another slot)."""
        ttl = self._config.session_ttl_seconds
        open_key, session_key = self._keys.open_calls(), self._keys.session(session_id)
        async with self._op():
            if self._cluster:
                await self.client.set(session_key, header, ex=ttl)
                await self._run("add_now", [open_key], [session_id, ttl])
            else:
                await self._run("add_now", [open_key, session_key], [session_id, ttl, header])

    async def append_journal_lines(self, session_id: str, lines: str, limit: int) -> int:
        """One EVALSHA of ``append_journal.lua``."""
        key = self._keys.session(session_id)
        async with self._op():
            return int(await self._run("append_journal", [key], [lines, limit, codec.JOURNAL_MARK]))

    async def lease_orphans(
        self, idle_s: float, *, lease_s: float
    ) -> list[tuple[str, bytes | None]]:
        """Up to 20 calls whose score (last heartbeat) is ``idle_s`` old on the server's clock,
        leased by one EVALSHA of ``claim_orphan.lua``, then each journal read."""
        client = self.client
        args = [round(idle_s * 1000), round(lease_s * 1000), _CLAIMS]
        async with self._op():
            # Leased calls (a recovery in progress elsewhere) score in the future: skipped.
            claimed = await self._run("claim_orphan", [self._keys.open_calls()], args)
        leased: list[tuple[str, bytes | None]] = []
        for member in claimed:
            session_id = codec.text(cast("str | bytes", member)) or ""
            async with self._op():
                journal = await client.get(self._keys.session(session_id))
            leased.append((session_id, cast("bytes | None", journal)))
        return leased

    async def beat(self, session_ids: Sequence[str]) -> None:
        """One EVALSHA of ``beat.lua`` (``ZADD XX GT`` at the server's time) for up to a
        thousand of this worker's calls."""
        open_key = self._keys.open_calls()
        for start in range(0, len(session_ids), _BEATS_PER_COMMAND):
            batch = list(session_ids[start : start + _BEATS_PER_COMMAND])
            async with self._op():
                await self._run("beat", [open_key], batch)

    async def count_open_calls(self, idle_s: float) -> int:
        """TIME, then ZCOUNT up to ``idle_s`` before it (for operators: two round trips)."""
        async with self._op():
            seconds, micros = await self.client.time()
            now = int(seconds) + int(micros) // 1000 / 1000
            return int(await self.client.zcount(self._keys.open_calls(), "-inf", now - idle_s))

    async def release_orphan(self, session_id: str) -> None:
        """One EVALSHA of ``add_now.lua``: the call is back, scored with the server's time."""
        ttl = self._config.session_ttl_seconds
        async with self._op():
            await self._run("add_now", [self._keys.open_calls()], [session_id, ttl])

    async def open_call_ids(self) -> list[str]:
        """ZRANGE of the calls in progress."""
        async with self._op():
            members = await self.client.zrange(self._keys.open_calls(), 0, -1)
        return [codec.text(cast("str | bytes", m)) or "" for m in members]

    async def drop_open_calls(self, session_ids: Sequence[str]) -> None:
        """ZREM from the calls in progress."""
        if session_ids:
            async with self._op():
                await self.client.zrem(self._keys.open_calls(), *session_ids)

    async def acquire_maintenance(self, seconds: float) -> bool:
        """``SET maintenance pid NX EX seconds``: one recovery pass per interval, fleet-wide."""
        async with self._op():
            won = await self.client.set(
                self._keys.maintenance(), os.getpid(), nx=True, ex=max(1, round(seconds))
            )
        return bool(won)

    async def read(self, key: str) -> bytes | None:
        """GET."""
        async with self._op():
            value = await self.client.get(key)
        return cast("bytes | None", value)

    async def read_list(self, key: str) -> list[str]:
        """LRANGE 0 -1."""
        async with self._op():
            return [codec.text(v) or "" for v in await self.client.lrange(key, 0, -1)]

    async def read_members(self, key: str) -> list[str]:
        """ZRANGE 0 -1."""
        async with self._op():
            members = await self.client.zrange(key, 0, -1)
        return [codec.text(cast("str | bytes", m)) or "" for m in members]

    async def read_scores(self, key: str) -> list[tuple[str, float]]:
        """ZRANGE 0 -1 WITHSCORES."""
        async with self._op():
            found = cast(
                "list[tuple[bytes, float]]", await self.client.zrange(key, 0, -1, withscores=True)
            )
        return [(codec.text(member) or "", float(score)) for member, score in found]

    async def remove_members(self, key: str, members: Sequence[str]) -> None:
        """ZREM."""
        if members:
            async with self._op():
                await self.client.zrem(key, *members)

    async def mark_erased(self, user_ids: Sequence[str], *, ttl: int) -> None:
        """One EVALSHA of ``mark_erased.lua`` per user (each in its own slot): SET erased to
        the server's TIME (ms) EX ttl."""
        for user_id in user_ids:
            async with self._op():
                await self._run("mark_erased", [self._keys.erased(user_id)], [ttl])

    async def add_request(
        self, key: str, member: str, *, ttl: int, at: float | None = None
    ) -> None:
        """One EVALSHA of ``add_now.lua`` (ZADD at the server's time, EXPIRE); with ``at``,
        ZADD ``at`` and EXPIRE in one transaction."""
        if at is None:
            async with self._op():
                await self._run("add_now", [key], [member, ttl])
            return
        async with self._op(), self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {member: at})
            pipe.expire(key, ttl)
            await pipe.execute()

    async def write_moved(self, moved: MovedCaller) -> bool:
        """One EVALSHA of ``move_caller.lua``."""
        keys, config, new = self._keys, self._config, moved.user_id
        args: list[Any] = [
            new,
            config.profile_ttl_seconds,
            config.session_ttl_seconds,
            moved.profile or "",
            moved.unreadable or "",
            len(moved.session_ids),
            *moved.session_ids,
        ]
        for member, score in moved.calls:
            args += [score, member]
        script_keys = [
            keys.phone(new),
            keys.profile(new),
            keys.sessions(new),
            keys.calls(new),
            keys.unreadable_profile(new),
        ]
        async with self._op():
            return bool(int(await self._run("move_caller", script_keys, args)))

    async def replace_value(self, key: str, expected: bytes, value: bytes) -> bool:
        """One EVALSHA of ``replace_value.lua``."""
        async with self._op():
            return bool(int(await self._run("replace_value", [key], [expected, value])))

    async def drop_identity(
        self, phone_key: str, profile_key: str, sessions_key: str, user_id: str
    ) -> bool:
        """One EVALSHA of ``drop_identity.lua``."""
        async with self._op():
            removed = await self._run(
                "drop_identity", [phone_key, profile_key, sessions_key], [user_id]
            )
        return bool(int(removed))

    async def purge_history(self) -> bool:
        """Rewrite the append-only file (``BGREWRITEAOF``) and wait for it, up to
        :data:`_PURGE_WAIT_S`: until then the file still holds what was deleted.

        Only on a single server that keeps an append-only file (``INFO persistence``) and
        lets this user run ``BGREWRITEAOF`` (the embedded server does; managed services often
        do not, and keep their own backups: their retention is the operator's to set); a
        refusal is one warning naming the ACL rule to add. Never raises: the deletes have
        happened either way.
        """
        if self.is_cluster:
            return False
        client = cast("aioredis.Redis", self.client)
        try:
            # INFO, not CONFIG GET: CONFIG can read the server's passwords, and the ACL recipe
            # (docs/operations.md) does not grant it.
            async with self._op():
                if str((await client.info("persistence")).get("aof_enabled")) != "1":
                    return False
            async with self._op():
                try:
                    await client.bgrewriteaof()
                except ResponseError as e:
                    if _code(e) == "NOPERM":
                        raise
                    # "already in progress": it redoes the rewrite once done
            loop = asyncio.get_running_loop()
            give_up = loop.time() + _PURGE_WAIT_S
            while loop.time() < give_up:
                async with self._op():
                    info = await client.info("persistence")
                if not info.get("aof_rewrite_in_progress") and not info.get(
                    "aof_rewrite_scheduled"
                ):
                    return True
                await asyncio.sleep(0.05)
        except (RedisError, OSError, TimeoutError) as exc:
            refused = isinstance(exc, ResponseError) and _code(exc) == "NOPERM"
            logger.warning(
                "could not rewrite the append-only file after an erasure; the deleted data "
                "stays in it until Redis rewrites it (BGREWRITEAOF)%s",
                ": this Redis user may not run it (NOPERM); add +info +bgrewriteaof to its "
                "ACL rule (docs/operations.md, Redis ACL users)"
                if refused
                else "",
                extra={"error": type(exc).__name__},
            )
            return False
        logger.warning("the append-only file rewrite after an erasure is still running")
        return False

    async def delete(self, keys: Sequence[str]) -> list[str]:
        """EXISTS and DEL of each key in one transaction (one per slot on a cluster: a
        caller's own keys share one)."""
        groups: dict[int, list[str]] = {}
        client = self.client
        for key in keys:
            slot = client.keyslot(key) if isinstance(client, aioredis.RedisCluster) else 0
            groups.setdefault(slot, []).append(key)
        deleted: list[str] = []
        for group in groups.values():
            async with self._op(), self.client.pipeline(transaction=True) as pipe:
                for key in group:
                    pipe.exists(key)
                for key in group:
                    pipe.delete(key)
                results = await pipe.execute()
            deleted += [k for k, found in zip(group, results[: len(group)], strict=True) if found]
        return deleted

    def _op(self) -> _Operation:
        """One operation: a slot of the pool (past it, callers queue in order instead of the
        pool raising MaxConnectionsError), bounded by the caller's deadline, or when there is
        none by ``REDIS_SOCKET_TIMEOUT``."""
        return _Operation(self._slots, self._config.socket_timeout)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # EVALSHA straight away (redis-py's Script wrapper costs ~8 µs a call); a server that
        # does not know the script yet (new, restarted, flushed) gets it once.
        sha = _SHAS[name]
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(_SCRIPTS[name])
            return await self.client.evalsha(sha, len(keys), *keys, *args)


_TLS_PROBE_AFTER_S = 0.25
"""A TLS handshake still pending after this long: check whether the server speaks plain TCP."""
_PROBE_S = 0.5


async def _answers_plain(host: str, port: int) -> bool:
    """True when the server answers a plain ``PING`` in RESP (``+PONG`` or ``-NOAUTH``)."""
    try:
        async with deadline(_PROBE_S):  # asyncio.timeout is Python 3.11+
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                first = await reader.read(1)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    return first in (b"+", b"-")


async def _answers_tls(host: str, port: int) -> bool:
    """True when the server completes a TLS handshake (its certificate is not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with deadline(_PROBE_S):  # asyncio.timeout is Python 3.11+
            _, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    return True


_REFUSALS = {
    "READONLY": "Redis is a read-only replica",
    "OOM": "Redis is out of memory (maxmemory)",
    "NOPERM": "the Redis user may not write",
    "MISCONF": "Redis cannot persist to disk and refuses writes",
}
_warned: set[str] = set()


def _write_refusal(error: ResponseError) -> str | None:
    # A server that reads but does not write: redis-py names some refusals by their class
    # (and drops their code from the text), the others by their first word.
    if isinstance(error, ReadOnlyError):
        return _REFUSALS["READONLY"]
    if isinstance(error, OutOfMemoryError):
        return _REFUSALS["OOM"]
    if isinstance(error, NoPermissionError):
        return _REFUSALS["NOPERM"]
    text = str(error)
    for code, reason in _REFUSALS.items():
        if text.startswith(code) or f" {code} " in text:
            return reason
    return None


def _code(error: ResponseError) -> str:
    """The error's code (``NOPERM``, ``ERR``...): redis-py drops it from some classes' text."""
    if isinstance(error, NoPermissionError):
        return "NOPERM"
    return str(error).split(" ", 1)[0] or "refused"


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        logger.warning(
            "%s: callers are looked up with plain reads (returning callers are still "
            "recognized); their memory's expiry is renewed at the next save that goes through",
            reason,
        )


class _Operation:
    """The context of :meth:`RedisMemoryStore._op`: a class, not a generator-based context
    manager, because it runs on every call start (a generator costs ~10 µs more)."""

    __slots__ = ("_deadline", "_slots")

    def __init__(self, slots: asyncio.Semaphore, seconds: float) -> None:
        self._slots = slots
        self._deadline = deadline(seconds, unless_bounded=True)

    async def __aenter__(self) -> None:
        await self._deadline.__aenter__()
        try:
            await self._slots.acquire()
        except BaseException as e:
            await self._exit(type(e), e, e.__traceback__)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()
        await self._exit(exc_type, exc, tb)

    async def _exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._deadline.__aexit__(exc_type, exc, tb)
        except (LoopLateTimeout, ContendedTimeout) as e:
            # Not Redis's silence: the cause goes with it (troubleshooting.diagnose reads it).
            raise RedisTimeoutError(str(e)) from e
        except TimeoutError:
            raise RedisTimeoutError("Redis did not answer in time") from None


def _chain(first: Any, then: Any) -> Any:
    """``first``, then ``then`` if there is one: both ``on_close`` callbacks run."""

    def both() -> None:
        try:
            first()
        finally:
            if then is not None:
                then()

    return both
