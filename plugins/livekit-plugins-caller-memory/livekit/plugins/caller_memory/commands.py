"""How the command-line tools (``caller-memory`` and Sarah's ``sarah``) report an error and
exit: one line saying what to fix, the traceback only when asked."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from .exceptions import CallerMemoryError

__all__ = ["error_line", "run_command"]


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
        code = body()
        sys.stdout.flush()  # a closed pipe is found here, not at the interpreter's exit
        return code
    except KeyboardInterrupt:
        print(f"{lead}interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing to say, and nothing more to print. The
        # interpreter's last flush of stdout must not fail again (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process SIGPIPE ended
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
