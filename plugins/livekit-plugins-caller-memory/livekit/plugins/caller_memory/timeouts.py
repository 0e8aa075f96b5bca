"""Deadlines that cost little on the hot path, and are armed once however deep the calls go.

``asyncio.wait_for`` runs its coroutine in a task of its own: about 13 µs per call here, a tenth
of the call-start lookup, and redis-py pays it on every command sent when the client has a
``socket_timeout``. So the Redis client has none, and every store operation runs under a
:class:`deadline` instead: ``asyncio.timeout`` (Python 3.11+), which only arms a timer, or on
Python 3.10 ``async_timeout``, its backport (a dependency of redis-py there).

A call's work is bounded once, by the caller (the lookup budget, the save's window); the store
operations inside it do not arm timers of their own (``unless_bounded``), and a silent server
is abandoned when the caller's time is up, retries and reconnects included.

A deadline that passes names its cause when it is not the network's (issue 20: both were
logged as "check the host is reachable"): :class:`LoopLateTimeout` when this process's event
loop ran its timer far past the deadline (the worker's CPU was busy: a reply may well have been
there, unread), :class:`ContendedTimeout` when the work was waiting for another call of the
same caller, or had spent half its time so (:func:`waiting_on`). Both subclass
``TimeoutError``: every ``except TimeoutError`` still catches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Iterator
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout as _timeout

__all__ = [
    "CONTENDED_SHARE",
    "CONTENTION",
    "ContendedTimeout",
    "LoopLateTimeout",
    "deadline",
    "waiting_on",
    "within",
]

_T = TypeVar("_T")
_current: ContextVar[deadline | None] = ContextVar("caller_memory_deadline", default=None)

CONTENTION = "contention"
"""What :func:`waiting_on` says while a call waits for another call of the same caller."""

CONTENDED_SHARE = 0.5
"""A deadline that passes after this share of its time, or more, was spent waiting for another
call of the same caller (or while still waiting) names the contention."""

LATE_FLOOR_S = 0.05
"""A loop this late, or later, at a deadline may be the CPU's doing..."""
LATE_SHARE = 0.25
"""...when it is also this share of the deadline's time: a silent network for 7 s with the loop
100 ms late is the network's timeout; 300 ms of budget with the loop 700 ms late is the CPU's."""


class LoopLateTimeout(TimeoutError):
    """A deadline passed while this process's event loop was busy elsewhere: its timer ran
    ``late_ms`` after the deadline. The cause is the worker's CPU (blocking code on the loop,
    too many jobs for the cores), not Redis nor the network."""

    def __init__(self, late_ms: int) -> None:
        super().__init__(f"the worker's CPU was busy: the event loop ran {late_ms} ms late")
        self.late_ms = late_ms


class ContendedTimeout(TimeoutError):
    """A deadline passed after the work spent much of its time waiting for another call of the
    same caller (``waited_ms``): the caller's record was held (this process's lock), or changed
    by the other call again and again."""

    def __init__(self, waited_ms: int) -> None:
        super().__init__("another call of this caller held the record")
        self.waited_ms = waited_ms


@contextlib.contextmanager
def waiting_on(reason: str) -> Iterator[None]:
    """Count the time of this block as spent waiting on ``reason`` (:data:`CONTENTION`) by the
    enclosing :class:`deadline`: should it pass with :data:`CONTENDED_SHARE` of its time or
    more spent so, or during the block, it raises :class:`ContendedTimeout`. Costs nothing
    when no deadline bounds the block."""
    current = _current.get()
    if current is None or reason != CONTENTION:
        yield
        return
    loop = asyncio.get_running_loop()
    current._contended_since = started = loop.time()
    try:
        yield
    except asyncio.CancelledError:
        # The deadline passing, most likely: the wait is still on when its exit looks.
        raise
    except BaseException:
        current._end_wait(started, loop.time())
        raise
    current._end_wait(started, loop.time())


class deadline:  # noqa: N801 - used like asyncio.timeout
    """Cancel the block after ``seconds``: it then raises ``TimeoutError``
    (``asyncio.TimeoutError`` is the same class since Python 3.11).

    Args:
        seconds: The time the block gets.
        unless_bounded: Arm nothing when an enclosing :class:`deadline` bounds the block
            already (its time then applies).
    """

    __slots__ = (
        "_contended_s",
        "_contended_since",
        "_seconds",
        "_timeout",
        "_token",
        "_unless_bounded",
        "_when",
    )

    def __init__(self, seconds: float, *, unless_bounded: bool = False) -> None:
        self._seconds = seconds
        self._unless_bounded = unless_bounded
        self._timeout: Any = None
        self._token: Token[deadline | None] | None = None
        self._contended_s = 0.0
        self._contended_since: float | None = None
        self._when = 0.0

    async def __aenter__(self) -> None:
        if self._unless_bounded and _current.get() is not None:
            return
        self._token = _current.set(self)
        self._when = asyncio.get_running_loop().time() + self._seconds
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
        _current.reset(self._token)
        try:
            result: bool | None = await self._timeout.__aexit__(exc_type, exc, tb)
        except asyncio.TimeoutError as e:
            named = self._cause()
            if named is not None:
                raise named from e
            if sys.version_info >= (3, 11):  # the same class as TimeoutError
                raise
            # Python 3.10: asyncio's own class; every caller catches the builtin one.
            raise TimeoutError() from e
        return result

    def _cause(self) -> TimeoutError | None:
        """The cause of this deadline's passing, when it is this process's own."""
        now = asyncio.get_running_loop().time()
        late = now - self._when
        if late >= max(LATE_FLOOR_S, self._seconds * LATE_SHARE):
            return LoopLateTimeout(round(late * 1000))
        since = self._contended_since
        waited = self._contended_s + (0.0 if since is None else now - since)
        if since is not None or waited >= self._seconds * CONTENDED_SHARE:
            return ContendedTimeout(round(waited * 1000))
        return None

    def _end_wait(self, started: float, ended: float) -> None:
        self._contended_s += ended - started
        self._contended_since = None


async def within(seconds: float, awaitable: Awaitable[_T]) -> _T:
    """``await awaitable``, cancelled after ``seconds``.

    Raises:
        TimeoutError: It took longer.
    """
    async with deadline(seconds):
        return await awaitable
