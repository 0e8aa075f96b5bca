"""Talking to Redis: the client, each operation's slot and deadline, the Lua scripts, and what a
refusal to write means.

Every operation holds one slot of a semaphore as large as the connection pool, so that past it
callers queue in order instead of the pool raising ``MaxConnectionsError``, and runs under the
caller's deadline (or ``REDIS_SOCKET_TIMEOUT``). A script is sent by its SHA, and loaded once
where the server does not know it yet.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import RedisConfig
from ..exceptions import StoreUnavailableError
from ..identity import PhoneHasher
from ..log import logger
from ..timeouts import ContendedTimeout, LoopLateTimeout, deadline
from .base import MemoryStore

__all__ = [
    "Client",
    "RedisStoreBase",
    "error_code",
    "out_of_memory",
    "warn_refused_once",
    "write_refusal",
]

NOT_PERSISTENT = (
    "MEMORY_PERSISTENCE=false: caller memory lives in this process, and a RedisMemoryStore "
    "stores nothing; open the store with open_store() (or init_session_manager()), or set "
    "MEMORY_PERSISTENCE=true"
)
Client = aioredis.Redis | aioredis.RedisCluster
"""A plain or a cluster ``redis.asyncio`` client."""


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
        "delete",
        "erase",
        "drop_identity",
        "move_caller",
        "replace_value",
    )
}
# The erasure's mark on a full Redis (maxmemory, noeviction): a caller who asked to be forgotten
# is, and the mark is a few bytes. Script flags need Redis 7.0 or Valkey; 6.2 refuses them.
_SCRIPTS["mark_erased_when_full"] = "#!lua flags=allow-oom\n" + _SCRIPTS["mark_erased"]
_SCRIPTS["erase_when_full"] = "#!lua flags=allow-oom\n" + _SCRIPTS["erase"]
_SHAS = {
    name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for name, source in _SCRIPTS.items()
}


def _worth_retrying(error: Exception) -> bool:
    # A refused password (NOAUTH, WRONGPASS) or user is not a blip: retried, it only spends
    # the call's lookup budget (0.5 s before the troubleshooting text, against 0.13 s).
    return not isinstance(error, (AuthenticationError, AuthorizationError))


def _retry(backoff: ExponentialBackoff, retries: int) -> Retry:
    try:
        return Retry(backoff, retries, is_retryable=_worth_retrying)
    except TypeError:  # pragma: no cover - redis-py before is_retryable retries those too
        return Retry(backoff, retries)


class RedisStoreBase(MemoryStore):
    """The base of the Redis store: the ``redis.asyncio`` client it opens or is given, and how
    each of its operations runs (:meth:`_op`, :meth:`_run`). :class:`~.redis.RedisMemoryStore`
    is made of it and the operations of :mod:`.redis_callers`, :mod:`.redis_open_calls` and
    :mod:`.redis_keyspace`."""

    def __init__(
        self,
        config: RedisConfig | None = None,
        *,
        client: Client | None = None,
        hasher: PhoneHasher | None = None,
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._client = client
        self._owns_client = client is None
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
        if not config.persistence:
            # Memory lives in the process: no Redis is written, not even one a URL names.
            raise StoreUnavailableError(NOT_PERSISTENT)
        options: dict[str, Any] = {
            # Bytes: a large profile is stored compressed; text is decoded where it is read.
            "decode_responses": False,
            # No socket_timeout: redis-py would wrap every send in asyncio.wait_for (a task per
            # command). Each operation runs under a deadline of its own instead (_op).
            "socket_timeout": None,
            "socket_connect_timeout": config.socket_timeout,
            # A blip is retried once, fast; the call-start budget bounds the rest.
            "retry": _retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
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
        if config.url is not None and "@" not in url:
            # A URL without credentials: REDIS_USERNAME and REDIS_PASSWORD still apply.
            if config.username:
                options["username"] = config.username
            if config.password is not None:
                options["password"] = config.password.get_secret_value()
        if self._cluster:
            # Ride through a failover: slot moves and a dead master are retried with backoff.
            options["retry"] = _retry(ExponentialBackoff(cap=0.5, base=0.02), 6)
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

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()
        elif client is not None:
            self._client = client

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


_REFUSALS = {
    "READONLY": "Redis is a read-only replica",
    "OOM": "Redis is out of memory (maxmemory)",
    "NOPERM": "the Redis user may not write",
    "MISCONF": "Redis cannot persist to disk and refuses writes",
}
_SCRIPT_REFUSALS = (
    "The user executing the script can't run",  # Redis 7.0
    "ACL failure in script",  # Redis 7.2+, Valkey
)
"""How a command refused inside a script is worded: ``ERR``, not ``NOPERM``."""
_warned: set[str] = set()


def write_refusal(error: ResponseError) -> str | None:
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
    if any(words in text for words in _SCRIPT_REFUSALS):  # a user that may run the script
        return _REFUSALS["NOPERM"]  # but not the writes in it
    return None


def out_of_memory(error: ResponseError) -> bool:
    """True when Redis refused a write for want of memory (``maxmemory``, ``noeviction``)."""
    return write_refusal(error) == _REFUSALS["OOM"]


def error_code(error: ResponseError) -> str:
    """The error's code (``NOPERM``, ``ERR``...): redis-py drops it from some classes' text."""
    if isinstance(error, NoPermissionError):
        return "NOPERM"
    return str(error).split(" ", 1)[0] or "refused"


def warn_refused_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        logger.warning(
            "%s: callers are looked up with plain reads (returning callers are still "
            "recognized); their memory's expiry is renewed at the next save that goes through",
            reason,
        )


class _Operation:
    """The context of :meth:`RedisStoreBase._op`: a class, not a generator-based context
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
