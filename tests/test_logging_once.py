"""What the plugin says about itself: which store, once per process; the development-secret
warning, once per process; a config that prints what it will use."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, __version__

from .conftest import TEST_SECRET
from .support.servers import TestServer, closed_port

# The guide's two entry points in one process: a store of its own, then the session manager
# (which opens another store), as the README's script does.
_GUIDE = textwrap.dedent(
    """
    import asyncio, logging
    from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, init_session_manager

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

    async def main():
        for _ in range(2):
            store = RedisMemoryStore(RedisConfig.from_env())
            assert await store.connect()
            await store.get_or_create_user_id(phone_number="+1234567890")
            await store.disconnect()
        manager = await init_session_manager()
        await manager.start_session(session_id="AJ_once", phone_number="+14155550134")
        await manager.end_session("AJ_once")
        await manager.aclose()

    asyncio.run(main())
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "MEMORY_"))}
    env.update(extra)
    return env


def _lines(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if needle in line]


def test_a_process_says_its_store_and_the_secret_warning_once(
    redis_server: TestServer, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _GUIDE],
        env=_env(REDIS_URL=redis_server.url, MEMORY_DATA_DIR=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    store = _lines(out.stderr, "caller memory uses")
    where = f"Redis at 127.0.0.1:{redis_server.port}"
    assert store == [
        f"INFO livekit.plugins.caller_memory caller memory uses {where} "
        f"(livekit-plugins-caller-memory {__version__})"
    ]
    warning = _lines(out.stderr, "MEMORY_PHONE_HASH_SECRET is not set")
    assert len(warning) == 1 and warning[0].startswith("WARNING")
    assert "connected to Redis" not in out.stderr


@pytest.mark.server_binary
def test_the_private_server_is_announced_once_even_when_restarted(tmp_path: Path) -> None:
    # Nothing named: three stores in turn, each starting the private server as the one before
    # stopped it; it comes back on the same port, and is announced once.
    out = subprocess.run(
        [sys.executable, "-c", _GUIDE],
        env=_env(REDIS_PORT=str(closed_port()), MEMORY_DATA_DIR=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    store = _lines(out.stderr, "caller memory uses")
    assert len(store) == 1, out.stderr
    assert "a private Redis server started by this process" in store[0]
    assert str(tmp_path / "redis") in store[0]


async def test_every_connect_after_the_first_is_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestServer(appendonly=False) as server:
        config = RedisConfig(url=server.url, phone_hash_secret=TEST_SECRET, data_dir=tmp_path)
        with caplog.at_level(logging.DEBUG, logger="livekit.plugins.caller_memory"):
            for _ in range(3):
                store = RedisMemoryStore(config)
                assert await store.connect()
                await store.disconnect()
    said = [r for r in caplog.records if "caller memory uses" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert said[0].getMessage() == (
        f"caller memory uses Redis at 127.0.0.1:{server.port} "
        f"(livekit-plugins-caller-memory {__version__})"
    )


def test_a_config_prints_the_server_it_will_use_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://alice:hunter2-pass@redis.example.com:6380/3")
    config = RedisConfig.from_env()
    for shown in (repr(config), str(config)):
        assert "host='redis.example.com'" in shown and "port=6380" in shown
        assert "db=3" in shown and "ssl=True" in shown and "username='alice'" in shown
        assert "url='rediss://alice:***@redis.example.com:6380/3'" in shown
        assert "hunter2" not in shown
        assert "localhost" not in shown and "6379" not in shown
    # Without a URL, the fields themselves.
    monkeypatch.delenv("REDIS_URL")
    plain = RedisConfig(host="redis.internal", port=6390, password="hunter2-pass")
    assert "host='redis.internal'" in repr(plain) and "port=6390" in repr(plain)
    assert "hunter2" not in repr(plain)
    # A password in the query of a unix socket URL is masked too.
    sock = RedisConfig(url="unix:///run/redis.sock?db=2&password=hunter2-pass")
    assert "hunter2" not in repr(sock) and "password=***" in repr(sock)
