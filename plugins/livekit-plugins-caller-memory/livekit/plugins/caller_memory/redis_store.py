"""The Redis store: the guide's ``RedisMemoryStore`` on ``redis.asyncio``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
import zlib
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .config import RedisConfig
from .embedded import EmbeddedRedis
from .identity import PhoneHasher
from .log import logger
from .store import MemoryStore, Raw, _RawLookup
from .troubleshooting import Diagnosis, diagnose

__all__ = ["Client", "RedisMemoryStore"]

Client = aioredis.Redis | aioredis.RedisCluster
"""A plain or a cluster ``redis.asyncio`` client."""

# Compare-and-set of the profile, then every write of the call with its TTL, in one atomic step.
# One command per save matters on per-command billing (Upstash), and the script is the
# transaction: nothing is half-written if the worker dies. On a Redis Cluster a script can only
# touch one slot: it gets the caller's keys (one hash tag), and the session data, the list of
# calls in progress and the phone mapping are written next to it.
#   KEYS: profile, sessions, profile:unreadable[, session, open sessions[, phone]]
#   ARGV: expected profile ('' = none), new profile, session id, session json,
#         profile ttl, session ttl, sessions kept, set aside ('1' / '0')
_SAVE_CALL = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' and kind ~= 'none' then
  -- not a profile at all: keep it aside, as an unreadable one is
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
kind = redis.call('TYPE', KEYS[2]).ok
if kind ~= 'list' and kind ~= 'none' then
  redis.call('DEL', KEYS[2])  -- only session ids, which the profile and sessions also hold
end
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then
  return {0, current or ''}
end
if ARGV[8] == '1' and current then
  redis.call('SET', KEYS[3], current, 'EX', ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
if not redis.call('LPOS', KEYS[2], ARGV[3]) then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1)
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
if KEYS[4] then
  redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[6])
  redis.call('ZREM', KEYS[5], ARGV[3])
end
if KEYS[6] then
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
return {1}
"""

# The call-start lookup in one command (EVALSHA: one round trip, and one billed command on
# Upstash): name or mint the caller's id, read the profile and the session list, and refresh
# the three keys' TTLs (a call that is not saved, an opt-out, still keeps them together). The
# three keys share the caller's {hash} tag. A profile or list of the wrong type comes back as
# an error value instead of failing the lookup.
#   KEYS: phone, profile, sessions    ARGV: phone hash (the id to mint), ttl
_LOOKUP = """
local found = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
if found then
  redis.call('EXPIRE', KEYS[1], ARGV[2])  -- every call refreshes the caller's TTLs
end
local profile = redis.pcall('GETEX', KEYS[2], 'EX', ARGV[2])
local sessions = redis.pcall('LRANGE', KEYS[3], 0, -1)
redis.pcall('EXPIRE', KEYS[3], ARGV[2])
if type(profile) == 'table' and profile.err then profile = {'err'} end
if type(sessions) == 'table' and sessions.err then sessions = {} end
return {found, profile, sessions}
"""

# Claim an orphaned call by leasing it (its score moves to the lease's end), if no one holds it.
#   KEYS: open sessions    ARGV: session id, now, lease end
_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""
_LEASE_S = 300.0
"""How long a recovery holds an orphaned call before another worker may take it."""
_CLAIMS = 20
"""Orphans claimed per recovery pass: the work of one pass stays bounded."""

# APPEND keeps a key's TTL, but would create a key without one if the journal had expired or
# been erased meanwhile: no key is ever left without a TTL.
_APPEND_JOURNAL = """
local size = redis.call('APPEND', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return size
"""


class RedisMemoryStore(MemoryStore):
    """Caller memory in Redis, with the key table of the guide.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        client: An existing ``redis.asyncio.Redis`` to use instead of opening one. It is left
            open by :meth:`disconnect`: close only what you opened.
        hasher: The phone-number hasher; built from the settings when omitted.
        embedded: A private server this store owns: :meth:`disconnect` stops it.

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
        embedded: EmbeddedRedis | None = None,
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._client = client
        self._owns_client = client is None
        self._embedded = embedded
        self._connecting: asyncio.Task[bool] | None = None
        self._set_get = True
        """The server takes ``SET NX GET`` (Redis 7.0+); switched off on the first refusal."""
        self._cluster = bool(self._config.cluster) or isinstance(client, aioredis.RedisCluster)
        self._scripts: dict[str, Any] = {}
        self._slots = asyncio.Semaphore(self._config.max_connections)
        self.last_error: str | None = None
        """The guide's troubleshooting text of the last failed :meth:`connect`."""

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

    def _make_client(self) -> Client:
        config = self._config
        options: dict[str, Any] = {
            # Bytes: a large profile is stored compressed; text is decoded where it is read.
            "decode_responses": False,
            "socket_timeout": config.socket_timeout,
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
            return aioredis.RedisCluster.from_url(
                urlunsplit(urlsplit(url)._replace(path="")), **options
            )
        return aioredis.Redis.from_url(url, **options)

    async def connect(self) -> bool:
        """Connect and PING. On failure, log the guide's troubleshooting text and return False."""
        try:
            await self.client.ping()
            if self._config.cluster is None and not self._cluster:
                await self._detect_cluster()
        except (RedisError, OSError) as e:
            diagnosis = diagnose(e, self._config)
            if diagnosis.reason == "Timeout" and self._config.uses_tls:
                diagnosis = await self._diagnose_tls_timeout(diagnosis)
            self.last_error = diagnosis.message
            logger.error(diagnosis.render(self._config.describe_server()))
            await self._drop_client()
            return False
        self.last_error = None
        logger.info("connected to Redis", extra={"server": self._config.describe_server()})
        return True

    def connect_soon(self) -> None:
        """Connect in the background (the troubleshooting text is logged if it fails)."""
        self._connecting = asyncio.get_running_loop().create_task(
            self.connect(), name="caller_memory.connect"
        )

    async def _detect_cluster(self) -> None:
        client = self.client
        if isinstance(client, aioredis.RedisCluster):
            return
        info = await client.info("cluster")
        if str(info.get("cluster_enabled", "0")) == "1":
            await self._drop_client()
            self._cluster = True
            await self.client.ping()
            logger.info("Redis Cluster detected", extra={"server": self._config.describe_server()})

    async def _diagnose_tls_timeout(self, diagnosis: Diagnosis) -> Diagnosis:
        # A plain server never answers a TLS hello, so TLS to it looks like a timeout. If a
        # plain TCP connection goes through, the handshake is what stalled.
        host, _, port = self._config.describe_server().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, ValueError, asyncio.TimeoutError):
            return diagnosis
        writer.close()
        return diagnose(ssl.SSLError("SSL handshake failed"), self._config)

    async def disconnect(self) -> None:
        """Close the connection pool if this store opened it, and its private server if any."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        await self._drop_client()
        server, self._embedded = self._embedded, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def _drop_client(self) -> None:
        self._scripts.clear()  # registered on the client being dropped
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
        server = self._config.describe_server()
        try:
            start = time.perf_counter()
            await self.client.ping()
            latency_ms = (time.perf_counter() - start) * 1000
            info = await self.client.info()
        except (RedisError, OSError) as e:
            return {"healthy": False, "error": diagnose(e, self._config).message, "server": server}
        return {
            "healthy": True,
            "latency_ms": round(latency_ms, 3),
            "server": server,
            "redis_version": info.get("redis_version") or info.get("valkey_version"),
            "used_memory_human": info.get("used_memory_human"),
        }

    async def stats(self) -> dict[str, Any]:
        """Counts for operators: callers, sessions, keys by kind, keys without a TTL (which
        must be zero), and the server's memory. Scans the prefix: for a terminal, not a call.
        """
        kinds = {"phone": 0, "profile": 0, "sessions": 0, "session": 0, "other": 0}
        no_ttl: list[str] = []
        journals = 0
        client = self.client
        async for raw_key in client.scan_iter(match=self._keys.pattern(), count=1000):
            key = _text(raw_key) or ""
            kind = _kind(key, self._keys.prefix)
            kinds[kind] += 1
            if await client.ttl(key) == -1:
                no_ttl.append(key)
            if kind == "session":
                head = _text(await client.getrange(key, 0, 11)) or ""
                journals += head.startswith('{"journal"')
        info = await client.info("memory")
        if isinstance(client, aioredis.RedisCluster):
            used = sum(int(v.get("used_memory", 0)) for v in info.values() if isinstance(v, dict))
        else:
            used = int(info.get("used_memory", 0))
        return {
            "server": self._config.describe_server(),
            "cluster": self._cluster,
            "callers": kinds["phone"],
            "profiles": kinds["profile"],
            "sessions_kept": kinds["session"] - journals,
            "calls_in_progress": journals,
            "keys_by_kind": kinds,
            "keys_without_ttl": len(no_ttl),
            "keys_without_ttl_sample": no_ttl[:5],
            "used_memory_bytes": used,
        }

    # -- raw operations --------------------------------------------------------------------
    # Each holds one slot of a semaphore as large as the connection pool: past that, callers
    # queue in order instead of the pool raising MaxConnectionsError.

    async def _lookup_raw(
        self, phone_hash: str, *, create: bool, previous: Sequence[str] = ()
    ) -> _RawLookup:
        async with self._slots:
            return await self._lookup(phone_hash, create=create, previous=previous)

    async def _lookup(
        self, phone_hash: str, *, create: bool, previous: Sequence[str] = ()
    ) -> _RawLookup:
        client = self.client
        ttl = self._config.profile_ttl_seconds
        phone_key = self._keys.phone(phone_hash)
        # A caller's user id is their phone hash (see new_user_id), so the profile and the
        # session list can be asked for before the phone key has answered: one round trip
        # (one command), and on a cluster one slot, as the three keys share the {hash} tag.
        mint = create and not previous and self._set_get
        profile_key, sessions_key = self._keys.profile(phone_hash), self._keys.sessions(phone_hash)
        if mint:
            # NX: of two first calls from one number at once, exactly one mints the id.
            try:
                found, profile_raw, session_ids = await self._script("lookup", _LOOKUP)(
                    keys=[phone_key, profile_key, sessions_key], args=[phone_hash, ttl]
                )
            except ResponseError as e:
                if "syntax" not in str(e).lower():
                    raise
                self._set_get = False  # Redis < 7.0: no SET NX GET
                return await self._lookup(phone_hash, create=create, previous=previous)
            if isinstance(profile_raw, list):  # the script's marker for a wrong type
                profile_raw = ResponseError("WRONGTYPE")
        else:
            async with client.pipeline(transaction=False) as pipe:
                pipe.getex(phone_key, ex=ttl)
                pipe.getex(profile_key, ex=ttl)
                pipe.lrange(sessions_key, 0, -1)
                found, profile_raw, session_ids = await pipe.execute(raise_on_error=False)
            for result in (found, profile_raw, session_ids):
                # A WRONGTYPE profile is handled below; anything else (the connection) raises.
                if isinstance(result, Exception) and not isinstance(result, ResponseError):
                    raise result
            if isinstance(found, ResponseError):
                raise found
        user_id = _text(found)
        if user_id is None and mint:
            if profile_raw is None and not session_ids:
                return _RawLookup(user_id=phone_hash, is_new=True)
            user_id = phone_hash  # the mapping had expired before the profile: same caller
        if user_id is None and previous:
            user_id = await self._adopt_previous(phone_key, previous)
        if user_id is None:
            if not create:
                return _RawLookup(user_id=None, is_new=False)
            if await client.set(phone_key, phone_hash, nx=True, ex=ttl):
                return _RawLookup(user_id=phone_hash, is_new=True)
            return await self._lookup(phone_hash, create=create)
        if user_id != phone_hash:
            # Keyed elsewhere (a caller moved from a previous secret): a second round trip.
            async with client.pipeline(transaction=False) as pipe:
                pipe.getex(self._keys.profile(user_id), ex=ttl)
                pipe.lrange(self._keys.sessions(user_id), 0, -1)
                profile_raw, session_ids = await pipe.execute(raise_on_error=False)
            for result in (profile_raw, session_ids):
                if isinstance(result, Exception) and not isinstance(result, ResponseError):
                    raise result
        if isinstance(profile_raw, ResponseError):  # WRONGTYPE: someone else's key
            logger.warning(
                "caller profile key holds the wrong type, treating the caller as new",
                extra={"key": self._keys.profile(user_id)},
            )
            profile_raw = None
        if isinstance(session_ids, ResponseError):
            session_ids = []
        return _RawLookup(
            user_id=user_id,
            is_new=False,
            profile_raw=profile_raw,
            session_ids=[_text(s) or "" for s in session_ids],
        )

    async def _adopt_previous(self, phone_key: str, previous: Sequence[str]) -> str | None:
        # After a secret rotation: find the caller under an old hash, move them to the new one.
        client = self.client
        old_keys = [self._keys.phone(h) for h in previous]
        async with client.pipeline(transaction=False) as pipe:
            for key in old_keys:
                pipe.get(key)
            found = [_text(v) for v in await pipe.execute()]
        user_id = next((uid for uid in found if uid), None)
        if user_id is None:
            return None
        ttl = self._config.profile_ttl_seconds
        if not await client.set(phone_key, user_id, nx=True, ex=ttl):
            user_id = _text(await client.get(phone_key)) or user_id
        await client.delete(*[k for k, uid in zip(old_keys, found, strict=True) if uid])
        logger.info("caller moved to the current phone-hash secret")
        return user_id

    async def _save_raw(
        self,
        *,
        user_id: str,
        phone_hash: str | None,
        expected_profile: Raw | None,
        profile: str,
        session_id: str,
        session: str,
        set_aside: bool,
    ) -> tuple[bool, Raw | None]:
        profile_key = self._keys.profile(user_id)
        keys = [profile_key, self._keys.sessions(user_id), f"{profile_key}:unreadable"]
        others = [self._keys.session(session_id), self._keys.open_sessions()]
        if phone_hash is not None:
            others.append(self._keys.phone(phone_hash))
        if not self._cluster:
            keys += others
        config = self._config
        args = [
            expected_profile or b"",
            _encode_profile(profile),
            session_id,
            session,
            config.profile_ttl_seconds,
            config.session_ttl_seconds,
            config.max_sessions,
            "1" if set_aside else "0",
        ]
        async with self._slots:
            result = await self._script("save", _SAVE_CALL)(keys=keys, args=args)
            if int(result[0]) != 1:
                return False, (result[1] or None)
            if self._cluster:
                async with self.client.pipeline(transaction=False) as pipe:
                    pipe.set(others[0], session, ex=config.session_ttl_seconds)
                    pipe.zrem(others[1], session_id)
                    if phone_hash is not None:
                        pipe.expire(others[2], config.profile_ttl_seconds)
                    await pipe.execute()
        return True, None

    async def _journal_open(self, session_id: str, header: str) -> None:
        ttl = self._config.session_ttl_seconds
        async with self._slots, self.client.pipeline(transaction=False) as pipe:
            pipe.set(self._keys.session(session_id), header, ex=ttl)
            pipe.zadd(self._keys.open_sessions(), {session_id: time.time()})
            pipe.expire(self._keys.open_sessions(), ttl)
            await pipe.execute()

    async def _journal_append(self, session_id: str, lines: str) -> None:
        key = self._keys.session(session_id)
        async with self._slots:
            await self._script("append", _APPEND_JOURNAL)(
                keys=[key], args=[lines, self._config.session_ttl_seconds]
            )

    async def _journal_release(self, session_id: str) -> None:
        ttl = self._config.session_ttl_seconds
        async with self._slots, self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self._keys.open_sessions(), {session_id: time.time()})
            pipe.expire(self._keys.open_sessions(), ttl)
            await pipe.execute()

    async def _claim_orphans(self, idle_s: float) -> list[tuple[str, str | None]]:
        client = self.client
        open_key = self._keys.open_sessions()
        now = time.time()
        async with self._slots:
            # Leased calls (a recovery in progress elsewhere) score in the future: skipped.
            members = await client.zrangebyscore(open_key, "-inf", now, start=0, num=_CLAIMS)
        claimed: list[tuple[str, str | None]] = []
        for member in members:
            session_id = _text(cast("str | bytes", member)) or ""
            key = self._keys.session(session_id)
            async with self._slots:
                idle = await self._idle_seconds(key)
                if idle is not None and idle < idle_s:
                    continue  # its worker is still writing to it
                # A lease, not a removal: one claimer wins it, and if that process dies the
                # lease runs out and the call is recovered by another.
                won = await self._script("claim", _CLAIM)(
                    keys=[open_key], args=[session_id, now, now + _LEASE_S]
                )
                if not int(won):
                    continue
                raw = _text(await client.get(key))
            claimed.append((session_id, raw))
        return claimed

    async def acquire_maintenance(self, seconds: float) -> bool:
        """One maintenance pass per interval across all workers (a lock with a TTL)."""
        async with self._slots:
            won = await self.client.set(
                self._keys.maintenance(), os.getpid(), nx=True, ex=max(1, round(seconds))
            )
        return bool(won)

    async def _idle_seconds(self, key: str) -> float | None:
        try:
            idle = await self.client.object("idletime", key)
        except ResponseError:  # an LFU eviction policy has no idle time: use the TTL spent
            ttl = await self.client.ttl(key)
            return None if ttl < 0 else float(self._config.session_ttl_seconds - ttl)
        return None if idle is None else float(idle)

    def _script(self, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(source)
        return script

    async def _open_session_ids(self) -> list[str]:
        async with self._slots:
            members = await self.client.zrange(self._keys.open_sessions(), 0, -1)
        return [_text(cast("str | bytes", m)) or "" for m in members]

    async def _forget_open(self, session_ids: list[str]) -> None:
        if session_ids:
            async with self._slots:
                await self.client.zrem(self._keys.open_sessions(), *session_ids)

    async def _delete_raw(self, keys: list[str]) -> list[str]:
        # One transaction; on a cluster, one per slot (a caller's own keys share one).
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(self._slot(key), []).append(key)
        deleted: list[str] = []
        for group in groups.values():
            async with self._slots, self.client.pipeline(transaction=True) as pipe:
                for key in group:
                    pipe.exists(key)
                for key in group:
                    pipe.delete(key)
                results = await pipe.execute()
            deleted += [k for k, found in zip(group, results[: len(group)], strict=True) if found]
        return deleted

    def _slot(self, key: str) -> int:
        client = self.client
        return client.keyslot(key) if isinstance(client, aioredis.RedisCluster) else 0

    async def _get_raw(self, key: str) -> str | None:
        async with self._slots:
            value = await self.client.get(key)
        if value is None:
            return None
        # Only profiles are ever compressed; any other value (a user id may start with 'x')
        # is plain text.
        return _decode_value(value) if ":profile" in key else _text(value)

    async def _get_profile_raw(self, user_id: str) -> Raw | None:
        async with self._slots:
            value: Raw | None = await self.client.get(self._keys.profile(user_id))
        return value

    def _decode_profile(self, raw: Raw) -> str:
        return raw if isinstance(raw, str) else _decode_value(raw)

    async def _list_raw(self, key: str) -> list[str]:
        async with self._slots:
            return [_text(v) or "" for v in await self.client.lrange(key, 0, -1)]


_COMPRESS_OVER = 200
"""Profiles longer than this (bytes of JSON) are stored zlib-compressed: about half the
memory for the summaries' prose. JSON starts with '{', zlib with 'x': the two never mix up."""


def _encode_profile(profile_json: str) -> bytes:
    data = profile_json.encode()
    if len(data) <= _COMPRESS_OVER:
        return data
    packed = zlib.compress(data, 6)
    return packed if len(packed) < len(data) else data


def _decode_value(value: bytes | str) -> str:
    """A profile's JSON from its stored form (zlib-compressed, or plain)."""
    if isinstance(value, str):
        return value
    if value[:1] == b"x":
        try:
            return zlib.decompress(value).decode()
        except (zlib.error, UnicodeDecodeError):
            pass  # not ours: an unreadable value, shown as it is
    return value.decode(errors="replace")


def _text(value: bytes | str | None) -> str | None:
    # The store's client answers bytes; one handed in may answer text.
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def _kind(key: str, prefix: str) -> str:
    rest = key[len(prefix) + 1 :]
    if rest.startswith("phone:"):
        return "phone"
    if rest.startswith("session:"):
        return "session"
    if rest.startswith("user:"):
        if rest.endswith(":profile"):
            return "profile"
        if rest.endswith(":sessions"):
            return "sessions"
    return "other"
