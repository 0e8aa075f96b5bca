"""The life of a call, as the guide's session manager: start, turns, consent, end into memory.

```python
manager = await init_session_manager(llm=agent_llm)
ctx = await manager.start_session(session_id=sid, phone_number=caller_phone)
if ctx.is_returning:
    greeting = f"Welcome back! {ctx.greeting_context}"
manager.add_turn(sid, "user", user_text)
manager.add_turn(sid, "assistant", reply)
await manager.end_session(sid)
```

A *call* is what the guide calls a session: one phone call, ``session_id`` its id (a LiveKit job
id). Its flow: :meth:`SessionManager.start_session` hashes the number (:mod:`.identity`) and
looks the caller up within the budget (:mod:`.store`); :meth:`~SessionManager.add_turn` records
turns, redacted (:mod:`.redaction`), and journals them (:mod:`.journal`);
:meth:`~SessionManager.end_session` summarizes (:mod:`.summarizer`) and saves, or keeps the
call for later (:mod:`.recovery`). Erasure and export are in :mod:`.privacy`, the texts the
LLM sees in :mod:`.prompts`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from livekit.agents import llm as lk_llm
from opentelemetry.util.types import AttributeValue

from . import privacy, prompts
from .config import RedisConfig
from .exceptions import CallerMemoryError, InvalidPhoneNumberError, WithheldNumberError
from .journal import Journal
from .log import logger
from .models import (
    MAX_TURN_CHARS,
    MAX_TURNS,
    CallerProfile,
    CallSummary,
    JournalHeader,
    SessionRecord,
    Turn,
    clean_text,
    utcnow,
)
from .outbox import Outbox
from .prompts import Disclosure
from .recovery import CLOSE_WAIT_S, Recovery
from .redaction import Redactor
from .redaction.slices import SLICE_CHARS, SlicedRedaction
from .store import CallerLookup, MemoryStore, open_store
from .summarizer import Summarizer, fallback_summary
from .telemetry import (
    observe_outbox,
    record_lookup,
    record_save,
    record_summary,
    span,
    traced_span,
)
from .timeouts import deadline
from .troubleshooting import diagnose

__all__ = [
    "LookupStatus",
    "SessionContext",
    "SessionManager",
    "get_session_manager",
    "init_session_manager",
]

LookupStatus = Literal["returning", "new", "no_number", "invalid_number", "timeout", "error"]

JOURNAL_GRACE_S = 1.0
"""How long hang-up waits for the journal's last write before saving."""


@dataclass(frozen=True)
class SessionContext:
    """What the agent knows about the caller when the call starts.

    Caller ID can be spoofed: until the app has verified the caller, what the agent is given
    follows ``MEMORY_UNVERIFIED_DISCLOSURE`` (see :attr:`disclosure`).

    Attributes:
        session_id: The call, as given to :meth:`SessionManager.start_session`.
        user_id: The caller's id, or None when there is no usable number or the lookup
            did not finish within its budget.
        is_returning: True when the caller has a remembered profile.
        greeting_context: What is remembered, for the agent's instructions: the same fenced
            block of data as :meth:`memory_prompt` ("" for a new caller), following the
            disclosure (the first name only for an unverified caller, by default).
        profile: The caller's profile, when returning.
        recent_session_ids: The caller's recent session ids, oldest first.
        status: How the lookup went: ``returning``, ``new``, ``no_number``,
            ``invalid_number``, ``timeout`` (over budget) or ``error`` (store unreachable).
        disclosure: What of the memory the agent is given: ``full`` (everything; the
            greeting may recall the last call) for a verified caller; for an unverified one,
            ``MEMORY_UNVERIFIED_DISCLOSURE``: ``name`` (the first name only, the default),
            ``none`` (nothing, not even that the caller is known), or ``context``
            (everything, with the instruction not to volunteer earlier calls: a spoofer who
            asks hears it).
        verified: The caller is verified: by the app (:meth:`SessionManager.mark_verified`),
            by the network's attestation (STIR/SHAKEN), or ``MEMORY_TRUST_CALLER_ID``.
    """

    session_id: str
    user_id: str | None = None
    is_returning: bool = False
    greeting_context: str = ""
    profile: CallerProfile | None = None
    recent_session_ids: list[str] = field(default_factory=list)
    status: LookupStatus = "new"
    disclosure: Disclosure = "name"
    verified: bool = False

    @classmethod
    def found(
        cls,
        session_id: str,
        lookup: CallerLookup,
        status: LookupStatus,
        disclosure: Disclosure,
        *,
        verified: bool = False,
    ) -> SessionContext:
        """The context of a caller the lookup answered for."""
        profile = lookup.profile
        known = profile is not None and disclosure != "none"
        return cls(
            session_id=session_id,
            user_id=lookup.user_id,
            is_returning=known,
            greeting_context=prompts.greeting_context(profile, disclosure)
            if known and profile
            else "",
            profile=profile,
            recent_session_ids=lookup.session_ids,
            status=status,
            disclosure=disclosure,
            verified=verified,
        )

    @property
    def caller_name(self) -> str | None:
        """The caller's name as the agent may use it: the first name only for an unverified
        caller (``name``), None when nothing may be disclosed."""
        if self.profile is None or self.disclosure == "none":
            return None
        return self.profile.first_name if self.disclosure == "name" else self.profile.name

    def memory_prompt(self) -> str:
        """The profile as a fenced block of data for the LLM's context ("" when new); see
        :func:`.prompts.memory_block`."""
        return self.greeting_context  # the same block, made once at the lookup


@dataclass
class _Call:
    """A call in progress."""

    session_id: str
    phone_hash: str | None
    previous_hashes: list[str]
    lookup: CallerLookup | None
    started_at: datetime
    context: SessionContext
    may_journal: bool
    """The caller has a number and the store answered at call start."""
    turns: list[Turn] = field(default_factory=list)
    journal: Journal | None = None
    remember: bool = True
    consented: bool = False
    consent_from: int = 0
    """Turns before this index were said before the caller agreed to be remembered."""
    verified: bool = False
    withdrawal: asyncio.Task[None] | None = None
    """The caller withdrew the consent given in an earlier call: its effect on the store."""
    summary: CallSummary | None = None
    """Set once the call is summarized at hang-up."""
    unredacted: list[tuple[str, str]] = field(default_factory=list)
    """Long turns (role, text) waiting for their redaction, and every turn said after them:
    in this process's memory only, never in :attr:`turns`, the journal or a save."""
    redacting: asyncio.Task[None] | None = None
    """Redacts :attr:`unredacted` a slice per event-loop iteration."""


class SessionManager:
    """Keeps the calls in progress and turns each finished one into memory.

    Nothing a call learned is lost to an outage: turns are journaled as the call goes (a
    worker killed mid-call loses at most its last turn, and recovery saves such calls later),
    and a call that cannot be saved at hang-up goes to a durable local outbox, written at start,
    every ``MEMORY_OUTBOX_FLUSH_S`` and by ``caller-memory flush`` (see :mod:`.recovery`).

    Args:
        store: Where memory is kept (connected or not: a down store means calls without
            memory, not failed calls).
        llm: Summarizes calls at hang-up; None stores a deterministic summary.
        owns_store: Close the store in :meth:`aclose`.
        outbox: Where unsaved calls wait; ``MEMORY_DATA_DIR/outbox`` by default.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        llm: lk_llm.LLM[Any] | None = None,
        owns_store: bool = False,
        outbox: Outbox | None = None,
    ) -> None:
        _ = store.hasher  # the secret is checked (or the development one made) now, not per call
        self._store = store
        self._config = store.config
        self._redact = Redactor(
            self._config.redact_kinds, region=self._config.default_region or "US"
        )
        self._summarizer = Summarizer(
            llm, timeout=self._config.summary_timeout_s, redact=self._redact
        )
        self._owns_store = owns_store
        self._outbox = outbox or Outbox(self._config.data_dir / "outbox")
        self._calls: dict[str, _Call] = {}
        self._ending: dict[str, _Call] = {}
        """Calls whose end (summary, save) is running."""
        self._recovery = Recovery(
            store,
            self._outbox,
            self._summarizer,
            is_live=self._is_live,
            live_calls=self._journaled_calls,
        )
        observe_outbox(self._outbox)

    @classmethod
    async def open(
        cls,
        llm: lk_llm.LLM[Any] | None = None,
        *,
        config: RedisConfig | None = None,
        store: MemoryStore | None = None,
        connect_later: bool = False,
    ) -> SessionManager:
        """A manager on the store the settings ask for, its maintenance started.

        Args:
            llm: Any LiveKit LLM, used to summarize calls.
            config: Settings; :meth:`RedisConfig.from_env` when omitted.
            store: A store to use as is (not closed by :meth:`aclose`); otherwise one is
                opened from ``config`` (Redis, the embedded server, or in-process memory).
            connect_later: Return at once and connect in the background (for a call already
                waiting); the first lookup is then bounded by its budget like any other.
        """
        owns = store is None
        if store is None:
            store = await open_store(config, connect_later=connect_later)
        manager = cls(store, llm=llm, owns_store=owns)
        manager.start_maintenance()
        return manager

    @property
    def store(self) -> MemoryStore:
        """The memory store."""
        return self._store

    @property
    def config(self) -> RedisConfig:
        """The settings in force."""
        return self._config

    @property
    def outbox(self) -> Outbox:
        """Calls that wait for the store to come back."""
        return self._outbox

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
        _check_session_id(session_id)
        if session_id in self._calls:
            raise ValueError("session_id is already in use by a call in progress")
        started, started_ns = time.perf_counter(), time.time_ns()
        phone_hash, previous, lookup, status = await self._look_up(phone_number)
        verified = verified or self._config.trust_caller_id
        call = _Call(
            session_id=session_id,
            phone_hash=phone_hash,
            previous_hashes=previous,
            lookup=lookup,
            started_at=self._store.call_started_at(lookup),  # the store's clock, to the ms
            verified=verified,
            context=self._context(session_id, lookup, status, verified),
            # The journal opens with the first turn, off the greeting's path; not when the
            # store was unreachable a moment ago.
            may_journal=phone_hash is not None and status != "error",
        )
        self._calls[session_id] = call
        self._measured(session_id, status, started, started_ns)
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
        phone_hash, previous, lookup, status = await self._look_up(phone_number)
        if call.phone_hash is None and session_id in self._calls:  # not raced, not ended
            call.phone_hash, call.previous_hashes, call.lookup = phone_hash, previous, lookup
            call.verified = call.verified or verified
            call.context = self._context(session_id, lookup, status, call.verified)
            call.may_journal = phone_hash is not None and status != "error"
            self._measured(session_id, status, started, started_ns)
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
            async with deadline(self._config.save_timeout_s):
                lookup = await self._store.lookup(
                    call.phone_hash, previous=call.previous_hashes, create=False
                )
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
        call.context = self._context(session_id, lookup, status, call.verified)
        self._measured(session_id, status, started, started_ns)
        return call.context

    def _context(
        self,
        session_id: str,
        lookup: CallerLookup | None,
        status: LookupStatus,
        verified: bool,
    ) -> SessionContext:
        disclosure: Disclosure = "full" if verified else self._config.unverified_disclosure
        if lookup is None:
            return SessionContext(
                session_id=session_id, status=status, disclosure=disclosure, verified=verified
            )
        return SessionContext.found(session_id, lookup, status, disclosure, verified=verified)

    @staticmethod
    def _measured(session_id: str, status: LookupStatus, started: float, started_ns: int) -> None:
        lookup_ms = (time.perf_counter() - started) * 1000
        attributes: dict[str, AttributeValue] = {
            "session_id": session_id,
            "caller_memory.status": status,
        }
        if traced := traced_span("caller_memory.lookup", started_ns, attributes):
            traced.end()
        record_lookup(status, lookup_ms)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "caller looked up",
                extra={"session_id": session_id, "status": status, "lookup_ms": lookup_ms},
            )

    async def _look_up(
        self, phone_number: str | None
    ) -> tuple[str | None, list[str], CallerLookup | None, LookupStatus]:
        """The caller's hashes, and what the store holds for them, within the lookup budget.

        SIP trunks send numbers in E.164. The lookup of the number as given goes out at once,
        read-only, and the number is checked while Redis answers: the check costs as much as a
        fifth of the round trip. When the number was in its normal form already (nearly
        always), that answer is the caller's; otherwise it is dropped.
        """
        if not phone_number:
            return None, [], None, "no_number"
        hasher = self._store.hasher
        # With consent required, nothing is written before the caller agrees: not even a new
        # caller's identity (the save mints it).
        create = not self._config.consent_required
        checked: list[tuple[str, list[str]] | Exception] = []

        def check() -> None:
            try:
                checked.append(hasher.hashes(phone_number))
            except Exception as e:  # raised where the result is read
                checked.append(e)

        def hashes() -> tuple[str, list[str]]:
            if not checked:
                check()
            result = checked[0]
            if isinstance(result, Exception):
                raise result
            return result

        phone_hash: str | None = None
        previous: list[str] = []
        try:
            async with deadline(self._config.lookup_timeout):  # one timer for all of it
                early_hash = hasher.hash_as_given(phone_number)
                lookup: CallerLookup | None = None
                if early_hash is not None:
                    # The check runs as a callback of the event loop, once the request is out
                    # and this call waits for the answer: no task, no extra turn of the loop
                    # (a task for the early lookup cost ~14 µs more per call start).
                    pending = asyncio.get_running_loop().call_soon(check)
                    try:
                        lookup = await self._store.lookup(early_hash, create=False)
                    except Exception:
                        # The number's own problems come first; the store's failure counts
                        # only when its answer was the caller's.
                        phone_hash, previous = hashes()
                        if phone_hash == early_hash:
                            raise
                    finally:
                        pending.cancel()
                phone_hash, previous = hashes()
                if phone_hash != early_hash:
                    lookup = None
                if lookup is None or lookup.user_id is None and (create or previous):
                    # Not asked yet, or unknown as given: the full lookup (it mints a new
                    # caller's id, or finds one under a previous secret).
                    lookup = await self._store.lookup(phone_hash, previous=previous, create=create)
        except Exception as e:
            # The number's own problem decides first (also when it surfaced as the store's
            # failure or the budget running out while Redis answered), then the store's.
            try:
                phone_hash, previous = hashes()
            except WithheldNumberError:
                return None, [], None, "no_number"
            except InvalidPhoneNumberError as bad:
                logger.warning("caller number unusable, call goes on without memory: %s", bad)
                return None, [], None, "invalid_number"
            except Exception:
                pass  # the check itself failed: reported below as the lookup's failure
            if isinstance(e, TimeoutError):
                # Over its budget: say why when the cause is this worker's, not Redis's.
                cause = diagnose(e, self._config)
                logger.warning(
                    "caller lookup over its budget%s, greeting as a new caller",
                    f" ({cause.reason})" if cause.in_worker else "",
                    extra={"budget_ms": self._config.lookup_timeout_ms},
                )
                return phone_hash, previous, None, "timeout"
            # The store is down, or worse: the call goes on.
            logger.warning(
                "caller lookup failed (%s), greeting as a new caller",
                diagnose(e, self._config).reason,
                extra={"error": type(e).__name__},
            )
            return phone_hash, previous, None, "error"
        return phone_hash, previous, lookup, "returning" if lookup.is_returning else "new"

    # -- during the call -------------------------------------------------------------------

    def add_turn(self, session_id: str, role: str, text: str) -> None:
        """Record one utterance (``role`` is ``"user"`` or ``"assistant"``). Cheap and sync.

        Unknown calls and empty texts are ignored, so a late event after hang-up is harmless.
        The turn reaches the call's journal in the background. A long turn (over 400
        characters) is redacted in the background too, a slice per event-loop iteration, and
        kept (in :meth:`turns`, the journal and the save) once redacted.
        """
        call = self._calls.get(session_id)
        if call is None or not text or not text.strip():
            return
        if role not in ("user", "assistant"):
            raise ValueError("role must be 'user' or 'assistant'")
        text = clean_text(text.strip()[:MAX_TURN_CHARS])
        if call.unredacted or (len(text) > SLICE_CHARS and self._redact.enabled):
            # Turns keep their order: any turn after a long one waits behind it.
            call.unredacted.append((role, text))
            if call.redacting is None or call.redacting.done():
                call.redacting = asyncio.get_running_loop().create_task(
                    self._redact_in_slices(call), name=f"caller_memory.redact.{session_id}"
                )
            return
        self._keep_turn(call, Turn(role=role, text=self._redact(text)))

    async def _redact_in_slices(self, call: _Call) -> None:
        while call.unredacted:
            role, text = call.unredacted[0]
            sliced = SlicedRedaction(self._redact, text)
            while not sliced.done:
                sliced.step()
                await asyncio.sleep(0)  # the loop serves the call between slices
            call.unredacted.pop(0)
            self._keep_turn(call, Turn(role=role, text=sliced.result))

    async def _redacted(self, call: _Call) -> None:
        """Wait until every turn of ``call`` is redacted and kept."""
        if call.redacting is not None and not call.redacting.done():
            await asyncio.wait([call.redacting])
        self._redact_now(call)

    def _redact_now(self, call: _Call) -> None:
        """Redact and keep the turns still waiting, at once (consent splits the call here)."""
        if call.redacting is not None:
            call.redacting.cancel()
            call.redacting = None
        while call.unredacted:
            role, text = call.unredacted.pop(0)
            self._keep_turn(call, Turn(role=role, text=self._redact(text)))

    def _keep_turn(self, call: _Call, turn: Turn) -> None:
        """Keep a redacted turn in the call, and journal it."""
        if len(call.turns) >= MAX_TURNS:
            # Keep the opening of the call; drop from the middle to make room for the end.
            del call.turns[MAX_TURNS // 2]
            if call.consent_from > MAX_TURNS // 2:
                call.consent_from -= 1
        call.turns.append(turn)
        if not call.remember:
            return  # the caller opted out: nothing more reaches the store
        if call.journal is not None:
            call.journal.append(turn)
        elif call.may_journal and self._config.journal_turns and self._may_remember(call):
            header = JournalHeader(
                session_id=call.session_id,
                user_id=call.lookup.user_id if call.lookup else None,
                phone_hash=call.phone_hash,
                started_at=call.started_at,
            )
            # With every turn so far that the caller's consent covers.
            call.journal = Journal(self._store, header, call.turns[call.consent_from :])

    def turns(self, session_id: str) -> list[Turn]:
        """The turns recorded so far for a call in progress."""
        call = self._calls.get(session_id)
        if call is None:
            return []
        self._redact_now(call)
        return list(call.turns)

    def set_consent(self, session_id: str, granted: bool) -> None:
        """Record the caller's answer to "may I remember this call?".

        With ``MEMORY_CONSENT_REQUIRED=true`` a call is remembered only after the caller
        agreed, in this call or an earlier one. Consent given during a call covers what is
        said from then on: the turns before it are not stored (they were said without it).

        Declining is never ignored. Nothing of this call is stored, and a new caller's identity
        is dropped at hang-up. A caller who had agreed in an earlier call withdraws that
        consent: later calls are not remembered until they agree again (anyone may do this:
        the worst a spoofer achieves is that the real caller is asked again). What is held
        is then erased for a verified caller; for an unverified one, who may be a spoofer,
        the erasure is filed for an operator (``caller-memory requests``).
        """
        call = self._calls.get(session_id)
        if call is None:
            return
        self._redact_now(call)  # the turns said before the answer are kept before it
        if granted:
            if not call.consented and call.remember and not self._may_remember(call):
                call.consent_from = len(call.turns)  # it covers the call from now on
            call.consented = True
            return
        call.consented = False
        self._opt_out(call)
        profile = call.lookup.profile if call.lookup else None
        if profile is not None and profile.consented_at is not None and call.withdrawal is None:
            call.withdrawal = asyncio.get_running_loop().create_task(
                self._withdraw(call), name=f"caller_memory.withdraw.{session_id}"
            )

    async def _withdraw(self, call: _Call) -> None:
        assert call.lookup is not None and call.lookup.user_id is not None
        user_id = call.lookup.user_id
        try:
            if call.verified:
                await self.forget_caller(session_id=call.session_id)
            else:
                await self._store.withdraw_consent(user_id)
                await self._store.request_erasure(user_id)
        except Exception as e:
            logger.warning(
                "could not record a withdrawal of consent; it is asked again at the next call "
                "only if the store was reachable",
                extra={"session_id": call.session_id, "error": type(e).__name__},
            )
        else:
            extra = {"session_id": call.session_id, "verified": call.verified}
            logger.info("caller withdrew consent", extra=extra)

    def dont_remember(self, session_id: str) -> None:
        """The caller asked not to remember this call: nothing of it will be stored, and what
        was journaled so far is deleted now. The earlier memory is left as it is."""
        call = self._calls.get(session_id)
        if call is not None:
            self._opt_out(call)

    def _opt_out(self, call: _Call) -> None:
        call.remember = False
        if call.journal is not None:
            call.journal.discard(JOURNAL_GRACE_S)

    def mark_verified(self, session_id: str) -> SessionContext | None:
        """The app verified the caller (a PIN, a security question, a call back): the agent
        gets everything remembered, and the call may change the caller's memory.

        Returns:
            The call's new context, or None for an unknown call.
        """
        call = self._calls.get(session_id)
        if call is None:
            return None
        call.verified = True
        call.context = self._context(session_id, call.lookup, call.context.status, True)
        return call.context

    def is_verified(self, session_id: str) -> bool:
        """Whether the caller of a call in progress is verified."""
        call = self._calls.get(session_id)
        return call is not None and call.verified

    # -- the caller's rights ---------------------------------------------------------------

    async def ask_to_forget(self, session_id: str) -> Literal["erased", "requested", "none"]:
        """The caller asked on the call to be forgotten (the ``forget_me`` tool).

        Caller ID can be spoofed, so only a verified caller is erased at once (as
        :meth:`forget_caller`). An unverified caller's request is filed for an operator
        (``caller-memory requests``, then ``caller-memory forget --user-id``): nothing is
        erased, and this call is not stored.

        Returns:
            ``erased``, ``requested``, or ``none`` for a call without a known caller.
        """
        call = self._calls.get(session_id)
        if call is None or call.phone_hash is None:
            return "none"
        if call.verified:
            await self.forget_caller(session_id=session_id)
            return "erased"
        self._opt_out(call)
        user_id = call.lookup.user_id if call.lookup else None
        if user_id is None or (call.lookup is not None and call.lookup.is_new):
            return "erased"  # a new caller: not storing this call leaves nothing of them
        await self._store.request_erasure(user_id)
        logger.info("caller asked to be erased, unverified: filed for an operator",
                    extra={"session_id": session_id})  # fmt: skip
        return "requested"

    async def forget_caller(
        self, phone_number: str | None = None, *, session_id: str | None = None
    ) -> list[str]:
        """Erase everything held about a caller, at once: every phone mapping of the user,
        the profile, the session list, every call's data and journal, and the local outbox's
        entries. A call of theirs in progress is not saved either.

        Args:
            phone_number: The caller's number, in any spelling.
            session_id: Or: the caller of this call in progress.

        Returns:
            What was deleted: store keys, then ``outbox:<file>`` for outbox entries.

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = self._caller_hashes(phone_number, session_id)
        if phone_hash is None:
            return []
        hashes = {phone_hash, *previous}
        for call in self._calls.values():
            if call.phone_hash in hashes:
                self._opt_out(call)
        return await privacy.forget_caller(
            self._store, self._outbox, self._recovery, phone_hash, previous
        )

    async def forget_user(self, user_id: str) -> list[str]:
        """:meth:`forget_caller` by user id: an operator acting on an erasure request a caller
        made unverified (:meth:`~.store.MemoryStore.erasure_requests`)."""
        for call in self._calls.values():
            if call.lookup is not None and call.lookup.user_id == user_id:
                self._opt_out(call)
        return await privacy.forget_user(self._store, self._outbox, self._recovery, user_id)

    async def export_caller(self, phone_number: str) -> dict[str, Any]:
        """Everything held about a caller (a subject-access request), as JSON-ready data.

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = self._store.hasher.hashes(phone_number)
        return await privacy.export_caller(self._store, self._outbox, phone_hash, previous)

    def _caller_hashes(
        self, phone_number: str | None, session_id: str | None
    ) -> tuple[str | None, list[str]]:
        if phone_number is not None:
            return self._store.hasher.hashes(phone_number)
        call = self._calls.get(session_id or "")
        if call is None:
            return None, []
        return call.phone_hash, call.previous_hashes

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

    async def _end(self, call: _Call, llm: lk_llm.LLM[Any] | None) -> CallerProfile | None:
        session_id = call.session_id
        await self._redacted(call)
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
            turns = call.turns[call.consent_from :]
            early = await self._recovery.copy_early(
                self._record(call, fallback_summary(turns)), call.phone_hash
            )
        base = call.lookup
        with span("caller_memory.summarize", session_id=session_id) as current:
            started = time.perf_counter()
            summary = await self._summarizer.using(llm).summarize(
                call.turns[call.consent_from :], profile=base.profile if base else None
            )
            if current is not None:
                current.set_attribute("caller_memory.summary_source", summary.source)
            record_summary(summary.source, (time.perf_counter() - started) * 1000)
        call.summary = summary
        profile = await self._recovery.save(
            self._record(call, summary),
            summary,
            phone_hash=call.phone_hash,
            previous=call.previous_hashes,
            base=base,
        )
        if early is not None and profile is not None:
            await self._recovery.drop_copy(early)
        return profile

    @staticmethod
    def _record(call: _Call, summary: CallSummary) -> SessionRecord:
        return SessionRecord(
            session_id=call.session_id,
            user_id=call.lookup.user_id if call.lookup else None,
            started_at=call.started_at,
            ended_at=utcnow(),
            turns=call.turns[call.consent_from :],
            summary=summary,
            consented=call.consented,
            verified=call.verified,
        )

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
        summary = call.summary or fallback_summary(call.turns[call.consent_from :])
        if self._recovery.keep(self._record(call, summary), call.phone_hash):
            logger.warning(
                "call end still running at shutdown: a copy of the call is in the local outbox "
                "(a save that lands later makes it a replay, stored once)",
                extra={"session_id": session_id},
            )
        return True

    def _may_remember(self, call: _Call) -> bool:
        if not call.remember:
            return False
        if not self._config.consent_required or call.consented:
            return True
        profile = call.lookup.profile if call.lookup else None
        return profile is not None and profile.consented_at is not None

    async def _consented_before(self, call: _Call) -> bool:
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

    async def _forget_call(self, call: _Call) -> None:
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

    # -- what outages leave behind ---------------------------------------------------------

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

    async def aclose(self, *, held_wait_s: float = CLOSE_WAIT_S) -> None:
        """End the calls still open, stop the maintenance, and close the store if owned.

        Calls held in memory (the store and the outbox's disk both refused them) are tried
        again, for up to ``held_wait_s`` (by default what is left of LiveKit's shutdown window
        after the plugin's shutdown callback); those still held then are lost, and an ERROR
        line says how many and why.
        """
        for session_id in list(self._calls):
            await self.end_session(session_id)
        await self.stop_maintenance()
        await self._recovery.close(held_wait_s)
        if self._owns_store:
            await self._store.disconnect()


MAX_SESSION_ID = 256
"""LiveKit job ids are about 16 characters; a session id also names a Redis key and a file."""


def _check_session_id(session_id: object) -> None:
    # At the start, where a bad id is the caller's bug to see, not at the save, where it would
    # lose the call. The message never repeats the id.
    if not isinstance(session_id, str) or not session_id.strip():
        raise ValueError("session_id must be a non-empty string (a LiveKit job id)")
    if len(session_id) > MAX_SESSION_ID:
        raise ValueError(f"session_id must be at most {MAX_SESSION_ID} characters")
    if clean_text(session_id) != session_id:
        raise ValueError("session_id must be valid Unicode (it holds a lone surrogate)")


_manager: SessionManager | None = None


async def init_session_manager(
    llm: lk_llm.LLM[Any] | None = None,
    *,
    config: RedisConfig | None = None,
    store: MemoryStore | None = None,
    connect_later: bool = False,
) -> SessionManager:
    """Create the process's session manager (the guide's entry point); see
    :meth:`SessionManager.open` for the arguments. :func:`get_session_manager` returns it."""
    global _manager
    _manager = await SessionManager.open(
        llm, config=config, store=store, connect_later=connect_later
    )
    return _manager


def get_session_manager() -> SessionManager:
    """The manager made by :func:`init_session_manager`.

    Raises:
        CallerMemoryError: :func:`init_session_manager` has not run in this process.
    """
    if _manager is None:
        raise CallerMemoryError("call init_session_manager() first")
    return _manager
