"""Redaction: what a caller says that must never be stored, removed before anything is kept.

Card numbers (Luhn-checked), national id numbers (US SSN, UK National Insurance), one-time
codes (digits said next to "code", "PIN", "OTP", "verification"...), e-mail addresses and phone
numbers (found with ``phonenumbers``' matcher, so "four one five..." spelled as digits in any
format) are replaced by a tag such as ``[card number]``. Applied to every turn as it is
recorded, so neither the journal, the session data, the summary nor the outbox ever holds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import phonenumbers

__all__ = ["KINDS", "Redactor"]

KINDS = ("card", "national_id", "otp", "email", "phone")
"""Every kind of data the redactor knows; ``MEMORY_REDACT`` picks among them."""

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}[- ]?(?!00)\d{2}[- ]?(?!0000)\d{4}(?!\d)")
_NINO = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
    re.IGNORECASE,
)
_OTP = re.compile(
    r"\b(?:code|pin|otp|passcode|password|verification|one[- ]time)\b[^\d]{0,25}"
    r"((?:\d[ -]?){3,7}\d)(?!\d)",
    re.IGNORECASE,
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "[card number]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)

    return _CARD_CANDIDATE.sub(replace, text)


def _otp(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        start, end = match.span(1)
        whole = match.group(0)
        offset = match.start(0)
        return whole[: start - offset] + "[code]" + whole[end - offset :]

    return _OTP.sub(replace, text)


class Redactor:
    """Removes the chosen kinds of personal data from text.

    Args:
        kinds: Which kinds to remove (see :data:`KINDS`); all of them by default.
        region: Region for phone numbers written without a country code.
    """

    def __init__(self, kinds: Iterable[str] = KINDS, *, region: str = "US") -> None:
        chosen = set(kinds)
        unknown = chosen - set(KINDS)
        if unknown:
            raise ValueError(
                f"MEMORY_REDACT: unknown kind(s) {sorted(unknown)}; choose from {list(KINDS)}"
            )
        self._region = region
        # Order matters: codes and cards before phone numbers, which would claim their digits.
        steps: list[tuple[str, Callable[[str], str]]] = [
            ("email", lambda t: _EMAIL.sub("[email]", t)),
            ("otp", _otp),
            ("card", _cards),
            ("national_id", lambda t: _NINO.sub("[id number]", _SSN.sub("[id number]", t))),
            ("phone", self._phones),
        ]
        self._steps = [step for kind, step in steps if kind in chosen]

    @property
    def enabled(self) -> bool:
        """False when nothing is redacted."""
        return bool(self._steps)

    def __call__(self, text: str) -> str:
        """``text`` with the chosen kinds of personal data replaced by tags."""
        for step in self._steps:
            text = step(text)
        return text

    def _phones(self, text: str) -> str:
        if not any(ch.isdigit() for ch in text):
            return text
        spans = [
            (m.start, m.end)
            for m in phonenumbers.PhoneNumberMatcher(
                text, self._region, leniency=phonenumbers.Leniency.POSSIBLE
            )
        ]
        for start, end in reversed(spans):
            text = text[:start] + "[phone number]" + text[end:]
        return text
