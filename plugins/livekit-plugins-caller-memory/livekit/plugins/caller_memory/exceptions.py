"""The plugin's errors: one base class, and ``ValueError`` for what a caller passed wrong."""

from __future__ import annotations

__all__ = [
    "CallerMemoryError",
    "ConfigError",
    "InvalidPhoneNumberError",
    "StoreUnavailableError",
]


class CallerMemoryError(Exception):
    """Base class of every error raised by caller memory."""


class ConfigError(CallerMemoryError, ValueError):
    """A setting has a value that cannot be used; the message names the variable to fix."""


class InvalidPhoneNumberError(CallerMemoryError, ValueError):
    """A string is not a phone number. The message never repeats the string: it may be one."""


class StoreUnavailableError(CallerMemoryError):
    """The memory store cannot be reached; the message carries the troubleshooting hint."""
