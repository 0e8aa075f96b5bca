"""What is stored: versioned pydantic models, one JSON document per Redis string key."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "SCHEMA_VERSION",
    "CallSummary",
    "CallerProfile",
    "JournalHeader",
    "OutboxEntry",
    "PastCall",
    "SessionRecord",
    "Turn",
    "MAX_TURNS",
    "MAX_TURN_CHARS",
    "clean_text",
    "keep_ends",
    "migrate_profile",
    "to_json",
    "utcnow",
]

SCHEMA_VERSION = 1

# Caps that keep a profile small (the memory budget) and keep what reaches the LLM bounded.
MAX_NAME = 60
MAX_SUMMARY = 600
MAX_PREFERENCES = 20
MAX_PREF_KEY = 40
MAX_PREF_VALUE = 160
MAX_FOLLOW_UPS = 5
MAX_FOLLOW_UP = 160
MAX_TURNS = 400
"""Turns kept per call; a runaway call keeps its first and last turns."""
MAX_TURN_CHARS = 4_000


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: surrogate pairs joined, a lone surrogate (half an emoji cut
    between two streamed chunks) replaced by U+FFFD. Anything else is left as it is."""
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


_NAME = re.compile(r"[^\W\d_]+(?:[ '’.-]{1,2}[^\W\d_]+){0,3}\.?")


def utcnow() -> datetime:
    """The current time, timezone-aware, to the second (stored times carry no microseconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def _clipped(text: str, limit: int) -> str:
    # rstrip after the cut: a text cut at a space would lose it when read back (and clipped
    # again), and the session's copy of a summary would differ from the profile's.
    return " ".join(text.split())[:limit].rstrip()


def _clip(limit: int) -> BeforeValidator:
    def clip(value: object) -> object:
        return _clipped(value, limit) if isinstance(value, str) else value

    return BeforeValidator(clip)


# What an LLM writes is clipped to size (a summary request is never refused for length)...
Name = Annotated[str, _clip(MAX_NAME)]
SummaryText = Annotated[str, _clip(MAX_SUMMARY)]
FollowUp = Annotated[str, _clip(MAX_FOLLOW_UP)]
# ...and what is read back from Redis was clipped when it was written: there, the same limits
# are checked natively by pydantic-core (a value past them is not ours, and is set aside),
# which reads a profile in half the time of Python validators.
StoredName = Annotated[str, StringConstraints(max_length=MAX_NAME)]
StoredSummary = Annotated[str, StringConstraints(max_length=MAX_SUMMARY)]
StoredFollowUp = Annotated[str, StringConstraints(max_length=MAX_FOLLOW_UP)]
StoredPreferences = dict[
    Annotated[str, StringConstraints(max_length=MAX_PREF_KEY)],
    Annotated[str, StringConstraints(max_length=MAX_PREF_VALUE)],
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Turn(_Model):
    """One utterance of a call."""

    role: Literal["user", "assistant"]
    text: str


class CallSummary(_Model):
    """What one call taught us about the caller, as the summarizer returns it.

    Attributes:
        summary: A few sentences on what the call was about.
        caller_name: The name the caller gave, if they gave one.
        preferences: Preferences stated or corrected in this call (``{"drink": "tea"}``); an
            empty value removes a preference the caller withdrew.
        follow_ups: Everything still open after this call (replaces the earlier list).
        source: ``"llm"``, or ``"fallback"`` when no LLM summary could be had and the summary
            was built from the transcript instead.
    """

    summary: SummaryText = ""
    caller_name: Name | None = None
    preferences: dict[str, str] = Field(default_factory=dict)
    follow_ups: list[FollowUp] = Field(default_factory=list)
    source: Literal["llm", "fallback"] = "llm"

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        # What a model writes may hold anything, "\ud83d" escapes included: cleaned here, at
        # the door, so that the profile it is merged into can always be stored.
        return _clean_deep(data) if isinstance(data, dict) else data

    @field_validator("caller_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        # A name is a few words of letters. Anything else (markup, digits, a sentence) is
        # not a name: it could carry instructions into a later call's prompt.
        if value and _NAME.fullmatch(value):
            return value
        return None

    @field_validator("preferences", mode="before")
    @classmethod
    def _clip_preferences(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        clipped: dict[str, str] = {}
        for k, v in list(value.items())[:MAX_PREFERENCES]:
            key = " ".join(str(k).split())[:MAX_PREF_KEY].lower()
            if key:
                clipped[key] = "" if v is None else " ".join(str(v).split())[:MAX_PREF_VALUE]
        return clipped

    @field_validator("follow_ups")
    @classmethod
    def _clip_follow_ups(cls, value: list[str]) -> list[str]:
        return [item for item in value if item][:MAX_FOLLOW_UPS]


class PastCall(_Model):
    """One earlier call, as remembered in the profile."""

    session_id: str
    at: datetime
    summary: StoredSummary
    source: Literal["llm", "fallback"] = "llm"
    verified: bool = True
    """The caller was verified on this call (an unverified one may have been someone else)."""


class CallerProfile(_Model):
    """Everything remembered about one caller (``{prefix}:user:{id}:profile``).

    The profile never holds the phone number: the caller is found through the keyed hash.
    """

    v: int = SCHEMA_VERSION
    user_id: str
    name: StoredName | None = None
    preferences: StoredPreferences = Field(default_factory=dict)
    follow_ups: list[StoredFollowUp] = Field(default_factory=list)
    calls: list[PastCall] = Field(default_factory=list)
    """The most recent calls, oldest first, bounded by ``MEMORY_MAX_SUMMARIES``."""
    call_count: int = 0
    first_call_at: datetime | None = None
    last_call_at: datetime | None = None
    consented_at: datetime | None = None
    """When the caller agreed to be remembered (kept when ``MEMORY_CONSENT_REQUIRED``)."""

    @property
    def last_summary(self) -> str | None:
        """The summary of the most recent call, if any."""
        return self.calls[-1].summary if self.calls else None

    @property
    def first_name(self) -> str | None:
        """The first word of the caller's name: all an unverified caller is greeted with."""
        return self.name.split()[0] if self.name else None

    @property
    def is_established(self) -> bool:
        """True once the profile holds what a call taught (a spoofer must not overwrite it)."""
        return self.call_count > 0

    def merged(
        self,
        summary: CallSummary,
        *,
        session_id: str,
        ended_at: datetime,
        max_summaries: int,
        consented: bool = False,
        verified: bool = True,
    ) -> CallerProfile:
        """Return the profile with one more call folded in.

        A verified call (or any call of a caller with no memory yet): preferences accumulate,
        a value restated replaces the old one and an empty value removes it; follow-ups are
        replaced by the call's list; the name is the one given.

        An unverified call of a caller already remembered (caller id can be spoofed) only adds:
        a name where there was none, preferences not stated before, follow-ups not listed yet,
        and the call itself, marked unverified. It overwrites and removes nothing.

        Merging the same session twice is a no-op, which makes a replayed save harmless.
        """
        if any(call.session_id == session_id for call in self.calls):
            return self
        trusted = verified or not self.is_established
        preferences = dict(self.preferences)
        for key, value in summary.preferences.items():
            if not trusted and key in preferences:
                continue
            if value:
                preferences[key] = value
            elif trusted:
                preferences.pop(key, None)
        if len(preferences) > MAX_PREFERENCES:
            preferences = dict(list(preferences.items())[-MAX_PREFERENCES:])
        follow_ups = self.follow_ups
        if not trusted:
            follow_ups = [
                *self.follow_ups,
                *(f for f in summary.follow_ups if f not in self.follow_ups),
            ]
        elif summary.source == "llm":  # a fallback summary cannot know what was resolved
            follow_ups = list(summary.follow_ups)
        calls = [
            *self.calls,
            PastCall(
                session_id=session_id,
                at=ended_at,
                summary=summary.summary,
                source=summary.source,
                verified=verified,
            ),
        ][-max_summaries:]
        return self.model_copy(
            update={
                "v": SCHEMA_VERSION,
                "name": (summary.caller_name or self.name)
                if trusted
                else self.name or summary.caller_name,
                "preferences": preferences,
                "follow_ups": follow_ups[:MAX_FOLLOW_UPS],
                "calls": calls,
                "call_count": self.call_count + 1,
                "first_call_at": self.first_call_at or ended_at,
                "last_call_at": max(ended_at, self.last_call_at or ended_at),
                "consented_at": self.consented_at or (ended_at if consented else None),
            }
        )


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


def migrate_profile(data: Any) -> Any:
    """Bring a stored profile of an older schema to the current one.

    Version 0 is the layout of the original guide's store: no ``v``, a single ``last_summary``
    and ``last_call`` / ``created_at`` times, ``preferences`` possibly a list of notes.
    """
    if not isinstance(data, dict) or data.get("v", 0) >= SCHEMA_VERSION:
        return data
    migrated = dict(data)
    preferences = migrated.get("preferences")
    if isinstance(preferences, list):
        preferences = {f"note_{i + 1}": str(p) for i, p in enumerate(preferences)}
    if isinstance(preferences, dict):  # the guide set no limits: clip to ours
        migrated["preferences"] = {
            _clipped(str(k), MAX_PREF_KEY): _clipped(str(v), MAX_PREF_VALUE)
            for k, v in list(preferences.items())[-MAX_PREFERENCES:]
        }
    if isinstance(migrated.get("name"), str):
        migrated["name"] = _clipped(migrated["name"], MAX_NAME)
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
    migrated.setdefault("call_count", len(migrated.get("calls", [])))
    migrated["last_call_at"] = last_call
    migrated["first_call_at"] = first_call
    migrated["v"] = SCHEMA_VERSION
    return migrated
