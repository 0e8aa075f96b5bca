"""Waiting for what happens in the background, without fixed sleeps.

A loaded machine makes any fixed sleep too short some day: tests poll for the state they need
instead, with a deadline far beyond what an idle machine takes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, timeout: float = 20.0, what: str = ""
) -> None:
    """Poll ``check`` until it is true.

    Raises:
        AssertionError: ``check`` stayed false for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout:g} s: {what or check}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
