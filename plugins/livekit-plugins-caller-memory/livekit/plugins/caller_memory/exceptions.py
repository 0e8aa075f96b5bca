"""The plugin's errors: one base class, and ``ValueError`` for what a caller passed wrong."""

from __future__ import annotations

__all__ = [
    "CallerErasedError",
    "CallerMemoryError",
    "ConfigError",
    "InvalidPhoneNumberError",
    "StoreUnavailableError",
    "WithheldNumberError",
]


class CallerMemoryError(Exception):
    """Base class of every error raised by caller memory."""


class ConfigError(CallerMemoryError, ValueError):
    """A setting has a value that cannot be used; the message names the variable to fix."""


class InvalidPhoneNumberError(CallerMemoryError, ValueError):
    """A string is not a phone number. The message never repeats the string: it may be one."""


class WithheldNumberError(InvalidPhoneNumberError):
    """The caller id says the number is withheld (``anonymous``, a carrier's placeholder)."""


class CallerErasedError(CallerMemoryError):
    """The caller was erased after the call began: the call is not saved."""


class StoreUnavailableError(CallerMemoryError):
    """The memory store cannot be reached; the message carries the troubleshooting hint."""
