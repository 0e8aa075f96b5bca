"""A caller-memory worker in a process of its own, driven line by line by a test.

A deployment is several worker processes against one Redis: this is one of them, as small as
an agent's use of the plugin (a :class:`SessionManager`, settings from the environment). It
reads one JSON command per line on stdin and answers one JSON line on stdout:

- ``{"op": "start", "session": "c1", "number": "+1..."}`` -> ``{"status": ..., "user_id": ...}``
- ``{"op": "turn", "session": "c1", "text": "..."}`` -> ``{}`` (journaled soon after)
- ``{"op": "end", "session": "c1"}`` -> ``{"saved": bool, "outbox": n}``
- ``{"op": "flush"}`` -> ``{"saved": n, "left": n}``
- ``{"op": "exit"}``

Run: ``python -m tests.support.worker`` (the tests start it with :class:`WorkerProcess`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["WorkerProcess"]

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """A worker process the test drives (see the module docs); stopped by :meth:`stop`.

    Args:
        env: Its settings: ``REDIS_URL``, ``MEMORY_*``.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.worker"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._proc.pid

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.pid} exited ({self._proc.wait(10)})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"worker {self.pid}: {answer['error']}")
        return answer

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-call, as in an OOM kill or a lost machine."""
        self._proc.kill()
        self._proc.wait()

    def stop(self) -> None:
        """Ask it to exit; kill it if it does not."""
        if self._proc.poll() is None:
            try:
                self.ask("exit")
                self._proc.wait(10)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


async def _serve() -> None:
    from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

    store = RedisMemoryStore(RedisConfig.from_env())
    await store.connect()
    manager = SessionManager(store)
    manager.start_maintenance()  # as CallerMemory does: the outbox, orphans, the heartbeat
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        op = command.pop("op")
        try:
            answer = await _do(manager, op, command)
        except Exception as e:  # the test reads it
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)
        if op == "exit":
            break
    await manager.aclose()
    await store.disconnect()


async def _do(manager: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    if op == "start":
        ctx = await manager.start_session(session_id=args["session"], phone_number=args["number"])
        return {"status": ctx.status, "user_id": ctx.user_id, "returning": ctx.is_returning}
    if op == "turn":
        manager.add_turn(args["session"], "user", args["text"])  # journaled in the background
        return {}
    if op == "end":
        profile = await manager.end_session(args["session"])
        return {"saved": profile is not None, "outbox": len(manager.outbox)}
    if op == "flush":
        saved, left = await manager.flush_outbox()
        return {"saved": saved, "left": left, "outbox": len(manager.outbox)}
    if op == "exit":
        return {}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    asyncio.run(_serve())
