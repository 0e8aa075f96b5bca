"""Progress of long work for the commands: a bar on a terminal, plain lines otherwise.

The bar is `rich`'s (already installed with LiveKit Agents, whose CLI uses it). It is drawn
only when standard output is a terminal, and goes away when the work is done; what the command
prints meanwhile appears above it. Piped or redirected, a command prints a plain line to
standard error at each tenth of the work instead, so logs and CI output stay readable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["on_terminal", "progress"]

_PLAIN_STEPS = 10
"""Plain lines per piece of work: one at each tenth."""
_PLAIN_EVERY = 10_000
"""With no known total, a plain line every this many units."""


def on_terminal() -> bool:
    """True when standard output is a terminal that can draw a bar."""
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def progress(
    total: int | None, what: str, *, plain: bool = True
) -> Iterator[Callable[[int], None]]:
    """Show the progress of ``total`` units of ``what`` ("calls", "keys").

    Args:
        total: How many units; None when unknown (the bar then counts without an end); 0
            for no bar.
        what: What is counted, shown next to the bar and in the plain lines.
        plain: Off a terminal, print ``what: done/total`` lines to standard error; False when
            the command's own output already shows its progress.

    Yields:
        ``advance(n)``: ``n`` more units are done.
    """
    if on_terminal() and total != 0:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        # soft_wrap: what the command prints meanwhile goes above the bar as printed, with
        # no line breaks of rich's; highlight off: no colours rich would guess for it.
        console = Console(soft_wrap=True, highlight=False)
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(what, total=total)

            def step_bar(n: int = 1) -> None:
                bar.advance(task, n)

            yield step_bar
        return
    if not plain:
        yield _nothing
        return
    done = 0
    step = max(1, -(-total // _PLAIN_STEPS)) if total else _PLAIN_EVERY
    shown = 0

    def advance(n: int = 1) -> None:
        nonlocal done, shown
        done += n
        if done // step > shown:
            shown = done // step
            print(f"{what}: {done}/{total}" if total else f"{what}: {done}", file=sys.stderr)

    yield advance


def _nothing(n: int = 1) -> None:
    """Progress nobody is shown."""
