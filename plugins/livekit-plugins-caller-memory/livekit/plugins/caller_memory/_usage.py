"""The commands' argument parser: a command line it cannot understand is one line, exit 2;
and the ``caller-memory`` command line it reads."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .privacy import MAX_REASON
from .store.keys import is_user_id
from .version import __version__

__all__ = ["OneLineParser", "caller_memory_parser"]


class OneLineParser(argparse.ArgumentParser):
    """``argparse``, except that an error is one line naming the argument (no usage block):
    ``❌ caller-memory serve: argument --port: must be ... (caller-memory serve --help)``."""

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, except that an unknown option before the command is named
        (argparse would only say that the command is missing)."""
        given = list(sys.argv[1:] if args is None else args)
        known = {option for action in self._actions for option in action.option_strings}
        for arg in given if self._subparsers is not None else ():
            if not arg.startswith("-") or arg == "-":
                break  # the command: its own parser judges what follows
            flags = arg.split("=", 1)[0]
            short = flags[1:].isalpha() and not flags.startswith("--")
            if flags not in known and not (short and all(f"-{c}" in known for c in flags[1:])):
                self.error(f"unrecognized arguments: {arg}")
        return super().parse_args(given, namespace)

    def error(self, message: str) -> NoReturn:
        """Print the one line and exit 2."""
        self.exit(2, f"❌ {self.prog}: {message} (see {self.prog} --help)\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """As argparse's, to standard error."""
        if message:
            sys.stderr.write(message)
        sys.exit(status)


def _add_verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log what happens (INFO; -vv: DEBUG) and show tracebacks",
    )


def _add_operator(parser: argparse.ArgumentParser, does: str) -> None:
    parser.add_argument(
        "--operator",
        default=None,
        help=f"who {does}, for the audit log (default: your login name)",
    )


def _user_id(value: str) -> str:
    # A typo, an empty id or a path is refused before anything is written.
    if not is_user_id(value):
        raise argparse.ArgumentTypeError(
            "not a user id: letters, digits, - and _ as `caller-memory requests` lists them"
        )
    return value


def caller_memory_parser() -> argparse.ArgumentParser:
    """The ``caller-memory`` command line: its options and commands (:mod:`.cli` runs them)."""
    parser = OneLineParser(
        prog="caller-memory",
        description="Check and look after the caller-memory store (settings from the "
        "environment and .env: REDIS_URL, REDIS_HOST, ..., MEMORY_*).",
    )
    _add_verbose(parser, 0)
    parser.add_argument("--version", action="version", version=f"caller-memory {__version__}")
    # -v is accepted after the command too (`caller-memory check -v`); SUPPRESS keeps a
    # command's parser from resetting a -v given before it.
    common = OneLineParser(add_help=False)
    _add_verbose(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "check", parents=[common], help="connect, print the latency, create a test identity"
    )
    forget = commands.add_parser(
        "forget",
        parents=[common],
        help="erase everything held about a caller (every key, and the outbox), audited",
    )
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("number", nargs="?", help="the caller's number, any spelling; - reads stdin")
    who.add_argument(
        "--user-id",
        type=_user_id,
        help="the caller's user id (from `caller-memory requests`)",
    )
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_operator(forget, "erases")
    commands.add_parser(
        "requests",
        parents=[common],
        help="list the erasures callers asked for on a call, unverified",
    )
    export = commands.add_parser(
        "export",
        parents=[common],
        help="print everything held about a caller as JSON (subject access), audited",
    )
    export.add_argument("number", help="the caller's number, any spelling; - reads stdin")
    _add_operator(export, "exports")
    withdraw = commands.add_parser(
        "withdraw-fact",
        parents=[common],
        help="withdraw one wrong fact of a caller (the agent no longer hears it), audited",
    )
    withdraw.add_argument("number", help="the caller's number, any spelling; - reads stdin")
    withdraw.add_argument("fact_id", type=int, help="the fact's id (as `export` shows it)")
    withdraw.add_argument(
        "--reason",
        required=True,
        help=f"why it is wrong, for the audit log (up to {MAX_REASON} characters; "
        "no caller data: not the fact itself, nor a number)",
    )
    _add_operator(withdraw, "withdraws it")
    commands.add_parser(
        "stats",
        parents=[common],
        help="callers, sessions, memory, outbox depth, keys by kind and keys without a TTL",
    )
    commands.add_parser(
        "serve",
        help="the operator console in a browser: find, export and erase callers, withdraw a "
        "wrong fact, see health (needs the console extra; caller-memory serve --help)",
        add_help=False,
    )
    commands.add_parser(
        "flush",
        parents=[common],
        help="write the calls kept in the local outbox to Redis, and recover the calls of "
        "workers that died mid-call",
    )
    return parser
