"""Nothing a call learned is lost: saves that fall back to the outbox, and what picks up after.

- :meth:`Recovery.save` writes a finished call to the store; when the store cannot take it, the
  call goes to the local :class:`~.outbox.Outbox` (fsynced on disk), and when the disk refuses
  too, it is held in memory.
- :meth:`Recovery.flush` writes what waits in the outbox and in memory.
- :meth:`Recovery.recover_orphans` saves the calls of workers that died mid-call, from their
  journals (:mod:`.journal`).
- :meth:`Recovery.start` runs both in the background, every ``MEMORY_OUTBOX_FLUSH_S``, with a
  fleet-wide lock so that one worker per interval looks for orphans, and beats for the calls
  of this process (a call whose worker stops beating for ``MEMORY_ORPHAN_AFTER_S`` is an
  orphan; reading its journal does not count as life).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from .exceptions import CallerErasedError
from .log import logger
from .models import CallerProfile, CallSummary, SessionRecord, utcnow
from .outbox import Outbox
from .store import CallerLookup, MemoryStore
from .store.codec import UnreadableValue, is_journal, parse_journal
from .summarizer import Summarizer, fallback_summary
from .telemetry import record_save, span
from .timeouts import deadline
from .troubleshooting import diagnose

__all__ = ["Recovery"]

_FIRST_PASS_S = 5.0
"""The first maintenance pass waits this long: not during the first call's greeting."""


class Recovery:
    """Saves calls durably, and recovers those that could not be saved.

    Args:
        store: The memory store.
        outbox: Where calls wait when the store cannot take them.
        summarizer: Summarizes orphaned calls.
        is_live: Tells whether a call is still in progress in this process (an orphan
            candidate that is merely quiet).
        live_calls: The calls in progress in this process, for the heartbeat.
    """

    def __init__(
        self,
        store: MemoryStore,
        outbox: Outbox,
        summarizer: Summarizer,
        is_live: Callable[[str], bool],
        live_calls: Callable[[], Sequence[str]] = list,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._summarizer = summarizer
        self._is_live = is_live
        self._live_calls = live_calls
        self._held: list[tuple[SessionRecord, str]] = []
        """Calls neither the store nor the outbox's disk could take."""
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Calls waiting to be written: in the outbox and held in memory."""
        return len(self._outbox) + len(self._held)

    async def save(
        self,
        record: SessionRecord,
        summary: CallSummary,
        *,
        phone_hash: str,
        previous: Sequence[str] = (),
        base: CallerLookup | None = None,
        replay: bool = False,
    ) -> CallerProfile | None:
        """Save a finished call into the store, or keep it for later.

        Returns:
            The caller's updated profile, or None when the call was kept (the reason is
            logged with the guide's troubleshooting text).
        """
        with span("caller_memory.save", session_id=record.session_id) as current:
            try:
                # One deadline for the whole save, retries and reconnects included: the outbox
                # must still be written inside the window LiveKit gives the job.
                async with deadline(self._store.config.save_timeout_s):
                    profile = await self._store.save_call(
                        record, summary, phone_hash=phone_hash, previous=previous, base=base,
                        replay=replay,
                    )  # fmt: skip
            except CallerErasedError:
                if current is not None:
                    current.set_attribute("caller_memory.outcome", "erased")
                await self._drop_erased(record.session_id)
                return None
            except Exception as e:
                failure: Exception | None = e
            else:
                failure = None
            outcome = "saved" if failure is None else "outbox"
            if current is not None:
                current.set_attribute("caller_memory.outcome", outcome)
        record_save(outcome)
        if failure is not None:
            self._keep(record.model_copy(update={"summary": summary}), phone_hash)
            diagnosis = diagnose(failure, self._store.config)
            logger.warning(
                # The store may have been there all along (the worker's CPU, a call of the
                # same caller): "unavailable" only when the cause is the store's or the network's.
                "call not saved in time (%s): the call is kept in the local outbox and written "
                "with its next retry. %s"
                if diagnosis.in_worker
                else "memory store unavailable (%s): the call is kept in the local outbox and "
                "written when the store is back. %s",
                diagnosis.reason,
                " ".join(f"{hint}." for hint in diagnosis.hints),
                extra={"session_id": record.session_id, "error": type(failure).__name__},
            )
            return None
        logger.info(
            "call saved into memory",
            extra={"session_id": record.session_id, "summary_source": summary.source},
        )
        return profile

    async def _drop_erased(self, session_id: str) -> None:
        # The caller was erased after this call began: nothing of it is kept, not even the
        # journal it left (which forget may have missed: it began after the erasure).
        record_save("erased")
        logger.info("call not saved: the caller was erased", extra={"session_id": session_id})
        try:
            await self._store.discard_session(session_id)
        except Exception as e:
            logger.warning(
                "could not delete the erased caller's journal (it expires in 24 hours)",
                extra={"error": type(e).__name__},
            )

    def keep(self, record: SessionRecord, phone_hash: str) -> None:
        """Put a call in the outbox now (or hold it in memory if the disk refuses)."""
        self._keep(record, phone_hash)

    def _keep(self, record: SessionRecord, phone_hash: str) -> None:
        try:
            self._outbox.put(record, phone_hash=phone_hash)
        except Exception as e:  # a full or read-only disk, or worse: the call is not dropped
            # The disk refused too: hold the call in memory, the maintenance retries both.
            self._held.append((record, phone_hash))
            logger.error(
                "could not write the outbox (%s); the call is held in memory until it can be saved",
                type(e).__name__,
                extra={"session_id": record.session_id},
            )

    def forget_held(self, which: Callable[[SessionRecord, str], bool]) -> int:
        """Drop the calls held in memory that ``which`` selects (erasure). Returns how many."""
        kept = [(r, h) for r, h in self._held if not which(r, h)]
        dropped = len(self._held) - len(kept)
        self._held = kept
        return dropped

    async def flush(self) -> tuple[int, int]:
        """Write the calls waiting in memory and in the outbox. Returns ``(saved, left)``."""
        held, self._held = self._held, []
        saved_held = 0
        for record, phone_hash in held:
            summary = record.summary or fallback_summary(record.turns)
            try:
                await self._store.save_call(record, summary, phone_hash=phone_hash, replay=True)
                saved_held += 1
            except CallerErasedError:
                await self._drop_erased(record.session_id)
            except Exception:
                self._keep(record, phone_hash)
        saved, left = await self._outbox.flush(self._store)
        return saved + saved_held, left + len(self._held)

    async def recover_orphans(self, idle_s: float, *, batches: int | None = None) -> int:
        """Save the calls whose worker died mid-call, from their journals: batch after batch
        until none is left (or ``batches`` batches).

        Args:
            idle_s: How long a call's worker must have been silent for it to count as orphaned.
            batches: At most this many batches (a background pass); None: all of them.

        Returns:
            How many calls were recovered.
        """
        recovered = 0
        done = 0
        while batches is None or done < batches:
            done += 1
            found, claimed = await self._recover_batch(idle_s)
            recovered += found
            if not claimed:
                break
        if recovered:
            logger.info("calls recovered from journals", extra={"recovered": recovered})
        return recovered

    async def _recover_batch(self, idle_s: float) -> tuple[int, int]:
        recovered = 0
        claimed = await self._store.claim_orphans(idle_s)
        for session_id, raw in claimed:
            if self._is_live(session_id):  # ours and alive, just quiet
                await self._store.release_orphan(session_id)
                continue
            if raw is None or not is_journal(raw):
                continue  # expired, or saved meanwhile
            try:
                record, phone_hash = parse_journal(raw)
            except UnreadableValue:
                logger.warning("unreadable call journal skipped", extra={"session_id": session_id})
                continue
            if phone_hash is None:
                continue
            summary = await self._summarizer.summarize(record.turns)
            record = record.model_copy(update={"ended_at": utcnow(), "summary": summary})
            if await self.save(record, summary, phone_hash=phone_hash, replay=True) is not None:
                recovered += 1
        return recovered, len(claimed)

    def start(self) -> None:
        """Flush and recover now, then every ``MEMORY_OUTBOX_FLUSH_S``, in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._maintain(), name="caller_memory.maintenance"
            )

    async def _maintain(self) -> None:
        config = self._store.config
        # Beat three times per orphan delay at least: one lost beat never makes an orphan.
        interval = min(config.outbox_flush_s, config.orphan_after_s / 3)
        await asyncio.sleep(min(_FIRST_PASS_S, interval))
        while True:
            try:
                await self._store.heartbeat(self._live_calls())
                if self.waiting:
                    await self.flush()
                # One worker per interval looks for orphans, not every job process.
                if await self._store.acquire_maintenance(interval):
                    await self.recover_orphans(config.orphan_after_s, batches=5)
            except Exception as e:
                logger.debug("memory maintenance failed", extra={"error": type(e).__name__})
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop the background maintenance (a job that ends must not leave it pending)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
