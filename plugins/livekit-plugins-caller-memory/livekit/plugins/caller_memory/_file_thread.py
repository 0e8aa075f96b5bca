"""The one thread of a process that does the outbox's file work, in the order it is asked for
(:mod:`.outbox`): the event loop never waits on a disk."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["file_thread", "off_loop", "on_thread"]

_T = TypeVar("_T")

_thread_lock = threading.Lock()
_thread: ThreadPoolExecutor | None = None
_thread_pid = 0


def file_thread() -> ThreadPoolExecutor:
    """The thread that does every outbox file operation of this process, one at a time.

    One thread, not a pool: two writes of one call (the copy kept at shutdown, then the save's
    own) land in the order they were asked for. A process forked from this one (LiveKit's job
    processes) makes its own: a thread does not survive a fork.
    """
    global _thread, _thread_pid
    with _thread_lock:
        if _thread is None or _thread_pid != os.getpid():
            _thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caller_memory.outbox")
            _thread_pid = os.getpid()
        return _thread


async def off_loop(work: Callable[..., _T], *args: object) -> _T:
    """``work(*args)`` on the file thread, awaited from the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(file_thread(), functools.partial(work, *args))


def on_thread(work: Callable[..., _T], *args: object) -> _T:
    """``work(*args)`` on the file thread, blocking: for code outside the loop (or shutdown
    code), still in the thread's order (a write asked for before it lands first)."""
    return file_thread().submit(work, *args).result()
