"""Who is calling: phone numbers checked and normalized to E.164, then keyed with HMAC-SHA256.

The raw number never leaves this module: Redis sees only ``hmac(secret, e164)``, so a dump of the
database does not tell who called, and without the secret a number cannot be checked against it.
With the secret it can: see the README on what a leaked secret costs.

A caller id is taken for an identity only when it is a real number: a valid one for its country
(``phonenumbers``' numbering plans), written with its country code (or with
``MEMORY_DEFAULT_REGION`` set deliberately for national numbers), with no letters, and not one of
the placeholders carriers put in place of a withheld caller id (``anonymous``, ``+266696687``
"ANONYMOUS" on a keypad...): every withheld caller would otherwise share one memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import phonenumbers

from .exceptions import InvalidPhoneNumberError, WithheldNumberError
from .secret import load_dev_secret, secret_bytes, weakness

if TYPE_CHECKING:
    from .config import RedisConfig

__all__ = [
    "PhoneHasher",
    "has_country_code",
    "in_region",
    "in_trunk_region",
    "trunk_region",
    "is_withheld",
    "load_hasher",
    "normalize_phone",
    "number_part",
]

_MAX_INPUT = 64
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
"""E.164: a plus, then 7 to 15 ASCII digits, the first not 0."""
_HASH_BYTES = 16
"""128 bits of the HMAC: collisions are out of reach for any caller base, and keys stay short."""

WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unavailable", "unknown", "private", "blocked", "withheld"}
)
"""Caller ids that say there is none (RFC 3261 and carriers' alpha strings)."""
WITHHELD_DIGITS = frozenset(
    {
        "266696687",  # ANONYMOUS on a keypad (Twilio's translation of withheld caller ids)
        "7378742833",  # RESTRICTED
        "8656696",  # UNKNOWN
        "2562533",  # BLOCKED
        "86282452253",  # UNAVAILABLE
        "7748283",  # PRIVATE
        "0000000000",  # 2600Hz/Kazoo's privacy number
    }
)
"""Digits carriers send in place of a withheld caller id."""
_LETTERS = re.compile(r"[^\W\d_]")


def is_withheld(raw: str) -> bool:
    """True when a caller id says the number is withheld (or is empty)."""
    text = raw.strip().lower()
    if not text:
        return True
    if "@anonymous.invalid" in text:  # sip:anonymous@anonymous.invalid (RFC 5767)
        return True
    text = _strip_uri(text)
    if text.strip(" +") in WITHHELD_WORDS:
        return True
    digits = re.sub(r"\D", "", text)
    return digits in WITHHELD_DIGITS


_PUNCTUATION = frozenset("+()-./–—")
"""What a phone number is written with besides digits and spaces (any script's digits)."""
_SHORTEST_NATIONAL = 5
"""Fewer digits make no caller's number anywhere (Saint Helena's have five)."""
_SHORTEST_CALLER_ID = 7
"""With no region to read them in, fewer digits are an extension ("1001", "12345"), not a
national number a region would make valid."""


def normalize_phone(raw: str, *, default_region: str | None = None, strict: bool = True) -> str:
    """Check a phone number in any common spelling and normalize it to E.164.

    Args:
        raw: The number as dialled or as a SIP header gives it: ``+1 (415) 555-0134``,
            ``tel:+14155550134``, ``sip:+14155550134@trunk;user=phone``, ``0044 20 7946 0958``.
        default_region: ISO 3166 region for numbers written without their country code; None
            refuses them (``2079460958`` is a London number written nationally, and a Maine one
            read as American).
        strict: Refuse numbers that no numbering plan holds. False accepts any E.164 string
            as given (an app's own test numbers, such as the guide's ``+1234567890``).

    Returns:
        The number in E.164, for example ``+14155550134``.

    Raises:
        WithheldNumberError: The caller id says the number is withheld.
        InvalidPhoneNumberError: ``raw`` is not a phone number. The message does not repeat
            the input, which may be personal data.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumberError("phone number must be a string")
    if len(raw) > _MAX_INPUT:
        raise InvalidPhoneNumberError("phone number is too long")
    if is_withheld(raw):
        raise WithheldNumberError("the caller id is withheld")
    text = _strip_uri(raw.strip())
    if _LETTERS.search(text):
        raise InvalidPhoneNumberError("a phone number has no letters")
    if any(not (c.isdigit() or c.isspace() or c in _PUNCTUATION) for c in text):
        raise InvalidPhoneNumberError("a phone number holds only digits, spaces and + ( ) - . /")
    if text.startswith("00"):
        text = "+" + text[2:]  # the international call prefix of Europe and elsewhere
    shortest = _SHORTEST_NATIONAL if default_region else _SHORTEST_CALLER_ID
    if not text.startswith("+") and sum(c.isdigit() for c in text) < shortest:
        # A PBX extension ("1001") or a short code: no region would make it a caller's number.
        raise InvalidPhoneNumberError("not a valid phone number (an extension or a short code?)")
    if not text.startswith("+") and default_region is None:
        raise InvalidPhoneNumberError(
            "the number has no country code; set MEMORY_DEFAULT_REGION to accept national "
            "numbers of one country"
        )
    e164 = _parse(text, default_region, strict)
    if e164 is None:
        if strict or not _E164.fullmatch(text):
            raise InvalidPhoneNumberError("not a valid phone number")
        return text
    # "+31 (0)06 ..." loses one national prefix per pass: normalize until nothing changes, so
    # that every spelling of a number, the E.164 form included, gives the same identity. A
    # number given in its E.164 form (as SIP trunks send it) is there already.
    for _ in range(3 if e164 != text else 0):
        again = _parse(e164, default_region, strict)
        if again is None or again == e164:
            break
        e164 = again
    return e164


def _parse(text: str, region: str | None, strict: bool) -> str | None:
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumberError("not a phone number") from None
    number = _one_form(number)
    if strict:
        if not phonenumbers.is_valid_number(number):
            return None
    # Possible, not merely parseable: a number dialable locally without its area code (7
    # digits in the US) would give every caller with those digits, in any area, one memory.
    elif phonenumbers.is_possible_number_with_reason(number) != (
        phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.fullmatch(e164) else None


def _one_form(number: phonenumbers.PhoneNumber) -> phonenumbers.PhoneNumber:
    """One identity for the spellings carriers still send of one number."""
    national = str(number.national_number)
    # Mexico dropped the "1" its mobile numbers took after +52 (2019); some carriers still
    # send it: +52 1 55 1234 5678 and +52 55 1234 5678 are one caller.
    if number.country_code == 52 and len(national) == 11 and national.startswith("1"):
        return phonenumbers.PhoneNumber(country_code=52, national_number=int(national[1:]))
    return number


_EXTENSION = re.compile(r"\s*(?:ext(?:ension)?\.?|x|#)\s*\d{1,7}\s*$", re.IGNORECASE)
"""An extension written after the number ("ext. 12", "x12", "#12"): the line is the number."""


def number_part(raw: str) -> str:
    """The part of a caller id that is the number: without a URI's scheme and parameters
    (``sip:+1...@trunk;user=phone``) or an extension written after it (``ext. 12``)."""
    return _strip_uri(raw.strip())


def _strip_uri(text: str) -> str:
    lowered = text.lower()
    for scheme in ("tel:", "sip:", "sips:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    # sip:+15550100000@trunk.example;user=phone, and a ;verstat=... some carriers put in the
    # user part: both are not the number; nor is an extension after it.
    return _EXTENSION.sub("", text.split("@", 1)[0].split(";", 1)[0])


def in_trunk_region(number: str, trunk_number: str | None) -> str:
    """``number`` in E.164 when it is written without its country code and the trunk that
    took the call has an E.164 number: read in the trunk's region (a US trunk's
    ``4155550134`` is ``+14155550134``). Anything else is returned as it is, for
    :func:`normalize_phone` to judge.

    Used when ``MEMORY_DEFAULT_REGION`` is unset. It goes wrong when a carrier sends a foreign
    caller's number without its country code: read in the trunk's region, it names someone
    else there (docs/configuration.md says so).
    """
    if not trunk_number or has_country_code(number):
        return number
    return in_region(number, trunk_region(trunk_number))


def trunk_region(trunk_number: str) -> str | None:
    """The region (ISO 3166: ``US``) whose national numbers :func:`in_trunk_region` reads a
    call's number in, for the trunk number ``trunk_number``; None when it has no region."""
    try:
        trunk = phonenumbers.parse(_strip_uri(trunk_number.strip()), None)
    except phonenumbers.NumberParseException:
        return None
    # The country code's main region when the trunk's own number is not in the plan (a test
    # trunk's +1 555 ...): national numbers are read alike across one country code.
    region = phonenumbers.region_code_for_number(trunk) or (
        phonenumbers.region_code_for_country_code(trunk.country_code or 0)
    )
    return region if region and region != "ZZ" else None


def in_region(number: str, region: str | None) -> str:
    """``number`` in E.164 when it is written without its country code and is a number of
    ``region`` (ISO 3166: ``US``); anything else is returned as it is, for
    :func:`normalize_phone` to judge. The rule of :func:`in_trunk_region`, for a region known
    otherwise (the operator console asks its operator for theirs)."""
    if not region or region == "ZZ" or has_country_code(number):
        return number
    try:
        return normalize_phone(number, default_region=region)
    except InvalidPhoneNumberError:  # withheld, or no number of that region either
        return number


def has_country_code(number: str) -> bool:
    """True when ``number`` is written with its country code (``+1 ...``, ``0044 ...``)."""
    return _strip_uri(number.strip()).startswith(("+", "00"))


class PhoneHasher:
    """Turns a phone number into the opaque id Redis keys are built from.

    Args:
        secret: The HMAC key: 32+ random characters (a weak one raises ``ValueError``, see
            :func:`~.secret.weakness`). Keep it out of the database: whoever has both can test
            numbers.
        default_region: Region for numbers written without a country code (None: refused).
        previous: Earlier secrets, newest first: a caller keyed under one is moved. Each is
            tried as read (without surrounding whitespace and quotes) and, when that differs,
            as given (as the plugin 0.1 used it).
    """

    def __init__(
        self,
        secret: bytes | str,
        *,
        default_region: str | None = None,
        previous: Sequence[bytes | str] = (),
    ) -> None:
        self._key = _key(secret)
        if problem := weakness(self._key.decode(errors="replace")):
            raise ValueError(f"MEMORY_PHONE_HASH_SECRET {problem}")
        self._previous: list[bytes] = []
        for given in previous:
            for key in (_key(given), given.encode() if isinstance(given, str) else given):
                if key and key != self._key and key not in self._previous:
                    self._previous.append(key)
        self._region = default_region

    def __repr__(self) -> str:
        return f"PhoneHasher(default_region={self._region!r})"

    def normalize(self, raw: str, *, strict: bool = True) -> str:
        """See :func:`normalize_phone`."""
        return normalize_phone(raw, default_region=self._region, strict=strict)

    def hash_e164(self, e164: str) -> str:
        """Keyed hash of a number that is already in E.164."""
        return _hmac(self._key, e164)

    def hash_as_given(self, raw: str) -> str | None:
        """The keyed hash of ``raw`` taken as it is, when it is written in E.164 (``+`` and
        digits, as SIP trunks send it), else None. Not a check: when ``raw`` turns out to be a
        valid number in its normal form, this equals :meth:`hash`; a caller uses it to start a
        read-only lookup while :meth:`hashes` checks the number."""
        return _hmac(self._key, raw) if _E164.fullmatch(raw) else None

    def hashes(self, raw: str, *, strict: bool = True) -> tuple[str, list[str]]:
        """Check and normalize ``raw`` once; its keyed hash, and its hashes under the previous
        secrets (for rotation, newest first).

        Raises:
            WithheldNumberError: The caller id says the number is withheld.
            InvalidPhoneNumberError: ``raw`` is not a phone number.
        """
        e164 = self.normalize(raw, strict=strict)
        return _hmac(self._key, e164), [_hmac(key, e164) for key in self._previous]

    def hash(self, raw: str, *, strict: bool = True) -> str:
        """Check and normalize ``raw`` and return its keyed hash (22 base64url characters).

        Raises:
            WithheldNumberError: The caller id says the number is withheld.
            InvalidPhoneNumberError: ``raw`` is not a phone number.
        """
        return self.hash_e164(self.normalize(raw, strict=strict))


def _key(secret: bytes | str) -> bytes:
    return secret_bytes(secret)


def _hmac(key: bytes, e164: str) -> str:
    digest = hmac.new(key, e164.encode(), hashlib.sha256).digest()[:_HASH_BYTES]
    # base64url: 22 characters where hex takes 32, in every key that names the caller.
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_hasher(config: RedisConfig) -> PhoneHasher:
    """The hasher the settings ask for: ``MEMORY_PHONE_HASH_SECRET`` (and the previous
    secrets), or the development secret when none is set.

    Raises:
        ConfigError: ``MEMORY_REQUIRE_SECRET`` is on and no secret is set.
    """
    config.check_secret()
    secret = config.phone_hash_secret
    key = secret.get_secret_value() if secret is not None else load_dev_secret()
    return PhoneHasher(key, default_region=config.default_region, previous=config.previous_secrets)
