"""Fixtures: private Redis servers on free ports, stores against them, a scripted LLM."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import settings

from livekit.plugins.caller_memory import InMemoryStore, MemoryStore, RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.store.codec import inflate

from .support.cluster import LocalCluster, cluster_binaries
from .support.job_agent import SETTINGS_VARIABLE
from .support.servers import TestServer

TEST_SECRET = "test-only-4f9c2e7a1b8d03c6e5f2a9b7d4c1e8f3"
"""A phone-hash secret strong enough for the start-up check, and used by nothing else."""

# Per-user folders (the development secret, the embedded server's data) go to a folder of this
# run's own, never the real ~/.config: also for the worker and CLI processes tests start.
_HOME = tempfile.mkdtemp(prefix="caller-memory-home-")
atexit.register(shutil.rmtree, _HOME, True)
os.environ["XDG_CONFIG_HOME"] = str(Path(_HOME) / "config")
os.environ["XDG_DATA_HOME"] = str(Path(_HOME) / "data")

# The job-process tests' agent (tests/support/job_agent.py) reads its settings from this file.
# Set now, before anything starts LiveKit's forkserver, which hands its environment on to every
# job process it forks.
_JOB_DIR = tempfile.mkdtemp(prefix="caller-memory-jobs-")
atexit.register(shutil.rmtree, _JOB_DIR, True)
os.environ[SETTINGS_VARIABLE] = str(Path(_JOB_DIR) / "settings.json")

# In CI, property tests run the same examples every time: a red build is reproducible.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
_prefixes = itertools.count()

LONG_FILES = ("test_cli_errors.py", "test_real_llm_memory.py", "test_real_llm.py")
"""The files whose tests take the longest together, longest first (2026-12-07, 2 cores: 272 s
of commands run as subprocesses, 76 s and 66 s waiting on a real model; the next file, 52 s).
They run first: pytest-xdist hands out whole files in collection order (pyproject's
``--no-loadscope-reorder``; its default, the files with the most tests first, started the
80-s file of one test last), and started last they kept one core busy alone."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first, longest first; every other test in its usual order."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def replace(config: RedisConfig, **changes: Any) -> RedisConfig:
    """``config`` with some settings changed, validated like any other."""
    return RedisConfig(**{**config.model_dump(exclude_unset=True), **changes})


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """One private server for the session, never the shared one on 6379."""
    server = TestServer(data_dir=tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestServer]:
    """A server of this test's own, to pause, kill, fill or restart; resumed if paused and
    stopped after the test. ``@pytest.mark.durable`` (on a test or a module) gives it
    append-only persistence, for a test that restarts it and expects its data back."""
    durable = request.node.get_closest_marker("durable") is not None
    own = TestServer(data_dir=tmp_path / "redis", appendonly=durable)
    own.start()
    yield own
    if own.paused:
        own.resume()
    own.stop()


@pytest.fixture
def config(redis_server: TestServer, tmp_path: Path) -> RedisConfig:
    """Settings pointing at the private server, with a key prefix of this test's own."""
    return RedisConfig(
        url=redis_server.url,
        key_prefix=f"t{next(_prefixes)}",
        phone_hash_secret=TEST_SECRET,
        # A US phone line's setting: national spellings such as "(415) 555-0134" are American.
        default_region="US",
        data_dir=tmp_path,
        # Generous: a loaded machine must not turn a returning caller into a new one. Tests of
        # the budget set their own.
        lookup_timeout_ms=10_000,
    )


@pytest.fixture
async def redis_client(redis_server: TestServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at what the plugin wrote (bytes: profiles may be compressed)."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def dump_keys(client: aioredis.Redis, prefix: str) -> dict[str, str | list[str]]:
    """Every key of a prefix and its value as text, compressed profiles unpacked."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    out: dict[str, str | list[str]] = {}
    async for raw_key in client.scan_iter(match=f"{prefix}:*"):
        key = text(raw_key)
        kind = text(await client.type(key))
        if kind == "string":
            value = await client.get(key) or b""
            out[key] = text(inflate(value) if key.endswith(":profile") else value)
        elif kind == "list":
            out[key] = [text(v) for v in await client.lrange(key, 0, -1)]
        else:
            out[key] = [text(v) for v in await client.zrange(key, 0, -1)]
    return out


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real 3-master, 3-replica Redis Cluster on free ports, for the whole session."""
    if not cluster_binaries():
        pytest.skip("no cluster-capable server binary")
    cluster = LocalCluster(data_dir=tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["redis", "memory", "cluster"])
async def store(request: pytest.FixtureRequest, config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """Each contract test runs against Redis, the in-process store and a Redis Cluster."""
    impl: MemoryStore
    if request.param == "redis":
        impl = RedisMemoryStore(config)
    elif request.param == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        impl = RedisMemoryStore(replace(config, url=cluster.url))
    else:
        impl = InMemoryStore(replace(config, persistence=False))
    assert await impl.connect()
    yield impl
    await impl.disconnect()


def process_gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie nobody in this test owns)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
