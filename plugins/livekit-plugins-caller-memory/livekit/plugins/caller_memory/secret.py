"""The phone-hash secret: how strong it must be, one way to read it, and the development one.

Whoever holds the secret and a copy of Redis can test phone numbers against the stored hashes:
every US and Canadian number in a few hours on one core. So the secret is refused at start-up
unless it is long (32+ characters) and hard to guess: zxcvbn, Dropbox's estimator of password
strength, must put it at 10^30 guesses or more (about 100 bits; ``secrets.token_hex(32)`` is
10^63). Every secret is read the same way: surrounding whitespace (a trailing newline from a
file or a shell) is not part of it, and neither is one pair of matching quotes around it
(``"..."`` or ``'...'``): a shell, ``.env`` and Docker Compose take them off, ``docker run
--env-file`` and a Kubernetes manifest's ``value: "'...'"`` keep them, and the workers of one
fleet must key callers alike whichever started them. Quotes are taken off with a warning; callers
saved under the quoted form (plugin 0.1) are moved at their next call.

Without ``MEMORY_PHONE_HASH_SECRET``, a random development secret is made once per user (not per
folder: ``caller-memory forget`` run from anywhere finds the same callers), in the user's config
folder, 0700, the file 0600; a file that others can read is refused.
"""

from __future__ import annotations

import functools
import os
import secrets
import stat
from pathlib import Path

from platformdirs import user_config_path
from zxcvbn import zxcvbn

from ._folders import private_folder
from .exceptions import ConfigError
from .log import logger, once

__all__ = [
    "DEV_SECRET_WARNING",
    "MIN_GUESSES_LOG10",
    "MIN_LENGTH",
    "dev_secret_path",
    "earlier_keys",
    "is_quoted",
    "load_dev_secret",
    "secret_bytes",
    "weakness",
]

MIN_LENGTH = 32
"""The shortest secret accepted; the README, the warning and the errors all say this number."""
MIN_GUESSES_LOG10 = 30.0
DEV_SECRET_WARNING = (
    "MEMORY_PHONE_HASH_SECRET is not set: using this machine's development secret (%s). "
    f"Set MEMORY_PHONE_HASH_SECRET ({MIN_LENGTH}+ random characters) in production, the same "
    "on every worker, or callers will not be recognized across machines."
)
"""Logged once per process when no secret is set (``%s``: the development secret's file)."""
_KNOWN_WORDS = [
    "memory_phone_hash_secret",
    "memory",
    "phone",
    "hash",
    "secret",
    "caller",
    "livekit",
    "sarah",
    "redis",
]


def secret_bytes(secret: bytes | str) -> bytes:
    """A secret as the HMAC key: encoded, without surrounding whitespace nor one pair of
    matching quotes around it."""
    value = (secret.encode() if isinstance(secret, str) else secret).strip()
    if len(value) >= 2 and value[:1] == value[-1:] and value[:1] in (b'"', b"'"):
        value = value[1:-1].strip()
    return value


def is_quoted(secret: str) -> bool:
    """True when ``secret`` is written with a pair of matching quotes around it (which
    :func:`secret_bytes` takes off)."""
    value = secret.strip()
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"


def earlier_keys(current: str | None, previous: str | None) -> list[bytes]:
    """The HMAC keys callers may have been saved under, newest first: those of the comma
    separated ``previous`` secrets, and the 0.1 forms of ``current``.

    A current secret given with surrounding whitespace (a trailing newline) or quotes was used
    as given by the plugin 0.1; it now counts without them, and its 0.1 forms come first, so
    that those callers are moved rather than lost.
    """
    found: list[bytes] = []

    def add(key: bytes) -> None:
        if key not in found:
            found.append(key)

    if current is not None:
        raw = current.encode()
        # As the plugin 0.1 used it: as given, then without whitespace (quotes kept).
        for earlier in (raw, raw.strip()):
            if earlier != secret_bytes(raw):
                add(earlier)
    if previous is not None:
        for item in previous.split(","):
            if item.strip():
                add(secret_bytes(item))
                add(item.strip().encode())  # its quoted form, if it had quotes
    return found


@functools.lru_cache(maxsize=8)
def weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak for a phone-hash secret, or None when it is strong enough.
    Never repeats the secret. Remembered: the settings check it, then the hasher, and zxcvbn
    takes ~16 ms, which a job process's first call would wait for."""
    value = secret_bytes(secret).decode(errors="replace")
    if len(value) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters long"
    estimate = zxcvbn(value[:100], user_inputs=_KNOWN_WORDS)
    if float(estimate["guesses_log10"]) < MIN_GUESSES_LOG10:
        return (
            "is too easy to guess (repeated or common characters, words, sequences): use "
            f"{MIN_LENGTH}+ random characters, e.g. "
            'python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return None


def dev_secret_path() -> Path:
    """Where the development secret is kept: the user's config folder (``$XDG_CONFIG_HOME``
    or ``~/.config`` on Linux)."""
    return user_config_path("caller-memory") / "phone-hash.secret"


def load_dev_secret() -> bytes:
    """The development secret, made on first use.

    Raises:
        ConfigError: The secret file can be read by other users.
    """
    path = dev_secret_path()
    if once("dev-secret"):  # every store and manager of the process loads it: say it once
        logger.warning(DEV_SECRET_WARNING, path)
    private_folder(path.parent)
    try:
        return _read_private(path)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker made it first
        return _read_private(path)
    secret = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def _read_private(path: Path) -> bytes:
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the development phone-hash secret {path} can be read by other users: "
            "chmod 600 it if it is yours, or delete it to make a new one"
        )
    return secret_bytes(path.read_bytes())
