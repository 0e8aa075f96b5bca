"""Deadlines that cost little on the hot path, and are armed once however deep the calls go.

``asyncio.wait_for`` runs its coroutine in a task of its own: about 13 µs per call here, a tenth
of the call-start lookup, and redis-py pays it on every command sent when the client has a
``socket_timeout``. So the Redis client has none, and every store operation runs under a
:class:`deadline` instead: ``asyncio.timeout`` (Python 3.11+), which only arms a timer, or on
Python 3.10 ``async_timeout``, its backport (a dependency of redis-py there).

A call's work is bounded once, by the caller (the lookup budget, the save's window); the store
operations inside it do not arm timers of their own (``unless_bounded``), and a silent server
is abandoned when the caller's time is up, retries and reconnects included.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

__all__ = ["deadline", "within"]

_T = TypeVar("_T")
_bounded: ContextVar[bool] = ContextVar("caller_memory_bounded", default=False)


class deadline:  # noqa: N801 - used like asyncio.timeout
    """Cancel the block after ``seconds``: it then raises ``TimeoutError``
    (``asyncio.TimeoutError`` is the same class since Python 3.11).

    Args:
        seconds: The time the block gets.
        unless_bounded: Arm nothing when an enclosing :class:`deadline` bounds the block
            already (its time then applies).
    """

    __slots__ = ("_seconds", "_timeout", "_token", "_unless_bounded")

    def __init__(self, seconds: float, *, unless_bounded: bool = False) -> None:
        self._seconds = seconds
        self._unless_bounded = unless_bounded
        self._timeout: Any = None
        self._token: Token[bool] | None = None

    async def __aenter__(self) -> None:
        if self._unless_bounded and _bounded.get():
            return
        self._token = _bounded.set(True)
        self._timeout = _timeout(self._seconds)
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._timeout is None:
            return None
        assert self._token is not None
        _bounded.reset(self._token)
        try:
            result: bool | None = await self._timeout.__aexit__(exc_type, exc, tb)
        except asyncio.TimeoutError as e:
            if sys.version_info >= (3, 11):  # the same class as TimeoutError
                raise
            # Python 3.10: asyncio's own class; every caller catches the builtin one.
            raise TimeoutError() from e
        return result


async def within(seconds: float, awaitable: Awaitable[_T]) -> _T:
    """``await awaitable``, cancelled after ``seconds``.

    Raises:
        TimeoutError: It took longer.
    """
    async with deadline(seconds):
        return await awaitable
