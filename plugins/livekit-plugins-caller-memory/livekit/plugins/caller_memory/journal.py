"""A call's turns written to Redis as the call goes, so that a dead worker loses almost nothing.

The journal lives in the call's own session key (JSON lines, see :mod:`.store.codec`) and the call
is listed among the calls in progress; the save at hang-up replaces it with the call's record.
If the worker dies first, crash recovery (:mod:`.recovery`) finds the journal and saves the call.

Writes happen in the background, never on a reply's path: :meth:`Journal.append` only queues a
turn. One writer task at a time drains the queue, so turns reach Redis in order, batched when
they come faster than Redis answers. A failed write is not an error of the call: the turns are
still in the call's memory and are saved at hang-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .log import logger
from .models import JournalHeader, Turn
from .store import MemoryStore

__all__ = ["Journal"]


class Journal:
    """The journal of one call, opened with the turns said so far.

    Args:
        store: Where the journal is written.
        header: The call's journal header (ids, start time).
        turns: The turns said before the journal opened.
    """

    def __init__(self, store: MemoryStore, header: JournalHeader, turns: Sequence[Turn]) -> None:
        self._store = store
        self._session_id = header.session_id
        self._pending = list(turns)
        loop = asyncio.get_running_loop()
        self._opened = loop.create_task(store.open_journal(header))
        self._writer = loop.create_task(self._write())
        self._discarding: asyncio.Task[None] | None = None
        self._gone = False
        """The journal was removed under us (erasure): nothing more is written."""
        self._failed = False
        """A write failed: turns since are not in the store."""

    def append(self, turn: Turn) -> None:
        """Queue a turn for the journal (sync and cheap)."""
        if self._discarding is not None or self._gone:
            return
        self._pending.append(turn)
        if self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            await self._opened
            while self._pending:
                batch, self._pending = self._pending, []
                written = await self._store.append_journal(self._session_id, batch)
                if written != "written":
                    # Gone: erased by forget (or expired). It is not made again, and nothing
                    # more is written: an erased caller must not come back through it. Or
                    # full: the rest of the call is saved at hang-up.
                    if written == "full":
                        logger.warning(
                            "call journal full: later turns are saved at hang-up only",
                            extra={"session_id": self._session_id},
                        )
                    self._gone = True
                    self._pending.clear()
                    return
        except Exception as e:
            logger.debug("call journal unavailable", extra={"error": type(e).__name__})
            self._failed = True
            self._pending.clear()

    @property
    def holds_every_turn(self) -> bool:
        """Every turn given so far is in the store: a worker killed now loses none of them
        (crash recovery saves the call from its journal)."""
        opened = self._opened
        return (
            opened.done()
            and not opened.cancelled()
            and opened.exception() is None
            and self._writer.done()
            and not self._writer.cancelled()
            and not self._pending
            and not self._failed
            and not self._gone
            and self._discarding is None
        )

    async def close(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the writes in flight, then give up on them."""
        tasks = [self._opened, self._writer]
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failed journal is not an error of the call

    def discard(self, grace: float) -> None:
        """Stop writing and delete the journal now, in the background (the caller opted out:
        a worker that dies before hang-up must leave nothing for recovery to save)."""
        if self._discarding is None:
            self._pending.clear()
            self._discarding = asyncio.get_running_loop().create_task(self._delete(grace))

    async def _delete(self, grace: float) -> None:
        await self.close(grace)
        try:
            await self._store.discard_session(self._session_id)
        except Exception as e:
            logger.warning(
                "could not delete the call's journal (it expires in 24 hours)",
                extra={"error": type(e).__name__},
            )

    async def discarded(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for :meth:`discard` to finish."""
        if self._discarding is not None:
            await asyncio.wait([self._discarding], timeout=grace)
