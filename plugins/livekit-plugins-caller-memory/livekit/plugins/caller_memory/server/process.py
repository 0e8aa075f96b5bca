"""A child server process that dies with this one: spawn it, wait for it, stop it.

Every server this project starts as a child (the private Redis of :mod:`.embedded`, the local
model's server of ``sarah_agent.local_llm``, the nodes of the tests' cluster through
:class:`~.embedded.EmbeddedRedis`) goes through here:

- :func:`spawn`: ``subprocess.Popen`` that, on Linux, gives the child SIGTERM when this process
  dies (``PR_SET_PDEATHSIG``), whichever thread asks;
- :func:`wait_until_ready`: poll a readiness probe the caller gives until it says yes, the
  child exits, or the time is up;
- :func:`stop_process`: SIGTERM (with SIGCONT, for a stopped child), wait, SIGKILL, reap;
- :func:`log_tail`: the last lines a child wrote to its log, for an error message;
- :class:`StartsAndStops`: ``with server:`` for a class that has ``start`` and ``stop``.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..log import logger

__all__ = [
    "ChildExited",
    "ChildNotReady",
    "StartsAndStops",
    "log_tail",
    "spawn",
    "stop_process",
    "wait_until_ready",
]

_PR_SET_PDEATHSIG = 1


_Self = TypeVar("_Self", bound="StartsAndStops")


class StartsAndStops(abc.ABC):
    """``with server:`` starts it and stops it, whatever happens in between."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server (and wait until it is ready)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server; safe to call twice."""

    def __enter__(self: _Self) -> _Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ChildExited(Exception):
    """The child exited before it was ready; ``code`` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exited with {code}")
        self.code = code


class ChildNotReady(Exception):
    """The probe did not say ready in time; the message is the probe's last answer."""


def wait_until_ready(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    deadline: float,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    not_ready: str = "not ready yet",
    max_delay: float = 0.1,
) -> None:
    """Poll ``probe`` until it returns True, with a delay that doubles up to ``max_delay``.

    Args:
        proc: The child; its exit ends the wait.
        probe: One readiness check: True when ready; False, or one of ``retry_on``, when not yet.
        deadline: ``time.monotonic()`` by which the child must be ready.
        retry_on: Exceptions of the probe that mean "not yet" (others propagate).
        not_ready: What to report when the probe last returned False.
        max_delay: The longest pause between two probes.

    Raises:
        ChildExited: The child exited first.
        ChildNotReady: The deadline passed; the message is the probe's last answer.
    """
    delay = 0.005
    last = "no answer yet"
    while True:
        code = proc.poll()
        if code is not None:
            raise ChildExited(code)
        try:
            if probe():
                return
            last = not_ready
        except retry_on as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise ChildNotReady(last)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def stop_process(proc: subprocess.Popen[bytes], timeout: float, name: str = "child server") -> None:
    """Stop ``proc``: SIGTERM, SIGKILL after ``timeout`` seconds; reap it and close its pipes.

    Does nothing to a child that has exited already, except reaping it.
    """
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a stopped process keeps SIGTERM pending
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s pid %d ignored SIGTERM; killing", name, proc.pid)
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def log_tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    """The last ``lines`` lines of the log at ``path``, from byte ``offset`` (this start's)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty log)"


def spawn(args: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` for a server that must die with this process, from any thread.

    On Linux the child asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). The kernel
    sends it when the *thread* that forked the child exits, not the process: a server started
    from a worker thread (``asyncio.to_thread``, an executor, a thread of LiveKit's) would die
    with that thread, or, without the signal, outlive a SIGKILLed process. So the fork happens
    on the main thread when that is where we are, and otherwise on :class:`_Spawner`'s thread,
    which lives exactly as long as the process.
    """
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(args, **options)

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, preexec_fn=_pdeathsig_preexec(), **options)

    if threading.current_thread() is threading.main_thread():
        return fork()
    return _Spawner.get().run(fork)


class _Spawner:
    """A daemon thread that forks the children started off the main thread.

    It never returns, so it exits only with the process: the parent-death signal of the servers
    it forks then means what it should. One per process; a forked child (LiveKit's job
    processes) makes its own, the parent's thread not being there.
    """

    _instance: _Spawner | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="caller-memory-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> _Spawner:
        """This process's spawner, started on first use."""
        with cls._lock:
            if cls._instance is None or cls._instance._pid != os.getpid():
                cls._instance = _Spawner()
            return cls._instance

    @classmethod
    def _forget(cls) -> None:
        # In a forked child: the parent's thread is not there, and the lock may have been held
        # by another of the parent's threads at the fork.
        cls._instance = None
        cls._lock = threading.Lock()

    def run(self, spawn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """Run ``spawn`` on the spawner's thread and return (or raise) what it does."""
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((spawn, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            spawn, future = self._jobs.get()
            try:
                future.set_result(spawn())
            except BaseException as exc:  # handed to the thread that asked
                future.set_exception(exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Spawner._forget)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the forking thread dies, or None.

    Everything is resolved before fork: the child of a multi-threaded parent should run as
    little Python as possible between fork and exec. Only call it on a thread that lives as
    long as the process (:func:`spawn` sees to that).
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sig = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl; then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec
