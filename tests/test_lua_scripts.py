"""Each Lua script of the Redis store, branch by branch, on a real server.

The scripts are the store's atomic operations (``store/scripts/*.lua``); each branch is driven
here directly, with the keys and arguments the store passes, and checked by what the server
holds afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis

from .support.servers import TestServer

DAY = 86400


def _source(name: str) -> str:
    folder = resources.files("livekit.plugins.caller_memory.store") / "scripts"
    return (folder / f"{name}.lua").read_text()


@pytest.fixture
async def r(redis_server: TestServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await _clear(client)
    yield client
    await _clear(client)
    await client.aclose()


async def _clear(client: aioredis.Redis) -> None:
    if keys := [k async for k in client.scan_iter(match="lua:*")]:
        await client.delete(*keys)


async def _run(r: aioredis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    return await r.register_script(_source(name))(keys=keys, args=args)


CALLER = ["lua:phone:{h}", "lua:user:{h}:profile", "lua:user:{h}:sessions"]


async def test_lookup_mints_an_unknown_caller_once(r: aioredis.Redis) -> None:
    assert await _run(r, "lookup", CALLER, ["h", 90 * DAY]) == [None, None, []]
    assert await r.get(CALLER[0]) == "h" and await r.ttl(CALLER[0]) > 89 * DAY
    assert not await r.exists(CALLER[1], CALLER[2])  # only the mapping is written
    # The second first call of the same number finds the id the first one minted.
    assert await _run(r, "lookup", CALLER, ["h", 90 * DAY]) == ["h", None, []]


async def test_lookup_without_minting_writes_nothing_for_an_unknown_caller(
    r: aioredis.Redis,
) -> None:
    assert await _run(r, "lookup", CALLER, ["", 90 * DAY]) == [None, None, []]
    assert not await r.exists(*CALLER)


async def test_lookup_of_a_returning_caller_renews_all_three_ttls(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], "h", ex=60)
    await r.set(CALLER[1], '{"v":1}', ex=60)
    await r.rpush(CALLER[2], "s1", "s2")
    await r.expire(CALLER[2], 60)
    for mint in ("h", ""):
        assert await _run(r, "lookup", CALLER, [mint, 90 * DAY]) == ["h", '{"v":1}', ["s1", "s2"]]
        for key in CALLER:
            assert await r.ttl(key) > 89 * DAY, (mint, key)
            await r.expire(key, 60)


async def test_lookup_reports_keys_of_the_wrong_type_without_failing(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], "h")
    await r.sadd(CALLER[1], "not a profile")
    await r.hset(CALLER[2], "not", "a list")
    assert await _run(r, "lookup", CALLER, ["h", 90 * DAY]) == ["h", ["err"], []]


SAVE = [
    "lua:user:{u}:profile",
    "lua:user:{u}:sessions",
    "lua:user:{u}:profile:unreadable",
    "lua:session:{c1}",
    "lua:sessions:open",
    "lua:phone:{h}",
]


def _save_args(expected: str, new: str, session_id: str = "c1", kept: int = 5) -> list[Any]:
    return [expected, new, session_id, '{"session":1}', 90 * DAY, DAY, kept, "0"]


async def test_save_writes_every_key_with_its_ttl(r: aioredis.Redis) -> None:
    await r.set(SAVE[5], "u", ex=60)
    await r.zadd(SAVE[4], {"c1": 1.0})
    assert await _run(r, "save_call", SAVE, _save_args("", "P1")) == [1]
    assert await r.get(SAVE[0]) == "P1" and await r.ttl(SAVE[0]) > 89 * DAY
    assert await r.lrange(SAVE[1], 0, -1) == ["c1"] and await r.ttl(SAVE[1]) > 89 * DAY
    assert await r.get(SAVE[3]) == '{"session":1}' and DAY - 5 < await r.ttl(SAVE[3]) <= DAY
    assert await r.zscore(SAVE[4], "c1") is None  # no longer in progress
    assert await r.ttl(SAVE[5]) > 89 * DAY  # the phone mapping is renewed too


async def test_save_refuses_a_stale_profile_and_returns_the_current_one(
    r: aioredis.Redis,
) -> None:
    await r.set(SAVE[0], "P2")
    assert await _run(r, "save_call", SAVE, _save_args("P1", "P3")) == [0, "P2"]
    assert await r.get(SAVE[0]) == "P2" and not await r.exists(SAVE[1], SAVE[3])
    # "No profile yet" is expected as '': a profile written meanwhile is a conflict too.
    assert await _run(r, "save_call", SAVE, _save_args("", "P3")) == [0, "P2"]


async def test_save_of_a_call_already_listed_does_not_list_it_twice(r: aioredis.Redis) -> None:
    assert await _run(r, "save_call", SAVE, _save_args("", "P1")) == [1]
    assert await _run(r, "save_call", SAVE, _save_args("P1", "P2")) == [1]
    assert await r.lrange(SAVE[1], 0, -1) == ["c1"]


async def test_save_keeps_the_last_sessions_only(r: aioredis.Redis) -> None:
    profile = ""
    for i in range(4):
        assert await _run(r, "save_call", SAVE, _save_args(profile, f"P{i}", f"c{i}", 2)) == [1]
        profile = f"P{i}"
    assert await r.lrange(SAVE[1], 0, -1) == ["c2", "c3"]


async def test_save_sets_unreadable_and_wrong_typed_data_aside(r: aioredis.Redis) -> None:
    await r.set(SAVE[0], "garbage")
    args = _save_args("garbage", "P1")
    args[7] = "1"  # the store could not read it: set aside
    assert await _run(r, "save_call", SAVE, args) == [1]
    assert await r.get(SAVE[2]) == "garbage" and await r.ttl(SAVE[2]) > 89 * DAY

    await r.delete(SAVE[0], SAVE[2])
    await r.rpush(SAVE[0], "someone", "else's")  # not a profile at all
    await r.set(SAVE[1], "not a list")
    assert await _run(r, "save_call", SAVE, _save_args("", "P1")) == [1]
    assert await r.lrange(SAVE[2], 0, -1) == ["someone", "else's"]
    assert await r.ttl(SAVE[2]) > 89 * DAY
    assert await r.get(SAVE[0]) == "P1" and await r.lrange(SAVE[1], 0, -1) == ["c1"]


async def test_save_on_a_cluster_touches_the_callers_slot_only(r: aioredis.Redis) -> None:
    assert await _run(r, "save_call", SAVE[:3], _save_args("", "P1")) == [1]
    assert await r.get(SAVE[0]) == "P1"
    assert not await r.exists(SAVE[3], SAVE[4], SAVE[5])  # written next to it by the store


async def test_append_keeps_a_journals_ttl_and_gives_a_lost_one_a_ttl(r: aioredis.Redis) -> None:
    key = "lua:session:{c1}"
    await r.set(key, "header", ex=500)
    assert await _run(r, "append_journal", [key], ["\nturn", DAY]) == len("header\nturn")
    assert 490 < await r.ttl(key) <= 500
    await r.delete(key)  # expired, or erased, meanwhile
    await _run(r, "append_journal", [key], ["\nturn", DAY])
    assert await r.get(key) == "\nturn" and await r.ttl(key) > DAY - 5


async def test_claim_leases_an_orphan_to_one_claimer(r: aioredis.Redis) -> None:
    key = "lua:sessions:open"
    await r.zadd(key, {"idle": 100.0, "leased": 5000.0})
    assert await _run(r, "claim_orphan", [key], ["missing", 1000, 1300]) == 0
    assert await _run(r, "claim_orphan", [key], ["leased", 1000, 1300]) == 0
    assert await _run(r, "claim_orphan", [key], ["idle", 1000, 1300]) == 1
    assert await r.zscore(key, "idle") == 1300.0
    assert await _run(r, "claim_orphan", [key], ["idle", 1000, 1300]) == 0  # taken
