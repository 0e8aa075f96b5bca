"""What a call holds: :class:`SessionContext` (what the agent knows of the caller) and
:class:`CallState` (the manager's record of a call in progress)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .. import prompts
from ..config import RedisConfig
from ..journal import Journal
from ..models import CallerProfile, CallSummary, SessionRecord, Turn, utcnow, valid_unicode
from ..prompts import Disclosure
from ..store import CallerLookup

__all__ = [
    "JOURNAL_GRACE_S",
    "MAX_SESSION_ID",
    "CallState",
    "LookupStatus",
    "SessionContext",
    "check_session_id",
    "context_for",
]

LookupStatus = Literal["returning", "new", "no_number", "invalid_number", "timeout", "error"]

JOURNAL_GRACE_S = 1.0
"""How long hang-up waits for the journal's last write before saving."""

MAX_SESSION_ID = 256
"""LiveKit job ids are about 16 characters; a session id also names a Redis key and a file."""


@dataclass(frozen=True)
class SessionContext:
    """What the agent knows about the caller when the call starts.

    Caller ID can be spoofed: until the app has verified the caller, what the agent is given
    follows ``MEMORY_UNVERIFIED_DISCLOSURE`` (see :attr:`disclosure`).

    Attributes:
        session_id: The call, as given to :meth:`~.manager.SessionManager.start_session`.
        user_id: The caller's id, or None when there is no usable number or the lookup
            did not finish within its budget.
        is_returning: True when the caller has a remembered profile.
        greeting_context: What is remembered, for the agent's instructions: the same fenced
            block of data as :meth:`memory_prompt` ("" for a new caller), following the
            disclosure (the first name only for an unverified caller, by default).
        profile: The caller's profile, when returning.
        recent_session_ids: The session ids of the calls the profile remembers, oldest
            first (the caller's session list: ``get_session_ids``).
        status: How the lookup went: ``returning``, ``new``, ``no_number``,
            ``invalid_number``, ``timeout`` (over budget) or ``error`` (store unreachable).
        disclosure: What of the memory the agent is given: ``full`` (everything; the
            greeting may recall the last call) for a verified caller; for an unverified one,
            ``MEMORY_UNVERIFIED_DISCLOSURE``: ``name`` (the first name only, the default),
            ``none`` (nothing, not even that the caller is known), or ``context``
            (everything, with the instruction not to volunteer earlier calls: a spoofer who
            asks hears it).
        verified: The caller is verified: by the app
            (:meth:`~.manager.SessionManager.mark_verified`), by the network's attestation
            (STIR/SHAKEN), or ``MEMORY_TRUST_CALLER_ID``.
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
        :func:`..prompts.memory_block`."""
        return self.greeting_context  # the same block, made once at the lookup


def context_for(
    config: RedisConfig,
    session_id: str,
    lookup: CallerLookup | None,
    status: LookupStatus,
    verified: bool,
) -> SessionContext:
    """The context the agent gets from a lookup: everything for a verified caller, what
    ``MEMORY_UNVERIFIED_DISCLOSURE`` allows for another."""
    disclosure: Disclosure = "full" if verified else config.unverified_disclosure
    if lookup is None:
        return SessionContext(
            session_id=session_id, status=status, disclosure=disclosure, verified=verified
        )
    return SessionContext.found(session_id, lookup, status, disclosure, verified=verified)


@dataclass
class CallState:
    """A call in progress, as the manager keeps it."""

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
    kept: bool = False
    """A copy of the call went to the outbox at shutdown while its end was still running."""
    cut: bool = False
    """A turn or the call was cut to its bounds (said once per call)."""
    unredacted: list[tuple[str, str]] = field(default_factory=list)
    """Long turns (role, text) waiting for their redaction, and every turn said after them:
    in this process's memory only, never in :attr:`turns`, the journal or a save."""
    redacting: asyncio.Task[None] | None = None
    """Redacts :attr:`unredacted` a slice per event-loop iteration."""

    @property
    def user_id(self) -> str | None:
        """The caller's id, once the store has answered for them."""
        return self.lookup.user_id if self.lookup else None

    @property
    def consented_turns(self) -> list[Turn]:
        """The turns the caller's consent covers: what may be kept."""
        return self.turns[self.consent_from :]

    def may_remember(self, consent_required: bool) -> bool:
        """Whether the call may be kept: the caller did not opt out, and consent (when
        required) was given in this call or an earlier one."""
        if not self.remember:
            return False
        if not consent_required or self.consented:
            return True
        profile = self.lookup.profile if self.lookup else None
        return profile is not None and profile.consented_at is not None

    def opt_out(self) -> None:
        """Nothing more of this call reaches the store, and its journal goes."""
        self.remember = False
        if self.journal is not None:
            self.journal.discard(JOURNAL_GRACE_S)

    def record(self, summary: CallSummary) -> SessionRecord:
        """The call as it is saved, ending now."""
        return SessionRecord(
            session_id=self.session_id,
            user_id=self.user_id,
            started_at=self.started_at,
            ended_at=utcnow(),
            turns=self.consented_turns,
            summary=summary,
            consented=self.consented,
            verified=self.verified,
        )


def check_session_id(session_id: object) -> None:
    """Refuse an id that cannot name a call (its key and its outbox file).

    Raises:
        ValueError: Not a non-empty string of valid Unicode, at most :data:`MAX_SESSION_ID`
            characters. The message never repeats the id.
    """
    # At the start, where a bad id is the caller's bug to see, not at the save, where it would
    # lose the call.
    if not isinstance(session_id, str) or not session_id.strip():
        raise ValueError("session_id must be a non-empty string (a LiveKit job id)")
    if len(session_id) > MAX_SESSION_ID:
        raise ValueError(f"session_id must be at most {MAX_SESSION_ID} characters")
    if valid_unicode(session_id) != session_id:
        raise ValueError("session_id must be valid Unicode (it holds a lone surrogate)")
