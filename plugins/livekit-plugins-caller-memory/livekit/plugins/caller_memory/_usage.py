"""The commands' argument parser: a command line it cannot understand is one line, exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """``argparse``, except that an error is one line naming the argument (no usage block):
    ``❌ caller-memory serve: argument --port: must be ... (caller-memory serve --help)``."""

    def error(self, message: str) -> NoReturn:
        """Print the one line and exit 2."""
        self.exit(2, f"❌ {self.prog}: {message} (see {self.prog} --help)\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """As argparse's, to standard error."""
        if message:
            sys.stderr.write(message)
        sys.exit(status)
