"""The documentation's promises, run: its code blocks, its sample outputs, its install and
version lines, the one wiring both READMEs show, and the original guide's names.

The blocks are collected from ``README.md``, every ``docs/*.md``, ``CONTRIBUTING.md`` and the
plugin's README, wherever they move; a block is named by its file and line
(``docs/python-api.md:9``).

Markers, an HTML comment on the line right before a fence (invisible on GitHub):

- ``<!-- runnable -->`` before a ``python`` block: a whole script, run in a subprocess against a
  private Redis (``REDIS_URL``) with a data folder of its own; it must exit 0 with no
  traceback. ``runs=2`` runs it twice (memory carries over); ``nothing-configured`` runs it
  with no Redis named and nothing on the port it would try (the private server starts).
- ``<!-- output -->`` before the next block: what the runs print, copied from a real run; a
  fresh run must print the same lines, numbers and ids aside.
- ``<!-- file: PATH -->`` before a ``python`` block: the block is that file of the repository
  whole. A worker entrypoint needs a LiveKit server to run, so the file is imported in a
  subprocess, its ``AgentServer`` checked (agent name, entrypoint, ``on_session_end``), and its
  command line run with ``--help`` (which goes through ``cli.run_app(server)``); no job runs.
- ``<!-- wiring -->`` before a ``python`` block: the few lines that add caller memory to a plain
  LiveKit agent. ``README.md`` and the plugin's README each hold one, byte for byte the same,
  and its lines are taken, in order, from ``examples/minimal_agent.py`` (``...`` stands for
  lines left out), the file a ``file:`` block shows whole.

Every other ``python`` block is a fragment, and must at least compile.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import RedisConfig
from livekit.plugins.caller_memory.exceptions import ConfigError
from livekit.plugins.caller_memory.secret import DEV_SECRET_WARNING, MIN_LENGTH, weakness

from .conftest import process_gone
from .support.servers import TestServer, closed_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLUGIN_README = ROOT / "plugins" / "livekit-plugins-caller-memory" / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "examples" / "minimal_agent.py"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md", PLUGIN_README]
"""Every file whose blocks are checked: the README, the docs, CONTRIBUTING, the plugin's README."""


@dataclass
class Block:
    """A fenced block of a documentation file and the marker before it."""

    language: str
    code: str
    marker: str
    line: int
    path: Path

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks: list[Block] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        indent, language = fence.groups()
        marker = ""
        if i > 0:
            found = re.match(r"^\s*<!--\s*(.*?)\s*-->\s*$", lines[i - 1])
            marker = found.group(1) if found else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append(Block(language, "".join(body), marker, i + 1, path))
        i = j + 1
    return blocks


BLOCKS = [block for path in DOCS for block in _blocks(path)]
PYTHON = [b for b in BLOCKS if b.language == "python"]
RUNNABLE = [b for b in PYTHON if b.marker.startswith("runnable")]
FILES = [b for b in PYTHON if b.marker.startswith("file:")]
WIRING = [b for b in PYTHON if b.marker == "wiring"]


def _options(block: Block) -> dict[str, str]:
    _, _, rest = block.marker.partition(":")
    options: dict[str, str] = {}
    for word in rest.split():
        key, _, value = word.partition("=")
        options[key] = value
    return options


def _output_after(block: Block) -> list[str] | None:
    """The lines of the ``<!-- output -->`` block that comes next in the same file, if the next
    block is one."""
    following = [b for b in BLOCKS if b.path == block.path and b.line > block.line]
    if following and following[0].marker == "output":
        return following[0].code.splitlines()
    return None


def _shape(line: str) -> str:
    """A line with its run-to-run parts (ids, latencies, ports, paths) made the same."""
    line = re.sub(r"/\S*", "<path>", line)
    line = re.sub(r"(?<![\w-])[A-Za-z0-9_-]{22}(?![\w-])", "<id>", line)
    return re.sub(r"\d+", "9", line)


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without a developer's own Redis or memory settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "MEMORY_", "OPENAI_", "LIVEKIT_"))
    }
    env.update(extra)
    return env


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_docs_have_what_this_file_checks() -> None:
    # A marker lost in an edit (or a page left out of DOCS) would silently turn a check off.
    assert len(RUNNABLE) >= 2 and FILES
    assert any(_output_after(b) for b in RUNNABLE)
    assert [b.path for b in WIRING] == [README, PLUGIN_README]
    assert any(b.marker == f"file: {EXAMPLE.relative_to(ROOT).as_posix()}" for b in FILES)
    assert {ROOT / "docs" / "README.md", ROOT / "CONTRIBUTING.md"} <= set(DOCS)


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_every_python_block_compiles(block: Block) -> None:
    # Fragments may use top-level await, as in `python -m asyncio`.
    compile(block.code, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.server_binary
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_runnable_blocks_run_against_a_private_redis(
    block: Block, redis_server: TestServer, tmp_path: Path
) -> None:
    options = _options(block)
    script = tmp_path / "snippet.py"
    script.write_text(block.code)
    if "nothing-configured" in options:
        # Nothing named, and the port the guide's default would try is closed: never the
        # shared Redis on 6379.
        env = _clean_env(REDIS_PORT=str(closed_port()), MEMORY_DATA_DIR=str(tmp_path / "data"))
    else:
        env = _clean_env(
            REDIS_URL=redis_server.url,
            MEMORY_KEY_PREFIX=re.sub(r"[^A-Za-z0-9_.-]", "_", block.name),
            MEMORY_DATA_DIR=str(tmp_path / "data"),
        )
    stdout = []
    for _ in range(int(options.get("runs") or 1)):
        out = _run([sys.executable, str(script)], env, tmp_path)
        assert out.returncode == 0, f"{block.name} failed:\n{out.stderr}"
        assert "Traceback" not in out.stderr, out.stderr
        stdout += out.stdout.splitlines()
    expected = _output_after(block)
    if expected is not None:
        assert [_shape(x) for x in stdout] == [_shape(x) for x in expected]
    if "nothing-configured" in options:
        owner = json.loads((tmp_path / "data" / "redis" / "owner").read_text())
        assert f"127.0.0.1:{_port_of(tmp_path)}" in out.stdout
        assert process_gone(owner["server"], within=30), "the private server stops at exit"


def _port_of(tmp_path: Path) -> int:
    return int((tmp_path / "data" / "redis" / "port").read_text())


@pytest.mark.parametrize("block", FILES, ids=lambda b: b.name)
def test_file_blocks_are_the_files_and_build_their_agent_server(
    block: Block, tmp_path: Path
) -> None:
    path = ROOT / block.marker.partition(":")[2].strip()
    assert block.code == path.read_text(), f"{block.name} differs from {path}"
    probe = textwrap.dedent(
        f"""
        import runpy
        from livekit.agents import AgentServer
        from livekit.plugins import caller_memory
        names = runpy.run_path({str(path)!r})  # not as __main__: the worker does not start
        server = names["server"]
        assert isinstance(server, AgentServer)
        assert server._entrypoint_fnc is names["entrypoint"]
        assert server._session_end_fnc is caller_memory.on_session_end
        print(server._agent_name)
        """
    )
    env = _clean_env(REDIS_PORT=str(closed_port()), MEMORY_DATA_DIR=str(tmp_path / "data"))
    out = _run([sys.executable, "-c", probe], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "my-agent"
    # `python examples/minimal_agent.py --help`: cli.run_app(server) parses its commands. The
    # private server starts first (the worker's main process) and stops at exit.
    out = _run([sys.executable, str(path), "--help"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "dev" in out.stdout and "start" in out.stdout
    owner = json.loads((tmp_path / "data" / "redis" / "owner").read_text())
    assert process_gone(owner["server"], within=30)


@pytest.mark.server_binary
def test_the_example_wants_the_secret_to_start_in_production(
    redis_server: TestServer, tmp_path: Path
) -> None:
    # Without a secret, each machine would key callers with its own development secret and
    # recognize no one across machines: LiveKit's `start` refuses before any job runs, and
    # `dev` says which secret it uses when the worker starts, not at its first call.
    env = _clean_env(
        REDIS_URL=redis_server.url,
        MEMORY_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        LIVEKIT_URL=f"ws://127.0.0.1:{closed_port()}",
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-livekit-secret-of-32-characters!",
        OPENAI_API_KEY="sk-not-used",
    )
    out = _run([sys.executable, str(EXAMPLE), "start"], env, tmp_path)
    assert out.returncode != 0
    assert (
        "MEMORY_PHONE_HASH_SECRET is required to start a worker in production"
        in (out.stderr.strip().splitlines()[-1])
    )
    assert not (tmp_path / "config").exists()  # no development secret made for it

    worker = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "dev"],
        env={**env, "NO_COLOR": "1"},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()  # before LiveKit's first line
        worker.stderr.readline()  # the next line: by then the secret is written
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    assert first.startswith("MEMORY_PHONE_HASH_SECRET is not set: using this machine's"), first
    assert (tmp_path / "config" / "caller-memory" / "phone-hash.secret").exists(), first


def test_the_check_sample_is_what_check_prints(redis_server: TestServer, tmp_path: Path) -> None:
    pattern = r"```bash\ncaller-memory check\n((?:# .*\n)+)```"
    samples = [m for path in DOCS for m in re.finditer(pattern, path.read_text())]
    assert len(samples) == 1, "the docs show `caller-memory check` and its output, once"
    expected = [line[2:] for line in samples[0].group(1).splitlines()]
    env = _clean_env(REDIS_URL=redis_server.url, MEMORY_DATA_DIR=str(tmp_path))
    out = _run([sys.executable, "-m", "livekit.plugins.caller_memory.cli", "check"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert [_shape(x) for x in out.stdout.splitlines()] == [_shape(x) for x in expected]


def test_the_secret_length_is_said_the_same_everywhere() -> None:
    said = f"{MIN_LENGTH}+ random characters"
    assert said in DEV_SECRET_WARNING
    assert weakness("x" * (MIN_LENGTH - 1)) == f"must be at least {MIN_LENGTH} characters long"
    with pytest.raises(ConfigError, match=re.escape(said)):
        RedisConfig(require_secret=True, phone_hash_secret=None).check_secret()
    for readme in (README, PLUGIN_README, CONFIGURATION):
        assert said in readme.read_text(), readme
    for doc in DOCS:
        # No other length for the phone-hash secret anywhere in the docs.
        for line in doc.read_text().splitlines():
            if "MEMORY_PHONE_HASH_SECRET" in line:
                for length in re.findall(r"(\d+)\+ (?:random )?char", line):
                    assert int(length) == MIN_LENGTH, f"{doc.name}: {line}"
    assert f"at least {MIN_LENGTH} characters" in CONFIGURATION.read_text()


def test_the_python_version_said_is_the_one_required() -> None:
    for pyproject in (ROOT / "pyproject.toml", PLUGIN_README.parent / "pyproject.toml"):
        assert 'requires-python = ">=3.10"' in pyproject.read_text()
    assert "Python 3.10 or newer" in README.read_text()


def test_the_unpublished_package_is_never_offered_to_pip_by_name() -> None:
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if re.search(r"pip install ['\"]?livekit-plugins-caller-memory\b", line):
                assert "fails" in line or "not on PyPI" in line, f"{doc.name}: {line}"


def test_the_two_readmes_show_one_wiring() -> None:
    # The plugin's README and the repository's show the same lines, so they cannot disagree.
    readme, plugin = WIRING
    assert readme.code == plugin.code, f"{readme.name} and {plugin.name} differ"


def test_the_wiring_is_cut_from_the_example_file() -> None:
    # Line for line from examples/minimal_agent.py, in order: the file the docs show whole,
    # import and run (test_file_blocks_are_the_files_and_build_their_agent_server).
    wiring = [line for line in WIRING[0].code.splitlines() if line.strip() not in ("", "...")]
    example = EXAMPLE.read_text().splitlines()
    at = 0
    for line in wiring:
        assert line in example[at:], f"not in {EXAMPLE.name} (or out of order): {line!r}"
        at = example.index(line, at) + 1
    # What makes the wiring correct, not merely short: each piece the job model needs.
    code = WIRING[0].code
    for piece in (
        "caller_memory.hide_numbers_in_livekit_logs()",
        "caller_memory.CallerMemory()",
        "on_session_end=caller_memory.on_session_end",
        "await memory.attach(ctx, session, agent)",
        "call.greeting_instructions",
        "resolve_default_redis(RedisConfig.from_env())",
        'os.environ["REDIS_URL"] = config.redis_url()',
        "cli.run_app(server)",
    ):
        assert piece in code, piece


# The original Redis setup guide's contract: its Python API, its environment variables, its key
# table and its troubleshooting messages, each findable in the docs by its own name.
GUIDE_API = [
    "RedisConfig.from_env()",
    "RedisMemoryStore(config)",
    "store.connect()",
    "store.health_check()",
    "latency_ms",
    "get_or_create_user_id(phone_number=",
    "store.disconnect()",
    "init_session_manager(llm=",
    "get_session_manager()",
    "start_session(session_id=",
    "add_turn(sid,",
    "end_session(sid)",
    "is_returning",
    "greeting_context",
]
GUIDE_SETTINGS = [
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_SSL",
    "MEMORY_PERSISTENCE",
    "MEMORY_SESSION_TTL_HOURS",
    "MEMORY_PROFILE_TTL_DAYS",
]
GUIDE_KEYS = [
    "sarah:phone:{hash}",
    "sarah:user:{id}:profile",
    "sarah:user:{id}:sessions",
    "sarah:session:{id}",
]
GUIDE_MESSAGES = [
    "❌ Redis connection failed: Connection refused",
    "❌ Redis connection failed: NOAUTH Authentication required",
    "❌ Redis connection failed: SSL handshake failed",
    "OOM command not allowed",
]


def test_the_guides_contract_is_findable_in_the_docs() -> None:
    docs = ROOT / "docs"
    api = (docs / "python-api.md").read_text()
    for name in GUIDE_API:
        assert name in api, f"docs/python-api.md: {name}"
    table = CONFIGURATION.read_text()
    for variable in GUIDE_SETTINGS:
        assert f"| `{variable}` |" in table, f"docs/configuration.md's table: {variable}"
    for key in GUIDE_KEYS:
        assert f"| `{key}` |" in table, f"docs/configuration.md's key table: {key}"
    operations = (docs / "operations.md").read_text()
    for message in GUIDE_MESSAGES:
        assert f"| `{message}` |" in operations, f"docs/operations.md's troubleshooting: {message}"
    # And the README points at each of those pages.
    readme = README.read_text()
    for page in ("python-api.md", "configuration.md", "operations.md#troubleshooting"):
        assert f"](docs/{page}" in readme, page
