"""Every command as a newcomer meets it: run as a subprocess, each bad setting and each bad
calls file gets one line naming what to fix, a non-zero exit and no traceback; ``sarah
replay`` always shows something (the recording when OpenAI does not answer, the outbox when
Redis does not), uses the demo's private server unless a Redis is named, and long work shows
a progress bar on a terminal.

Every process gets a data folder of its own and a Redis that is a private server or a refused
port: never the shared one on 6379.
"""

from __future__ import annotations

import http.server
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
import redis.asyncio
from livekit.agents import APIConnectionError
from livekit.agents.llm import ChatContext

from livekit.plugins.caller_memory import (
    CallSummary,
    MemoryStore,
    RedisConfig,
    RedisMemoryStore,
    __version__,
)
from livekit.plugins.caller_memory import version as plugin_version
from livekit.plugins.caller_memory.models import SessionRecord
from livekit.plugins.caller_memory.outbox import Outbox
from livekit.plugins.caller_memory.prefixes import (
    CallerPrefixes,
    choose_prefix,
    find_caller_prefixes,
    where,
)
from livekit.plugins.caller_memory.store import Keys
from livekit.plugins.caller_memory.testing import Reply, ScriptedLLM
from sarah_agent import __version__ as sarah_version
from sarah_agent import replay as replay_module
from sarah_agent.replay import PROGRESS_BAR_CALLS, CallsFile, calls_schema, load_calls

from .support.servers import TestServer

SARAH = [sys.executable, "-m", "sarah_agent"]
CALLER_MEMORY = [sys.executable, "-m", "livekit.plugins.caller_memory.cli"]
STRONG_SECRET = "cli-errors-secret-3c8e1a7f5b9d2046e8a1c3f5"


def _refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REFUSED = f"redis://127.0.0.1:{_refused_port()}"


def _env(tmp: Path, **changes: str | None) -> dict[str, str]:
    """The environment of a newcomer's shell: no REDIS_*, MEMORY_*, OPENAI_* or LIVEKIT_*
    settings but those given (None removes one), a data folder of this test's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "MEMORY_", "OPENAI_", "LIVEKIT_", "SARAH_"))
    }
    env["MEMORY_DATA_DIR"] = str(tmp / "data")
    env["MEMORY_PHONE_HASH_SECRET"] = STRONG_SECRET
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run(command: list[str], tmp: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=_env(tmp, **env),
        cwd=tmp,  # no .env of the repository's
        capture_output=True,
        text=True,
        timeout=120,  # a hang is a failure
    )


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


# -- bad settings, every command --------------------------------------------------------------

BAD_SETTINGS = [
    ({"REDIS_URL": "garbage"}, "REDIS_URL"),
    ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
    ({"MEMORY_SESSION_TTL_HOURS": "-1"}, "MEMORY_SESSION_TTL_HOURS"),
    ({"MEMORY_PHONE_HASH_SECRET": "short"}, "MEMORY_PHONE_HASH_SECRET"),
    (
        {"MEMORY_REQUIRE_SECRET": "true", "MEMORY_PHONE_HASH_SECRET": None},
        "MEMORY_PHONE_HASH_SECRET",
    ),
    ({"MEMORY_DEFAULT_REGION": "USA"}, "MEMORY_DEFAULT_REGION"),
    ({"MEMORY_DEFAULT_REGION": "XX"}, "MEMORY_DEFAULT_REGION"),  # the pattern's, no country
    ({"MEMORY_REDACT": "cards"}, "MEMORY_REDACT"),
    ({"MEMORY_LOOKUP_TIMEOUT_MS": "soon"}, "MEMORY_LOOKUP_TIMEOUT_MS"),
    ({"REDIS_HOST": "127.0.0.1:6390"}, "REDIS_HOST"),  # not redis-py's "Port could not be cast"
    ({"REDIS_URL": f"{REFUSED}/abc"}, "REDIS_URL"),  # not database 0, silently
    ({"REDIS_CLUSTER_NODES": "10.0.0.2:6379,10.0.0.3"}, "REDIS_CLUSTER_NODES"),  # no port
    ({"MEMORY_PROFILE_TTL_DAYS": "99999999"}, "MEMORY_PROFILE_TTL_DAYS"),  # 274,000 years
    ({"MEMORY_PHONE_HASH_SECRET": "'short'"}, "MEMORY_PHONE_HASH_SECRET"),
]

COMMANDS = {
    "sarah replay": [*SARAH, "replay"],
    "sarah start": [*SARAH, "start"],
    "caller-memory check": [*CALLER_MEMORY, "check"],
    "caller-memory stats": [*CALLER_MEMORY, "stats"],
    "caller-memory flush": [*CALLER_MEMORY, "flush"],
    "caller-memory export": [*CALLER_MEMORY, "export", "+14155550134"],
}
_LIVEKIT_READY = {
    "OPENAI_API_KEY": "sk-test",
    "LIVEKIT_URL": "ws://127.0.0.1:1",
    "LIVEKIT_API_KEY": "k",
    "LIVEKIT_API_SECRET": "s",
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("setting", "named"), BAD_SETTINGS, ids=[n for _, n in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_naming_it(
    command: str, setting: dict[str, str | None], named: str, tmp_path: Path
) -> None:
    env: dict[str, str | None] = {"REDIS_URL": REFUSED, **setting}
    if command == "sarah start":
        env.update(_LIVEKIT_READY)
    done = _run(COMMANDS[command], tmp_path, **env)

    _no_traceback(done)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("❌"), done.stderr
    assert named in lines[0]
    assert "Value error," not in lines[0]  # pydantic's wording, not ours


def test_the_data_folder_the_outbox_makes_first_is_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    umask = os.umask(0o022)  # the usual one: folders would come out 0755
    try:
        done = _run([*SARAH, "replay"], tmp_path, REDIS_URL=REFUSED, MEMORY_DATA_DIR=str(data))
    finally:
        os.umask(umask)
    assert done.returncode == 1 and list((data / "outbox").glob("*.json"))  # calls kept
    for folder in (data / "outbox", data, data.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_data_folder_that_cannot_be_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    done = _run([*SARAH, "replay"], tmp_path, MEMORY_DATA_DIR=str(tmp_path / "a-file" / "data"))
    _no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.startswith("❌ sarah replay: MEMORY_DATA_DIR: ")
    assert "Not a directory" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_outbox_folder_that_cannot_be_written_is_said_at_start(
    redis_server: TestServer, tmp_path: Path
) -> None:
    # Found only at the first Redis outage, it lost the calls the outbox was to keep.
    (tmp_path / "a-file").write_text("")
    bad = str(tmp_path / "a-file" / "data")
    done = _run([*CALLER_MEMORY, "check"], tmp_path, REDIS_URL=redis_server.url,
                MEMORY_DATA_DIR=bad)  # fmt: skip
    _no_traceback(done)
    assert done.returncode == 1 and "✅ Connected!" in done.stdout
    [said] = done.stderr.strip().splitlines()[-1:]
    assert said.startswith("❌ MEMORY_DATA_DIR: the local outbox cannot be written in ")
    assert "Not a directory" in said and "would be lost" in said
    fine = _run([*CALLER_MEMORY, "check"], tmp_path, REDIS_URL=redis_server.url)
    assert fine.returncode == 0 and "✅ Local outbox: " in fine.stdout
    # A worker (the agent's CallerMemory(), in the worker's main process) does not start.
    worker = subprocess.run(
        [sys.executable, "-c", "from livekit.plugins import caller_memory as m; m.CallerMemory()"],
        env=_env(tmp_path, REDIS_URL=redis_server.url, MEMORY_DATA_DIR=bad),
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 1
    assert "ConfigError: MEMORY_DATA_DIR: the local outbox cannot be written" in worker.stderr


def test_the_python_api_says_the_same_line() -> None:
    from livekit.plugins.caller_memory import ConfigError

    with pytest.raises(ConfigError) as raised:
        RedisConfig(port="abc")
    text = str(raised.value)
    assert "REDIS_PORT" in text and "\n" not in text and "fix it in the environment" in text


# -- bad calls files -----------------------------------------------------------------------

BAD_FILES: list[tuple[str, bytes | None, list[str]]] = [
    ("missing.json", None, ["missing.json", "no such file"]),
    ("broken.json", b'{"calls": [', ["broken.json", "not JSON", "line 1"]),
    ("latin1.json", '{"about": "caf\xe9"}'.encode("latin-1"), ["latin1.json", "not UTF-8"]),
    ("list.json", b"[1, 2]", ["list.json", 'JSON object with a "calls" list']),
    ("empty.json", b'{"calls": []}', ["empty.json", "calls: no calls"]),
    (
        "speaker.json",
        json.dumps(
            {"calls": [{"caller": "+14155550134", "turns": [["caller", "hi"], ["bot", "x"]]}]}
        ).encode(),
        ["speaker.json", "call 1, turn 2, speaker", "caller or user"],
    ),
    (
        "silent.json",
        json.dumps(
            {"calls": [{"caller": None, "turns": [["caller", "a"]]}, {"turns": [["sarah", "hi"]]}]}
        ).encode(),  # fmt: skip
        ["silent.json", "call 2", "no turn of the caller's"],
    ),
    (
        "number.json",
        json.dumps({"calls": [{"caller": 14155550134, "turns": [["caller", "hi"]]}]}).encode(),
        ["number.json", "call 1, caller", "must be a string, or null"],
    ),
    (
        "pair.json",
        json.dumps({"calls": [{"turns": [["caller", "hi", "extra"]]}]}).encode(),
        ["pair.json", "call 1, turn 1", "a turn is a pair"],
    ),
    (
        "typo.json",
        json.dumps({"calls": [{"callr": "+14155550134", "turns": [["caller", "hi"]]}]}).encode(),
        ["typo.json", "call 1, callr", "not a field of the format"],
    ),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD_FILES, ids=[n for n, _, _ in BAD_FILES])
def test_a_bad_calls_file_is_one_line_naming_the_call_and_field(
    name: str, content: bytes | None, says: list[str], tmp_path: Path
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    done = _run([*SARAH, "replay", "--calls", name], tmp_path, REDIS_URL=REFUSED)

    _no_traceback(done)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("❌ sarah replay: --calls "), done.stderr
    for text in says:
        assert text in lines[0]
    assert done.stdout == ""  # nothing started
    # A turn's text never shows in the message.
    assert "extra" not in lines[0] and "caf" not in lines[0]


def test_a_folder_as_calls_file_is_named(tmp_path: Path) -> None:
    done = _run([*SARAH, "replay", "--calls", str(tmp_path)], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 1 and "a folder, not a file" in done.stderr


def test_user_and_agent_turns_are_the_caller_and_sarah(tmp_path: Path) -> None:
    path = tmp_path / "calls.json"
    path.write_text(
        json.dumps(
            {
                "calls": [
                    {
                        "caller": "+14155550134",
                        "turns": [["user", "Hi, I'm Ana."], ["agent", "Hello Ana."]],
                    },
                    {"turns": [["caller", "Hello?"], ["assistant", "Hi."]]},
                ]
            }
        )
    )
    calls = load_calls(path)
    assert calls[0].caller_lines == ["Hi, I'm Ana."] and calls[0].sarah_lines == ["Hello Ana."]
    assert calls[1].caller is None and calls[1].sarah_lines == ["Hi."]


def test_the_shipped_schema_is_the_model_and_the_recordings_follow_it() -> None:
    root = Path(__file__).parent.parent / "sarah_agent"
    assert json.loads((root / "calls.schema.json").read_text()) == calls_schema()
    shipped = json.loads((root / "recorded_calls.json").read_text())
    assert shipped["$schema"] == "./calls.schema.json"
    assert len(CallsFile.model_validate(shipped).calls) == len(load_calls()) == 4


# -- usage, -v, help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [*SARAH],
        [*SARAH, "serve"],
        [*SARAH, "replay", "--llm", "someone"],
        [*SARAH, "replay", "--file", "x.json"],
        [*CALLER_MEMORY],
        [*CALLER_MEMORY, "bogus"],
    ],
    ids=["sarah", "sarah-serve", "replay-llm", "replay-typo", "caller-memory", "cm-bogus"],
)
def test_a_command_line_not_understood_exits_2(command: list[str], tmp_path: Path) -> None:
    done = _run(command, tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        [*CALLER_MEMORY, "check", "-v"],
        [*CALLER_MEMORY, "-v", "check"],
        [*SARAH, "replay", "-v"],
        [*SARAH, "-v", "replay"],
    ],
    ids=["cm-check-v", "cm-v-check", "replay-v", "v-replay"],
)
def test_v_before_or_after_the_command_shows_the_traceback(
    command: list[str], tmp_path: Path
) -> None:
    done = _run(command, tmp_path, REDIS_URL="garbage")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "REDIS_URL" in done.stderr.splitlines()[-1]


# -- versions ---------------------------------------------------------------------------------


def test_both_commands_say_their_version(tmp_path: Path) -> None:
    assert __version__ == sarah_version == "0.2.0"  # released together
    plugin = _run([*CALLER_MEMORY, "--version"], tmp_path)
    assert plugin.returncode == 0 and plugin.stdout == f"caller-memory {__version__}\n"
    sarah = _run([*SARAH, "--version"], tmp_path)
    assert sarah.returncode == 0
    assert sarah.stdout.startswith(
        f"sarah {sarah_version} (livekit-plugins-caller-memory {__version__}, livekit-agents 1."
    )


def _worker_says(tmp_path: Path, redis_url: str, until: str) -> list[str]:
    """What ``sarah start`` writes on standard error, line by line, up to the first line that
    starts with ``until`` (30 lines at most); the worker is then stopped."""
    worker = subprocess.Popen(
        [*SARAH, "start"],
        env=_env(tmp_path, REDIS_URL=redis_url, **_LIVEKIT_READY),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the worker and its job processes, stopped together
    )
    hang = threading.Timer(60, os.killpg, (worker.pid, signal.SIGKILL))  # a hang is a failure
    hang.start()
    said: list[str] = []
    try:
        assert worker.stderr is not None
        while len(said) < 30 and not (said and said[-1].startswith(until)):
            said.append(worker.stderr.readline())
    finally:
        hang.cancel()
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        if worker.stderr is not None:
            worker.stderr.close()
    return said


def test_a_workers_first_line_is_its_version(tmp_path: Path) -> None:
    first = _worker_says(tmp_path, REFUSED, until="")[0]
    assert first.startswith(f"sarah {sarah_version} (livekit-plugins-caller-memory {__version__}")
    assert first.rstrip().endswith(": start")


def test_a_worker_says_which_redis_its_calls_use_before_its_first_call(
    redis_server: TestServer, tmp_path: Path
) -> None:
    # One line when the worker starts (not at its first call): where memory goes, and
    # whether it answers; a Redis that does not answer stops nothing.
    for url, state in ((redis_server.url, "· ok, "), (REFUSED, "· ❌ Redis connection failed")):
        said = _worker_says(tmp_path, url, until="Memory: ")
        line = said[-1]
        assert line.startswith(f"Memory: 127.0.0.1:{url.rsplit(':', 1)[1]} (REDIS_URL"), said
        assert state in line, line


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_with_a_port_out_of_range_is_one_line_and_exit_2(port: str, tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "serve", "--port", port], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 2
    assert done.stderr == (
        "❌ caller-memory serve: argument --port: must be a number from 0 to 65535 (0: any free "
        "port) (see caller-memory serve --help)\n"
    )


def test_serve_on_a_busy_port_names_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run([*CALLER_MEMORY, "serve", "--port", str(port)], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.startswith(f"❌ --port {port}: 127.0.0.1:{port} is already in use")
    assert len(done.stderr.strip().splitlines()) == 1 and "--port 0" in done.stderr


def test_no_redis_anywhere_is_said_once(tmp_path: Path) -> None:
    # Nothing named, nothing on the port, and no server binary to start a private one: the
    # command and the store it opens both ask, and the answer is said once.
    done = _run([*CALLER_MEMORY, "check"], tmp_path, REDIS_PORT=REFUSED.rsplit(":", 1)[1],
                MEMORY_REDIS_SERVER_BIN=str(tmp_path / "no-such-server"))  # fmt: skip
    _no_traceback(done)
    assert done.returncode == 1
    assert done.stderr.count("no Redis configured") == 1, done.stderr
    assert "MEMORY_REDIS_SERVER_BIN" in done.stderr


def test_forget_refuses_a_number_that_is_none_before_asking(tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "forget", "hello 555"], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode != 0
    assert "a phone number has no letters" in done.stderr
    assert "--yes" not in done.stderr  # not the prompt's question: the number's problem first


@pytest.mark.server_binary
@pytest.mark.parametrize("answer", ["n", "y"])
def test_forget_names_the_store_before_it_asks(
    redis_server: TestServer, tmp_path: Path, answer: str
) -> None:
    # An operator at a terminal reads which Redis and prefix would lose the caller before
    # saying yes to an erasure that cannot be undone.
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [*CALLER_MEMORY, "forget", "+14155550188"],
            env={**_env(tmp_path, REDIS_URL=redis_server.url), "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream: the order as the operator sees it
            text=True,
        ) as forget:
            os.write(controller, f"{answer}\n".encode())
            said, _ = forget.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    assert forget.returncode == 0, said
    assert said.index("memory: Redis ") < said.index("Erase everything held about this caller?")
    assert ("Nothing erased." in said) is (answer == "n")
    assert ("Erased:" in said) is (answer == "y")


@pytest.mark.parametrize("command", ["export", "forget", "forget-from-stdin"])
def test_a_command_given_no_number_says_so(tmp_path: Path, command: str) -> None:
    # An empty caller id is a withheld one to the plugin; an operator simply typed none.
    args = [command, ""] if command != "forget-from-stdin" else ["forget", "-"]
    done = subprocess.run(
        [*CALLER_MEMORY, *args],
        env=_env(tmp_path, REDIS_URL=REFUSED),
        cwd=tmp_path,
        input="\n",  # what `forget -` reads: an empty line
        capture_output=True,
        text=True,
        timeout=120,
    )
    _no_traceback(done)
    assert done.returncode == 1
    assert "no number given" in done.stderr
    assert "withheld" not in done.stderr


def test_a_command_line_error_is_one_line(tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "withdraw-fact", "+14155550134", "two", "--reason", "x"],
                tmp_path, REDIS_URL=REFUSED)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "❌ caller-memory withdraw-fact: argument fact_id: invalid int value: 'two' "
        "(see caller-memory withdraw-fact --help)\n"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--llm", "someone"], "argument --llm: invalid choice: 'someone'"),
    ],
    ids=["unknown-option", "bad-choice"],
)
def test_a_replay_command_line_error_is_one_line(
    args: list[str], said: str, tmp_path: Path
) -> None:
    done = _run([*SARAH, "replay", *args], tmp_path, REDIS_URL=REFUSED)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()  # no usage block
    assert line.startswith(f"❌ sarah replay: {said}") and "sarah replay --help" in line


@pytest.mark.parametrize("user_id", ["", "../../etc", "a b", "{x}"])
def test_forget_refuses_what_is_no_user_id_before_writing(user_id: str, tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "forget", "--user-id", user_id, "--yes"], tmp_path,
                REDIS_URL=REFUSED)  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("❌ caller-memory forget: argument --user-id: not a user id")


def test_console_settings_have_upper_bounds(tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "serve"], tmp_path, REDIS_URL=REFUSED,
                MEMORY_CONSOLE_SESSION_HOURS="99999999")  # fmt: skip
    _no_traceback(done)
    assert done.returncode == 1
    assert "MEMORY_CONSOLE_SESSION_HOURS: Input should be less than or equal to 720" in done.stderr


def test_serve_after_v_is_still_the_console(tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "-v", "serve", "--help"], tmp_path, REDIS_URL=REFUSED)
    assert done.returncode == 0 and done.stdout.startswith("usage: caller-memory serve")


def test_replay_help_is_plain_text(tmp_path: Path) -> None:
    done = _run([*SARAH, "replay", "--help"], tmp_path)
    assert done.returncode == 0
    assert "``" not in done.stdout and ":class:" not in done.stdout
    for text in ("--calls FILE", "REDIS_URL", "calls.schema.json", "exit codes"):
        assert text in done.stdout
    top = _run([*SARAH, "--help"], tmp_path)
    assert top.returncode == 0 and "``" not in top.stdout and "sarah replay" in top.stdout


def test_a_command_that_works_keeps_the_library_log_quiet(
    redis_server: TestServer, tmp_path: Path
) -> None:
    quiet = _run([*CALLER_MEMORY, "check"], tmp_path, REDIS_URL=redis_server.url)
    assert quiet.returncode == 0 and quiet.stdout.startswith("✅ Connected!")
    # Which memory it used; besides, only the warning that this server keeps no data.
    said = [line for line in quiet.stderr.splitlines() if not line.startswith("⚠️")]
    assert len(said) == 1, quiet.stderr
    assert said[0].startswith(f"memory: Redis 127.0.0.1:{redis_server.port}/0, prefix ")
    loud = _run([*CALLER_MEMORY, "check", "-vv"], tmp_path, REDIS_URL=redis_server.url)
    assert loud.returncode == 0 and loud.stderr != ""


# -- after sarah replay, every command sees Sarah's callers ----------------------------------

ANA = "+14155550134"
"""A caller of Sarah's recordings (sarah_agent/recorded_calls.json)."""


def _memory_line(done: subprocess.CompletedProcess[str]) -> str:
    [line] = [line for line in done.stderr.splitlines() if line.startswith("memory: ")]
    return line


def test_after_sarah_replay_every_command_reads_sarahs_callers(tmp_path: Path) -> None:
    with TestServer(appendonly=False) as server:  # a Redis of this test's own: no other prefix
        env = {"REDIS_URL": server.url}
        assert _run([*SARAH, "replay"], tmp_path, **env).returncode == 0
        where = f"memory: Redis 127.0.0.1:{server.port}/0, prefix sarah (the only prefix holding "
        stats = _run([*CALLER_MEMORY, "stats"], tmp_path, **env)
        assert stats.returncode == 0, stats.stderr
        assert "\ncallers                       2\n" in stats.stdout  # Ana and Ben
        assert f"written by                    {__version__} (3 saves, last " in stats.stdout
        assert _memory_line(stats) == (
            f"{where}callers here; MEMORY_KEY_PREFIX is not set; 2 callers); no other prefix "
            "holds callers"
        )
        exported = _run([*CALLER_MEMORY, "export", ANA], tmp_path, **env)
        assert exported.returncode == 0, exported.stderr
        assert json.loads(exported.stdout)["user_ids"] and _memory_line(exported).startswith(where)
        requests = _run([*CALLER_MEMORY, "requests"], tmp_path, **env)
        assert requests.returncode == 0 and _memory_line(requests).startswith(where)

        # A caller under the plugin's own prefix too: that one is read, Sarah's are named.
        client = redis.Redis.from_url(server.url)
        client.set("callmem:phone:{x}", "x", ex=600)
        client.close()
        stats = _run([*CALLER_MEMORY, "stats"], tmp_path, **env)
        assert "\ncallers                       1\n" in stats.stdout
        assert _memory_line(stats).endswith(
            ", prefix callmem (the default; MEMORY_KEY_PREFIX is not set; 1 caller); other "
            "prefixes holding callers: sarah (2) (MEMORY_KEY_PREFIX=... to read one)"
        )
        # MEMORY_KEY_PREFIX decides, always.
        named = _run([*CALLER_MEMORY, "stats"], tmp_path, MEMORY_KEY_PREFIX="sarah", **env)
        assert "\ncallers                       2\n" in named.stdout
        assert _memory_line(named).endswith(
            ", prefix sarah (MEMORY_KEY_PREFIX; 2 callers); other prefixes holding callers: "
            "callmem (1) (MEMORY_KEY_PREFIX=... to read one)"
        )
        assert server.password is None or server.password not in stats.stderr


def test_the_console_shows_sarahs_callers_and_says_so(tmp_path: Path) -> None:
    with TestServer(appendonly=False) as server:
        client = redis.Redis.from_url(server.url)
        client.set("sarah:phone:{x}", "x", ex=600)
        client.close()
        console = subprocess.Popen(
            [*CALLER_MEMORY, "serve", "--port", "0"],
            env=_env(tmp_path, REDIS_URL=server.url),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        hang = threading.Timer(60, console.kill)  # a hang is a failure
        hang.start()
        try:
            assert console.stderr is not None
            said = [console.stderr.readline() for _ in range(3)]  # a warning may come first
        finally:
            hang.cancel()
            console.terminate()
            console.wait(timeout=30)
            if console.stderr is not None:
                console.stderr.close()
    [line] = [line for line in said if line.startswith("memory: ")]
    assert line.startswith(
        f"memory: Redis 127.0.0.1:{server.port}/0, prefix sarah (the only prefix holding callers"
    )


def test_a_prefix_is_chosen_by_the_rules_and_read_from_phone_keys_only() -> None:
    assert Keys.prefix_of_phone_key("sarah:phone:{abc}") == "sarah"
    for other in ("sarah:phone:{abc}:unreadable", "a:b:phone:{x}", "sarah:user:{x}:profile"):
        assert Keys.prefix_of_phone_key(other) is None
    default = RedisConfig()
    for callers, chosen in [
        ({}, "callmem"),
        ({"sarah": 2}, "sarah"),
        ({"sarah": 2, "callmem": 1}, "callmem"),
        ({"sarah": 2, "acme": 5}, "callmem"),  # several, none the default: none guessed
    ]:
        assert choose_prefix(default, CallerPrefixes(callers)).prefix == chosen
    # A search cut short may have missed the default's callers: no prefix is guessed.
    assert choose_prefix(default, CallerPrefixes({"sarah": 2}, complete=False)).prefix == "callmem"
    named = RedisConfig(key_prefix="acme")
    assert choose_prefix(named, CallerPrefixes({"sarah": 2})).prefix == "acme"


async def test_the_search_for_prefixes_is_bounded(config: RedisConfig) -> None:
    client = redis.asyncio.Redis.from_url(config.redis_url())
    async with client.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(f"{config.key_prefix}:filler:{i}", "x", ex=600)
        await pipe.execute()
    await client.aclose()
    store = RedisMemoryStore(config)
    assert await store.connect()
    found = await find_caller_prefixes(store, max_keys=1000)
    await store.disconnect()
    assert not found.complete and found.examined == 1000
    line = where(config, choose_prefix(config, found), found, "Redis x")
    assert line.endswith("(searched the first 1,000 keys only)")


def test_sarah_replay_then_stats_on_a_fresh_machine(tmp_path: Path) -> None:
    # The README's path with nothing configured: the replay writes into the demo's private
    # server; stats finds it there, whether or not a Redis answers on localhost:6379 (it only
    # reads that one, and only to look for callers).
    shared = redis.Redis(port=6379, socket_connect_timeout=0.25, socket_timeout=1)
    try:
        if any(shared.scan_iter(match="*:phone:{*}", count=1000)):
            pytest.skip("the Redis on localhost:6379 holds callers: stats rightly reads those")
    except redis.RedisError:
        pass  # nothing there: stats uses the private server straight away
    finally:
        shared.close()
    assert _run([*SARAH, "replay"], tmp_path).returncode == 0
    stats = _run([*CALLER_MEMORY, "stats"], tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "\ncallers                       2\n" in stats.stdout
    line = _memory_line(stats)
    assert line.startswith("memory: the private server 127.0.0.1:")
    assert f"data in {tmp_path / 'data' / 'redis'}" in line
    assert ", prefix sarah (the only prefix holding callers here;" in line
    exported = _run([*CALLER_MEMORY, "export", ANA], tmp_path)
    assert exported.returncode == 0 and json.loads(exported.stdout)["user_ids"]


# -- sarah replay always shows something -------------------------------------------------------


def _calls(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("── Call ")]


@pytest.mark.server_binary
def test_replay_without_redis_settings_uses_the_demos_private_server(tmp_path: Path) -> None:
    first = _run([*SARAH, "replay"], tmp_path)
    _no_traceback(first)
    assert first.returncode == 0, first.stderr
    header = first.stdout.splitlines()[1]
    data = tmp_path / "data" / "redis"
    assert header.startswith("Memory: the demo's private server on 127.0.0.1:")
    assert str(data) in header and "localhost:6379" not in first.stdout
    # Its data is under the data folder this run was given, and nowhere else.
    assert (data / "port").is_file() and any(data.glob("appendonly*"))
    assert "Calls: 3 saved to Redis, 1 with no usable number (nothing to save)." in first.stdout

    second = _run([*SARAH, "replay"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert [c.endswith("returning caller") for c in _calls(second.stdout)] == [
        True,
        True,
        True,
        False,
    ]
    # The replay stopped the server it started: the port it used answers no more.
    port = int((data / "port").read_text())
    with socket.socket() as s, pytest.raises(OSError):
        s.connect(("127.0.0.1", port))


def test_a_reader_that_stops_reading_ends_the_replay_quietly(tmp_path: Path) -> None:
    # `sarah replay | head -2`: the pipe closes while the calls still print.
    with subprocess.Popen(
        [*SARAH, "replay"], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as replay:  # fmt: skip
        assert replay.stdout is not None and replay.stderr is not None
        first = replay.stdout.readline()
        replay.stdout.close()
        error = replay.stderr.read()
        assert replay.wait(timeout=120) == 141
    assert first.startswith("LLM:") and error == ""


def test_replay_named_by_redis_port_alone_never_swaps_it_for_its_private_server(
    tmp_path: Path,
) -> None:
    # The demo's rule: REDIS_PORT names the Redis it writes to. Nothing answers there, so the
    # calls wait in the outbox; the header must not say "ok" of a server it did not use.
    port = REFUSED.rsplit(":", 1)[1]
    done = _run([*SARAH, "replay"], tmp_path, REDIS_PORT=port)
    _no_traceback(done)
    assert done.returncode == 1
    header = done.stdout.splitlines()[1]
    assert f"localhost:{port}" in header and "(REDIS_PORT)" in header and "ok" not in header
    assert "0 saved to Redis, 3 kept in the local outbox" in done.stdout
    assert not (tmp_path / "data" / "redis").exists()  # no private server was started


def test_replay_against_a_redis_that_wants_a_password_says_so_and_fails(
    tmp_path: Path,
) -> None:
    server = TestServer(data_dir=tmp_path / "locked", appendonly=False, password="pw-9f3e1c7a")
    server.start()
    try:
        unlocked = server.url
        locked = unlocked.replace(":pw-9f3e1c7a@", "@").replace("redis://@", "redis://")
        assert "pw-9f3e1c7a" not in locked
        done = _run([*SARAH, "replay"], tmp_path, REDIS_URL=locked)
        _no_traceback(done)
        assert done.returncode == 1
        assert "NOAUTH Authentication required" in done.stdout.splitlines()[1]
        assert "Set REDIS_PASSWORD" in done.stderr
        assert done.stdout.count("saved: to the local outbox, not Redis (unavailable)") == 3
        assert "0 saved to Redis, 3 kept in the local outbox" in done.stdout
        assert done.stderr.strip().splitlines()[-1].startswith("❌ sarah replay: the memory store")
        assert "`MEMORY_KEY_PREFIX=sarah caller-memory flush`" in done.stderr
        assert len(Outbox(tmp_path / "data" / "outbox")) == 3

        # With the password, the next replay writes the outbox first and says so.
        again = _run([*SARAH, "replay"], tmp_path, REDIS_URL=unlocked)
        assert again.returncode == 0, again.stderr
        assert "Outbox: 3 call(s) kept by earlier runs, written to Redis now" in again.stdout
        assert [c.endswith("returning caller") for c in _calls(again.stdout)][:3] == [True] * 3
        assert len(Outbox(tmp_path / "data" / "outbox")) == 0
    finally:
        server.stop()


def test_replay_falls_back_to_the_recording_when_openai_does_not_answer(
    config: RedisConfig, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "OPENAI_API_KEY": "sk-test-not-a-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{_refused_port()}/v1",
    }
    done = _run([*SARAH, "replay"], tmp_path, **env)
    _no_traceback(done)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OpenAI" in line]
    assert len(warnings) == 1 and "cannot connect to 127.0.0.1" in warnings[0]
    assert done.stdout.startswith("LLM: offline (Sarah's recorded lines")
    assert len(_calls(done.stdout)) == 4 and "Welcome back, Ana!" in done.stdout

    asked = _run([*SARAH, "replay", "--llm", "openai"], tmp_path, **env)
    _no_traceback(asked)
    assert asked.returncode == 1 and asked.stdout == ""
    assert asked.stderr.startswith("❌ sarah replay: --llm openai: OpenAI cannot be used")


async def test_an_llm_failing_mid_replay_leaves_the_rest_to_the_recording(
    config: RedisConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answered: list[str] = []

    def answer(chat_ctx: ChatContext) -> Reply:
        # The greeting, then an outage: what OpenAI's client raises when the network goes.
        answered.append("x")
        if len(answered) == 1:
            return "Hello, Sarah speaking."
        return APIConnectionError("Connection error.")

    async def flaky(*, asked: bool) -> ScriptedLLM:
        return ScriptedLLM(answer)

    monkeypatch.setattr(replay_module, "_openai_llm", flaky)
    for name, value in {
        "OPENAI_API_KEY": "sk-test",
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": STRONG_SECRET,
        "MEMORY_DATA_DIR": str(config.data_dir),
    }.items():
        monkeypatch.setenv(name, value)

    assert await replay_module.replay() == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("⚠️")]
    assert warnings == [
        "⚠️  the LLM failed on call 1 (Connection error.): the other calls play Sarah's "
        "recorded lines"
    ]
    # The failed call is saved as far as it went; the others ran on the recording.
    assert "saved to Redis: name=Ana · calls=1" in out.split("── Call 2/4")[0]
    assert "Welcome back" not in out.split("── Call 3/4")[0]
    assert "Welcome back, Ana!" in out.split("── Call 3/4")[1]  # the recording's greeting
    assert "── Call 4/4" in out and "Calls: 3 saved to Redis" in out


class _RefusesEveryKey(http.server.BaseHTTPRequestHandler):
    """What OpenAI answers a wrong key: 401 with its error body."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps(
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }  # fmt: skip
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_replay_falls_back_to_the_recording_when_the_key_is_refused(
    config: RedisConfig, tmp_path: Path
) -> None:
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusesEveryKey)
    serving = threading.Thread(target=api.serve_forever, daemon=True)
    serving.start()
    try:
        done = _run(
            [*SARAH, "replay"],
            tmp_path,
            REDIS_URL=config.redis_url(),
            MEMORY_KEY_PREFIX=config.key_prefix,
            OPENAI_API_KEY="sk-wrong",
            OPENAI_BASE_URL=f"http://127.0.0.1:{api.server_address[1]}/v1",
        )
    finally:
        api.shutdown()
        api.server_close()
    _no_traceback(done)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OpenAI" in line]
    assert len(warnings) == 1 and "refused the key (401): check OPENAI_API_KEY" in warnings[0]
    assert len(_calls(done.stdout)) == 4


def test_replay_says_where_each_call_went_with_redis_down(tmp_path: Path) -> None:
    done = _run([*SARAH, "replay"], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 1
    assert "Connection refused" in done.stdout.splitlines()[1]
    assert "no caller number to remember" not in done.stdout
    assert done.stdout.count("saved: to the local outbox") == 3
    assert "saved: nothing (the number is withheld: nobody to remember)" in done.stdout


# -- progress --------------------------------------------------------------------------------


def _on_a_terminal(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its standard output; its exit code and all
    it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        command,
        env={**env, "TERM": "xterm", "COLUMNS": "100"},
        cwd=cwd,
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    out = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("no output for 120 s")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed: the process is done
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.wait(timeout=60)
    return proc.returncode, out.decode(errors="replace") + err


@pytest.fixture
def full_outbox(tmp_path: Path) -> Iterator[int]:
    outbox = Outbox(tmp_path / "data" / "outbox")
    now = datetime.now(timezone.utc)
    for i in range(60):
        record = SessionRecord(session_id=f"progress-{i}", started_at=now, ended_at=now)
        outbox.put(record, phone_hash=f"{i:064x}")
    yield 60


def test_flush_shows_a_bar_on_a_terminal_and_plain_lines_otherwise(
    config: RedisConfig, tmp_path: Path, full_outbox: int
) -> None:
    env = _env(tmp_path, REDIS_URL=config.redis_url(), MEMORY_KEY_PREFIX=config.key_prefix)
    code, screen = _on_a_terminal([*CALLER_MEMORY, "flush"], env, tmp_path)
    assert code == 0, screen
    assert "outbox calls written" in screen and "━" in screen  # rich's bar
    assert f"Outbox: {full_outbox} of {full_outbox} call(s) saved, 0 waiting." in screen

    for i in range(20):
        now = datetime.now(timezone.utc)
        record = SessionRecord(session_id=f"plain-{i}", started_at=now, ended_at=now)
        Outbox(tmp_path / "data" / "outbox").put(record, phone_hash=f"{i + 100:064x}")
    piped = _run([*CALLER_MEMORY, "flush"], tmp_path, REDIS_URL=config.redis_url(),
                 MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert piped.returncode == 0
    assert "━" not in piped.stdout + piped.stderr
    assert "Outbox: 20 of 20 call(s) saved, 0 waiting." in piped.stdout
    # Plain lines instead, on standard error, up to the end.
    assert "outbox calls written: 20/20" in piped.stderr.splitlines()


async def _save_a_call(store: MemoryStore, session_id: str, number: str) -> None:
    phone_hash = store.hasher.hash(number)
    found = await store.lookup(phone_hash)
    now = datetime.now(timezone.utc)
    record = SessionRecord(session_id=session_id, user_id=found.user_id, started_at=now,
                           ended_at=now)  # fmt: skip
    await store.save_call(record, CallSummary(summary="Said hello."), phone_hash=phone_hash)


async def test_stats_says_which_versions_saved_calls(
    config: RedisConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with RedisMemoryStore(config) as store:
        await _save_a_call(store, "v-1", "+14155550111")
        await _save_a_call(store, "v-2", "+14155550112")
        # A newer worker of a rolling upgrade saves last.
        monkeypatch.setattr(plugin_version, "__version__", "0.2.1")
        await _save_a_call(store, "v-3", "+14155550113")
    done = _run([*CALLER_MEMORY, "stats"], tmp_path, REDIS_URL=config.redis_url(),
                MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("written by ")]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    said = line.removeprefix("written by").strip()
    assert said.startswith(f"0.2.1 (1 save, last {today} ")
    assert f"UTC), {__version__} (2 saves, last {today} " in said


def test_stats_says_when_no_version_is_recorded(config: RedisConfig, tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "stats"], tmp_path, REDIS_URL=config.redis_url(),
                MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("written by ")]
    said = line.removeprefix("written by").strip()
    assert said == "no save recorded (workers before 0.2.0 record none)"


def test_stats_counts_a_key_with_a_ttl_past_any_setting(
    config: RedisConfig, tmp_path: Path
) -> None:
    # What MEMORY_PROFILE_TTL_DAYS=99999999 wrote before 0.2.0 refused it: a TTL, but no limit.
    client = redis.Redis.from_url(config.redis_url())
    client.set(f"{config.key_prefix}:phone:{{h}}", "h", ex=99999999 * 86400)
    client.close()
    done = _run([*CALLER_MEMORY, "stats"], tmp_path, REDIS_URL=config.redis_url(),
                MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert done.returncode == 1
    assert "\nkeys without ttl " in done.stdout and "\nkeys past longest ttl " in done.stdout
    [said] = [line for line in done.stderr.splitlines() if line.startswith("❌")]
    assert said.startswith("❌ 1 key with a TTL past 3650 days, longer than any setting allows")
    assert "MEMORY_PROFILE_TTL_DAYS" in said


def test_stats_shows_a_bar_on_a_terminal_and_plain_lines_otherwise(
    config: RedisConfig, tmp_path: Path, full_outbox: int
) -> None:
    env = _env(tmp_path, REDIS_URL=config.redis_url(), MEMORY_KEY_PREFIX=config.key_prefix)
    assert _run([*CALLER_MEMORY, "flush"], tmp_path, REDIS_URL=config.redis_url(),
                MEMORY_KEY_PREFIX=config.key_prefix).returncode == 0  # fmt: skip
    # A keyspace past one plain line's worth (10,000 keys), all with a TTL.
    client = redis.Redis.from_url(config.redis_url())
    with client.pipeline(transaction=False) as pipe:
        for i in range(10_000):
            pipe.set(f"{config.key_prefix}:filler:{i}", "x", ex=600)
        pipe.execute()
    client.close()
    code, screen = _on_a_terminal([*CALLER_MEMORY, "stats"], env, tmp_path)
    assert code == 0, screen
    assert "keys read" in screen and "━" in screen
    assert "callers" in screen

    piped = _run([*CALLER_MEMORY, "stats"], tmp_path, REDIS_URL=config.redis_url(),
                 MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert piped.returncode == 0
    assert "━" not in piped.stdout + piped.stderr
    assert piped.stdout.startswith("server ") and "\ncallers " in piped.stdout
    assert "keys read: 10000" in piped.stderr.splitlines()


def test_replay_shows_a_bar_on_a_terminal_for_many_calls(
    config: RedisConfig, tmp_path: Path
) -> None:
    many = tmp_path / "many.json"
    call = {"caller": "+14155550134", "turns": [["caller", "Hi, it's Ana."], ["sarah", "Hi!"]]}
    many.write_text(json.dumps({"calls": [call] * PROGRESS_BAR_CALLS}))
    env = _env(tmp_path, REDIS_URL=config.redis_url(), MEMORY_KEY_PREFIX=config.key_prefix)
    code, screen = _on_a_terminal([*SARAH, "replay", "--calls", str(many)], env, tmp_path)
    assert code == 0, screen
    assert "━" in screen and f"── Call {PROGRESS_BAR_CALLS}/{PROGRESS_BAR_CALLS}" in screen
    # A handful of calls gets no bar; piped output never does.
    code, few = _on_a_terminal([*SARAH, "replay"], env, tmp_path)
    assert code == 0 and "━" not in few and "── Call 4/4" in few
    piped = _run([*SARAH, "replay", "--calls", str(many)], tmp_path, REDIS_URL=config.redis_url(),
                 MEMORY_KEY_PREFIX=config.key_prefix)  # fmt: skip
    assert piped.returncode == 0 and "━" not in piped.stdout + piped.stderr


# -- a full Redis ------------------------------------------------------------------------------


async def test_forget_erases_a_caller_from_a_redis_that_is_out_of_memory(tmp_path: Path) -> None:
    # A full Redis (maxmemory, noeviction) refuses the erasure's mark, a write; the deletes
    # free room for it. A caller who asked to be forgotten is, whatever the server's state.
    number = "+14155550166"
    with TestServer(appendonly=False) as server:
        config = RedisConfig(
            url=server.url, phone_hash_secret=STRONG_SECRET, data_dir=tmp_path / "seed"
        )
        store = RedisMemoryStore(config)
        record = SessionRecord(
            session_id="AJ_full", started_at=datetime.now(timezone.utc), consented=True
        )
        lookup = await store.lookup(store.hasher.hash(number))
        await store.save_call(
            record, CallSummary(summary="Brakes squeal."), phone_hash=store.hasher.hash(number),
            base=lookup,
        )  # fmt: skip
        await store.disconnect()
        admin = redis.Redis.from_url(server.url)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # full, and still full after the erasure's deletes
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.set("one more", "x")
        check = _run([*CALLER_MEMORY, "check"], tmp_path, REDIS_URL=server.url)
        forget = _run([*CALLER_MEMORY, "forget", number, "--yes"], tmp_path, REDIS_URL=server.url)
        export = _run([*CALLER_MEMORY, "export", number], tmp_path, REDIS_URL=server.url)
        erased = [k for k in admin.scan_iter() if b":erased" in k]
        admin.close()
    _no_traceback(check)
    assert check.returncode == 1
    assert "OOM command not allowed" in check.stderr and "unexpected" not in check.stderr
    _no_traceback(forget)
    assert forget.returncode == 0, forget.stderr
    assert "Erased: 5 Redis key(s)" in forget.stdout  # phone, profile, sessions, calls, session
    # The mark still came first, in the deletes' own script (allow-oom): no save of a call
    # begun before could land between them.
    assert "erasing first, marking after" not in forget.stderr
    assert export.returncode == 0
    assert json.loads(export.stdout) == {"user_ids": [], "keys": {}, "outbox": {}}
    assert len(erased) == 1  # the mark that refuses a call begun before it


def test_an_unknown_option_before_the_command_is_named(tmp_path: Path) -> None:
    done = _run([*CALLER_MEMORY, "--bogus"], tmp_path, REDIS_URL=REFUSED)
    _no_traceback(done)
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr
    assert "required" not in done.stderr  # not "the following arguments are required: command"
