"""The Redis store: the guide's ``RedisMemoryStore`` on ``redis.asyncio``.

Each atomic operation of :mod:`.primitives` is one round trip here: a Lua script from
``scripts/`` (one billed command on Upstash) or a pipeline. The store is made of
:mod:`.redis_client` (the client, each operation's slot and deadline, the scripts) and the
operations of :mod:`.redis_callers` (a caller's keys), :mod:`.redis_open_calls` (calls in
progress) and :mod:`.redis_keyspace` (reads, deletes, counts); this module connects it (which
server, TLS or not, a cluster or not) and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..config import RedisConfig
from ..identity import PhoneHasher
from ..log import announce_store, logger, once
from ..persistence import volatile_warning
from ..server.connect import resolve_default_redis
from ..timeouts import deadline
from ..troubleshooting import Diagnosis, diagnose
from .redis_callers import RedisCallers
from .redis_client import NOT_PERSISTENT, Client, error_code
from .redis_keyspace import RedisKeyspace
from .redis_open_calls import RedisOpenCalls

__all__ = ["RedisMemoryStore"]


class RedisMemoryStore(RedisCallers, RedisOpenCalls, RedisKeyspace):
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
        super().__init__(config, client=client, hasher=hasher)
        self._on_close = on_close
        # Nothing to resolve with a client given: it is connected to whatever it is.
        self._resolved = client is not None
        self._connecting: asyncio.Task[bool] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Connect and PING. On failure, log the guide's troubleshooting text and return False.

        With no Redis named (neither ``REDIS_URL`` nor ``REDIS_HOST``), the store goes where
        :func:`~livekit.plugins.caller_memory.store.open_store` and ``caller-memory check``
        go: ``localhost:6379`` when a server answers there, else this machine's private
        server, found or started (``MEMORY_EMBEDDED_REDIS=false`` turns that off). A server
        this store started is stopped by :meth:`disconnect`.
        """
        if not self._config.persistence and self._client is None:
            self.last_error = NOT_PERSISTENT
            logger.error(NOT_PERSISTENT)
            return False
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
                    error_code(e),
                )
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            await self._drop_client()
            self._cluster = True
            await self.client.ping()
            logger.info("Redis Cluster detected", extra={"server": self.server})

    async def _measure_clock(self) -> None:
        """TIME: how far this process's clock is from the server's (see
        :meth:`~.primitives.StorePrimitives.clock_ms`)."""
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

    async def health_check(self) -> dict[str, Any]:
        """PING the server and time it.

        Returns:
            ``{"healthy": True, "latency_ms": 0.21, "server": "localhost:6379",
            "redis_version": "7.0.15", "used_memory_human": "1.2M", "full": False}``
            (``full``: at ``maxmemory`` with ``noeviction``, so writes are refused), or
            ``healthy`` False with the guide's ``error`` text.
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
            # At maxmemory and evicting nothing: writes that add data are refused (saves go
            # to the outbox), while reads and deletes go on.
            "full": 0 < int(info.get("maxmemory") or 0) <= int(info.get("used_memory") or 0)
            and info.get("maxmemory_policy") == "noeviction",
        }


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


def _chain(first: Any, then: Any) -> Any:
    """``first``, then ``then`` if there is one: both ``on_close`` callbacks run."""

    def both() -> None:
        try:
            first()
        finally:
            if then is not None:
                then()

    return both
