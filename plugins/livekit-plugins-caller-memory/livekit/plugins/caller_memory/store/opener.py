"""Which store a process gets, from the settings: :func:`open_store`.

- ``MEMORY_PERSISTENCE=false``: the in-process store.
- ``REDIS_URL`` or ``REDIS_HOST`` set: that Redis, and only that one. When it is down the store
  is returned anyway, unconnected: calls go on without memory, the failure is logged with the
  guide's troubleshooting text, and the store reconnects by itself once Redis is back.
- Nothing set: the guide's default ``localhost:6379`` when something answers there, else this
  machine's private server (see :mod:`..server.connect`).
"""

from __future__ import annotations

from ..config import RedisConfig
from ..log import announce_store, label_store, logger
from ..server.connect import resolve_default_redis
from .base import MemoryStore
from .memory import InMemoryStore
from .redis import RedisMemoryStore

__all__ = ["open_store"]


async def open_store(
    config: RedisConfig | None = None,
    *,
    connect_later: bool = False,
    while_down: str = "calls go on without it until Redis answers",
) -> MemoryStore:
    """Open the store the settings ask for (see the module docs). Never raises for a down Redis.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        connect_later: Connect (and detect a cluster) in the background instead of waiting.
        while_down: What goes on while Redis is down, for the line logged then (a worker's
            calls by default; the operator console says what it shows).

    Raises:
        ConfigError: A setting is invalid.
    """
    config = config or RedisConfig.from_env()
    if not config.persistence:
        label_store("memory", "in-process memory (MEMORY_PERSISTENCE=false): lost at exit")
        announce_store("memory")
        return InMemoryStore(config)
    # Blocking, on the loop's thread: a few milliseconds, once, at start-up.
    config, embedded = resolve_default_redis(config)
    store = RedisMemoryStore(config, on_close=embedded.stop if embedded else None)
    if connect_later:
        store.connect_soon()
        return store
    if not await store.connect():
        logger.error("caller memory is unavailable: %s", while_down)
    return store
