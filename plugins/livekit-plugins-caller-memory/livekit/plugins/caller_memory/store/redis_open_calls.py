"""Calls in progress in Redis: each call's journal, the heartbeats, orphans and the fleet's
maintenance turn.

The calls in progress are one sorted set (:meth:`~.keys.Keys.open_calls`) scored by each call's
last heartbeat, on the server's clock (``TIME`` inside ``beat.lua``, ``add_now.lua`` and
``claim_orphan.lua``): no worker's own clock decides that another is dead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

from . import codec
from .redis_client import RedisStoreBase

__all__ = ["RedisOpenCalls"]

_CLAIMS = 20
"""Orphans leased per recovery pass: the work of one pass stays bounded."""

_BEATS_PER_COMMAND = 1000
"""Calls per heartbeat script: its arguments stay far below Lua's stack limit."""


class RedisOpenCalls(RedisStoreBase):
    """The operations on the calls in progress (see :mod:`.primitives`)."""

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
