"""How long the event loop stalls while the outbox works (issue 20).

A ticker task sleeps 2 ms again and again and records the longest gap between its wakeups
(less the 2 ms asked for) while:

- **flush**: 2,000 calls wait in the outbox and ``flush_outbox()`` writes them to a Redis of its
  own (the embedded server), listing, parsing and deleting the files on the outbox's thread;
- **writes**: the Redis is stopped and 200 calls end at once, each written to the outbox (a
  temporary file, fsync, rename, fsync of the folder) on the outbox's thread.

For comparison, the same file work done on the loop, as before this change: parsing the 2,000
files, and the 200 durable writes, each timed as the loop is blocked for its whole length.

Run: ``python -m benchmarks.outbox_stall [--dir DIR]`` (``DIR``: where the outbox lives; its
filesystem decides what an fsync costs; a temporary folder by default).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.models import OutboxEntry, SessionRecord, Turn, to_json, utcnow
from livekit.plugins.caller_memory.outbox import Outbox
from livekit.plugins.caller_memory.server.embedded import EmbeddedRedis

WAITING = 2000
WRITES = 200
SECRET = "benchmark-only-5b1e9d3c7a2f8e4d6c0b9a1f3e5d7c2b"
TICK_S = 0.002


class Ticker:
    """Records the longest gap between wakeups of a task sleeping ``TICK_S`` in a loop."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self.gaps: list[float] = []
        self.gc_worst_ms = 0.0
        """The longest garbage collection in the window: it holds the GIL, whatever thread
        runs it, and stalls the loop as any work would (not the outbox's doing)."""
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        gc.callbacks.remove(self._gc)

    def _gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = (time.perf_counter() - self._gc_started) * 1000
            self.gc_worst_ms = max(self.gc_worst_ms, took)

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            gap = (now - last - TICK_S) * 1000
            self.gaps.append(gap)
            self.worst_ms = max(self.worst_ms, gap)
            last = now

    def p99_ms(self) -> float:
        """The 99th percentile gap."""
        ordered = sorted(self.gaps) or [0.0]
        return ordered[int(0.99 * (len(ordered) - 1))]


def _entries(store: RedisMemoryStore, count: int) -> list[OutboxEntry]:
    return [
        OutboxEntry(
            record=SessionRecord(
                session_id=f"bench-{i}",
                started_at=utcnow(),
                ended_at=utcnow(),
                turns=[
                    Turn(role="user", text=f"my parcel number {i} is late, it was due Monday"),
                    Turn(role="assistant", text="I am sorry, let me look into that for you."),
                ],
            ),
            phone_hash=store.hasher.hash(f"+1415555{i % 10000:04d}"),
            kept_at=utcnow(),
        )
        for i in range(count)
    ]


def _fill(folder: Path, entries: list[OutboxEntry]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, entry in enumerate(entries):
        (folder / f"{i:032x}.json").write_text(to_json(entry))


async def _flush(config: RedisConfig) -> dict[str, float]:
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    _fill(manager.outbox.folder, _entries(store, WAITING))
    started = time.perf_counter()
    async with Ticker() as ticker:
        saved, left = await manager.flush_outbox()
    took = time.perf_counter() - started
    assert (saved, left) == (WAITING, 0), (saved, left)
    await store.disconnect()
    return {
        "worst": ticker.worst_ms,
        "p99": ticker.p99_ms(),
        "took_s": took,
        "gc": ticker.gc_worst_ms,
    }


async def _writes(config: RedisConfig, server: EmbeddedRedis) -> dict[str, float]:
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    for i in range(WRITES):
        await manager.start_session(session_id=f"w-{i}", phone_number="+14155550150")
        manager.add_turn(f"w-{i}", "user", "please call me back tomorrow morning")
    server.stop()
    started = time.perf_counter()
    async with Ticker() as ticker:
        await asyncio.gather(*(manager.end_session(f"w-{i}") for i in range(WRITES)))
    took = time.perf_counter() - started
    assert await manager.outbox.count() == WRITES
    await store.disconnect()
    return {
        "worst": ticker.worst_ms,
        "p99": ticker.p99_ms(),
        "took_s": took,
        "gc": ticker.gc_worst_ms,
    }


async def _idle(seconds: float) -> dict[str, float]:
    # The machine's own noise: the same ticker with nothing else to do (other processes
    # taking the cores show up here too).
    async with Ticker() as ticker:
        await asyncio.sleep(seconds)
    return {
        "worst": ticker.worst_ms,
        "p99": ticker.p99_ms(),
        "took_s": seconds,
        "gc": ticker.gc_worst_ms,
    }


def _on_the_loop(folder: Path, entries: list[OutboxEntry]) -> dict[str, float]:
    # What the loop was blocked for when this work ran on it (before issue 20's change).
    box = Outbox(folder)
    _fill(folder, entries)
    started = time.perf_counter()
    box._read_all()
    parse_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    for entry in entries[:WRITES]:
        box._write(entry.record, entry.phone_hash, False)
    writes_ms = (time.perf_counter() - started) * 1000
    return {"parse_ms": parse_ms, "writes_ms": writes_ms, "write_ms": writes_ms / WRITES}


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def _filesystem(folder: Path) -> str:
    out = subprocess.run(
        ["df", "--output=fstype", str(folder)], capture_output=True, text=True, check=False
    )
    lines = out.stdout.split()
    return lines[-1] if len(lines) > 1 else "unknown"


async def _run(base: Path) -> None:
    server = EmbeddedRedis(data_dir=base / "redis")
    server.start()
    try:
        config = RedisConfig(
            url=server.url,
            phone_hash_secret=SECRET,
            data_dir=base / "flush",
            key_prefix="bench",
            save_timeout_s=2.0,
        )
        idle = await _idle(5.0)
        flush = await _flush(config)
        server.stop()
        server.start()
        writes = await _writes(config.model_copy(update={"data_dir": base / "writes"}), server)
    finally:
        server.stop()
    store = RedisMemoryStore(config)
    before = _on_the_loop(base / "on-loop", _entries(store, WAITING))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"`python -m benchmarks.outbox_stall` on {when}, commit {_commit()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"outbox on {_filesystem(base)}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| work | loop's worst stall | p99 gap | longest GC pause in it | took |")
    print("|---|---|---|---|---|")
    rows = [
        ("nothing (the machine's own noise)", idle),
        (f"flush of {WAITING:,} waiting calls (file work on the outbox's thread)", flush),
        (f"{WRITES} calls ending at once, Redis down, each written to the outbox", writes),
    ]
    for what, got in rows:
        print(
            f"| {what} | {got['worst']:.1f} ms | {got['p99']:.2f} ms | {got['gc']:.0f} ms | "
            f"{got['took_s']:.1f} s |"
        )
    print(
        f"| before: parsing the {WAITING:,} files on the loop | {before['parse_ms']:.0f} ms | | | |"
    )
    print(
        f"| before: {WRITES} durable writes on the loop ({before['write_ms']:.2f} ms each) | "
        f"{before['writes_ms']:.0f} ms | | | |"
    )


def main() -> None:
    """Run both measurements and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where the outbox lives (a temporary folder)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(_run(Path(tempfile.mkdtemp(dir=args.dir))))
        return
    with tempfile.TemporaryDirectory(prefix="outbox-stall-") as base:
        asyncio.run(_run(Path(base)))


if __name__ == "__main__":
    main()
