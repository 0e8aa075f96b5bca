"""Running a coroutine that does not suspend to its end, synchronously, where a task would
come too late (an agent's updates before LiveKit starts it)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from .log import logger

__all__ = ["run_now"]


def run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that does not suspend to its end, right here. Should it suspend after
    all (a LiveKit release that changed it), it is finished as a task instead.

    For the updates of an agent that has not started: ``Agent.update_chat_ctx`` and
    ``update_tools`` then finish without suspending, and a task would race LiveKit's start of
    the agent."""
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return
    logger.warning("an agent update suspended; finishing it in the background")
    asyncio.get_running_loop().create_task(_resume(coroutine, awaited))


async def _resume(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    # Drive a coroutine already started by hand: wait for what it is waiting on (a future, or
    # None for a bare yield), then let it go on.
    while True:
        if awaited is None:
            await asyncio.sleep(0)
        else:
            await asyncio.wait([awaited])
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return
