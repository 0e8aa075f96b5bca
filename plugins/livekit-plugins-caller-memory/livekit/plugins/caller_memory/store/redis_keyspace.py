"""Redis keys read, deleted and counted one by one: what erasure, export and operators need.

Plain reads of a string, a list or a sorted set; deletes, one script per slot; erasure (its
marks and deletes at once, ``erase.lua``) and the operators' sorted sets (``add_now.lua``); the
counts of ``caller-memory stats`` (a scan of the prefix); and the rewrite of the append-only
file after an erasure, so that deleted data leaves the server's disk too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..config import LONGEST_TTL_SECONDS
from ..log import logger
from . import codec
from .primitives import StoreFull
from .redis_client import RedisStoreBase, error_code, out_of_memory
from .stats import stats_report

__all__ = ["RedisKeyspace"]

_PURGE_WAIT_S = 10.0
"""How long an erasure waits for Redis to rewrite its append-only file."""


class RedisKeyspace(RedisStoreBase):
    """Plain reads, deletes and sorted sets; the counts for operators; the purge of the
    append-only file (see :mod:`.primitives`)."""

    async def stats(self, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Counts for operators: callers, sessions, keys by kind, keys without a TTL and keys
        whose TTL is past any setting's longest (:data:`~..config.LONGEST_TTL_SECONDS`: an
        older version's unbounded setting; both must be zero), and the server's memory. Scans
        the prefix: for a terminal, not a call; ``progress`` is told of each key read.
        """
        kinds: dict[str, int] = {}
        no_ttl: list[str] = []
        too_long: list[str] = []
        journals = 0
        client = self.client
        keys = client.scan_iter(match=self._keys.pattern(), count=1000).__aiter__()
        while True:
            async with self._op():
                try:
                    key = codec.text(await keys.__anext__()) or ""
                except StopAsyncIteration:
                    break
                if progress is not None:
                    progress(1)
                kind = self._keys.kind(key)
                kinds[kind] = kinds.get(kind, 0) + 1
                ttl = await client.ttl(key)
                if ttl == -1:
                    no_ttl.append(key)
                elif ttl > LONGEST_TTL_SECONDS:
                    too_long.append(key)
                if kind == "session":
                    journals += codec.is_journal(await client.getrange(key, 0, 11))
        async with self._op():
            info = await client.info("memory")
        if isinstance(client, aioredis.RedisCluster):
            used = sum(int(v.get("used_memory", 0)) for v in info.values() if isinstance(v, dict))
        else:
            used = int(info.get("used_memory", 0))
        return stats_report(
            server=self.server,
            cluster=self._cluster,
            kinds=kinds,
            journals=journals,
            no_ttl=no_ttl,
            too_long=too_long,
            used_memory=used,
        )

    async def read(self, key: str) -> bytes | None:
        """GET."""
        async with self._op():
            value = await self.client.get(key)
        return cast("bytes | None", value)

    async def read_list(self, key: str) -> list[str]:
        """LRANGE 0 -1."""
        async with self._op():
            return [codec.text(v) or "" for v in await self.client.lrange(key, 0, -1)]

    async def read_members(self, key: str) -> list[str]:
        """ZRANGE 0 -1."""
        async with self._op():
            members = await self.client.zrange(key, 0, -1)
        return [codec.text(cast("str | bytes", m)) or "" for m in members]

    async def read_scores(self, key: str) -> list[tuple[str, float]]:
        """ZRANGE 0 -1 WITHSCORES."""
        async with self._op():
            found = cast(
                "list[tuple[bytes, float]]", await self.client.zrange(key, 0, -1, withscores=True)
            )
        return [(codec.text(member) or "", float(score)) for member, score in found]

    async def remove_members(self, key: str, members: Sequence[str]) -> None:
        """ZREM."""
        if members:
            async with self._op():
                await self.client.zrem(key, *members)

    async def mark_erased(self, user_ids: Sequence[str], *, ttl: int) -> None:
        """One EVALSHA of ``mark_erased.lua`` per user (each in its own slot): SET erased to
        the server's TIME (ms) EX ttl. On a full Redis, the same script flagged
        ``allow-oom`` (Redis 7.0+, Valkey); :class:`StoreFull` where that is refused too."""
        for user_id in user_ids:
            keys = [self._keys.erased(user_id)]
            try:
                async with self._op():
                    await self._run("mark_erased", keys, [ttl])
            except ResponseError as e:
                if not out_of_memory(e):
                    raise
                try:  # the same script, flagged to run on a full Redis (7.0+)
                    async with self._op():
                        await self._run("mark_erased_when_full", keys, [ttl])
                except ResponseError:
                    raise StoreFull("Redis is out of memory (maxmemory)") from e

    async def add_request(
        self, key: str, member: str, *, ttl: int, at: float | None = None
    ) -> None:
        """One EVALSHA of ``add_now.lua`` (ZADD at the server's time, EXPIRE); with ``at``,
        ZADD ``at`` and EXPIRE in one transaction."""
        if at is None:
            async with self._op():
                await self._run("add_now", [key], [member, ttl])
            return
        async with self._op(), self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {member: at})
            pipe.expire(key, ttl)
            await pipe.execute()

    async def purge_history(self) -> bool:
        """Rewrite the append-only file (``BGREWRITEAOF``) and wait for it, up to
        :data:`_PURGE_WAIT_S`: until then the file still holds what was deleted.

        Only on a single server that keeps an append-only file (``INFO persistence``) and
        lets this user run ``BGREWRITEAOF`` (the embedded server does; managed services often
        do not, and keep their own backups: their retention is the operator's to set); a
        refusal is one warning naming the ACL rule to add. Never raises: the deletes have
        happened either way.
        """
        if self.is_cluster:
            return False
        client = cast("aioredis.Redis", self.client)
        try:
            # INFO, not CONFIG GET: CONFIG can read the server's passwords, and the ACL recipe
            # (docs/operations.md) does not grant it.
            async with self._op():
                if str((await client.info("persistence")).get("aof_enabled")) != "1":
                    return False
            async with self._op():
                try:
                    await client.bgrewriteaof()
                except ResponseError as e:
                    if error_code(e) == "NOPERM":
                        raise
                    # "already in progress": it redoes the rewrite once done
            loop = asyncio.get_running_loop()
            give_up = loop.time() + _PURGE_WAIT_S
            while loop.time() < give_up:
                async with self._op():
                    info = await client.info("persistence")
                if not info.get("aof_rewrite_in_progress") and not info.get(
                    "aof_rewrite_scheduled"
                ):
                    return True
                await asyncio.sleep(0.05)
        except (RedisError, OSError, TimeoutError) as exc:
            refused = isinstance(exc, ResponseError) and error_code(exc) == "NOPERM"
            logger.warning(
                "could not rewrite the append-only file after an erasure; the deleted data "
                "stays in it until Redis rewrites it (BGREWRITEAOF)%s",
                ": this Redis user may not run it (NOPERM); add +info +bgrewriteaof to its "
                "ACL rule (docs/operations.md, Redis ACL users)"
                if refused
                else "",
                extra={"error": type(exc).__name__},
            )
            return False
        logger.warning("the append-only file rewrite after an erasure is still running")
        return False

    async def erase(self, keys: Sequence[str], user_ids: Sequence[str], *, ttl: int) -> list[str]:
        """One EVALSHA of ``erase.lua`` (one per slot on a cluster: a caller's own keys and
        mark share one). On a full Redis, the same script flagged ``allow-oom`` (Redis 7.0+,
        Valkey): the marks still come first.

        Raises:
            StoreFull: Redis refused the marks for want of memory, that script too (6.2).
                Nothing of the group that failed is deleted; what earlier groups deleted is
                in the error's ``deleted``.
        """
        marks = [self._keys.erased(u) for u in user_ids]
        deleted: list[str] = []
        for group in self._by_slot([*marks, *keys]):
            marked = [key for key in group if key in marks]
            doomed = [key for key in group if key not in marks]
            try:
                found = await self._erase_group(marked, doomed, ttl)
            except StoreFull as full:
                full.deleted = deleted
                raise
            deleted += [doomed[int(i) - 1] for i in found]
        return deleted

    async def _erase_group(self, marked: list[str], doomed: list[str], ttl: int) -> list[int]:
        args = [len(marked), ttl]
        try:
            async with self._op():
                return cast("list[int]", await self._run("erase", marked + doomed, args))
        except ResponseError as e:
            if not out_of_memory(e):
                raise
            try:  # the same script, flagged to run on a full Redis (7.0+)
                async with self._op():
                    found = await self._run("erase_when_full", marked + doomed, args)
                    return cast("list[int]", found)
            except ResponseError:
                raise StoreFull("Redis is out of memory (maxmemory)") from e

    def _by_slot(self, keys: Sequence[str]) -> list[list[str]]:
        """``keys`` grouped by cluster slot (one group on a single server)."""
        groups: dict[int, list[str]] = {}
        client = self.client
        for key in keys:
            slot = client.keyslot(key) if isinstance(client, aioredis.RedisCluster) else 0
            groups.setdefault(slot, []).append(key)
        return list(groups.values())

    async def delete(self, keys: Sequence[str]) -> list[str]:
        """One EVALSHA of ``delete.lua`` (one per slot on a cluster: a caller's own keys
        share one); it runs on a full Redis too, which refuses a MULTI transaction."""
        deleted: list[str] = []
        for group in self._by_slot(keys):
            async with self._op():
                found = await self._run("delete", group, [])
            deleted += [group[int(i) - 1] for i in found]
        return deleted
