"""The plugin's public face: what is exported, what moved, and the rules of its layout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import livekit.plugins.caller_memory as caller_memory
from livekit.plugins.caller_memory import testing

PACKAGE = Path(caller_memory.__file__).parent


def test_the_public_names_are_few_sorted_and_public() -> None:
    names = caller_memory.__all__
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    assert all(hasattr(caller_memory, name) for name in names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    # The README's imports, name for name.
    for name in ("CallerMemory", "RedisConfig", "RedisMemoryStore", "init_session_manager",
                 "get_session_manager", "SessionManager", "InMemoryStore"):  # fmt: skip
        assert name in names


def test_the_command_line_and_the_guide_api_start_without_livekit_agents() -> None:
    # Importing LiveKit Agents takes seconds: every `caller-memory` command paid them, even
    # --version. The names that need it load when first used, and register the plugin then.
    code = (
        "import sys\n"
        "import livekit.plugins.caller_memory.cli\n"
        "from livekit.plugins.caller_memory import RedisMemoryStore, SessionManager\n"
        "assert 'livekit.agents' not in sys.modules, 'imported'\n"
        "from livekit.plugins import caller_memory\n"
        "caller_memory.CallerMemory\n"
        "from livekit.agents import Plugin\n"
        "assert [p.title for p in Plugin.registered_plugins] == ['livekit.plugins.caller_memory']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_no_module_imports_a_private_name_of_another() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__version__":
                        offenders.append(f"{path.relative_to(PACKAGE)}: {alias.name}")
    # The one exception, in the one place allowed to use LiveKit's private names.
    assert offenders == []


def test_only_the_testing_harness_touches_livekits_private_names() -> None:
    users = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if "_proto" in text or any(
            re.search(rf"\.{name.rsplit('.', 1)[-1]}\b", text) for name in testing.PRIVATE_NAMES
        ):
            users.append(path.name)
    assert users == ["testing.py"]


async def test_the_livekit_private_names_the_harness_needs_still_exist() -> None:
    # Fails loudly, naming what changed, when a LiveKit release renames one of them.
    await testing.check_private_names()
    assert len(testing.PRIVATE_NAMES) == 8


def test_the_names_loaded_on_first_use_are_listed_by_dir() -> None:
    # Tab completion (a REPL, a notebook) lists them before their first use.
    assert {"CallerMemory", "CallMemory", "on_session_end"} <= set(dir(caller_memory))
