"""The plugin's public face: what is exported, what moved, and the rules of its layout."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("Keys", "livekit.plugins.caller_memory.store"),
        ("CallerLookup", "livekit.plugins.caller_memory.store"),
        ("SessionRecord", "livekit.plugins.caller_memory.models"),
        ("Turn", "livekit.plugins.caller_memory.models"),
        ("find_caller", "livekit.plugins.caller_memory.participants"),
    ],
)
def test_a_name_that_moved_still_imports_for_one_release_with_a_warning(
    name: str, home: str
) -> None:
    with pytest.warns(DeprecationWarning, match=home):
        moved = getattr(caller_memory, name)
    assert moved is getattr(importlib.import_module(home), name)


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
