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
from pathlib import Path

from .exceptions import CallerErasedError
from .log import logger
from .models import CallerProfile, CallSummary, SessionRecord
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

_LIVEKIT_SHUTDOWN_S = 10.0
"""LiveKit kills a job's process about this long after its shutdown starts
(``shutdown_process_timeout``)."""
_SHUTDOWN_CALLBACK_S = 7.0
"""What the plugin's shutdown callback may spend of it waiting for a save still running
(``agent.SHUTDOWN_WAIT_S``)."""
_EXIT_MARGIN_S = 1.0
"""Left for the process to exit."""
CLOSE_WAIT_S = _LIVEKIT_SHUTDOWN_S - _SHUTDOWN_CALLBACK_S - _EXIT_MARGIN_S
"""How long closing tries again to write the calls held in memory (the store and the disk both
refused them): what is left of LiveKit's shutdown window."""
_CLOSE_RETRY_S = 0.1
"""Between two tries at close."""


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
        self._store_error: Exception | None = None
        """Why the store last refused a call held in memory."""
        self._disk_error: Exception | None = None
        """Why the outbox's disk last refused a call."""
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
            self._store_error = failure
            on_disk = await self._stash(record.model_copy(update={"summary": summary}), phone_hash)
            self._say_not_saved(record.session_id, failure, on_disk=on_disk)
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
        try:  # and the copy of the call put in the outbox as it ended, if any
            await self._outbox.adiscard_call(session_id)
        except OSError as e:
            logger.warning(
                "could not delete the erased caller's call from the outbox (%s): a replay drops it",
                type(e).__name__,
            )

    async def copy_early(self, record: SessionRecord, phone_hash: str) -> Path | None:
        """Put a call whose end is starting in the outbox before its summary and save run,
        when nothing else would survive the process being killed meanwhile (its journal
        missed turns). Returns the file (:meth:`drop_copy` removes it once the call is saved);
        None when the disk refused (the save then keeps the call as usual)."""
        try:
            return await self._outbox.aput(record, phone_hash=phone_hash, ending=True)
        except Exception as e:
            logger.warning(
                "could not copy the ending call to the outbox (%s): it is saved or kept at the "
                "end of its save as usual",
                type(e).__name__,
                extra={"session_id": record.session_id},
            )
            return None

    async def drop_copy(self, session_id: str) -> None:
        """The call was saved: its copy in the outbox (one file per call, made early or at
        shutdown) is not needed (a replay would store it once)."""
        try:
            await self._outbox.adiscard_call(session_id)
        except Exception as e:
            logger.debug("early outbox copy left for a replay", extra={"error": type(e).__name__})

    def keep(self, record: SessionRecord, phone_hash: str) -> bool:
        """Put a copy of a call whose end still runs in the outbox now, as the process may be
        killed (or hold it in memory if the disk refuses).

        Returns:
            True when the call is on disk, False when it is held in memory.
        """
        return self._keep(record, phone_hash, ending=True)

    def _keep(self, record: SessionRecord, phone_hash: str, *, ending: bool = False) -> bool:
        try:
            self._outbox.put(record, phone_hash=phone_hash, ending=ending)
        except Exception as e:  # a full or read-only disk, or worse: the call is not dropped
            # The disk refused too: hold the call in memory, the maintenance retries both.
            self._held.append((record, phone_hash))
            logger.error(
                "could not write the outbox (%s); the call is held in memory until it can be saved",
                type(e).__name__,
                extra={"session_id": record.session_id},
            )
            return False
        return True

    def forget_held(self, which: Callable[[SessionRecord, str], bool]) -> int:
        """Drop the calls held in memory that ``which`` selects (erasure). Returns how many."""
        kept = [(r, h) for r, h in self._held if not which(r, h)]
        dropped = len(self._held) - len(kept)
        self._held = kept
        return dropped

    def _say_not_saved(self, session_id: str, failure: Exception, *, on_disk: bool) -> None:
        diagnosis = diagnose(failure, self._store.config)
        # The store may have been there all along (the worker's CPU, a call of the same
        # caller): "unavailable" only when the cause is the store's or the network's.
        what = "call not saved in time" if diagnosis.in_worker else "memory store unavailable"
        hints = " ".join(f"{hint}." for hint in diagnosis.hints)
        extra = {"session_id": session_id, "error": type(failure).__name__}
        if on_disk:
            logger.warning(
                "%s (%s): the call is kept in the local outbox and written %s. %s",
                what,
                diagnosis.reason,
                "with its next retry" if diagnosis.in_worker else "when the store is back",
                hints,
                extra=extra,
            )
            return
        logger.error(
            "%s (%s), and the local outbox could not be written (%s): the call is held in "
            "memory only, retried with the outbox, and lost if this process ends first. %s",
            what,
            diagnosis.reason,
            _disk_reason(self._disk_error),
            hints,
            extra=extra,
        )

    async def _stash(self, record: SessionRecord, phone_hash: str) -> bool:
        """The outbox, off the event loop; held in memory when the disk refuses. True: on disk."""
        try:
            await self._outbox.aput(record, phone_hash=phone_hash)
        except Exception as e:  # a full or read-only disk, or worse: the call is not dropped
            self._disk_error = e
            self._hold(record, phone_hash)
            return False
        return True

    def _hold(self, record: SessionRecord, phone_hash: str) -> None:
        # One entry per call: a newer copy (the save's, after the one kept at shutdown) wins.
        self._held = [(r, h) for r, h in self._held if r.session_id != record.session_id]
        self._held.append((record, phone_hash))

    def _release(self, record: SessionRecord) -> None:
        self._held = [(r, h) for r, h in self._held if r is not record]

    async def flush(self) -> tuple[int, int]:
        """Write the calls waiting in memory and in the outbox. Returns ``(saved, left)``."""
        saved_held, _ = await self._retry_held(until=None, outbox_first=False)
        saved, left = await self._outbox.flush(self._store)
        return saved + saved_held, left + len(self._held)

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Before the process lets go of them: write the calls held in memory, trying the
        outbox and the store again for up to ``wait_s`` (the disk may have room again, the
        store may be back). Those still held then are lost: said at ERROR, with how many and
        why."""
        if not self._held:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, wait_s)
        saved = kept = 0
        while True:
            now_saved, now_kept = await self._retry_held(until=until, outbox_first=True)
            saved, kept = saved + now_saved, kept + now_kept
            left_s = until - loop.time()
            if not self._held or left_s <= 0:
                break
            await asyncio.sleep(min(_CLOSE_RETRY_S, left_s))
        if saved or kept:
            logger.warning(
                "calls held in memory written at close: %d saved into memory, %d kept in the "
                "local outbox",
                saved,
                kept,
                extra={"saved": saved, "kept": kept},
            )
        if self._held:
            lost = len(self._held)
            self._held = []
            store = (
                diagnose(self._store_error, self._store.config).reason
                if self._store_error is not None
                else "not tried"
            )
            logger.error(
                "%d call(s) lost at close: neither the memory store (%s) nor the local outbox "
                "(%s) could take them within %.1f s; they were held in memory only",
                lost,
                store,
                _disk_reason(self._disk_error),
                wait_s,
                extra={"lost": lost},
            )

    async def _retry_held(self, *, until: float | None, outbox_first: bool) -> tuple[int, int]:
        """One pass over the calls held in memory. Returns ``(saved, kept)``: into the store,
        into the outbox. A way that refuses one call is not tried for the rest of the pass."""
        saved = kept = 0
        store_down = disk_down = not self._held
        for record, phone_hash in list(self._held):
            if outbox_first and not disk_down:
                if await self._to_outbox(record, phone_hash, until):
                    kept += 1
                    continue
                disk_down = True
            if not store_down:
                outcome = await self._to_store(record, phone_hash, until)
                if outcome is not None:
                    saved += outcome
                    continue
                store_down = True
            if not outbox_first and not disk_down:
                if await self._to_outbox(record, phone_hash, until):
                    kept += 1
                    continue
                disk_down = True
        return saved, kept

    async def _to_store(
        self, record: SessionRecord, phone_hash: str, until: float | None
    ) -> int | None:
        """1: saved; 0: dropped (the caller was erased); None: the store refused."""
        budget = _budget(self._store.config.save_timeout_s, until)
        if budget <= 0:
            return None
        summary = record.summary or fallback_summary(record.turns)
        try:
            async with deadline(budget):
                await self._store.save_call(record, summary, phone_hash=phone_hash, replay=True)
        except CallerErasedError:
            self._release(record)
            await self._drop_erased(record.session_id)
            return 0
        except Exception as e:
            self._store_error = e
            return None
        self._release(record)
        logger.info(
            "call held in memory saved into memory", extra={"session_id": record.session_id}
        )
        return 1

    async def _to_outbox(self, record: SessionRecord, phone_hash: str, until: float | None) -> bool:
        try:
            write = self._outbox.aput(record, phone_hash=phone_hash)
            if until is None:
                await write
            else:
                await asyncio.wait_for(write, max(0.0, until - asyncio.get_running_loop().time()))
        except Exception as e:
            self._disk_error = e
            return False
        self._release(record)
        logger.info("call held in memory kept in the local outbox",
                    extra={"session_id": record.session_id})  # fmt: skip
        return True

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
            # The store's clock: this worker's may be hours off the one that ran the call.
            ended_at = max(self._store.now(), record.started_at.replace(microsecond=0))
            record = record.model_copy(update={"ended_at": ended_at, "summary": summary})
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
        with contextlib.suppress(OSError):
            await self._outbox.clean_strays()  # what a crash of the last run left
        # Beat three times per orphan delay at least: one lost beat never makes an orphan.
        interval = min(config.outbox_flush_s, config.orphan_after_s / 3)
        await asyncio.sleep(min(_FIRST_PASS_S, interval))
        while True:
            try:
                await self._store.heartbeat(self._live_calls())
                if self._held or await self._outbox.count():
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


def _budget(limit: float, until: float | None) -> float:
    if until is None:
        return limit
    return min(limit, until - asyncio.get_running_loop().time())


def _disk_reason(error: Exception | None) -> str:
    # An OSError's text names the file: its reason alone ("No space left on device").
    if error is None:
        return "not tried"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
