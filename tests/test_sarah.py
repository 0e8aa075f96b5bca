"""Sarah, the reference agent: the offline replay is the product working end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import RedisConfig
from sarah_agent.agent import AGENT_NAME, server
from sarah_agent.replay import load_calls, replay


def _calls(out: str) -> list[str]:
    return re.findall(r"── Call \d+/\d+ · caller \S+ · ([^\n]+)", out)


async def test_replay_remembers_callers_across_calls_and_runs(
    config: RedisConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name, value in {
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": "replay-test-secret-9b4d2f7a1e6c8053d9b4f2a7",
    }.items():
        monkeypatch.setenv(name, value)

    assert await replay() == 0
    first = capsys.readouterr().out
    assert _calls(first) == [
        "new caller",
        "new caller",
        "returning caller",
        "number withheld: no memory for this call",
    ]
    # The returning caller (a different spelling of call 1's number) is greeted by name.
    third = first.split("── Call 3/4")[1]
    # Unverified (no attestation in the recording): the memory given is the first name only.
    assert 'greeting context: {"name": "Ana"}' in third
    assert "Welcome back, Ana!" in third
    assert "name=Ana · calls=2" in third

    assert await replay() == 0
    second = capsys.readouterr().out
    assert _calls(second)[:3] == ["returning caller"] * 3
    assert "name=Ana · calls=4" in second
    # The replay prints no caller's full number.
    for recorded in load_calls():
        digits = re.sub(r"\D", "", recorded.caller or "")
        assert not digits or digits not in re.sub(r"\D", "", first + second)


def test_sarah_is_registered_for_explicit_dispatch() -> None:
    assert AGENT_NAME == "sarah"
    assert server._agent_name == "sarah"
    assert server._entrypoint_fnc is not None and server._session_end_fnc is not None


def _sarah(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "sarah_agent", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,  # a hang is a failure
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["start"], {"OPENAI_API_KEY": "sk-test"}, "LIVEKIT_URL, LIVEKIT_API_KEY"),
        (["dev"], {"OPENAI_API_KEY": "sk-test", "LIVEKIT_URL": "ws://x"}, "LIVEKIT_API_KEY"),
        (
            ["start"],
            {"LIVEKIT_URL": "ws://x", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"},
            "OPENAI_API_KEY",
        ),
        (["console", "--text"], {}, "OPENAI_API_KEY"),
    ],
)
def test_sarah_says_what_is_missing_in_one_line(
    args: list[str], env: dict[str, str], says: str
) -> None:
    done = _sarah(*args, env=env)
    assert done.returncode == 1
    assert says in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_sarah_start_without_the_secret_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Production refuses a per-machine secret: the line names LiveKit's start, not a
    # MEMORY_REQUIRE_SECRET the user never set.
    monkeypatch.delenv("MEMORY_PHONE_HASH_SECRET", raising=False)
    monkeypatch.delenv("MEMORY_REQUIRE_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    env = {"LIVEKIT_URL": "ws://x", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s",
           "OPENAI_API_KEY": "sk-test", "MEMORY_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    done = _sarah("start", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert "required to start a worker in production" in done.stderr
    assert "MEMORY_REQUIRE_SECRET=true" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_sarah_without_a_command_shows_its_usage_and_fails() -> None:
    done = _sarah()
    assert done.returncode == 2 and "sarah replay" in done.stdout
    assert _sarah("serve").returncode == 2
    assert _sarah("--help").returncode == 0
