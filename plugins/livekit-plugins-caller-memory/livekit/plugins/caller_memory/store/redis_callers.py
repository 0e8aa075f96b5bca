"""A caller's keys in Redis: the call-start lookup, the save at hang-up, a caller moved to a new
secret, a profile changed outside a save, a declined caller's identity dropped.

Each is one round trip on the caller's ``{hash}`` slot (a Lua script of ``scripts/``). Where
Redis takes no writes (a read-only replica, out of memory, an ACL user without them), the lookup
falls back to plain reads: a returning caller is still recognized.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from redis.exceptions import ResponseError

from .. import version
from . import codec
from .keys import is_user_id
from .records import CallWrite, Fetched, MovedCaller, WriteOutcome
from .redis_client import RedisStoreBase, warn_refused_once, write_refusal

__all__ = ["RedisCallers"]


class RedisCallers(RedisStoreBase):
    """The operations on one caller's keys (see :mod:`.primitives`)."""

    async def fetch_caller(
        self,
        phone_key: str,
        profile_key: str,
        sessions_key: str,
        aside_key: str,
        *,
        mint: str | None,
        ttl: int,
    ) -> Fetched:
        """One EVALSHA of ``lookup.lua``. Where Redis takes no writes (a read-only replica,
        out of memory, an ACL user without them), plain reads instead: a returning caller is
        still recognized, and the save renews the TTLs later."""
        script_keys = [phone_key, profile_key, sessions_key, aside_key]
        try:
            async with self._op():
                found, profile, sessions, aside, at_ms = await self._run(
                    "lookup", script_keys, [mint or "", ttl, codec.MAX_PROFILE_BYTES]
                )
            self._clock_seen(int(at_ms), time.time())
        except ResponseError as e:
            refusal = write_refusal(e)
            if refusal is None:
                raise
            warn_refused_once(refusal)
            return await self._read_caller(phone_key, profile_key, sessions_key)
        wrong_type = isinstance(profile, list)  # the script's marker for a wrong type
        return Fetched(
            user_id=codec.text(found),
            profile=None if wrong_type else profile,
            profile_wrong_type=wrong_type,
            has_sessions=bool(sessions),
            phone_set_aside=bool(aside),
            at_ms=int(at_ms),
        )

    async def _read_caller(self, phone_key: str, profile_key: str, sessions_key: str) -> Fetched:
        # GET, STRLEN, GET (when not too large), EXISTS: reads only, each failing on its own.
        async with self._op(), self.client.pipeline(transaction=False) as pipe:
            pipe.get(phone_key)
            pipe.strlen(profile_key)
            pipe.exists(sessions_key)
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
            user_id=_user_id(found),
            profile=profile,
            profile_wrong_type=unreadable,
            has_sessions=sessions == 1,  # EXISTS: 1, or an error
        )

    async def fetch_profile(self, profile_key: str, sessions_key: str, ttl: int) -> Fetched:
        """GETEX and EXPIRE in one pipeline."""
        async with self._op(), self.client.pipeline(transaction=False) as pipe:
            pipe.getex(profile_key, ex=ttl)
            pipe.expire(sessions_key, ttl)
            profile, sessions = await pipe.execute(raise_on_error=False)
        for result in (profile, sessions):
            # A WRONGTYPE key is the caller's bad luck, not an outage: anything else raises.
            if isinstance(result, Exception) and not isinstance(result, ResponseError):
                raise result
        wrong_type = isinstance(profile, ResponseError)
        return Fetched(
            user_id=None,
            profile=None if wrong_type else profile,
            profile_wrong_type=wrong_type,
            has_sessions=sessions is True,
        )

    async def adopt_previous(
        self, phone_key: str, old_phone_keys: Sequence[str], *, ttl: int
    ) -> str | None:
        """Read the old mappings, then move the first found to ``phone_key``."""
        client = self.client
        async with self._op(), client.pipeline(transaction=False) as pipe:
            for key in old_phone_keys:
                pipe.get(key)
            found = [_user_id(v) for v in await pipe.execute()]
        user_id = next((uid for uid in found if uid), None)
        if user_id is None:
            return None
        async with self._op():
            if not await client.set(phone_key, user_id, nx=True, ex=ttl):
                user_id = _user_id(await client.get(phone_key)) or user_id
            await client.delete(*[k for k, uid in zip(old_phone_keys, found, strict=True) if uid])
        return user_id

    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        """One EVALSHA of ``save_call.lua`` (plus a pipeline for the other slots on a cluster)."""
        keys, config = self._keys, self._config
        # Read now, not at import: a test replaces it to play a newer worker of an upgrade.
        saved_by = version.__version__
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
            saved_by,
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
                    pipe.zincrby(others[2], 1, f"saves:{saved_by}")
                    pipe.zadd(others[2], {f"last:{saved_by}": now})
                    pipe.expire(others[2], config.profile_ttl_seconds)
                    if write.phone_hash is not None:
                        pipe.expire(others[3], config.profile_ttl_seconds)
                    await pipe.execute()
        return "written", None

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


def _user_id(found: object) -> str | None:
    # What a plain read of a phone key names: its value when it is a user id; another
    # program's value names no one (the lookup script sets it aside where it may write).
    value = None if isinstance(found, Exception) else codec.text(cast("bytes | None", found))
    return value if value is not None and is_user_id(value) else None
