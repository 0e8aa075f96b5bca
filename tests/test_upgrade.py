"""Upgrading from 0.1: its profiles are read as facts; a 0.1 worker must not share the Redis.

The 0.1 worker here is the real one: the plugin as it was at :data:`V01` (the last commit of
0.1.x), taken out of this repository's history and run in its own process against the same
private Redis server as this version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from io import BytesIO
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.store import codec

from .conftest import replace
from .support.livekit import ScriptedLLM
from .support.servers import closed_port

V01 = "6f383d3"
"""The last commit whose plugin is 0.1 (schema 1: name, preferences, follow-ups)."""
ROOT = Path(__file__).resolve().parents[1]
NUMBER = "+14155550199"

_WORKER = """
import asyncio, json, sys
from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.models import SCHEMA_VERSION
from livekit.plugins.caller_memory.testing import ScriptedLLM

async def main():
    settings = json.loads(sys.argv[1])
    config = RedisConfig(**settings)
    summary = {
        "summary": "Asked for a morning slot.",
        "caller_name": "Maria",
        "preferences": {"contact_time": "mornings"},
        "follow_ups": ["send the x-ray"],
    }
    manager = SessionManager(RedisMemoryStore(config), llm=ScriptedLLM(summary=summary),
                             owns_store=True)
    ctx = await manager.start_session(session_id="v01-call", phone_number=sys.argv[2])
    manager.add_turn("v01-call", "assistant", "Hello, Bright Smile Dental.")
    manager.add_turn("v01-call", "user", "Hi, my name is Maria, mornings suit me best.")
    await manager.end_session("v01-call")
    await manager.aclose()
    print(json.dumps({"schema": SCHEMA_VERSION, "returning": ctx.is_returning}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def v01(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.1 plugin, out of the repository's history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", V01, "plugins/livekit-plugins-caller-memory"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git, or its history with {V01} (a shallow clone), is not here")
    folder = tmp_path_factory.mktemp("v01")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "plugins" / "livekit-plugins-caller-memory"


def run_v01_call(v01: Path, config: RedisConfig, url: str | None = None) -> dict[str, object]:
    """One call through a 0.1 worker process (against ``url``, the config's by default); what
    it reports."""
    assert config.url is not None and config.phone_hash_secret is not None
    settings = {
        "url": url or config.url.get_secret_value(),
        "key_prefix": config.key_prefix,
        "phone_hash_secret": config.phone_hash_secret.get_secret_value(),
        "data_dir": str(config.data_dir),
        "trust_caller_id": True,
        "lookup_timeout_ms": 10_000,
    }
    env = {**os.environ, "PYTHONPATH": str(v01)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER), json.dumps(settings), NUMBER],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["schema"] == 1  # it really was the 0.1 plugin
    return report


async def test_a_01_profile_is_read_as_facts_and_kept_by_the_next_save(
    v01: Path, config: RedisConfig
) -> None:
    config = replace(config, trust_caller_id=True)
    run_v01_call(v01, config)

    manager = SessionManager(RedisMemoryStore(config), owns_store=True)
    try:
        ctx = await manager.start_session(session_id="v02-peek", phone_number=NUMBER)
        assert ctx.is_returning and ctx.caller_name == "Maria"
        memory = ctx.memory_prompt()
        assert '"contact time"' in memory and "mornings" in memory
        assert "send the x-ray" in memory
        manager.add_turn("v02-peek", "user", "My dog Rex is a collie.")
        profile = await manager.end_session("v02-peek")
    finally:
        await manager.aclose()
    assert profile is not None and profile.v == 2
    assert {f.label: f.value for f in profile.current_facts} == {
        "name": "Maria",
        "contact time": "mornings",
        "open request": "send the x-ray",
    }
    assert profile.call_count == 2


async def test_a_01_worker_sets_a_02_profile_aside_and_loses_nothing(
    v01: Path, config: RedisConfig
) -> None:
    config = replace(config, trust_caller_id=True)
    answer = {
        "ops": [
            {"op": "add", "id": 0, "label": "name", "value": "Maria", "evidence": "I'm Maria"},
            {
                "op": "add",
                "id": 0,
                "label": "pet",
                "value": "Rex, a collie",
                "evidence": "my dog Rex is a collie",
            },  # fmt: skip
        ],
        "summary": "Booked Rex in.",
    }
    manager = SessionManager(RedisMemoryStore(config), llm=ScriptedLLM(summary=answer),
                             owns_store=True)  # fmt: skip
    try:
        await manager.start_session(session_id="v02-call", phone_number=NUMBER)
        manager.add_turn("v02-call", "user", "Hi, I'm Maria, my dog Rex is a collie.")
        saved = await manager.end_session("v02-call")
    finally:
        await manager.aclose()
    assert saved is not None

    report = run_v01_call(v01, config)
    assert report["returning"] is False  # 0.1 cannot read it: its call goes on without memory

    assert config.url is not None
    client = aioredis.Redis.from_url(config.url.get_secret_value())
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{config.key_prefix}:user:*")]
        aside = next(k for k in keys if k.endswith(":profile:unreadable"))
        kept = codec.decode_profile(await client.get(aside) or b"")
    finally:
        await client.aclose()
    assert kept == saved  # set aside whole, readable by 0.2, never overwritten


async def test_a_call_a_01_worker_kept_in_its_outbox_is_saved_by_02(
    v01: Path, config: RedisConfig
) -> None:
    config = replace(config, trust_caller_id=True)
    report = run_v01_call(v01, config, url=f"redis://127.0.0.1:{closed_port()}/0")
    assert report["returning"] is False
    assert list((config.data_dir / "outbox").glob("*.json"))  # 0.1 kept the call on disk

    manager = SessionManager(RedisMemoryStore(config), owns_store=True)
    try:
        saved, left = await manager.flush_outbox()
        ctx = await manager.start_session(session_id="v02-next", phone_number=NUMBER)
    finally:
        await manager.aclose()
    assert (saved, left) == (1, 0)
    assert ctx.is_returning and "Asked for a morning slot." in ctx.memory_prompt()
