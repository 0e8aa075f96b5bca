"""The plugin's modules form no import circle, and each imports on its own.

A circle makes the import order decide whether a name exists yet: the module that happens to be
imported first works, another fails with "partially initialized module". Two checks: the graph
of the package's module-level imports has no cycle (read from the source), and every module
imports in an interpreter that has loaded none of the package's modules before it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import livekit.plugins.caller_memory as caller_memory

PACKAGE = Path(caller_memory.__file__).parent
NAME = caller_memory.__name__


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # a program, run by ``python -m``; importing it runs it
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([NAME, *parts])] = path
    return found


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run at import: the top level and its if/try blocks, except the
    ``if TYPE_CHECKING:`` ones (never run)."""
    todo, run = list(tree.body), []
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                todo.extend(node.orelse)
                continue
            todo.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            todo.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                todo.extend(handler.body)
        else:
            run.append(node)
    return run


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(NAME.split(".")), len(parts))]


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that importing ``module`` runs first: each one named, and the
    packages above it (their ``__init__`` runs before it), except ``module``'s own."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _module_level(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets.add(origin)
            targets.update(f"{origin}.{alias.name}" for alias in node.names)
    own = set(_ancestors(module))
    edges = set()
    for target in targets:
        if target in modules:
            edges.add(target)
            edges.update(a for a in _ancestors(target) if a not in own)
    # A package above ``module`` is being imported already (its ``__init__`` comes first).
    return edges - own - {module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_imports_form_no_circle() -> None:
    modules = _modules()
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    # The graph is read, not empty: the store uses the server package's default resolution.
    assert f"{NAME}.server.connect" in graph[f"{NAME}.store.redis"]
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(m[len(NAME) + 1 :] for m in cycle)


def test_the_cycle_check_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


_IMPORT_EACH = """
import importlib, os, sys, traceback
for dependency in sys.argv[2:]:
    try:
        importlib.import_module(dependency)
    except ImportError:
        pass
assert not [m for m in sys.modules if m.startswith(sys.argv[1])], "package loaded too early"
failed = []
for module in sys.stdin.read().split():
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(module)
print("FAILED", *failed)
"""


def _third_party(modules: dict[str, Path]) -> set[str]:
    """What the package imports from outside itself, to load once before the forks."""
    outside: set[str] = set()
    for path in modules.values():
        for node in _module_level(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            outside.update(n for n in names if n and not n.startswith(NAME))
    return outside


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one child per module")
def test_every_module_imports_in_an_interpreter_that_loaded_none_of_the_package() -> None:
    # One interpreter loads the third-party packages (livekit.agents alone takes seconds),
    # then forks a child per module: each child starts with none of the plugin's modules.
    modules = _modules()
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, NAME, *sorted(_third_party(modules))],
        input="\n".join(modules),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["FAILED"], result.stdout + result.stderr[-3000:]


MAX_MODULE_LINES = 500
"""A module a reader takes in at one sitting: past it, it holds more than one idea."""


def test_no_module_of_the_plugin_is_longer_than_a_few_screens() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    long = {name[len(NAME) + 1 :]: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


LAYERS = {
    "wiring": ["agent", "call_memory", "agent_context", "run_now", "participants"],
    "call": ["calls", "journal", "recovery", "outbox", "privacy", "summarizer", "prompts",
             "redaction"],
    "store": ["store"],
    "memory model": ["memory", "models"],
}  # fmt: skip
"""CONTRIBUTING's layers, top to bottom: a module imports from its own layer, the layers below
it, and the modules around them all (settings, identity, logging, the server helpers)."""


def _layer(module: str) -> int | None:
    top = module[len(NAME) + 1 :].split(".")[0]
    return next((i for i, tops in enumerate(LAYERS.values()) if top in tops), None)


def test_each_layer_imports_only_the_layers_below_it() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        own = _layer(name) if name != NAME else None
        if own is None:
            continue
        for target in _imported(name, path, modules):
            layer = _layer(target) if target != NAME else None
            if layer is not None and layer < own:
                upward.append(f"{name[len(NAME) + 1 :]} -> {target[len(NAME) + 1 :]}")
    assert not upward, "imports from a layer above: " + ", ".join(sorted(upward))
