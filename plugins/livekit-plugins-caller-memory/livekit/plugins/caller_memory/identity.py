"""Who is calling: phone numbers normalized to E.164, then keyed with HMAC-SHA256.

The raw number never leaves this module: Redis sees only ``hmac(secret, e164)``, so a dump of the
database does not reveal who called, and without the secret a number cannot be checked against
it by brute force (a plain SHA-256 of a phone number can: there are only ~10^11 of them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import phonenumbers

from .exceptions import InvalidPhoneNumberError
from .log import logger

if TYPE_CHECKING:
    from .config import RedisConfig

__all__ = ["PhoneHasher", "load_dev_secret", "load_hasher", "normalize_phone"]

_MAX_INPUT = 64
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
"""E.164: a plus, then 7 to 15 ASCII digits, the first not 0."""
_HASH_BYTES = 16
"""128 bits of the HMAC: collisions are out of reach for any caller base, and keys stay short."""


def normalize_phone(raw: str, *, default_region: str = "US") -> str:
    """Normalize a phone number in any common spelling to E.164.

    Args:
        raw: The number as dialled or as a SIP header gives it: ``+1 (555) 010-0000``,
            ``tel:+15550100000``, ``sip:+15550100000@trunk``, ``00 44 20 7946 0000``...
        default_region: ISO 3166 region used when the number has no country code.

    Returns:
        The number in E.164, for example ``+15550100000``.

    Raises:
        InvalidPhoneNumberError: ``raw`` is not a possible phone number. The message does not
            repeat the input, which may be personal data.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumberError("phone number must be a string")
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumberError("phone number is empty")
    if len(text) > _MAX_INPUT:
        raise InvalidPhoneNumberError("phone number is too long")
    text = _strip_uri(text)
    if text.startswith("00"):
        # International call prefix used across Europe and elsewhere.
        text = "+" + text[2:]
    e164 = _parse(text, default_region.upper())
    if e164 is None:
        if not _E164.fullmatch(text):
            raise InvalidPhoneNumberError("not a possible phone number (wrong length or country)")
        # Already E.164, as SIP trunks send it, for a range the metadata does not know (or a
        # test number like the guide's +1234567890): trusted as given rather than refused.
        return text
    # "+31 (0)06 ..." loses one national prefix per pass: normalize until nothing changes, so
    # that every spelling of a number, the E.164 form included, gives the same identity. A
    # number given in its E.164 form (as SIP trunks send it) is there already.
    for _ in range(3 if e164 != text else 0):
        again = _parse(e164, default_region.upper())
        if again is None or again == e164:
            break
        e164 = again
    return e164


def _parse(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumberError("not a phone number") from None
    # IS_POSSIBLE only: a number dialable locally without its area code (7 digits in the US)
    # would give every caller with those digits, in any area, one shared memory.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _E164.fullmatch(e164) else None


def _strip_uri(text: str) -> str:
    lowered = text.lower()
    for scheme in ("tel:", "sip:", "sips:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    # sip:+15550100000@trunk.example;user=phone
    return text.split("@", 1)[0].split(";", 1)[0]


class PhoneHasher:
    """Turns a phone number into the opaque id Redis keys are built from.

    Args:
        secret: The HMAC key. Keep it out of the database: whoever has both can test numbers.
        default_region: Region for numbers written without a country code.
    """

    def __init__(
        self,
        secret: bytes | str,
        *,
        default_region: str = "US",
        previous: Sequence[bytes | str] = (),
    ) -> None:
        self._key = _key(secret, "MEMORY_PHONE_HASH_SECRET")
        self._previous = [_key(p, "MEMORY_PHONE_HASH_PREVIOUS_SECRETS") for p in previous]
        self._region = default_region

    def __repr__(self) -> str:
        return f"PhoneHasher(default_region={self._region!r})"

    def normalize(self, raw: str) -> str:
        """See :func:`normalize_phone`."""
        return normalize_phone(raw, default_region=self._region)

    def hash_e164(self, e164: str) -> str:
        """Keyed hash of a number that is already in E.164."""
        return _hmac(self._key, e164)

    def hash_as_given(self, raw: str) -> str | None:
        """The keyed hash of ``raw`` taken as it is, when it is written in E.164 (``+`` and
        digits, as SIP trunks send it), else None. Not a normalization: when ``raw`` turns out
        to be a possible number in its normal form, this equals :meth:`hash`; a caller uses it
        to start a read-only lookup while :meth:`hashes` checks the number."""
        return _hmac(self._key, raw) if _E164.fullmatch(raw) else None

    def hashes(self, raw: str) -> tuple[str, list[str]]:
        """Normalize ``raw`` once; its keyed hash, and its hashes under the previous secrets
        (for rotation, newest first).

        Raises:
            InvalidPhoneNumberError: ``raw`` is not a phone number.
        """
        e164 = self.normalize(raw)
        return _hmac(self._key, e164), [_hmac(key, e164) for key in self._previous]

    def hash(self, raw: str) -> str:
        """Normalize ``raw`` and return its keyed hash (22 base64url characters).

        Raises:
            InvalidPhoneNumberError: ``raw`` is not a phone number.
        """
        return self.hash_e164(self.normalize(raw))


def _key(secret: bytes | str, variable: str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < 16:
        raise ValueError(f"{variable} must be at least 16 characters long")
    return key


def _hmac(key: bytes, e164: str) -> str:
    digest = hmac.new(key, e164.encode(), hashlib.sha256).digest()[:_HASH_BYTES]
    # base64url: 22 characters where hex takes 32, in every key that names the caller.
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_dev_secret(data_dir: Path) -> bytes:
    """Return the local development secret, creating it on first use.

    Used only when ``MEMORY_PHONE_HASH_SECRET`` is not set. The secret is random, kept in
    ``data_dir/phone-hash.secret`` with mode 0600, and stable across restarts so a caller keeps
    their identity on this machine. It is not shared with other machines: set the variable in
    production, or every worker would key callers differently.
    """
    path = data_dir / "phone-hash.secret"
    logger.warning(
        "MEMORY_PHONE_HASH_SECRET is not set: using the development secret in %s. "
        "Set MEMORY_PHONE_HASH_SECRET (32+ random characters) in production, the same on "
        "every worker, or callers will not be recognized across machines.",
        path,
    )
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker created it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def load_hasher(config: RedisConfig) -> PhoneHasher:
    """The hasher the settings ask for: ``MEMORY_PHONE_HASH_SECRET`` (and the previous
    secrets), or the development secret when none is set.

    Raises:
        ConfigError: ``MEMORY_REQUIRE_SECRET`` is on and no secret is set.
    """
    config.check_secret()
    secret = config.phone_hash_secret
    if secret is not None:
        key = secret.get_secret_value().encode()
    else:
        key = load_dev_secret(config.data_dir)
    return PhoneHasher(key, default_region=config.default_region, previous=config.previous_secrets)
