"""The guide's own snippet, the check command, and the LiveKit/SIP files shipped in the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sarah_agent.agent import AGENT_NAME

from .support.servers import TestServer

ROOT = Path(__file__).resolve().parents[1]

# The guide's test_redis.py, word for word, but for its import line.
GUIDE_SNIPPET = """
import asyncio
from livekit.plugins.caller_memory import RedisMemoryStore, RedisConfig

async def test():
    config = RedisConfig.from_env()
    store = RedisMemoryStore(config)

    if await store.connect():
        health = await store.health_check()
        print(f"✅ Connected! Latency: {health['latency_ms']}ms")

        # Test user creation
        user_id = await store.get_or_create_user_id(phone_number="+1234567890")
        print(f"User ID: {user_id}")
    else:
        print("❌ Connection failed")

    await store.disconnect()

asyncio.run(test())
"""


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_guides_snippet_connects_to_a_fresh_server(tmp_path: Path) -> None:
    script = tmp_path / "test_redis.py"
    script.write_text(GUIDE_SNIPPET)
    with TestServer(appendonly=False) as server:
        out = _run([sys.executable, str(script)], {"REDIS_URL": server.url}, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("✅ Connected! Latency: ") and lines[0].endswith("ms")
    assert lines[1].startswith("User ID: ") and len(lines[1].split()[-1]) == 22


def test_the_guides_snippet_reports_a_refused_connection(tmp_path: Path) -> None:
    script = tmp_path / "test_redis.py"
    script.write_text(GUIDE_SNIPPET)
    server = TestServer(appendonly=False)
    server.start()
    port = server.port
    server.stop()
    out = _run([sys.executable, str(script)], {"REDIS_URL": f"redis://127.0.0.1:{port}"}, tmp_path)
    assert out.stdout.strip() == "❌ Connection failed"
    assert "Redis connection failed: Connection refused" in out.stderr


def test_check_command_creates_and_removes_a_test_identity(tmp_path: Path) -> None:
    with TestServer(appendonly=False) as server:
        out = _run(
            [sys.executable, "-m", "livekit.plugins.caller_memory.cli", "check"],
            {"REDIS_URL": server.url},
            tmp_path,
        )
        import redis

        leftover = redis.Redis.from_url(server.url).keys("*")
    assert out.returncode == 0, out.stderr
    assert "✅ Connected! Latency:" in out.stdout and "User ID:" in out.stdout
    assert leftover == []


def test_check_command_fails_with_the_guides_text(tmp_path: Path) -> None:
    with TestServer(appendonly=False, password="s3cret-pass") as server:
        out = _run(
            [sys.executable, "-m", "livekit.plugins.caller_memory.cli", "check"],
            {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(server.port)},
            tmp_path,
        )
    assert out.returncode == 1
    assert "Redis connection failed: NOAUTH Authentication required" in out.stderr
    assert "Set REDIS_PASSWORD" in out.stderr


def _room_name(rule: dict[str, object], caller: str, dialled: str) -> str:
    """The room LiveKit SIP puts a call in, as livekit/protocol's sip.EvaluateDispatchRule
    names it (``random`` stands for its 12-character guid)."""
    if "dispatchRuleDirect" in rule:
        return str(rule["dispatchRuleDirect"]["roomName"])  # type: ignore[index]
    if "dispatchRuleIndividual" in rule:
        spec: dict[str, object] = rule["dispatchRuleIndividual"]  # type: ignore[assignment]
        room = f"{spec['roomPrefix']}_{caller}" if spec.get("roomPrefix") else caller
        return room if spec.get("noRandomness") else f"{room}_random"
    spec = rule["dispatchRuleCallee"]  # type: ignore[assignment]
    room = f"{spec['roomPrefix']}_{dialled}" if spec.get("roomPrefix") else dialled
    return f"{room}_random" if spec.get("randomize") else room


def test_sip_files_dispatch_to_sarah_in_rooms_that_do_not_name_the_caller() -> None:
    trunk = json.loads((ROOT / "sip" / "inbound-trunk.json").read_text())
    assert trunk["trunk"]["numbers"]
    rule = json.loads((ROOT / "sip" / "dispatch-rule.json").read_text())["dispatch_rule"]
    assert [a["agentName"] for a in rule["roomConfig"]["agents"]] == [AGENT_NAME]
    # LiveKit logs the room name with every line of a job, and puts it in its spans: the
    # caller's number must not be in it. Each call gets a room of its own all the same.
    dialled = trunk["trunk"]["numbers"][0]
    room = _room_name(rule["rule"], caller="+14155550134", dialled=dialled)
    assert "4155550134" not in room
    assert room.endswith("_random") and dialled in room


def test_livekit_yaml_is_a_local_dev_server() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "livekit.yaml").read_text())
    assert config["port"] == 7880
    assert config["keys"] == {"devkey": "secret"}
    assert "address" in config["redis"]
