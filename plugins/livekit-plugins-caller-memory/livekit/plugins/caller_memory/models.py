"""What is stored: versioned pydantic models, one JSON document per Redis string key."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_TURNS",
    "MAX_TURN_CHARS",
    "NAME_LABEL",
    "SCHEMA_VERSION",
    "CallSummary",
    "CallerProfile",
    "Fact",
    "FactOp",
    "FactStatus",
    "JournalHeader",
    "OutboxEntry",
    "PastCall",
    "SessionRecord",
    "Turn",
    "clean_text",
    "valid_unicode",
    "keep_ends",
    "migrate_profile",
    "name_in",
    "to_json",
    "utcnow",
]

SCHEMA_VERSION = 2
"""2: facts with evidence (0.2); 1: name, preferences and follow-ups (0.1)."""

# Caps that keep a profile small (the memory budget) and keep what reaches the LLM bounded.
MAX_NAME = 60
MAX_SUMMARY = 600
MAX_LABEL = 40
MAX_VALUE = 160
MAX_EVIDENCE = 200
MAX_OPS = 12
"""Operations one call may bring: a call that states more is cut, not refused."""
MAX_CURRENT_FACTS = 30
MAX_PAST_FACTS = 10
"""Replaced and withdrawn facts kept for the operator (never shown to the agent)."""
MAX_TURNS = 400
"""Turns kept per call; a runaway call keeps its first and last turns."""
MAX_TURN_CHARS = 4_000
NAME_LABEL = "name"
"""The label of the caller's own name: a fact like the others."""


_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACING = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
"""Control characters that separate words or lines (``str.split`` splits on them): a space."""
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]")
"""The other control characters (tab and line breaks aside) and the bidirectional overrides and
isolates: no one says them, and in a prompt or on the console they hide or reorder text."""
_UNCLEAN = re.compile(f"{_SURROGATE.pattern}|{_SPACING.pattern}|{_CONTROLS.pattern}")


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate pairs joined, a lone surrogate (half an emoji cut
    between two streamed chunks) replaced by U+FFFD; control characters that separate words
    (vertical tab, form feed, NEL...) made spaces, the others (NUL, escape...; tab and line
    breaks stay) and the bidirectional overrides (U+202A-U+202E, U+2066-U+2069) removed.
    Anything else is left as it is."""
    if not _UNCLEAN.search(text):
        return text
    return _CONTROLS.sub("", _SPACING.sub(" ", valid_unicode(text)))


def valid_unicode(text: str) -> str:
    """``text`` with surrogate pairs joined and a lone surrogate replaced by U+FFFD, and
    nothing else changed."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _clean_deep(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_clean_deep(k): _clean_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_deep(v) for v in value]
    return value


def keep_ends(turns: list[Any], limit: int = MAX_TURNS) -> list[Any]:
    """At most ``limit`` turns: the opening of the call and its end, the middle dropped."""
    if len(turns) <= limit:
        return turns
    half = limit // 2
    return [*turns[:half], *turns[len(turns) - (limit - half) :]]


def to_json(model: BaseModel, **options: Any) -> str:
    """A model as JSON, whatever text it holds: a value pydantic cannot encode (a lone
    surrogate read back from a corrupted store, say) is cleaned (:func:`clean_text`) instead of
    failing the write, so that no call is lost to one bad character."""
    try:
        return model.model_dump_json(**options)
    except ValueError:  # PydanticSerializationError: invalid Unicode somewhere in it
        data = _clean_deep(model.model_dump(mode="json", **options))
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def utcnow() -> datetime:
    """The current time, timezone-aware, to the second (stored times carry no microseconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def _clipped(text: str, limit: int) -> str:
    # rstrip after the cut: a text cut at a space would lose it when read back (and clipped
    # again), and the session's copy of a summary would differ from the profile's.
    return " ".join(clean_text(text).split())[:limit].rstrip()


def _clip(limit: int) -> BeforeValidator:
    def clip(value: object) -> object:
        return _clipped(value, limit) if isinstance(value, str) else value

    return BeforeValidator(clip)


# What an LLM writes is clipped to size (a summary request is never refused for length)...
SummaryText = Annotated[str, _clip(MAX_SUMMARY)]
Label = Annotated[str, _clip(MAX_LABEL)]
Value = Annotated[str, _clip(MAX_VALUE)]
Evidence = Annotated[str, _clip(MAX_EVIDENCE)]
# ...and what is read back from Redis was clipped when it was written: there, the same limits
# are checked natively by pydantic-core (a value past them is not ours, and is set aside),
# which reads a profile in half the time of Python validators.
StoredSummary = Annotated[str, StringConstraints(max_length=MAX_SUMMARY)]
StoredLabel = Annotated[str, StringConstraints(max_length=MAX_LABEL)]
StoredValue = Annotated[str, StringConstraints(max_length=MAX_VALUE)]
StoredEvidence = Annotated[str, StringConstraints(max_length=MAX_EVIDENCE)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Turn(_Model):
    """One utterance of a call."""

    role: Literal["user", "assistant"]
    text: str


FactStatus = Literal["current", "replaced", "withdrawn"]


class Fact(_Model):
    """One thing remembered about a caller, backed by their own words.

    Attributes:
        id: The fact's number in this caller's memory (never reused).
        label: What the fact is about, in a few words chosen by the model ("vehicle",
            "appointment", "allergy"); :data:`NAME_LABEL` for the caller's own name.
        value: The fact itself, in a few words.
        evidence: The caller's words that state it, verbatim from one of their turns ("" only
            for a fact converted from a profile of version 0.1, which kept no evidence).
        said_at: When it was first said.
        confirmed_at: When a later call last said it again (None: never since).
        status: ``current``; ``replaced`` by a newer value; ``withdrawn`` by the caller.
        verified: The call that said it was verified (an unverified call may have been
            someone else on a spoofed number).
    """

    id: int
    label: StoredLabel
    value: StoredValue
    evidence: StoredEvidence = ""
    said_at: AwareDatetime
    confirmed_at: AwareDatetime | None = None
    status: FactStatus = "current"
    verified: bool = True

    @property
    def current(self) -> bool:
        """True when the fact still holds (neither replaced nor withdrawn)."""
        return self.status == "current"

    @property
    def last_said(self) -> datetime:
        """When the caller last said it."""
        return self.confirmed_at or self.said_at


class FactOp(_Model):
    """One change a call makes to a caller's facts, as the summarizer checked it.

    Attributes:
        op: ``add`` a fact, ``update`` one to a new value, or ``withdraw`` one.
        id: The remembered fact updated or withdrawn (0 for an add, or when the model named
            the fact by its label only).
        label: What the fact is about (for an update or a withdrawal, a hint when the id is
            missing or wrong).
        value: The fact's value ("" for a withdrawal).
        evidence: The caller's own words behind the change, verbatim from one of their turns.
    """

    op: Literal["add", "update", "withdraw"]
    id: int = 0
    label: Label = ""
    value: Value = ""
    evidence: Evidence = ""

    @field_validator("label", mode="before")
    @classmethod
    def _plain_label(cls, value: object) -> object:
        return " ".join(value.split()).lower() if isinstance(value, str) else value

    @field_validator("id", mode="before")
    @classmethod
    def _lenient_id(cls, value: object) -> object:
        # Models write ids as "3", "#3", "f3", null: whatever it is, a number or 0.
        if value is None or isinstance(value, bool):
            return 0
        if isinstance(value, str):
            digits = re.sub(r"\D", "", value)[:9]
            return int(digits) if digits else 0
        return value


class CallSummary(_Model):
    """What one call taught us about the caller, checked against the call's own words.

    Attributes:
        summary: One or two sentences on what the call was about.
        ops: The changes to the caller's facts, each backed by the caller's words (checked
            by :mod:`.memory.checks` before it gets here).
        source: ``"llm"``, or ``"fallback"`` when no LLM summary could be had (or none of it
            passed the checks) and the caller's own salient lines were kept instead.
    """

    summary: SummaryText = ""
    ops: list[FactOp] = Field(default_factory=list)
    source: Literal["llm", "fallback"] = "llm"

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        # What a model writes may hold anything, "\ud83d" escapes included: cleaned here, at
        # the door, so that the profile it is merged into can always be stored.
        return _clean_deep(data) if isinstance(data, dict) else data

    @field_validator("ops", mode="before")
    @classmethod
    def _bounded_ops(cls, value: object) -> object:
        return value[:MAX_OPS] if isinstance(value, list) else value

    @property
    def caller_name(self) -> str | None:
        """The name the caller gave in this call, if any."""
        return next(
            (op.value for op in self.ops if op.op != "withdraw" and op.label == NAME_LABEL),
            None,
        )


class PastCall(_Model):
    """One earlier call, as remembered in the profile."""

    session_id: str
    at: AwareDatetime
    summary: StoredSummary
    source: Literal["llm", "fallback"] = "llm"
    verified: bool = True
    """The caller was verified on this call (an unverified one may have been someone else)."""


class CallerProfile(_Model):
    """Everything remembered about one caller (``{prefix}:user:{id}:profile``).

    The profile never holds the phone number: the caller is found through the keyed hash.
    What changes it is :func:`.memory.merge_call`.
    """

    v: int = SCHEMA_VERSION
    user_id: str
    facts: list[Fact] = Field(default_factory=list)
    """Current facts and the last few replaced or withdrawn ones, oldest first."""
    calls: list[PastCall] = Field(default_factory=list)
    """The most recent calls, oldest first, bounded by ``MEMORY_MAX_SUMMARIES``."""
    call_count: int = 0
    first_call_at: AwareDatetime | None = None
    last_call_at: AwareDatetime | None = None
    consented_at: AwareDatetime | None = None
    """When the caller agreed to be remembered (kept when ``MEMORY_CONSENT_REQUIRED``)."""

    @property
    def current_facts(self) -> list[Fact]:
        """The facts that still hold, newest said first."""
        current = [f for f in self.facts if f.current]
        current.sort(key=_last_said, reverse=True)
        return current

    @property
    def name(self) -> str | None:
        """The caller's name, as they last gave it (a verified one before an unverified one)."""
        # The name facts alone: every call start asks, and a profile holds 30 facts.
        names = [f for f in self.facts if f.label == NAME_LABEL and f.current]
        names.sort(key=_last_said, reverse=True)
        return name_in(names, verified_since=self.verified_since)

    @property
    def verified_since(self) -> datetime | None:
        """When a call of this number was first verified (of the calls remembered): a name
        only an unverified call gave after it (a spoofer's "I'm Mallory") is not the caller's
        name, only a marked fact."""
        return min((c.at for c in self.calls if c.verified), default=None)

    @property
    def last_summary(self) -> str | None:
        """The summary of the most recent call, if any."""
        return self.calls[-1].summary if self.calls else None

    @property
    def first_name(self) -> str | None:
        """The first word of the caller's name: all an unverified caller is greeted with."""
        words = (self.name or "").split()  # a blank name (a hand-edited profile) has none
        return words[0] if words else None

    @property
    def is_established(self) -> bool:
        """True once the profile holds what a call taught (a spoofer must not overwrite it)."""
        return self.call_count > 0


def name_in(current: Sequence[Fact], *, verified_since: datetime | None = None) -> str | None:
    """The caller's name among current facts sorted newest first (see
    :attr:`CallerProfile.current_facts`): the newest verified one, else the newest unverified
    one said before ``verified_since`` (:attr:`CallerProfile.verified_since`)."""
    newest: str | None = None
    for fact in current:
        if fact.label == NAME_LABEL:
            if fact.verified:
                return fact.value
            if newest is None and (verified_since is None or fact.said_at <= verified_since):
                newest = fact.value
    return newest


def _last_said(fact: Fact) -> tuple[datetime, int]:
    # A profile's times all carry a zone (AwareDatetime): they compare as they are, which
    # sorts a caller's facts in a third of the time of comparing their timestamp().
    return (fact.last_said, fact.id)


class SessionRecord(_Model):
    """One call in full (``{prefix}:session:{id}``), kept 24 hours by default."""

    v: int = SCHEMA_VERSION
    session_id: str
    user_id: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    turns: list[Turn] = Field(default_factory=list)
    summary: CallSummary | None = None
    consented: bool = False
    """The caller agreed in this call to be remembered."""
    verified: bool = False
    """The caller was verified on this call (by the app, or by the network's attestation)."""


class JournalHeader(_Model):
    """First line of a call's journal: the in-progress form of ``{prefix}:session:{id}``.

    While a call is going on, its session key holds JSON lines: this header, then one
    :class:`Turn` per line, appended as the call goes, so a worker that dies mid-call loses
    at most its last turn. The save replaces the journal with the :class:`SessionRecord`
    (see :mod:`.store.codec` for the format).
    """

    journal: int = 1
    session_id: str
    user_id: str | None = None
    phone_hash: str | None = None
    started_at: datetime


class OutboxEntry(_Model):
    """A finished call that could not be written to Redis, kept on local disk until it can."""

    v: int = SCHEMA_VERSION
    record: SessionRecord
    phone_hash: str | None = None
    kept_at: datetime
    target: str | None = None
    """Whose call it is: the key prefix and a fingerprint of the phone-hash secret
    (:func:`..outbox.outbox_target`). None in entries of versions before it: any store."""
    ending_pid: int | None = None
    """The process still ending this call, for a copy made before its save (its journal missed
    turns) or at shutdown: no other flush takes it while that process lives (it would store
    the copy's summary, and the real save would find the call stored). None: a kept call."""


def migrate_profile(data: Any) -> Any:
    """Bring a stored profile of an older schema to the current one.

    Version 0 is the layout of the original guide's store: no ``v``, a single ``last_summary``
    and ``last_call`` / ``created_at`` times, ``preferences`` possibly a list of notes.
    Version 1 (0.1.x) kept a name, preferences and open follow-ups: each becomes a current
    fact, said when the caller last called, with no evidence (0.1 kept none).
    In any version, a time written without a zone (a profile edited by hand) is read as UTC.
    """
    if not isinstance(data, dict):
        return data
    data = _times_in_utc(data)
    if data.get("v", 0) >= SCHEMA_VERSION:
        return data
    migrated = dict(data)
    last_call = migrated.pop("last_call", None) or migrated.get("last_call_at")
    first_call = migrated.pop("created_at", None) or migrated.get("first_call_at")
    last_summary = migrated.pop("last_summary", None)
    if last_summary and not migrated.get("calls"):
        migrated["calls"] = [
            {
                "session_id": "legacy",
                "at": last_call or first_call or utcnow(),
                "summary": _clipped(str(last_summary), MAX_SUMMARY),
            }
        ]
    said_at = last_call or first_call or utcnow()
    facts: list[tuple[str, object]] = []
    if isinstance(migrated.get("name"), str):
        facts.append((NAME_LABEL, migrated["name"]))
    preferences = migrated.pop("preferences", None)
    if isinstance(preferences, list):
        facts += [("note", p) for p in preferences]
    elif isinstance(preferences, dict):
        facts += [(str(k).replace("_", " "), v) for k, v in preferences.items()]
    follow_ups = migrated.pop("follow_ups", None)
    if isinstance(follow_ups, list):
        facts += [("open request", item) for item in follow_ups]
    migrated.pop("name", None)
    migrated["facts"] = [
        {
            "id": i,
            "label": _clipped(label, MAX_LABEL).lower(),
            "value": _clipped(str(value), MAX_VALUE),
            "said_at": said_at,
        }
        for i, (label, value) in enumerate(facts[-MAX_CURRENT_FACTS:], start=1)
        if str(value).strip()
    ]
    migrated.setdefault("call_count", len(migrated.get("calls", [])))
    migrated["last_call_at"] = last_call
    migrated["first_call_at"] = first_call
    migrated["v"] = SCHEMA_VERSION
    return migrated


_PROFILE_TIMES = ("first_call_at", "last_call_at", "consented_at", "last_call", "created_at")
_ITEM_TIMES = {"facts": ("said_at", "confirmed_at"), "calls": ("at",)}


def _times_in_utc(data: dict[str, Any]) -> dict[str, Any]:
    """A profile's times written without a zone (``datetime.now().isoformat()`` in a script that
    edited it) read as UTC: a profile holds aware times only, which compare with each other."""
    fixed = {k: _zoned(v) if k in _PROFILE_TIMES else v for k, v in data.items()}
    for field, keys in _ITEM_TIMES.items():
        items = fixed.get(field)
        if isinstance(items, list):
            fixed[field] = [
                {k: _zoned(v) if k in keys else v for k, v in item.items()}
                if isinstance(item, dict)
                else item
                for item in items
            ]
    return fixed


def _zoned(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value  # not a time: validation says so
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
    return value
