"""The in-process store used with ``MEMORY_PERSISTENCE=false``: same contract, no Redis.

Memory lives as long as the process. Values are the same JSON strings Redis would hold, and TTLs
are honoured, so the contract test suite runs unchanged against both stores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .store import MemoryStore, Raw, _RawLookup, new_user_id

__all__ = ["InMemoryStore"]


class InMemoryStore(MemoryStore):
    """Caller memory in a dict of this process, for running and testing without Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._strings: dict[str, tuple[str, float]] = {}
        self._lists: dict[str, tuple[list[str], float]] = {}
        self._lock = asyncio.Lock()
        self._open: dict[str, float] = {}
        """Calls in progress: session id -> monotonic time of the last journal write."""

    async def connect(self) -> bool:
        """Always succeeds: there is nothing to connect to."""
        return True

    async def disconnect(self) -> None:
        """Nothing to close; the memory is kept until the process ends."""

    async def health_check(self) -> dict[str, Any]:
        """Always healthy, with no latency to speak of."""
        return {"healthy": True, "latency_ms": 0.0, "server": "in-process"}

    def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires, or None when it does not exist."""
        entry = self._strings.get(key) or self._lists.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[1] - time.monotonic()

    def dump(self) -> dict[str, str | list[str]]:
        """Every live key and its value, as a Redis dump would show them."""
        now = time.monotonic()
        out: dict[str, str | list[str]] = {}
        for key, (value, expires) in self._strings.items():
            if expires > now:
                out[key] = value
        for key, (items, expires) in self._lists.items():
            if expires > now:
                out[key] = list(items)
        return out

    def _get(self, key: str) -> str | None:
        entry = self._strings.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._strings[key]
            return None
        return entry[0]

    def _set(self, key: str, value: str, ttl: int) -> None:
        self._strings[key] = (value, time.monotonic() + ttl)

    def _list(self, key: str) -> list[str]:
        entry = self._lists.get(key)
        if entry is None:
            return []
        if entry[1] <= time.monotonic():
            del self._lists[key]
            return []
        return entry[0]

    def _expire(self, key: str, ttl: int) -> None:
        if (value := self._get(key)) is not None:
            self._set(key, value, ttl)
        elif items := self._list(key):
            self._lists[key] = (items, time.monotonic() + ttl)

    async def _lookup_raw(
        self, phone_hash: str, *, create: bool, previous: Sequence[str] = ()
    ) -> _RawLookup:
        ttl = self._config.profile_ttl_seconds
        phone_key = self._keys.phone(phone_hash)
        user_id = self._get(phone_key)
        for old in previous:
            if user_id is not None:
                break
            old_key = self._keys.phone(old)
            user_id = self._get(old_key)
            if user_id is not None:
                self._set(phone_key, user_id, ttl)
                self._strings.pop(old_key, None)
        if user_id is None:
            if not create:
                return _RawLookup(user_id=None, is_new=False)
            user_id = new_user_id(phone_hash)
            self._set(phone_key, user_id, ttl)
            return _RawLookup(user_id=user_id, is_new=True)
        self._expire(phone_key, ttl)
        profile_key = self._keys.profile(user_id)
        self._expire(profile_key, ttl)
        return _RawLookup(
            user_id=user_id,
            is_new=False,
            profile_raw=self._get(profile_key),
            session_ids=list(self._list(self._keys.sessions(user_id))),
        )

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
        async with self._lock:
            profile_key = self._keys.profile(user_id)
            current = self._get(profile_key)
            if (current or "") != (expected_profile or ""):
                return False, current
            ttl = self._config.profile_ttl_seconds
            if set_aside and current is not None:
                self._set(f"{profile_key}:unreadable", current, ttl)
            self._set(profile_key, profile, ttl)
            self._open.pop(session_id, None)
            sessions_key = self._keys.sessions(user_id)
            items = self._list(sessions_key)
            if session_id not in items:
                items = [*items, session_id][-self._config.max_sessions :]
            self._lists[sessions_key] = (items, time.monotonic() + ttl)
            self._set(self._keys.session(session_id), session, self._config.session_ttl_seconds)
            if phone_hash is not None:
                self._expire(self._keys.phone(phone_hash), ttl)
            return True, None

    async def _open_session_ids(self) -> list[str]:
        return list(self._open)

    async def _forget_open(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            self._open.pop(session_id, None)

    async def _delete_raw(self, keys: list[str]) -> list[str]:
        live = self.dump()
        for key in keys:
            self._strings.pop(key, None)
            self._lists.pop(key, None)
        return [key for key in keys if key in live]

    async def _journal_open(self, session_id: str, header: str) -> None:
        self._set(self._keys.session(session_id), header, self._config.session_ttl_seconds)
        self._open[session_id] = time.monotonic()

    async def _journal_append(self, session_id: str, lines: str) -> None:
        key = self._keys.session(session_id)
        entry = self._strings.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._set(key, lines.lstrip("\n"), self._config.session_ttl_seconds)
        else:
            self._strings[key] = (entry[0] + lines, entry[1])
        if session_id in self._open:
            self._open[session_id] = time.monotonic()

    async def _journal_release(self, session_id: str) -> None:
        self._open[session_id] = time.monotonic()

    async def _claim_orphans(self, idle_s: float) -> list[tuple[str, str | None]]:
        now = time.monotonic()
        idle = [sid for sid, last in self._open.items() if now - last >= idle_s]
        for sid in idle:
            del self._open[sid]
        return [(sid, self._get(self._keys.session(sid))) for sid in idle]

    async def acquire_maintenance(self, seconds: float) -> bool:
        """Always: there is only this process."""
        return True

    async def _get_raw(self, key: str) -> str | None:
        return self._get(key)

    async def _list_raw(self, key: str) -> list[str]:
        return list(self._list(key))
