"""The plugin's errors: one base class, and ``ValueError`` for what a caller passed wrong."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

__all__ = [
    "CallerErasedError",
    "CallerMemoryError",
    "ConfigError",
    "InvalidPhoneNumberError",
    "StoreUnavailableError",
    "WithheldNumberError",
    "error_line",
    "run_command",
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


def error_line(error: BaseException) -> str:
    """An error as one line for a terminal: a file error names its file, any other gives its
    message with the whitespace folded (at most 600 characters), or its type when it has none.

    Both command-line tools (``caller-memory`` and Sarah's ``sarah``) print errors this way.
    """
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or type(error).__name__}"
    return " ".join(str(error).split())[:600] or type(error).__name__


def run_command(
    body: Callable[[], int],
    *,
    verbose: int,
    expected: tuple[type[BaseException], ...] = (),
    name: str = "",
) -> int:
    """Run a command-line tool's ``body`` and return its exit code: ``body``'s own; 1 with
    one line saying what went wrong (a :class:`CallerMemoryError`, a file error or one of
    ``expected``: something to fix; anything else: a bug, with its type); 130 when interrupted.
    ``verbose`` adds the traceback. ``name`` (``"sarah replay"``) begins each line.

    Both command-line tools (``caller-memory`` and Sarah's ``sarah``) end this way.
    """
    lead = f"{name}: " if name else ""
    to_fix: tuple[type[BaseException], ...] = (CallerMemoryError, OSError, *expected)
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{lead}interrupted", file=sys.stderr)
        return 130
    except to_fix as e:
        if verbose:
            traceback.print_exc()
        print(f"❌ {lead}{error_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if verbose:
            raise
        print(
            f"❌ {lead}unexpected {type(e).__name__}: {error_line(e)} "
            "(run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1
