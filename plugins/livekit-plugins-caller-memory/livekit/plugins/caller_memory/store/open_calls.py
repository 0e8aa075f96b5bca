"""Calls in progress: each call's journal (crash safety), the heartbeats, and orphans.

While a call goes on, its session key holds a journal (a header, then its turns) and the call is
listed in :meth:`~.keys.Keys.open_calls`, scored by its worker's last heartbeat on the store's
clock. A worker that dies stops beating: its calls become orphans, leased to one recovery each.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import JournalHeader, Turn
from . import codec
from .primitives import StorePrimitives
from .records import JournalWrite

__all__ = ["ORPHAN_LEASE_S", "OpenCalls"]

ORPHAN_LEASE_S = 300.0
"""How long a recovery holds an orphaned call before another worker may take it."""


class OpenCalls(StorePrimitives):
    """The journal of each call in progress, its worker's heartbeats, and orphaned calls."""

    async def open_journal(self, header: JournalHeader) -> None:
        """Start a call's journal in its session key, and list the call as in progress."""
        await self.write_journal_header(header.session_id, codec.journal_header(header))

    async def append_journal(self, session_id: str, turns: Sequence[Turn]) -> JournalWrite:
        """Append turns to a call's journal, in one command.

        Returns:
            ``written``; ``gone`` when the journal is gone (saved, erased, expired): it is not
            made again; ``full`` when it holds :data:`codec.MAX_JOURNAL_BYTES` already.
        """
        if not turns:
            return "written"
        lines = codec.journal_lines(turns)
        size = await self.append_journal_lines(session_id, lines, codec.MAX_JOURNAL_BYTES)
        return "written" if size >= 0 else "gone" if size == -1 else "full"

    async def claim_orphans(self, idle_s: float) -> list[tuple[str, bytes | None]]:
        """Calls in progress whose worker has not beaten for ``idle_s`` seconds: it died.

        A worker beats for its calls (:meth:`heartbeat`), and the beats and their age are
        measured on the store's clock (Redis's ``TIME``), never a worker's own: a worker hours
        behind is not taken for dead, nor one days ahead for alive. Reading a journal (an
        export, ``caller-memory stats``) does not count. Each orphan is leased to one claimer
        only; hand it back with :meth:`release_orphan` when it cannot be saved now (a lease
        also runs out by itself). A batch holds at most a few dozen calls: call again until it
        comes back empty.

        Returns:
            ``(session_id, journal)`` pairs; the journal is None when it has expired.
        """
        return await self.lease_orphans(idle_s, lease_s=ORPHAN_LEASE_S)

    async def heartbeat(self, session_ids: Sequence[str]) -> None:
        """This worker is alive and its calls ``session_ids`` go on: they are not orphans."""
        if session_ids:
            await self.beat(session_ids)

    async def orphans_waiting(self, idle_s: float) -> int:
        """How many calls in progress have had no heartbeat for ``idle_s`` seconds."""
        return await self.count_open_calls(idle_s)

    async def discard_session(self, session_id: str) -> None:
        """Delete a call's data (or journal) and drop it from the calls in progress."""
        await self.delete([self._keys.session(session_id)])
        await self.drop_open_calls([session_id])
