"""Which store a process gets, from the settings.

- ``MEMORY_PERSISTENCE=false``: the in-process store.
- ``REDIS_URL`` or ``REDIS_HOST`` set: that Redis, and only that one. When it is down the store
  is returned anyway, unconnected: calls go on without memory, the failure is logged with the
  guide's troubleshooting text, and the store reconnects by itself once Redis is back.
- Nothing set: the guide's default ``localhost:6379`` when something answers there, else a
  private server (:class:`~.embedded.EmbeddedRedis`) with append-only persistence under
  ``MEMORY_DATA_DIR``, shared by the processes of this machine and stopped when the process
  that started it exits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from urllib.parse import quote

import redis
from filelock import FileLock
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from ..config import RedisConfig
from ..log import logger
from ..store import InMemoryStore, MemoryStore, RedisMemoryStore
from .binaries import EmbeddedServerError
from .embedded import EmbeddedRedis

__all__ = ["ensure_local_redis", "open_store", "resolve_default_redis", "server_answers"]

_PORT_FILE = "port"
_PASSWORD_FILE = "password"


async def open_store(
    config: RedisConfig | None = None, *, connect_later: bool = False
) -> MemoryStore:
    """Open the store the settings ask for (see the module docs). Never raises for a down Redis.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        connect_later: Connect (and detect a cluster) in the background instead of waiting.

    Raises:
        ConfigError: A setting is invalid.
    """
    config = config or RedisConfig.from_env()
    if not config.persistence:
        logger.info("MEMORY_PERSISTENCE=false: caller memory lasts as long as this process")
        return InMemoryStore(config)
    # On this thread, not a worker one: a private server is tied to the thread that starts it
    # (PR_SET_PDEATHSIG), and the few milliseconds this takes at start-up are fine.
    config, embedded = resolve_default_redis(config)
    store = RedisMemoryStore(config, on_close=embedded.stop if embedded else None)
    if connect_later:
        store.connect_soon()
        return store
    if not await store.connect():
        logger.error("caller memory is unavailable: calls go on without it until Redis answers")
    return store


def resolve_default_redis(config: RedisConfig) -> tuple[RedisConfig, EmbeddedRedis | None]:
    """With no Redis named: the guide's ``localhost:6379`` if a server answers there, else this
    machine's private server (started if needed). Named settings are returned as they are.

    Returns:
        The settings to use, and the server when this call started it (the caller stops it).
    """
    if not config.persistence or config.is_explicit or server_answers(config.host, config.port):
        return config, None
    if not config.embedded_redis:
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
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = (data_dir / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        for path in (data_dir, folder):
            path.chmod(0o700)
    port_file = folder / _PORT_FILE
    with FileLock(folder / ".lock", mode=0o600):
        password = _password(folder / _PASSWORD_FILE)
        auth = f"redis://:{quote(password, safe='')}@127.0.0.1"
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(port_file.read_text())
            if server_answers("127.0.0.1", port, password=password):
                return f"{auth}:{port}", None
        server = EmbeddedRedis(data_dir=folder, appendonly=True, password=password)
        server.start()
        fd = os.open(port_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(server.port))
    logger.info(
        "started a private Redis server for caller memory",
        extra={"data_dir": str(folder), "port": server.port},
    )
    return server.url, server


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
