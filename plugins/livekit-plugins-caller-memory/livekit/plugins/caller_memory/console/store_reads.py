"""The store reads the console's counts share (a sorted set's size, a scan of keys), each as
the kind of store answers it. Reading renews no TTL."""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator
from typing import cast

from ..store import InMemoryStore, MemoryStore, RedisMemoryStore
from ..store.codec import text
from ..timeouts import deadline

__all__ = ["bounded", "scan_keys", "zcard"]


def bounded(store: MemoryStore) -> deadline:
    """One read of the console's own, under ``REDIS_SOCKET_TIMEOUT`` as the store's are: a
    silent Redis makes the page a 503 in seconds, never a request that hangs (and acts when
    Redis comes back, unseen)."""
    return deadline(store.config.socket_timeout, unless_bounded=True)


async def zcard(store: MemoryStore, key: str) -> int:
    """The members of a sorted set (calls in progress, erasure requests)."""
    if isinstance(store, RedisMemoryStore):
        async with bounded(store):
            return int(await store.client.zcard(key))
    return len(await store.read_members(key))


async def scan_keys(store: MemoryStore, match: str) -> AsyncIterator[str]:
    """The keys matching a pattern: SCAN on Redis (every master of a cluster)."""
    if isinstance(store, RedisMemoryStore):
        async for key in store.client.scan_iter(match=match, count=1000):
            yield text(cast("bytes | str", key)) or ""
    elif isinstance(store, InMemoryStore):
        for key in list(store.dump()):
            if fnmatch.fnmatchcase(key, match):
                yield key
