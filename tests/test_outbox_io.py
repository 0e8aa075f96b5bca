"""The outbox's file work stays off the event loop, and a call the outbox could not take is
never reported as kept in it (issue 20).

- Writes (with their fsyncs), listing and parsing for a flush run on the outbox's own thread:
  seen here by the thread of every file operation under the outbox folder (Python's audit
  events), while 2,000 files wait and a flush runs, and while calls are written. How long the
  loop stalls is measured by ``python -m benchmarks.outbox_stall`` (docs/PERFORMANCE.md).
- A disk that is full (a tmpfs filled to the brim) and Redis stopped: ten calls are held in
  memory, and closing the manager says at ERROR that ten were lost; when space or Redis comes
  back while the close waits, all ten are written and none is lost.
- The temporary files a crash left are dealt with when a worker starts, and counted.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.models import (
    OutboxEntry,
    SessionRecord,
    Turn,
    to_json,
    utcnow,
)

from .conftest import TEST_SECRET
from .support.cli import operator_cli
from .support.servers import TestServer
from .support.waiting import eventually

pytestmark = pytest.mark.durable

PHONE = "+14155550150"
CALLS = 10

_FILE_EVENTS = {"open", "os.rename", "os.remove", "os.scandir", "os.listdir", "os.mkdir"}


class FileThreads:
    """Records the thread of every file operation under one folder (Python's audit events:
    open, rename/replace, remove, scandir...), for as long as it is active."""

    _active: list[FileThreads] = []
    _hooked = False

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)
        self.seen: list[tuple[str, str, int]] = []
        """(event, path, thread id)."""

    def __enter__(self) -> FileThreads:
        if not FileThreads._hooked:
            sys.addaudithook(FileThreads._hook)  # cannot be removed: idle when none is active
            FileThreads._hooked = True
        FileThreads._active.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        FileThreads._active.remove(self)

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in _FILE_EVENTS or not FileThreads._active or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return
        path = os.fspath(path)
        for recorder in FileThreads._active:
            if path.startswith(recorder.folder):
                recorder.seen.append((event, path, threading.get_ident()))

    def threads(self) -> set[int]:
        """The threads that touched the folder."""
        return {thread for _, _, thread in self.seen}

    def temp_writes(self) -> int:
        """Temporary files opened (one per outbox write tried)."""
        return sum(1 for event, path, _ in self.seen if event == "open" and path.endswith(".tmp"))


def _config(server: TestServer, data_dir: Path, **changes: Any) -> RedisConfig:
    settings: dict[str, Any] = {
        "url": server.url,
        "phone_hash_secret": TEST_SECRET,
        "data_dir": data_dir,
        "socket_timeout": 0.5,
        "lookup_timeout_ms": 1_000,
        "save_timeout_s": 1.0,
        "key_prefix": "io",
    }
    return RedisConfig(**{**settings, **changes})


def _waiting_files(folder: Path, store: RedisMemoryStore, count: int) -> list[str]:
    """``count`` outbox entries written straight to ``folder`` (no fsync: this is the setup)."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        record = SessionRecord(
            session_id=f"waiting-{i}",
            started_at=utcnow(),
            ended_at=utcnow(),
            turns=[Turn(role="user", text=f"my parcel number {i} is late")],
        )
        entry = OutboxEntry(
            record=record, phone_hash=store.hasher.hash(f"+1415555{i:04d}"), kept_at=utcnow()
        )
        (folder / f"{i:032x}.json").write_text(to_json(entry))
        ids.append(record.session_id)
    return ids


class Ticker:
    """A task that sleeps 2 ms again and again, recording the longest gap between wakeups."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            self.worst_ms = max(self.worst_ms, (now - last) * 1000 - 2)
            last = now


async def test_a_flush_of_2000_files_lists_parses_and_deletes_them_off_the_event_loop(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path / "memory"))
    manager = SessionManager(store)
    ids = _waiting_files(manager.outbox.folder, store, 2000)
    loop_thread = threading.get_ident()
    async with Ticker() as ticker:
        with FileThreads(manager.outbox.folder) as files:
            assert await manager.flush_outbox() == (2000, 0)
    # Every listing (scandir), read (open) and delete (remove) happened on another thread.
    events = {event for event, _, _ in files.seen}
    assert {"os.scandir", "open", "os.remove"} <= events
    assert loop_thread not in files.threads()
    assert all(await asyncio.gather(*(store.get_session(i) for i in ids[::199])))
    assert not list(manager.outbox.folder.glob("*.json"))
    print(f"worst event-loop stall during the flush: {ticker.worst_ms:.1f} ms")
    await store.disconnect()


async def test_calls_written_to_the_outbox_write_and_fsync_off_the_event_loop(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path / "memory"))
    manager = SessionManager(store)
    _waiting_files(manager.outbox.folder, store, 2000)  # a deep outbox already
    server.stop()  # Redis down: the calls that end now go to the outbox
    loop_thread = threading.get_ident()
    with FileThreads(manager.outbox.folder) as files:
        for i in range(CALLS):
            await manager.start_session(session_id=f"down-{i}", phone_number=PHONE)
            manager.add_turn(f"down-{i}", "user", "please call me back tomorrow")
            assert await manager.end_session(f"down-{i}") is None
    # The temporary file is opened, written and fsynced, then renamed, on another thread: twice
    # a call, as Redis never heard its turns: a copy as its end begins, then the call with its
    # summary in the same file.
    assert files.temp_writes() == 2 * CALLS
    assert sum(1 for event, _, _ in files.seen if event == "os.rename") == 2 * CALLS
    assert loop_thread not in files.threads()
    assert caplog.text.count("the call is kept in the local outbox") == CALLS
    assert await manager.outbox.count() == 2000 + CALLS
    await store.disconnect()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A data folder on a 256 KiB tmpfs whose outbox folder exists and whose space is taken
    by a filler file (delete ``filler`` to give the space back)."""
    folder = tmp_path / "memory"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        (folder / "outbox").mkdir(mode=0o700)
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


async def _ten_calls_held(manager: SessionManager, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(CALLS):
        await manager.start_session(session_id=f"held-{i}", phone_number=PHONE)
        manager.add_turn(f"held-{i}", "user", "my order 55 never arrived")
        assert await manager.end_session(f"held-{i}") is None
    held = [r for r in caplog.records if "held in memory only" in r.getMessage()]
    assert len(held) == CALLS and all(r.levelno == logging.ERROR for r in held)
    assert "No space left on device" in held[0].getMessage()
    assert "kept in the local outbox" not in caplog.text  # never said of a call not kept


async def test_calls_held_in_memory_are_counted_as_lost_when_the_manager_closes(
    server: TestServer, full_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "livekit.plugins.caller_memory")
    store = RedisMemoryStore(_config(server, full_disk))
    manager = SessionManager(store)
    server.stop()
    await _ten_calls_held(manager, caplog)
    await manager.aclose(held_wait_s=0.5)
    [lost] = [r for r in caplog.records if "lost at close" in r.getMessage()]
    assert lost.levelno == logging.ERROR
    text = lost.getMessage()
    assert text.startswith(f"{CALLS} call(s) lost at close")
    assert "No space left on device" in text and "Connection refused" in text
    assert "kept in the local outbox" not in caplog.text
    assert not list((full_disk / "outbox").glob("*"))  # truly nothing written
    await store.disconnect()


async def test_space_back_while_the_manager_closes_puts_every_held_call_in_the_outbox(
    server: TestServer, full_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "livekit.plugins.caller_memory")
    config = _config(server, full_disk)
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    server.stop()
    await _ten_calls_held(manager, caplog)
    with FileThreads(full_disk / "outbox") as files:
        closing = asyncio.ensure_future(manager.aclose(held_wait_s=60))
        tried = files.temp_writes()
        await eventually(lambda: files.temp_writes() > tried, what="the close tried the disk")
        (full_disk / "filler").unlink()  # an operator made room
        await closing
    assert "lost at close" not in caplog.text
    assert "0 saved into memory, 10 kept in the local outbox" in caplog.text
    assert len(list((full_disk / "outbox").glob("*.json"))) == CALLS
    await store.disconnect()
    # Redis back: another manager writes all ten from the outbox.
    server.start()
    store = RedisMemoryStore(config)
    assert await SessionManager(store).flush_outbox() == (CALLS, 0)
    assert all(await asyncio.gather(*(store.get_session(f"held-{i}") for i in range(CALLS))))
    await store.disconnect()


async def test_redis_back_while_the_manager_closes_saves_every_held_call(
    server: TestServer, full_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "livekit.plugins.caller_memory")
    store = RedisMemoryStore(_config(server, full_disk))
    manager = SessionManager(store)
    server.stop()
    await _ten_calls_held(manager, caplog)
    with FileThreads(full_disk / "outbox") as files:
        closing = asyncio.ensure_future(manager.aclose(held_wait_s=60))
        tried = files.temp_writes()
        await eventually(lambda: files.temp_writes() > tried, what="the close tried the disk")
        await asyncio.to_thread(server.start)
        await closing
    assert "lost at close" not in caplog.text
    assert "10 saved into memory, 0 kept in the local outbox" in caplog.text
    check = RedisMemoryStore(_config(server, full_disk))
    assert all(await asyncio.gather(*(check.get_session(f"held-{i}") for i in range(CALLS))))
    await check.disconnect()
    await store.disconnect()


def _stat(stdout: str, name: str) -> str:
    """One value of ``caller-memory stats``' output (its names are padded to one width)."""
    [value] = [line[len(name) :].strip() for line in stdout.splitlines() if line.startswith(name)]
    return value


def _stray(folder: Path, name: str, content: bytes, *, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(content)
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


async def test_temporary_files_a_crash_left_are_dealt_with_at_start_and_counted(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(server, tmp_path / "memory")
    store = RedisMemoryStore(config)
    folder = config.data_dir / "outbox"
    folder.mkdir(parents=True)
    whole = OutboxEntry(
        record=SessionRecord(
            session_id="crashed-before-rename",
            started_at=utcnow(),
            ended_at=utcnow(),
            turns=[Turn(role="user", text="I moved to Lisbon")],
        ),
        phone_hash=store.hasher.hash(PHONE),
        kept_at=utcnow(),
    )
    other = 4_000_000  # a pid of a worker that died
    _stray(folder, f"{'a' * 32}.{other}.tmp", to_json(whole).encode(), age_s=600)
    _stray(folder, f"{'b' * 32}.{other}.tmp", to_json(whole).encode()[:40], age_s=600)
    _stray(folder, f"{'c' * 32}.{os.getpid()}.tmp", b'{"v": 3, "rec', age_s=0)
    young = _stray(folder, f"{'d' * 32}.{other}.tmp", b"{", age_s=0)  # a write in progress?

    stats = operator_cli(config, "stats")
    assert _stat(stats.stdout, "outbox stray temp files") == "4", stats.stdout

    manager = await SessionManager.open(store=store)
    await eventually(lambda: "stray temporary outbox file" in caplog.text)
    assert (
        "3 stray temporary outbox file(s) left by a crash: 1 whole call(s) put back in the "
        "outbox, 2 removed" in caplog.text
    )
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == sorted(
        [f"{'a' * 32}.json", young.name]
    )
    # The call the crash nearly lost is written with the outbox.
    assert await manager.flush_outbox() == (1, 0)
    assert await store.get_session("crashed-before-rename") is not None
    await manager.aclose()
    await store.disconnect()

    # caller-memory flush cleans (the young file is old now) and says so.
    os.utime(young, (time.time() - 600, time.time() - 600))
    flushed = operator_cli(config, "flush")
    assert "Outbox: 1 stray temporary file(s) left by a crash: 0 whole call(s) put back, 1 " \
        "removed." in flushed.stdout, flushed.stdout  # fmt: skip
    assert _stat(operator_cli(config, "stats").stdout, "outbox stray temp files") == "0"


async def test_a_flush_writes_only_the_calls_of_its_own_prefix_and_secret(tmp_path: Path) -> None:
    # Two agents on one machine share the default outbox folder. A call one of them kept while
    # its Redis was down is its own: another agent's flush (another prefix, or another secret,
    # under which its phone hash names no one) leaves it for it.
    with TestServer(appendonly=False) as down:
        alpha_down = _config(down, tmp_path, key_prefix="alpha")
    manager = SessionManager(RedisMemoryStore(alpha_down))  # its Redis is gone
    await manager.start_session(session_id="AJ_kept", phone_number="+14155550190")
    manager.add_turn("AJ_kept", "user", "My parcel is late again.")
    assert await manager.end_session("AJ_kept") is None
    await manager.aclose()
    assert len(manager.outbox) == 1

    with TestServer(appendonly=False) as server:
        beta = operator_cli(_config(server, tmp_path, key_prefix="beta"), "flush")
        other_secret = operator_cli(
            _config(server, tmp_path, key_prefix="alpha", phone_hash_secret=TEST_SECRET[::-1]),
            "flush",
        )
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        nothing_yet = sorted(admin.keys("*"))
        alpha = operator_cli(_config(server, tmp_path, key_prefix="alpha"), "flush")
        written = sorted(admin.keys("*"))
        admin.close()
    for done, ours in ((beta, "beta"), (other_secret, "alpha")):
        assert done.returncode == 0, done.stderr
        assert "0 of 1 call(s) saved, 0 waiting, 1 kept for another prefix or secret." in (
            done.stdout
        )
        assert (
            "1 call(s) of another key prefix or phone-hash secret (1 under prefix alpha; "
            f"this store's prefix: {ours})"
        ) in done.stdout
    assert nothing_yet == []
    assert alpha.returncode == 0 and "1 of 1 call(s) saved" in alpha.stdout
    assert "alpha:session:{AJ_kept}" in written and not any("beta" in k for k in written)
