"""The commands' argument parser: a command line it cannot understand is one line, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["OneLineParser"]


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
        for arg in given:
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
