"""A call's life, from the manager's side: started with the caller's lookup, given its turns,
ended into the caller's memory (or kept for later when the store cannot take it)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..config import RedisConfig
from ..log import logger
from ..models import CallerProfile, Turn
from ..recovery import Recovery
from ..store import MemoryStore
from ..summarizer import Summarizer, fallback_summary
from ..telemetry import record_save, record_summary, span
from ..troubleshooting import diagnose
from .lookup import look_up, look_up_again, report_lookup
from .state import (
    JOURNAL_GRACE_S,
    CallState,
    LookupStatus,
    SessionContext,
    check_session_id,
    context_for,
)
from .turns import TurnRecorder

if TYPE_CHECKING:  # the model's type only: LiveKit Agents loads with the first model asked
    from livekit.agents import llm as lk_llm

__all__ = ["CallLifecycle"]


class CallLifecycle:
    """The calls in progress and their ends: a part of :class:`~.manager.SessionManager`,
    which sets the attributes below."""

    _store: MemoryStore
    _config: RedisConfig
    _calls: dict[str, CallState]
    """The calls started and not yet ended."""
    _ending: dict[str, CallState]
    """Calls whose end (summary, save) is running."""
    _recorder: TurnRecorder
    _summarizer: Summarizer
    _recovery: Recovery

    @property
    def active_sessions(self) -> list[str]:
        """Ids of the calls started and not yet ended."""
        return list(self._calls)

    def _is_live(self, session_id: str) -> bool:
        return session_id in self._calls or session_id in self._ending

    def _journaled_calls(self) -> list[str]:
        # The calls this worker beats for: those in progress and those still ending (a long
        # summary must not let another worker take the call for an orphan and save half of it).
        return [
            sid for calls in (self._calls, self._ending) for sid, call in calls.items()
            if call.journal is not None
        ]  # fmt: skip

    # -- start -----------------------------------------------------------------------------

    async def start_session(
        self, *, session_id: str, phone_number: str | None, verified: bool = False
    ) -> SessionContext:
        """Look the caller up, within the lookup budget, and open the call.

        Never raises for a bad or missing number or an unreachable store: the call then goes
        on as a new caller's. A lookup that misses its budget does not create an identity (it
        would split the caller's memory); the identity is resolved again when the call ends.

        Args:
            session_id: Unique per call: a LiveKit job id, never the room name (a SIP dispatch
                rule names rooms after the caller's number).
            phone_number: The caller's number in any spelling, or None when withheld.
            verified: The caller id is verified (the network's attestation, or the app's
                check): the agent gets all the memory, and the call may change it. Otherwise
                see ``MEMORY_UNVERIFIED_DISCLOSURE``; :meth:`mark_verified` can come later.
        """
        check_session_id(session_id)
        if session_id in self._calls:
            raise ValueError("session_id is already in use by a call in progress")
        started, started_ns = time.perf_counter(), time.time_ns()
        phone_hash, previous, lookup, status = await look_up(self._store, phone_number)
        verified = verified or self._config.trust_caller_id
        call = CallState(
            session_id=session_id,
            phone_hash=phone_hash,
            previous_hashes=previous,
            lookup=lookup,
            started_at=self._store.call_started_at(lookup),  # the store's clock, to the ms
            verified=verified,
            context=context_for(self._config, session_id, lookup, status, verified),
            # The journal opens with the first turn, off the greeting's path; not when the
            # store was unreachable a moment ago.
            may_journal=phone_hash is not None and status != "error",
        )
        self._calls[session_id] = call
        report_lookup(session_id, status, started, started_ns)
        return call.context

    async def identify_caller(
        self, session_id: str, phone_number: str, *, verified: bool = False
    ) -> SessionContext:
        """Give a call in progress the caller's number, once it is known.

        For a call started without one: a participant whose ``sip.phoneNumber`` arrived
        after they joined, or a caller who joined after the call started. The turns said so far
        are kept and join the caller's memory. A call that has a number already keeps it.

        Raises:
            ValueError: No call with this id is in progress.
        """
        call = self._calls.get(session_id)
        if call is None:
            raise ValueError("no call in progress with this session_id")
        if call.phone_hash is not None or not phone_number:
            return call.context
        started, started_ns = time.perf_counter(), time.time_ns()
        phone_hash, previous, lookup, status = await look_up(self._store, phone_number)
        if call.phone_hash is None and session_id in self._calls:  # not raced, not ended
            call.phone_hash, call.previous_hashes, call.lookup = phone_hash, previous, lookup
            call.verified = call.verified or verified
            call.context = context_for(self._config, session_id, lookup, status, call.verified)
            call.may_journal = phone_hash is not None and status != "error"
            report_lookup(session_id, status, started, started_ns)
        return call.context

    async def finish_lookup(self, session_id: str) -> SessionContext | None:
        """Finish, in the background, a lookup that missed its budget at the call's start.

        The caller's memory is read again (no identity is minted: that waits for the save),
        bounded by ``MEMORY_SAVE_TIMEOUT_S``; the agent can then be given it before its next
        reply.

        Returns:
            The call's context with the caller's memory; None when there is nothing new: the
            call has ended, its lookup did not miss its budget, or the store still did not
            answer.
        """
        call = self._calls.get(session_id)
        if call is None or call.phone_hash is None or call.lookup is not None:
            return None
        started, started_ns = time.perf_counter(), time.time_ns()
        try:
            lookup = await look_up_again(self._store, call.phone_hash, call.previous_hashes)
        except Exception as e:
            logger.info(
                "caller lookup still unanswered (%s): the call goes on without memory",
                diagnose(e, self._config).reason,
                extra={"session_id": session_id, "error": type(e).__name__},
            )
            return None
        if session_id not in self._calls or call.lookup is not None:
            return None  # ended, or raced
        status: LookupStatus = "returning" if lookup.is_returning else "new"
        if lookup.user_id is not None:
            call.lookup = lookup
        call.context = context_for(self._config, session_id, lookup, status, call.verified)
        report_lookup(session_id, status, started, started_ns)
        return call.context

    # -- during the call -------------------------------------------------------------------

    def add_turn(self, session_id: str, role: str, text: str) -> None:
        """Record one utterance (``role`` is ``"user"`` or ``"assistant"``). Cheap and sync.

        Unknown calls and empty texts are ignored, so a late event after hang-up is harmless.
        The turn reaches the call's journal in the background. A long turn (over 400
        characters) is redacted in the background too, a slice per event-loop iteration, and
        kept (in :meth:`turns`, the journal and the save) once redacted.
        """
        call = self._calls.get(session_id)
        if call is not None:
            self._recorder.add(call, role, text)

    def turns(self, session_id: str) -> list[Turn]:
        """The turns recorded so far for a call in progress."""
        call = self._calls.get(session_id)
        if call is None:
            return []
        self._recorder.redact_now(call)
        return list(call.turns)

    # -- the end ---------------------------------------------------------------------------

    async def end_session(
        self, session_id: str, *, llm: lk_llm.LLM[Any] | None = None
    ) -> CallerProfile | None:
        """Summarize the call and save it into the caller's memory.

        When the store cannot take it, the call is kept in the local outbox and written
        later: it is never dropped.

        Args:
            session_id: The call to end.
            llm: Summarize with this LLM instead of the manager's.

        Returns:
            The caller's updated profile, or None when the call has nothing to remember (no
            usable number, or the caller opted out) or went to the outbox (the reason is
            logged).
        """
        call = self._calls.pop(session_id, None)
        if call is None:
            return None
        self._ending[session_id] = call
        try:
            return await self._end(call, llm)
        finally:
            self._ending.pop(session_id, None)

    async def _end(self, call: CallState, llm: lk_llm.LLM[Any] | None) -> CallerProfile | None:
        session_id = call.session_id
        await self._recorder.redacted(call)
        if call.journal is not None:
            await call.journal.close(JOURNAL_GRACE_S)
        if call.phone_hash is None:
            logger.debug("call ended without a caller number, nothing to remember")
            return None
        if call.withdrawal is not None:
            await asyncio.wait([call.withdrawal], timeout=self._config.save_timeout_s)
        if not self._may_remember(call) and not await self._consented_before(call):
            await self._forget_call(call)
            return None
        # Turns the journal missed live only in this process until the save: copy the call to
        # the outbox before the summary, which can outlast what LiveKit leaves before its kill.
        early = None
        if call.journal is None or not call.journal.holds_every_turn:
            early = await self._recovery.copy_early(
                call.record(fallback_summary(call.consented_turns)), call.phone_hash
            )
        base = call.lookup
        with span("caller_memory.summarize", session_id=session_id) as current:
            started = time.perf_counter()
            summary = await self._summarizer.using(llm).summarize(
                call.consented_turns, profile=base.profile if base else None
            )
            if current is not None:
                current.set_attribute("caller_memory.summary_source", summary.source)
            record_summary(summary.source, (time.perf_counter() - started) * 1000)
        call.summary = summary
        profile = await self._recovery.save(
            call.record(summary),
            summary,
            phone_hash=call.phone_hash,
            previous=call.previous_hashes,
            base=base,
        )
        if profile is not None and (early is not None or call.kept):
            # Saved after all: the copy made early, or at shutdown, would only be a replay.
            await self._recovery.drop_copy(session_id)
        return profile

    def keep_unfinished(self, session_id: str) -> bool:
        """Put a call whose end is still running (a slow summary, a silent store) in the local
        outbox now, as it stands: the process is about to be killed. The save, if it finishes
        after all, stores the call once (an outbox replay finds it saved).

        Returns:
            True when the call was kept; False when there is nothing to keep (an unknown call,
            no caller number, or a caller who asked not to be remembered).
        """
        call = self._ending.get(session_id) or self._calls.get(session_id)
        if call is None or call.phone_hash is None or not self._may_remember(call):
            return False
        summary = call.summary or fallback_summary(call.consented_turns)
        if self._recovery.keep(call.record(summary), call.phone_hash):
            call.kept = True
            logger.warning(
                "call end still running at shutdown: a copy of the call is in the local outbox "
                "(a save that lands later makes it a replay, stored once)",
                extra={"session_id": session_id},
            )
        return True

    def _may_remember(self, call: CallState) -> bool:
        return call.may_remember(self._config.consent_required)

    async def _consented_before(self, call: CallState) -> bool:
        # The call-start lookup may have missed its budget: ask the store again at hang-up.
        if not call.remember or call.lookup is not None or call.phone_hash is None:
            return False
        try:
            found = await self._store.lookup(
                call.phone_hash, previous=call.previous_hashes, create=False
            )
        except Exception:
            return False
        return found.profile is not None and found.profile.consented_at is not None

    async def _forget_call(self, call: CallState) -> None:
        record_save("not_remembered")
        logger.info("call not remembered, as the caller asked",
                    extra={"session_id": call.session_id})  # fmt: skip
        if call.journal is not None:
            call.journal.discard(JOURNAL_GRACE_S)
            await call.journal.discarded(2 * JOURNAL_GRACE_S)
        if call.lookup is not None and call.lookup.is_new and call.phone_hash is not None:
            # The identity this call minted for a new caller goes too: nothing of them is kept.
            try:
                await self._store.drop_new_identity(call.phone_hash)
            except Exception as e:
                logger.warning(
                    "could not drop a declining new caller's identity (it expires in 90 days)",
                    extra={"session_id": call.session_id, "error": type(e).__name__},
                )
