"""Which Redis a process uses when none is named, and this machine's private server.

With ``REDIS_URL`` or ``REDIS_HOST`` set, that Redis and only that one (nothing here runs).
With nothing set: the guide's default ``localhost:6379`` when something answers there, else a
private server (:class:`~.embedded.EmbeddedRedis`) with append-only persistence under
``MEMORY_DATA_DIR``, shared by the processes of this machine and stopped when the process that
started it exits (or is killed, on Linux). A server found running is reused while its starter
runs; one left by a process that is gone is stopped and replaced, with a warning.

Nothing here knows the stores: they call :func:`resolve_default_redis` (the store package
imports this module, never the other way round).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from filelock import FileLock
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from .._folders import private_folder
from ..config import RedisConfig
from ..log import label_store, logger, once
from .binaries import EmbeddedServerError
from .embedded import EmbeddedRedis

__all__ = ["ensure_local_redis", "resolve_default_redis", "server_answers"]

_PORT_FILE = "port"
_PASSWORD_FILE = "password"
_OWNER_FILE = "owner"
"""Who started the server: ``{"pid", "started", "server"}`` (JSON)."""
_STOP_TIMEOUT_S = 10.0


def resolve_default_redis(config: RedisConfig) -> tuple[RedisConfig, EmbeddedRedis | None]:
    """With no Redis named: the guide's ``localhost:6379`` if a server answers there, else this
    machine's private server (started if needed). Named settings are returned as they are.

    Returns:
        The settings to use, and the server when this call started it (the caller stops it).
    """
    if not config.persistence or config.is_explicit or server_answers(config.host, config.port):
        return config, None
    # Said once per process: a command and the store it opens, or each job of a worker, ask
    # again, and the answer is the same.
    if not config.embedded_redis:
        if once(f"no-redis:{config.describe_server()}"):
            logger.error(
                "no Redis configured and nothing answers on %s; set REDIS_URL, or "
                "MEMORY_EMBEDDED_REDIS=true to start a local server",
                config.describe_server(),
            )
        return config, None
    try:
        url, embedded = ensure_local_redis(config.data_dir)
    except EmbeddedServerError as e:
        # No call fails for it: they go on without memory, and what they learn waits in the
        # outbox until a Redis answers.
        if once(f"no-redis:{config.describe_server()}:{e}"):
            logger.error("no Redis configured, none on %s, and %s", config.describe_server(), e)
        return config, None
    return config.replaced(url=url), embedded


def ensure_local_redis(data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """Find or start this machine's private server under ``data_dir/redis``.

    The first process starts it and records its port; the others (LiveKit runs each job in a
    process of its own) find it there. A file lock keeps two processes from starting two.
    The server listens on 127.0.0.1 only and needs a password, generated once and kept in the
    folder (0700; the password file 0600): other users of the machine can neither read its
    files nor talk to it.

    Returns:
        The server's URL (with the password), and the server when this call started it (the
        caller stops it).
    """
    private_folder(data_dir)
    folder = private_folder((data_dir / "redis").resolve())
    port_file = folder / _PORT_FILE
    with FileLock(folder / ".lock", mode=0o600):
        password = _password(folder / _PASSWORD_FILE)
        auth = f"redis://:{quote(password, safe='')}@127.0.0.1"
        port = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(port_file.read_text())
            if server_answers("127.0.0.1", port, password=password):
                if _reuse_or_stop(folder, port, password):
                    return f"{auth}:{port}", None
        server = _start(folder, password, port)
        _write_private(port_file, str(server.port))
        _write_private(
            folder / _OWNER_FILE,
            json.dumps(
                {"pid": os.getpid(), "started": _started(os.getpid()), "server": server.pid}
            ),
        )
    label_store(
        f"127.0.0.1:{server.port}",
        f"a private Redis server started by this process (pid {server.pid}, data in {folder}; "
        "it stops when this process exits)",
    )
    return server.url, server


def _start(folder: Path, password: str, port: int) -> EmbeddedRedis:
    # The port of the last run first: the server keeps its address from run to run (a
    # `redis-cli -p` in another terminal still reaches it); any free one if it is taken.
    for candidate in dict.fromkeys((port, 0)):
        server = EmbeddedRedis(data_dir=folder, appendonly=True, password=password, port=candidate)
        try:
            server.start()
        except EmbeddedServerError:
            if candidate == 0:
                raise
            logger.debug("port %d of the last private server is taken; picking another", port)
            continue
        return server
    raise AssertionError("unreachable")  # pragma: no cover


def _reuse_or_stop(folder: Path, port: int, password: str) -> bool:
    """Whether the private server answering on ``port`` belongs to a live process (reuse it),
    or was left by one that is gone (stopped here; the caller starts one of its own).

    A server whose starter was SIGKILLed should have got SIGTERM with it (see
    :func:`~.process.spawn`); one that did not (another OS, a version without that) would
    live on with no one to stop it, and every later run would lean on it. It is stopped with
    ``SHUTDOWN``, which writes its append-only file first: no memory is lost.
    """
    server_pid = _server_pid(port, password)
    owner = _read_owner(folder / _OWNER_FILE)
    alive = _owner_alive(owner, server_pid)
    owner_pid = owner.get("pid") if owner else None
    if alive:
        said = (
            f"this machine's private Redis server (pid {server_pid}, data in {folder}), started "
            f"by process {owner_pid if owner_pid is not None else '(unknown)'}, which stops it"
        )
        logger.debug("using %s", said)
        label_store(f"127.0.0.1:{port}", said)  # and announce_store says it at INFO, once
        return True
    logger.warning(
        "found a private Redis server on 127.0.0.1:%d (pid %s) left running by a process that "
        "is gone (%s): stopping it and starting one this process owns",
        port,
        server_pid,
        f"pid {owner_pid}" if owner_pid is not None else "no owner recorded",
    )
    _shut_down(port, password, server_pid)
    return False


def _server_pid(port: int, password: str) -> int | None:
    client = _probe_client(port, password)
    try:
        pid = client.info("server").get("process_id")
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    return int(pid) if pid is not None else None


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _owner_alive(owner: dict[str, Any] | None, server_pid: int | None) -> bool:
    """Whether the process that started the server is still running.

    The owner file names it by pid and start time (a pid alone may have been reused). Without
    a record that matches the server (one started by an older version), the server's parent
    decides: an orphan has been handed to init (pid 1). Where neither can be known
    (no ``/proc``), the server is reused: stopping a server in use would be worse.
    """
    if owner is not None and owner.get("server") == server_pid and server_pid is not None:
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return False
        started = _started(pid)
        if started is not None or owner.get("started") is not None:
            return started is not None and started == owner.get("started")
        return _pid_exists(pid)
    if server_pid is None:
        return True
    parent = _parent(server_pid)
    if parent is None:
        return not Path("/proc/self").exists()
    return parent > 1


def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after it do not.
    return stat.rsplit(")", 1)[1].split()


def _started(pid: int) -> str | None:
    """The process's start time since boot (``/proc``), or None where that is unknown."""
    fields = _proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _parent(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[1]) if fields is not None else None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shut_down(port: int, password: str, server_pid: int | None) -> None:
    client = _probe_client(port, password, timeout=_STOP_TIMEOUT_S)
    try:
        client.shutdown()  # writes the append-only file, then exits
    except (RedisError, OSError) as e:
        if server_pid is None:
            raise EmbeddedServerError(f"cannot stop the stale private server: {e}") from None
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signal.SIGTERM)
    finally:
        client.close()
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while server_answers("127.0.0.1", port, password=password) or _running(server_pid):
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"the stale private server on 127.0.0.1:{port} did not stop in "
                f"{_STOP_TIMEOUT_S:g} s; stop it (pid {server_pid}) and try again"
            )
        time.sleep(0.05)


def _running(pid: int | None) -> bool:
    # Not our child: once it has exited, init reaps it; a zombie meanwhile counts as gone.
    if pid is None or not _pid_exists(pid):
        return False
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"


def _probe_client(port: int, password: str, timeout: float = 0.25) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _password(path: Path) -> str:
    # Made once, by the first process (under the lock); a file others can read is replaced.
    if os.name == "posix" and path.exists() and path.stat().st_mode & 0o077:
        path.unlink()
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(password)
    return password


def server_answers(
    host: str, port: int, timeout: float = 0.25, *, password: str | None = None
) -> bool:
    """True when a Redis-compatible server answers PING there (or, without ``password``, asks
    for one). With ``password``: True only when the server takes it."""
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One try: redis-py 8 retries a refused connection with backoff by default (4 s here),
        # which every start with nothing configured would wait for.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except (AuthenticationError, ResponseError):
        # NOAUTH, or another refusal: a Redis is there; with a password, not ours (one
        # started by an older version, without a password, say)
        return password is None
    except (RedisError, OSError):
        return False
    finally:
        client.close()
    return True
