"""The in-process store of ``MEMORY_PERSISTENCE=false``: the same contract, no Redis.

Memory lives as long as the process. Every policy (which keys a lookup renews, the merge, what
erasure deletes) is :class:`~.base.MemoryStore`'s, shared with Redis; this module only does
each atomic operation of :mod:`.primitives` on a dict, step for step as its Lua script does on
Redis (the script is named on each method). Values are the bytes Redis would hold and TTLs
are honoured, so the contract tests run unchanged against both stores and compare what each
leaves behind.

Where Redis reads its own clock (``TIME`` in the scripts: heartbeats, orphans' age, erasure
marks, a call's beginning), this store reads the process's ``time.time()``: there is one clock
here, so it is the store's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import version
from ..config import RedisConfig
from ..identity import PhoneHasher
from . import codec
from .base import MemoryStore
from .keys import is_user_id
from .records import CallWrite, Fetched, MovedCaller, WriteOutcome
from .stats import stats_report

__all__ = ["InMemoryStore"]

Value = bytes | list[str] | dict[str, float]


class _Keyspace:
    """Strings, lists and sorted sets with TTLs: what the stores use of Redis."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._data: dict[str, tuple[Value, float]] = {}
        self._clock = clock

    def get(self, key: str) -> Value | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._data[key]
            return None
        return entry[0]

    def set(self, key: str, value: Value, ttl: float) -> None:
        self._data[key] = (value, self._clock() + ttl)

    def expire(self, key: str, ttl: float) -> bool:
        value = self.get(key)
        if value is not None:
            self.set(key, value, ttl)
        return value is not None

    def ttl(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        return self._data[key][1] - self._clock()

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not None
        self._data.pop(key, None)
        return existed

    def live(self) -> dict[str, Value]:
        return {key: value for key in list(self._data) if (value := self.get(key)) is not None}


class InMemoryStore(MemoryStore):
    """Caller memory in a dict of this process, for running and testing without Redis.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        hasher: The phone-number hasher; built from the settings when omitted.
        clock: Seconds on a monotonic clock, for TTLs (tests move it forward).
    """

    def __init__(
        self,
        config: RedisConfig | None = None,
        *,
        hasher: PhoneHasher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._space = _Keyspace(clock)
        self._lock = asyncio.Lock()

    @property
    def server(self) -> str:
        """``in-process``."""
        return "in-process"

    async def connect(self) -> bool:
        """Always succeeds: there is nothing to connect to."""
        return True

    async def disconnect(self) -> None:
        """Nothing to close; the memory is kept until the process ends."""

    async def health_check(self) -> dict[str, Any]:
        """Always healthy, with no latency to speak of."""
        return {"healthy": True, "latency_ms": 0.0, "server": self.server}

    async def stats(self, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """The same counts as Redis gives, over this process's keys."""
        kinds: dict[str, int] = {}
        journals = 0
        for key, value in self._space.live().items():
            if progress is not None:
                progress(1)
            kind = self._keys.kind(key)
            kinds[kind] = kinds.get(kind, 0) + 1
            journals += kind == "session" and isinstance(value, bytes) and codec.is_journal(value)
        return stats_report(
            server=self.server,
            cluster=False,
            kinds=kinds,
            journals=journals,
            no_ttl=[],
            too_long=[],
            used_memory=0,
        )

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires, or None when it does not exist."""
        return self._space.ttl(key)

    def dump(self) -> dict[str, bytes | list[str] | dict[str, float]]:
        """Every live key and its value, as Redis holds them: a string as bytes, a list of
        strings, a sorted set as ``{member: score}``."""
        return self._space.live()

    # -- the atomic operations -------------------------------------------------------------

    def _string(self, key: str) -> tuple[bytes | None, bool]:
        value = self._space.get(key)
        if value is None or isinstance(value, bytes):
            return value, False
        return None, True

    def _list(self, key: str) -> list[str]:
        value = self._space.get(key)
        return list(value) if isinstance(value, list) else []

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
        """As ``lookup.lua``."""
        space = self._space
        found, wrong_type = self._string(phone_key)
        if found is not None and not is_user_id(found.decode(errors="replace")):
            found, wrong_type = None, True  # no user id: set aside too
        if wrong_type:  # set aside, as lookup.lua does
            value = space.get(phone_key)
            assert value is not None
            space.set(aside_key, value, ttl)
            space.delete(phone_key)
        if found is None and mint is not None:
            space.set(phone_key, mint.encode(), ttl)
        space.expire(phone_key, ttl)
        fetched = await self.fetch_profile(profile_key, sessions_key, ttl)
        return Fetched(
            user_id=found.decode() if found is not None else None,
            profile=fetched.profile,
            profile_wrong_type=fetched.profile_wrong_type,
            has_sessions=fetched.has_sessions,
            phone_set_aside=wrong_type,
            at_ms=self.clock_ms(),
        )

    async def fetch_profile(self, profile_key: str, sessions_key: str, ttl: int) -> Fetched:
        """As the pipeline of the Redis store: GETEX, EXPIRE (a profile larger than
        any caller memory writes comes back as unreadable, as from ``lookup.lua``)."""
        profile, wrong_type = self._string(profile_key)
        if profile is not None and len(profile) > codec.MAX_PROFILE_BYTES:
            profile, wrong_type = None, True
        self._space.expire(profile_key, ttl)
        return Fetched(
            user_id=None,
            profile=profile,
            profile_wrong_type=wrong_type,
            has_sessions=self._space.expire(sessions_key, ttl),
        )

    async def adopt_previous(
        self, phone_key: str, old_phone_keys: Sequence[str], *, ttl: int
    ) -> str | None:
        """As the Redis store: the first old mapping found moves to ``phone_key``."""
        found = [self._string(key)[0] for key in old_phone_keys]
        user_id = next((uid for uid in found if uid), None)
        if user_id is None:
            return None
        current, _ = self._string(phone_key)
        if current is None:
            self._space.set(phone_key, user_id, ttl)
        for key, uid in zip(old_phone_keys, found, strict=True):
            if uid:
                self._space.delete(key)
        return (current or user_id).decode()

    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        """As ``save_call.lua``."""
        keys, config, space = self._keys, self._config, self._space
        profile_key = keys.profile(write.user_id)
        sessions_key = keys.sessions(write.user_id)
        aside_key = keys.unreadable_profile(write.user_id)
        calls_key = keys.calls(write.user_id)
        profile_ttl = config.profile_ttl_seconds
        async with self._lock:
            erased, _ = self._string(keys.erased(write.user_id))
            if erased is not None and int(erased) >= write.started_ms:
                return "erased", None
            current, wrong_type = self._string(profile_key)
            if current is not None and len(current) > codec.MAX_PROFILE_BYTES:
                current, wrong_type = None, True  # set aside, never compared
            if wrong_type:
                space.set(aside_key, space.get(profile_key) or b"", profile_ttl)
                space.delete(profile_key)
            if not isinstance(space.get(sessions_key), list | None):
                space.delete(sessions_key)
            if not isinstance(space.get(calls_key), dict | None):
                space.delete(calls_key)
            if (current or b"") != (write.expected_profile or b""):
                return "changed", current
            if write.set_aside and current is not None:
                space.set(aside_key, current, profile_ttl)
            space.set(profile_key, write.profile, profile_ttl)
            items = self._list(sessions_key)
            if write.session_id not in items:
                items = [*items, write.session_id][-config.max_sessions :]
            space.set(sessions_key, items, profile_ttl)
            now, session_ttl = time.time(), config.session_ttl_seconds
            index = self._scores(calls_key)
            index[write.session_id] = now + session_ttl
            space.set(calls_key, {k: v for k, v in index.items() if v > now}, session_ttl)
            space.set(keys.session(write.session_id), write.session.encode(), session_ttl)
            calls = self._open_calls()
            if calls.pop(write.session_id, None) is not None:
                self._set_open_calls(calls)
            saves, saved_by = self._scores(keys.versions()), version.__version__
            saves[f"saves:{saved_by}"] = saves.get(f"saves:{saved_by}", 0) + 1
            saves[f"last:{saved_by}"] = int(now)
            space.set(keys.versions(), saves, profile_ttl)
            if write.phone_hash is not None:
                space.expire(keys.phone(write.phone_hash), profile_ttl)
            return "written", None

    def _scores(self, key: str) -> dict[str, float]:
        value = self._space.get(key)
        return dict(value) if isinstance(value, dict) else {}

    def _open_calls(self) -> dict[str, float]:
        value = self._space.get(self._keys.open_calls())
        return dict(value) if isinstance(value, dict) else {}

    def _set_open_calls(self, calls: dict[str, float]) -> None:
        # A sorted set with the session TTL, gone when empty: as ZADD + EXPIRE and ZREM.
        key = self._keys.open_calls()
        if calls:
            self._space.set(key, calls, self._config.session_ttl_seconds)
        else:
            self._space.delete(key)

    async def write_journal_header(self, session_id: str, header: str) -> None:
        """As the Redis store: SET with the session TTL, and the call listed in progress."""
        self._space.set(
            self._keys.session(session_id), header.encode(), self._config.session_ttl_seconds
        )
        self._set_open_calls({**self._open_calls(), session_id: time.time()})

    async def append_journal_lines(self, session_id: str, lines: str, limit: int) -> int:
        """As ``append_journal.lua``."""
        key = self._keys.session(session_id)
        current, _ = self._string(key)
        if not current or not codec.is_journal(current):
            return -1  # gone, or the saved call's record
        added = lines.encode()
        if len(current) + len(added) > limit:
            return -2
        self._space.set(key, current + added, self._space.ttl(key) or 1)
        return len(current) + len(added)

    async def lease_orphans(
        self, idle_s: float, *, lease_s: float
    ) -> list[tuple[str, bytes | None]]:
        """As ``claim_orphan.lua``: calls that last beat ``idle_s`` ago or longer."""
        calls, now = self._open_calls(), time.time()
        idle = [sid for sid, last in calls.items() if last <= now - idle_s]
        self._set_open_calls({**calls, **dict.fromkeys(idle, now + lease_s)})
        return [(sid, self._string(self._keys.session(sid))[0]) for sid in idle]

    async def beat(self, session_ids: Sequence[str]) -> None:
        """As ``beat.lua`` (``ZADD XX GT`` now)."""
        calls, now = self._open_calls(), time.time()
        beaten = {sid: now for sid in session_ids if sid in calls and calls[sid] < now}
        if beaten:
            self._set_open_calls({**calls, **beaten})

    async def count_open_calls(self, idle_s: float) -> int:
        """As ZCOUNT up to ``idle_s`` ago."""
        beaten_before = time.time() - idle_s
        return sum(1 for last in self._open_calls().values() if last <= beaten_before)

    async def release_orphan(self, session_id: str) -> None:
        """Back among the calls in progress, as if written now."""
        self._set_open_calls({**self._open_calls(), session_id: time.time()})

    async def open_call_ids(self) -> list[str]:
        """The calls in progress."""
        return list(self._open_calls())

    async def drop_open_calls(self, session_ids: Sequence[str]) -> None:
        """As ZREM."""
        calls = self._open_calls()
        for session_id in session_ids:
            calls.pop(session_id, None)
        self._set_open_calls(calls)

    async def acquire_maintenance(self, seconds: float) -> bool:
        """Always: there is only this process."""
        return True

    async def read(self, key: str) -> bytes | None:
        """A string key's value."""
        return self._string(key)[0]

    async def read_list(self, key: str) -> list[str]:
        """A list key's items."""
        return self._list(key)

    async def read_members(self, key: str) -> list[str]:
        """A sorted set's members, lowest score first."""
        return [member for member, _ in await self.read_scores(key)]

    async def read_scores(self, key: str) -> list[tuple[str, float]]:
        """A sorted set's members and scores, lowest score first."""
        return sorted(self._scores(key).items(), key=lambda item: item[1])

    async def remove_members(self, key: str, members: Sequence[str]) -> None:
        """As ZREM (an emptied set is gone)."""
        scores = {m: s for m, s in self._scores(key).items() if m not in members}
        ttl = self._space.ttl(key)
        if not scores or ttl is None:
            self._space.delete(key)
        else:
            self._space.set(key, scores, ttl)

    async def mark_erased(self, user_ids: Sequence[str], *, ttl: int) -> None:
        """As ``mark_erased.lua``: now, in milliseconds, for each user."""
        now_ms = str(self.clock_ms()).encode()
        for user_id in user_ids:
            self._space.set(self._keys.erased(user_id), now_ms, ttl)

    async def add_request(
        self, key: str, member: str, *, ttl: int, at: float | None = None
    ) -> None:
        """As ZADD ``at`` (default now) + EXPIRE."""
        score = time.time() if at is None else at
        self._space.set(key, {**self._scores(key), member: score}, ttl)

    async def write_moved(self, moved: MovedCaller) -> bool:
        """As ``move_caller.lua``."""
        keys, config, space, new = self._keys, self._config, self._space, moved.user_id
        profile_ttl = config.profile_ttl_seconds
        space.set(keys.phone(new), new.encode(), profile_ttl)
        if space.get(keys.profile(new)) is not None or space.get(keys.sessions(new)) is not None:
            return False
        if moved.profile is not None:
            space.set(keys.profile(new), moved.profile, profile_ttl)
        if moved.unreadable is not None:
            space.set(keys.unreadable_profile(new), moved.unreadable, profile_ttl)
        if moved.session_ids:
            space.set(keys.sessions(new), list(moved.session_ids), profile_ttl)
        if moved.calls:
            space.set(keys.calls(new), dict(moved.calls), config.session_ttl_seconds)
        return True

    async def replace_value(self, key: str, expected: bytes, value: bytes) -> bool:
        """As ``replace_value.lua``."""
        current, _ = self._string(key)
        ttl = self._space.ttl(key)
        if current != expected or ttl is None:
            return False
        self._space.set(key, value, ttl)
        return True

    async def drop_identity(
        self, phone_key: str, profile_key: str, sessions_key: str, user_id: str
    ) -> bool:
        """As ``drop_identity.lua``."""
        found, _ = self._string(phone_key)
        if found != user_id.encode() or self._space.get(profile_key) or self._list(sessions_key):
            return False
        return self._space.delete(phone_key)

    async def delete(self, keys: Sequence[str]) -> list[str]:
        """Delete, and say which existed."""
        return [key for key in keys if self._space.delete(key)]

    async def erase(self, keys: Sequence[str], user_ids: Sequence[str], *, ttl: int) -> list[str]:
        """As ``erase.lua``: the marks, then the deletes (nothing runs between them here)."""
        await self.mark_erased(user_ids, ttl=ttl)
        return await self.delete(keys)
