"""What outages leave behind, from the manager's side: the outbox's calls written, orphaned
calls recovered, and the background loop that does both (the work itself is
:mod:`..recovery`'s)."""

from __future__ import annotations

from ..config import RedisConfig
from ..log import logger
from ..outbox import Outbox
from ..recovery import Recovery
from ..timeouts import deadline

__all__ = ["Maintenance"]


class Maintenance:
    """The outbox and the orphans: a part of :class:`~.manager.SessionManager`, which sets the
    attributes below."""

    _config: RedisConfig
    _recovery: Recovery
    _outbox: Outbox

    async def flush_outbox(self) -> tuple[int, int]:
        """Write the calls kept in the outbox (and in memory) to the store.

        Returns:
            ``(saved, left)``.
        """
        return await self._recovery.flush()

    async def recover_orphans(self, *, idle_s: float | None = None) -> int:
        """Save the calls whose worker died mid-call, from their journals.

        Args:
            idle_s: How long a journal must have been idle; ``MEMORY_ORPHAN_AFTER_S`` by
                default.

        Returns:
            How many calls were recovered.
        """
        idle = self._config.orphan_after_s if idle_s is None else idle_s
        return await self._recovery.recover_orphans(idle)

    def start_maintenance(self) -> None:
        """Flush the outbox and recover orphaned calls now, then every
        ``MEMORY_OUTBOX_FLUSH_S``, in the background (until :meth:`aclose`)."""
        self._recovery.start()

    async def stop_maintenance(self) -> None:
        """Stop the background maintenance (a job that ends must not leave it pending)."""
        await self._recovery.stop()

    async def release_held(self, wait_s: float) -> None:
        """The process is about to end: write the calls held in memory (the store and the
        outbox's disk both refused them), trying again for up to ``wait_s``; those still held
        then are lost, said at ERROR with how many and why."""
        await self._recovery.close(wait_s)

    async def flush_before_exit(self, wait_s: float) -> None:
        """The job ends: write the calls waiting in the outbox, for up to ``wait_s``.

        A worker between calls runs no maintenance, and the next call's first pass waits a few
        seconds: without this, a call kept during an outage waited for a call long enough to
        reach that pass, and its caller was greeted as new meanwhile. What is not written in
        time stays in the outbox for the next pass (a save is never written twice).
        """
        if wait_s <= 0 or not await self._outbox.count():
            return
        try:
            async with deadline(wait_s):
                await self._recovery.flush()
        except Exception as e:  # the store still down, or out of time: the next pass tries
            logger.debug("outbox not flushed at the job's end", extra={"error": type(e).__name__})
