"""What the console shows of a caller: read from the export, so the page shows what export gives
and what erasure deletes, nothing more and nothing less.

The export (:meth:`~..calls.SessionManager.export_caller`) only reads: looking a caller up here
renews no TTL and moves no key, unlike a call's lookup.

A number is typed as the caller gives it, often without its country code: it is read by the rule
of the calls (:func:`~..identity.in_region`), in the configured region or, when none is
configured, in the country the operator chose (:func:`countries`); a number that cannot be used
is explained in plain words (:func:`why_refused`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import phonenumbers
from markupsafe import Markup
from phonenumbers.geocoder import country_name_for_number
from pydantic import ValidationError

from ..exceptions import InvalidPhoneNumberError, WithheldNumberError
from ..identity import has_country_code
from ..models import CallerProfile, JournalHeader, SessionRecord, migrate_profile
from ..redaction import TAGS
from ..store.codec import UnreadableValue, parse_journal
from ..store.keys import Keys

__all__ = [
    "REDACTION_TAG",
    "REDACTION_TAGS",
    "CallerView",
    "Country",
    "HeldCall",
    "build_caller_view",
    "countries",
    "country_name",
    "time_element",
    "why_refused",
]

REDACTION_TAGS = TAGS
"""What :class:`~..redaction.Redactor` leaves in place of what it removed."""
REDACTION_TAG = re.compile("|".join(re.escape(tag) for tag in REDACTION_TAGS))
_NEVER = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class HeldCall:
    """One call whose full data the store still holds."""

    session_id: str
    started_at: datetime | None
    record: SessionRecord | None
    """The call as saved, or as journaled so far (``in_progress``); None when unreadable."""
    in_progress: bool = False
    """The call is going on (or its worker died): this is its journal."""

    @property
    def redactions(self) -> int:
        """How many redaction tags the call's turns and summary hold."""
        if self.record is None:
            return 0
        texts = [turn.text for turn in self.record.turns]
        if self.record.summary is not None:
            texts.append(self.record.summary.summary)
        return sum(len(REDACTION_TAG.findall(text)) for text in texts)


@dataclass(frozen=True)
class CallerView:
    """Everything held about one caller, ready for a page."""

    user_ids: list[str]
    profile: CallerProfile | None = None
    profile_unreadable: bool = False
    """A profile that could not be read is held (it is exported and erased all the same)."""
    calls: list[HeldCall] = field(default_factory=list)
    """The calls whose data is held, newest first."""
    keys: list[str] = field(default_factory=list)
    """The store keys that hold something of the caller: what erasure deletes."""
    outbox: list[str] = field(default_factory=list)
    """Local outbox files that hold calls of the caller (this machine's)."""

    @property
    def found(self) -> bool:
        """True when anything at all is held about the caller."""
        return bool(self.keys or self.outbox)

    @property
    def name(self) -> str | None:
        """The remembered name."""
        return self.profile.name if self.profile else None

    @property
    def verified_calls(self) -> tuple[int, int]:
        """``(verified, remembered)``: of the calls the profile remembers, how many were made by
        a verified caller (an unverified call may have been someone else)."""
        calls = self.profile.calls if self.profile else []
        return sum(call.verified for call in calls), len(calls)

    @property
    def last_call_verified(self) -> bool | None:
        """Whether the caller was verified on their most recent remembered call."""
        if self.profile is None or not self.profile.calls:
            return None
        return self.profile.calls[-1].verified


def build_caller_view(export: dict[str, Any], keys: Keys) -> CallerView:
    """Read :meth:`~..calls.SessionManager.export_caller`'s data into a :class:`CallerView`."""
    profile: CallerProfile | None = None
    unreadable = False
    calls: list[HeldCall] = []
    for key, value in export.get("keys", {}).items():
        kind = keys.kind(key)
        if kind == "profile":
            try:
                profile = CallerProfile.model_validate(migrate_profile(value))
            except (ValidationError, ValueError, TypeError):
                unreadable = True
        elif kind == "unreadable":
            unreadable = True
        elif kind == "session":
            calls.append(_held_call(key, value))
    calls.sort(key=lambda c: c.started_at or _NEVER, reverse=True)
    return CallerView(
        user_ids=list(export.get("user_ids", [])),
        profile=profile,
        profile_unreadable=unreadable,
        calls=calls,
        keys=list(export.get("keys", {})),
        outbox=list(export.get("outbox", {})),
    )


def _held_call(key: str, value: Any) -> HeldCall:
    session_id = key.split("{", 1)[-1].rsplit("}", 1)[0]
    if isinstance(value, dict) and "journal" in value:  # a journal with no turn yet
        try:
            header = JournalHeader.model_validate(value)
        except ValidationError:
            return HeldCall(session_id=session_id, started_at=None, record=None)
        record = SessionRecord(session_id=session_id, started_at=header.started_at)
        return HeldCall(session_id, header.started_at, record, in_progress=True)
    if isinstance(value, str):  # a journal with turns: JSON lines
        try:
            record, _ = parse_journal(value)
        except UnreadableValue:
            return HeldCall(session_id=session_id, started_at=None, record=None)
        return HeldCall(session_id, record.started_at, record, in_progress=True)
    try:
        record = SessionRecord.model_validate(value)
    except ValidationError:
        return HeldCall(session_id=session_id, started_at=None, record=None)
    return HeldCall(session_id, record.started_at, record)


# -- numbers as people type them -----------------------------------------------------------


@dataclass(frozen=True)
class Country:
    """A country an operator can pick for the numbers they type without a country code."""

    code: str
    """ISO 3166 region, as ``MEMORY_DEFAULT_REGION`` takes it (``US``)."""
    name: str
    """What the operator reads: ``United States (+1)``."""


_UNNAMED = {
    "AC": "Ascension Island",
    "BL": "Saint Barthélemy",
    "EH": "Western Sahara",
    "MF": "Saint Martin",
    "TA": "Tristan da Cunha",
    "XK": "Kosovo",
}
"""Regions whose name the numbering plans' data does not give."""


@functools.cache
def countries() -> tuple[Country, ...]:
    """Every region the numbering plans know, by name (the console's country list)."""
    found = []
    for code in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(code)
        name = (country_name_for_number(example, "en") if example else "") or _UNNAMED.get(
            code, code
        )
        prefix = phonenumbers.country_code_for_region(code)
        found.append(Country(code, f"{name} (+{prefix})"))
    return tuple(sorted(found, key=lambda country: country.name))


def country_name(code: str | None) -> str | None:
    """The name of a region code (``US``: ``United States (+1)``), or None when unknown."""
    return next((c.name for c in countries() if c.code == (code or "").upper()), None)


def why_refused(error: InvalidPhoneNumberError, typed: str, region: str | None) -> str:
    """Why a typed number cannot be looked up, in words for a front desk (never the number).

    Args:
        error: What the number check raised.
        typed: What was typed.
        region: The country a number without its country code is read in, if any.
    """
    said = str(error)
    if isinstance(error, WithheldNumberError):
        return "That is not a phone number: type the digits the caller gives you."
    if "too long" in said:
        return "That is too long for a phone number: type only the caller's number."
    if "no letters" in said:
        return (
            "A phone number has no letters: type only its digits (spaces, dashes, dots and "
            "brackets are fine)."
        )
    if not has_country_code(typed):
        name = country_name(region)
        if name is None:
            return (
                "This number has no country code. Choose the country your callers' numbers "
                "are from (asked once), or type the number with its country code (+44 ...)."
            )
        return (
            f"That is not a number of {name}: check the digits. A number from another "
            "country needs its country code (+44 ...)."
        )
    return "That is not a valid phone number: check the digits, and the country code after the +."


def time_element(value: datetime | None) -> Markup | str:
    """A moment for a page: a ``<time>`` in UTC, which the console's script shows in the
    browser's own time zone (UTC stays in its title, on hover)."""
    if value is None:
        return "-"
    utc = value.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"), text, text
    )
