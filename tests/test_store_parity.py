"""The in-process store and Redis leave the same keys behind, with the same types and TTLs.

Both share every policy of ``MemoryStore``; the in-process store repeats each Lua script's steps
on a dict. This runs one scenario through both and compares what each holds afterwards, key by
key, so that a step missed on one side (a TTL renewed on Redis but not in memory) shows up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from livekit.plugins.caller_memory import (
    CallSummary,
    InMemoryStore,
    MemoryStore,
    RedisConfig,
    RedisMemoryStore,
)
from livekit.plugins.caller_memory.models import JournalHeader, SessionRecord, Turn, utcnow
from livekit.plugins.caller_memory.store import codec

from .conftest import replace

Shape = dict[str, tuple[str, int]]
"""key (prefix removed) -> (type, TTL rounded to the hour)."""


AGE_S = 89 * 86400
"""How long the callers do not call: their keys have a day left, their calls are gone."""


async def _scenario(store: MemoryStore, age: Callable[[float], Awaitable[None]]) -> None:
    """Calls of two callers: new ones, saves, 89 days of silence, a returning lookup (which
    renews what is left), a call still in progress (journal), an orphan lease and its release,
    and an erased call."""
    ana, ben = store.hasher.hash("+14155550134"), store.hasher.hash("+442079460958")
    for phone_hash, session_id in ((ana, "s1"), (ben, "s2"), (ana, "s3")):
        found = await store.lookup(phone_hash)
        now = utcnow()
        record = SessionRecord(
            session_id=session_id,
            user_id=found.user_id,
            started_at=now,
            ended_at=now,
            turns=[Turn(role="user", text="Hello, I prefer mornings")],
        )
        await store.save_call(
            record, CallSummary(summary="Asked about hours."), phone_hash=phone_hash, base=found
        )
    await age(AGE_S)
    found = await store.lookup(ana, create=False)
    assert found.profile is not None and found.profile.call_count == 2
    await store.open_journal(
        JournalHeader(session_id="live", user_id=ana, phone_hash=ana, started_at=utcnow())
    )
    await store.append_journal("live", [Turn(role="user", text="still talking")])
    await store.open_journal(
        JournalHeader(session_id="gone", user_id=ben, phone_hash=ben, started_at=utcnow())
    )
    leased = await store.claim_orphans(idle_s=0)
    assert sorted(sid for sid, _ in leased) == ["gone", "live"]
    await store.release_orphan("live")
    await store.discard_session("gone")
    await store.lookup(store.hasher.hash("+33142685300"), create=False)  # unknown: nothing


def _aging_redis(client: aioredis.Redis, prefix: str) -> Callable[[float], Awaitable[None]]:
    async def age(seconds: float) -> None:
        async for raw in client.scan_iter(match=f"{prefix}:*"):
            left = await client.ttl(raw) - seconds
            if left > 0:
                await client.expire(raw, round(left))
            else:
                await client.delete(raw)

    return age


async def _redis_shape(client: aioredis.Redis, prefix: str) -> Shape:
    shape: Shape = {}
    async for raw in client.scan_iter(match=f"{prefix}:*"):
        key = codec.text(raw) or ""
        kind = codec.text(await client.type(key)) or ""
        shape[key.removeprefix(prefix)] = (kind, round(await client.ttl(key) / 3600))
    return shape


def _memory_shape(store: InMemoryStore, prefix: str) -> Shape:
    kinds = {bytes: "string", list: "list", dict: "zset"}
    shape: Shape = {}
    for key, value in store.dump().items():
        ttl = store.ttl(key)
        assert ttl is not None
        shape[key.removeprefix(prefix)] = (kinds[type(value)], round(ttl / 3600))
    return shape


async def test_both_stores_leave_the_same_keys_types_and_ttls(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as on_redis:
        await _scenario(on_redis, _aging_redis(redis_client, config.key_prefix))
    now = [time.monotonic()]

    async def age(seconds: float) -> None:
        now[0] += seconds

    in_memory = InMemoryStore(replace(config, persistence=False), clock=lambda: now[0])
    await _scenario(in_memory, age)

    prefix = config.key_prefix
    expected = await _redis_shape(redis_client, prefix)
    assert _memory_shape(in_memory, prefix) == expected
    # The shape itself is the guide's table: 90 days from a caller's last call (Ana called
    # again, Ben has a day left), 24 hours for a call.
    kinds: dict[str, Any] = {}
    for key, (kind, hours) in expected.items():
        kinds.setdefault(key.split(":")[1], set()).add((kind, hours))
    assert kinds == {
        "phone": {("string", 90 * 24), ("string", 24)},
        "user": {("string", 90 * 24), ("list", 90 * 24), ("string", 24), ("list", 24)},
        "session": {("string", 24)},  # the journal; the saved calls are gone
        "sessions": {("zset", 24)},
        "versions": {("zset", 24)},  # the saves by version: as the last caller saved
    }
