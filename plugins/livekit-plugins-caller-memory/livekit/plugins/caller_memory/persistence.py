"""Whether the Redis keeps anything across a restart.

A Redis with neither an append-only file (``appendonly no``) nor RDB snapshots (``save ""``)
acknowledges every write and loses them all when it restarts: calls the plugin reported saved
are gone. :func:`volatile_warning` says so, in one line naming the setting to change;
``caller-memory check``, ``caller-memory stats`` and a worker's first connect print it.

The answer comes from ``CONFIG GET``. Where CONFIG is refused (managed services, an ACL user
without it) ``INFO persistence`` is no substitute: it tells ``aof_enabled``, but nothing in it
shows an empty ``save`` schedule (``rdb_last_save_time`` is set at start-up either way, and
``rdb_saves`` counts manual saves too). No warning is given then, rather than a guess: when
INFO shows an append-only file the server persists, and otherwise one INFO-level line says the
question went unanswered (the ACL recipe of docs/operations.md gives workers no CONFIG: it can
read the server's passwords).
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .log import logger, once

__all__ = ["VOLATILE_ADVICE", "volatile_warning"]

VOLATILE_ADVICE = (
    'keeps nothing across a restart (appendonly no, save ""): calls it acknowledges are lost '
    "when it restarts; set appendonly yes (or a save schedule, e.g. save 60 1000)"
)
"""What follows the server's name in the warning."""


async def volatile_warning(
    client: aioredis.Redis | aioredis.RedisCluster, server: str
) -> str | None:
    """The warning for a Redis that persists nothing, or None (it persists, or CONFIG is refused).

    On a cluster every primary is asked; one that keeps nothing is enough to warn.

    Args:
        client: A connected client.
        server: ``host:port`` for the message (never credentials).

    Raises:
        redis.exceptions.RedisError, OSError: The server could not be asked at all.
    """
    if isinstance(client, aioredis.RedisCluster):
        for node in client.get_primaries():
            settings = await _settings(client, node)
            if settings is not None and _keeps_nothing(settings):
                return f"Redis at {server} (node {node.host}:{node.port}) {VOLATILE_ADVICE}"
        return None
    settings = await _settings(client, None)
    if settings is None:
        await _say_not_checked(client, server)
        return None
    if not _keeps_nothing(settings):
        return None
    return f"Redis at {server} {VOLATILE_ADVICE}"


async def _say_not_checked(client: aioredis.Redis, server: str) -> None:
    """CONFIG refused: an append-only file shown by INFO settles it; else say, once, that the
    question went unanswered."""
    try:
        if str((await client.info("persistence")).get("aof_enabled")) == "1":
            return
    except ResponseError:
        pass  # INFO refused too: nothing more to learn
    if once(f"persistence-unknown:{server}"):
        logger.info(
            "Redis at %s: not checked whether it keeps data across a restart (this user may "
            "not run CONFIG GET, and INFO shows no append-only file); if it keeps neither, a "
            "restart loses the calls it acknowledged",
            server,
            extra={"caller_memory.persistence": "unknown"},
        )


async def _settings(client: Any, node: Any) -> dict[str, str] | None:
    """``appendonly`` and ``save``, or None when CONFIG is refused (or renamed away)."""
    options = {} if node is None else {"target_nodes": node}
    try:
        found = cast("dict[Any, Any]", await client.config_get("appendonly", **options))
        found |= cast("dict[Any, Any]", await client.config_get("save", **options))
    except ResponseError:
        # NOPERM (an ACL user), "unknown command" (CONFIG renamed away), a managed service's
        # own refusal. A connection that fails is no refusal: the caller hears of it.
        return None
    return {_text(k): _text(v) for k, v in found.items()}


def _keeps_nothing(settings: dict[str, str]) -> bool:
    if "appendonly" not in settings or "save" not in settings:
        return False  # a server that hides them: no guess
    return settings["appendonly"].strip().lower() == "no" and not settings["save"].strip()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
