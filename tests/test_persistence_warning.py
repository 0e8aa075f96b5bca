"""A Redis that keeps nothing across a restart is said so: by a worker's first connect, by
``caller-memory check`` and by ``caller-memory stats``, in one line naming the setting to
change. A warning, not a failure; and nothing is said where the server will not tell.

Each server is a real one, started with or without persistence (issue 20: "a Redis with no
persistence loses acknowledged calls on restart and nothing warns").
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore

from .conftest import TEST_SECRET
from .support.cluster import LocalCluster
from .support.servers import TestServer

SAYS = "keeps nothing across a restart"
ADVICE = "set appendonly yes (or a save schedule, e.g. save 60 1000)"


@pytest.fixture
def volatile(tmp_path: Path) -> Iterator[TestServer]:
    """No append-only file, no RDB snapshots (``save ""``): a restart loses everything."""
    with TestServer(data_dir=tmp_path / "volatile", appendonly=False) as server:
        yield server


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and SAYS in r.getMessage()
    ]


async def _connect_twice(server: TestServer, tmp_path: Path, **settings: str) -> None:
    config = RedisConfig(
        **{"url": server.url, "phone_hash_secret": TEST_SECRET, "data_dir": tmp_path, **settings}
    )
    for _ in range(2):  # a worker's stores reconnect: the warning is the first connect's
        store = RedisMemoryStore(config)
        assert await store.connect()
        await store.disconnect()


async def test_a_worker_is_warned_once_of_a_redis_that_keeps_nothing(
    volatile: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="livekit.plugins.caller_memory"):
        await _connect_twice(volatile, tmp_path)
    [said] = _warnings(caplog)
    assert said == (
        f"Redis at 127.0.0.1:{volatile.port} keeps nothing across a restart (appendonly no, "
        f'save ""): calls it acknowledges are lost when it restarts; {ADVICE}'
    )
    assert "\n" not in said


@pytest.mark.parametrize(
    "persistence",
    [{"appendonly": True}, {"appendonly": False, "extra_args": ["--save", "60 1000"]}],
    ids=["appendonly", "rdb-schedule"],
)
async def test_a_redis_that_persists_is_not_warned_about(
    persistence: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestServer(data_dir=tmp_path / "redis", **persistence) as server:  # type: ignore[arg-type]
        with caplog.at_level(logging.INFO, logger="livekit.plugins.caller_memory"):
            await _connect_twice(server, tmp_path)
            store = RedisMemoryStore(RedisConfig(url=server.url, phone_hash_secret=TEST_SECRET))
            assert await store.connect()
            assert await store.persistence_warning() is None
            await store.disconnect()
    assert _warnings(caplog) == []


async def test_nothing_is_guessed_when_config_is_refused(
    volatile: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A managed Redis, or an ACL user without CONFIG: INFO cannot show `save ""`, so no
    # warning, and the connect goes through.
    with redis.Redis.from_url(volatile.url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "worker", "on", ">worker-password", "~*", "&*", "+@all", "-config"
        )
    as_worker = volatile.url.replace("redis://", "redis://worker:worker-password@", 1)
    with caplog.at_level(logging.INFO, logger="livekit.plugins.caller_memory"):
        await _connect_twice(volatile, tmp_path, url=as_worker)
        store = RedisMemoryStore(RedisConfig(url=as_worker, phone_hash_secret=TEST_SECRET))
        assert await store.connect()
        assert await store.persistence_warning() is None
        await store.disconnect()
    assert _warnings(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _cli(server: TestServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MEMORY_"))}
    env.update(
        REDIS_URL=server.url,
        MEMORY_KEY_PREFIX="persistence",
        MEMORY_PHONE_HASH_SECRET=TEST_SECRET,
        MEMORY_DATA_DIR=str(tmp_path),
    )
    return subprocess.run(
        [sys.executable, "-m", "livekit.plugins.caller_memory.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("command", ["check", "stats"])
def test_check_and_stats_warn_in_one_line_and_exit_as_before(
    command: str, volatile: TestServer, tmp_path: Path
) -> None:
    done = _cli(volatile, tmp_path, command)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if SAYS in line]
    assert said == [
        f"⚠️  Redis at 127.0.0.1:{volatile.port} keeps nothing across a restart "
        f'(appendonly no, save ""): calls it acknowledges are lost when it restarts; {ADVICE}'
    ], done.stderr

    with TestServer(data_dir=tmp_path / "aof", appendonly=True) as persistent:
        done = _cli(persistent, tmp_path, command)
    assert done.returncode == 0, done.stderr
    assert SAYS not in done.stderr + done.stdout


def test_other_commands_do_not_repeat_it(volatile: TestServer, tmp_path: Path) -> None:
    done = _cli(volatile, tmp_path, "requests")
    assert done.returncode == 0, done.stderr
    assert SAYS not in done.stderr + done.stdout


async def test_a_cluster_is_asked_node_by_node(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    # The test cluster's nodes keep nothing (no AOF, save ""): the warning names a primary.
    store = RedisMemoryStore(
        RedisConfig(url=redis_cluster.url, phone_hash_secret=TEST_SECRET, data_dir=tmp_path)
    )
    assert await store.connect()
    try:
        said = await store.persistence_warning()
    finally:
        await store.disconnect()
    assert said is not None and SAYS in said and ADVICE in said
    assert re.search(r"\(node [\d.]+:\d+\) keeps nothing", said), said
