"""Reliability where the world is worse than an outage: a silent network, hostile data in Redis
and in the transcript, a server that reads but does not write, an operator who keeps looking.

Every test runs against real servers (and, for the network, a real TCP proxy that can
black-hole, delay, cut or reset: ``tests/support/proxy.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from livekit.plugins.caller_memory import (
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.memory import merge_call
from livekit.plugins.caller_memory.models import MAX_TURNS, SessionRecord, Turn, utcnow
from livekit.plugins.caller_memory.store import InMemoryStore, codec
from livekit.plugins.caller_memory.testing import ScriptedLLM

from .conftest import TEST_SECRET, replace
from .support.cli import operator_cli
from .support.facts import answer, call_summary, fact_op, op
from .support.proxy import FaultProxy, Mode, fault_proxy
from .support.servers import TestServer
from .support.text import said as what_is_said
from .support.waiting import eventually
from .support.worker import WorkerProcess

NUMBER = "+14155550134"


async def _call(manager: SessionManager, session_id: str, *said: str) -> Any:
    await manager.start_session(session_id=session_id, phone_number=NUMBER)
    for text in said:
        manager.add_turn(session_id, "user", text)
    return await manager.end_session(session_id)


# -- 1. any text: every call reaches Redis or the outbox ----------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=200)
"""Any Python string: lone surrogates (half an emoji cut between streamed chunks) included."""


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(turns=st.lists(ANY_TEXT, min_size=1, max_size=5), name=ANY_TEXT, summary=ANY_TEXT)
@example(turns=["I love pizza \ud83c"], name="Ana\udc00", summary="Split emoji \ud83d.")
def test_any_text_in_a_call_is_saved_or_kept(
    redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory, turns: list[str],
    name: str, summary: str,
) -> None:  # fmt: skip
    async def scenario() -> None:
        data_dir = tmp_path_factory.mktemp("anytext")
        config = RedisConfig(url=redis_server.url, key_prefix=f"any{data_dir.name}",
                             phone_hash_secret=TEST_SECRET, data_dir=data_dir,
                             lookup_timeout_ms=10_000)  # fmt: skip
        store = RedisMemoryStore(config)
        spoken = [t for t in turns if what_is_said(t)] or ["hello"]
        llm = ScriptedLLM(
            summary=answer(
                summary or "x",
                op("add", "name", name, f"I'm {name}"),
                op("add", "note", spoken[0], spoken[0]),
            )
        )
        manager = SessionManager(store, llm=llm)
        profile = await _call(manager, "c1", *spoken)
        assert profile is not None  # saved, not lost to one bad character
        record = await store.get_session("c1")
        assert record is not None and len(record.turns) == len(spoken)
        # The same call with the store gone: it must reach the outbox.
        down = SessionManager(RedisMemoryStore(replace(config, url="redis://127.0.0.1:1")), llm=llm)
        assert await _call(down, "c2", *spoken) is None
        assert len(down.outbox) == 1 and down.outbox.entries()[0].record.session_id == "c2"
        saved, left = await manager.flush_outbox()
        assert (saved, left) == (1, 0)
        await down.store.disconnect()
        await store.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("session_id", [None, 42, "", "   ", "a\ud800b", "x" * 1000])
async def test_a_bad_session_id_is_refused_at_the_start_not_lost_at_the_end(
    config: RedisConfig, session_id: Any
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    with pytest.raises(ValueError, match="session_id"):
        await manager.start_session(session_id=session_id, phone_number=NUMBER)
    assert manager.active_sessions == []
    await manager.store.disconnect()


# -- 2. a network that fails in every way: black hole, delay, cut, reset ------------------------


@pytest.fixture
def proxy(redis_server: TestServer) -> Iterator[FaultProxy]:
    with fault_proxy(redis_server.port, delay_s=5.0) as running:
        yield running


@pytest.fixture
async def through_proxy(config: RedisConfig, proxy: FaultProxy) -> AsyncIterator[SessionManager]:
    """A manager whose Redis is behind the proxy, with a remembered caller."""
    proxied = replace(config, url=proxy.url, lookup_timeout_ms=300, save_timeout_s=1.0)
    store = RedisMemoryStore(proxied)
    await store.connect()
    manager = SessionManager(store)
    assert await _call(manager, "before", "my name is Ana") is not None
    yield manager
    proxy.set_mode("pass")
    await manager.aclose()
    await store.disconnect()


FAULTS: list[Mode] = ["blackhole", "delay", "cut", "refuse"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_lookup_through_a_failing_network_greets_as_new_and_the_call_goes_on(
    through_proxy: SessionManager, proxy: FaultProxy, fault: Mode
) -> None:
    manager = through_proxy
    proxy.set_mode(fault)
    ctx = await manager.start_session(session_id="during", phone_number=NUMBER)
    assert ctx.status in ("timeout", "error") and not ctx.is_returning
    manager.add_turn("during", "user", "I'd like to book a cleaning")
    assert await manager.end_session("during") is None  # kept, not lost
    assert len(manager.outbox) == 1
    proxy.set_mode("pass")
    assert await manager.flush_outbox() == (1, 0)
    again = await manager.start_session(session_id="after", phone_number=NUMBER)
    assert again.is_returning and again.profile is not None
    assert again.profile.call_count == 2  # the call made during the fault is in memory


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_journal_and_a_save_through_a_failing_network_keep_the_call(
    through_proxy: SessionManager, proxy: FaultProxy, fault: Mode
) -> None:
    manager = through_proxy
    ctx = await manager.start_session(session_id="during", phone_number=NUMBER)
    assert ctx.is_returning
    manager.add_turn("during", "user", "first, journaled")
    store = manager.store

    async def journaled() -> bool:
        return b"journaled" in (await store.read(store.keys.session("during")) or b"")

    await eventually(journaled)
    proxy.set_mode(fault)  # the network fails mid-call: the journal, then the save
    manager.add_turn("during", "user", "then the network failed")
    assert await manager.end_session("during") is None
    [entry] = manager.outbox.entries()
    assert [t.text for t in entry.record.turns] == ["first, journaled", "then the network failed"]
    proxy.set_mode("pass")
    assert await manager.flush_outbox() == (1, 0)
    record = await store.get_session("during")
    assert record is not None and len(record.turns) == 2


async def test_a_silent_server_at_start_up_does_not_hold_the_worker(
    config: RedisConfig, proxy: FaultProxy
) -> None:
    # The worker starts while Redis accepts connections and never answers: it starts anyway,
    # and its first call goes on without memory.
    proxy.set_mode("blackhole")
    proxied = replace(config, url=proxy.url, lookup_timeout_ms=300)
    manager = await SessionManager.open(config=proxied)
    assert manager.store.last_error is not None and "Timeout" in manager.store.last_error
    ctx = await manager.start_session(session_id="first", phone_number=NUMBER)
    assert ctx.status in ("timeout", "error")
    await manager.aclose()


# -- 3. recovery on its own clock ----------------------------------------------------------------


async def test_orphans_are_found_by_heartbeat_whoever_reads_their_journals(
    config: RedisConfig, redis_server: TestServer, tmp_path: Path
) -> None:
    settings = {
        "REDIS_URL": redis_server.url,
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": TEST_SECRET,
        "MEMORY_ORPHAN_AFTER_S": "3",  # a heartbeat every second
        "MEMORY_LOOKUP_TIMEOUT_MS": "10000",
    }
    alive = WorkerProcess({**settings, "MEMORY_DATA_DIR": str(tmp_path / "alive")})
    dying = WorkerProcess({**settings, "MEMORY_DATA_DIR": str(tmp_path / "dying")})
    store = RedisMemoryStore(replace(config, orphan_after_s=3))
    try:
        alive.ask("start", session="long-call", number=NUMBER)
        alive.ask("turn", session="long-call", text="a long call, still going")
        dying.ask("start", session="cut-off", number="+14155550135")
        dying.ask("turn", session="cut-off", text="the worker dies after this")

        async def both_journaled() -> bool:
            found = [await store.read(store.keys.session(s)) for s in ("long-call", "cut-off")]
            return all(raw and b"\n" in raw for raw in found)

        await eventually(both_journaled)
        dying.kill()
        # An operator keeps looking at the journals meanwhile: reads do not keep the dead
        # call alive, and the fleet (here the live worker's maintenance) recovers it.
        recovered = False
        for _ in range(60):
            assert operator_cli(replace(config, orphan_after_s=3), "stats").returncode in (0, 1)
            if await store.get_session("cut-off") is not None:
                recovered = True
                break
        assert recovered
        assert await store.get_session("long-call") is None  # alive: not taken from its worker
        assert await store.orphans_waiting(3) == 0
        alive.ask("end", session="long-call")
        assert await store.get_session("long-call") is not None
    finally:
        alive.stop()
        dying.stop()
        await store.disconnect()


async def test_one_flush_recovers_every_orphan_or_says_how_many_remain(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    count = 45  # more than one batch
    for i in range(count):
        await manager.start_session(session_id=f"o-{i}", phone_number=f"+1415555{i + 1000:04d}")
        manager.add_turn(f"o-{i}", "user", f"call {i}")
    await eventually(lambda: _all_journaled(redis_client, config, count))
    # The workers died: their calls stop beating (their heartbeat is long past).
    await redis_client.zadd(store.keys.open_calls(), {f"o-{i}": 1.0 for i in range(count)}, xx=True)
    manager._calls.clear()  # noqa: SLF001 - the dead workers' memory is gone with them
    flushed = operator_cli(config, "flush")
    assert f"recovered from the journals of dead workers: {count}, 0 left" in flushed.stdout
    assert flushed.returncode == 0
    await store.disconnect()


async def _all_journaled(client: aioredis.Redis, config: RedisConfig, count: int) -> bool:
    keys = [f"{config.key_prefix}:session:{{o-{i}}}" for i in range(count)]
    values = await client.mget(keys)
    return all(v and b"\n" in v for v in values)


# -- 4. and 8. hostile keys: set aside, counted, reported ---------------------------------------


async def test_a_phone_key_of_the_wrong_type_is_set_aside_and_reported(
    config: RedisConfig, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    phone_key = manager.store.keys.phone(manager.store.hasher.hash(NUMBER))
    await redis_client.rpush(phone_key, "another program's list")
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        assert await _call(manager, "c1", "hello") is not None  # saved, not trapped
    assert "wrong type" in caplog.text and "0134" not in caplog.text
    assert await redis_client.lrange(f"{phone_key}:unreadable", 0, -1) == [
        b"another program's list"
    ]
    stats = operator_cli(config, "stats")
    assert stats.returncode == 1 and "1 key set aside" in stats.stderr
    flushed = operator_cli(config, "flush")
    assert flushed.returncode == 0
    await manager.store.disconnect()


@pytest.mark.parametrize("junk", [b"\xff\xfe\x00junk", b"", b"a b", b"x" * 129])
async def test_a_phone_key_holding_no_user_id_is_set_aside_and_the_caller_keeps_their_memory(
    config: RedisConfig,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    junk: bytes,
) -> None:
    # Bytes written by hand over a caller's phone key must not become their user id: their
    # memory would be read from keys that do not exist, and written there.
    manager = SessionManager(RedisMemoryStore(config))
    assert await _call(manager, "c1", "this is Dana, I drive a red van") is not None
    phone_hash = manager.store.hasher.hash(NUMBER)
    phone_key = manager.store.keys.phone(phone_hash)
    await redis_client.set(phone_key, junk)
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        ctx = await manager.start_session(session_id="c2", phone_number=NUMBER)
    assert (ctx.status, ctx.user_id) == ("returning", phone_hash)
    assert ctx.profile is not None and ctx.profile.call_count == 1
    assert "no user id" in caplog.text and "0134" not in caplog.text
    assert await redis_client.get(f"{phone_key}:unreadable") == junk
    assert await redis_client.get(phone_key) == phone_hash.encode()
    await manager.end_session("c2")
    assert not [k async for k in redis_client.scan_iter(match="*junk*")]
    await manager.store.disconnect()


async def test_a_truncated_outbox_file_is_reported_not_hidden(config: RedisConfig) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    record = SessionRecord(session_id="cut", started_at=utcnow())
    path = manager.outbox.put(record, phone_hash="h")
    path.write_bytes(path.read_bytes()[:20])  # a crash cut it short
    flushed = operator_cli(config, "flush")
    assert flushed.returncode == 1 and "could not be read" in flushed.stderr
    stats = operator_cli(config, "stats")
    assert stats.returncode == 1 and "outbox unreadable" in stats.stdout
    await manager.store.disconnect()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("db", "ERR DB index is out of range"),
        ("tls", "SSL handshake failed"),
    ],
)
async def test_misconfigurations_are_named_by_their_real_cause(
    config: RedisConfig, redis_server: TestServer, setup: str, reason: str
) -> None:
    if setup == "db":
        wrong = replace(config, url=f"{redis_server.url}/99")
    else:
        wrong = replace(config, url=redis_server.url.replace("redis://", "rediss://"))
    store = RedisMemoryStore(wrong)
    assert not await store.connect()
    assert store.last_error == f"Redis connection failed: {reason}"
    await store.disconnect()


# -- 5. reads that work when writes do not -------------------------------------------------------


@pytest.fixture
def replica(redis_server: TestServer, tmp_path: Path) -> Iterator[TestServer]:
    server = TestServer(
        data_dir=tmp_path / "replica",
        appendonly=False,
        extra_args=["--replicaof", "127.0.0.1", str(redis_server.port)],
    )
    server.start()
    yield server
    server.stop()


async def test_a_read_only_replica_still_recognizes_a_returning_caller(
    config: RedisConfig, replica: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    assert await _call(manager, "c1", "my name is Ana") is not None
    replica_store = RedisMemoryStore(replace(config, url=replica.url))

    async def replicated() -> bool:
        found = await replica_store.read(
            manager.store.keys.profile(manager.store.hasher.hash(NUMBER))
        )
        return found is not None

    await eventually(replicated)
    on_replica = SessionManager(replica_store)
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        ctx = await on_replica.start_session(session_id="c2", phone_number=NUMBER)
    assert ctx.status == "returning" and ctx.caller_name == "Ana"
    assert "read-only replica" in caplog.text
    on_replica.add_turn("c2", "user", "again")
    assert await on_replica.end_session("c2") is None  # the save cannot: kept in the outbox
    assert len(on_replica.outbox) == 1
    await replica_store.disconnect()
    await manager.store.disconnect()


async def test_a_redis_user_that_may_not_write_still_recognizes_a_returning_caller(
    config: RedisConfig,
    redis_server: TestServer,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The user may run the lookup script but not the writes inside it: Redis words that
    # refusal as ERR (7.0 and 7.2+ each in their own words), not NOPERM.
    manager = SessionManager(RedisMemoryStore(config))
    assert await _call(manager, "c1", "my name is Ana") is not None
    user = f"reader-{config.key_prefix}"
    await redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+reader-secret"],
        keys=["*"],
        categories=["+@all", "-@write"],
    )
    url = redis_server.url.replace("redis://", f"redis://{user}:reader-secret@", 1)
    reader = RedisMemoryStore(replace(config, url=url))
    try:
        on_reader = SessionManager(reader)
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            ctx = await on_reader.start_session(session_id="c2", phone_number=NUMBER)
        assert ctx.status == "returning" and ctx.caller_name == "Ana"
        assert "the Redis user may not write" in caplog.text
        on_reader.dont_remember("c2")
        await on_reader.end_session("c2")
    finally:
        await reader.disconnect()
        await manager.store.disconnect()
        await redis_client.acl_deluser(user)


async def test_out_of_memory_still_recognizes_a_returning_caller(
    config: RedisConfig, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    assert await _call(manager, "c1", "my name is Ana") is not None
    await redis_client.config_set("maxmemory", 1)
    try:
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            ctx = await manager.start_session(session_id="c2", phone_number=NUMBER)
            assert ctx.status == "returning" and ctx.caller_name == "Ana"
            manager.add_turn("c2", "user", "again")
            assert await manager.end_session("c2") is None
        assert "OOM command not allowed" in caplog.text  # the guide's text, not "is it running"
        assert len(manager.outbox) == 1
    finally:
        await redis_client.config_set("maxmemory", 0)
    assert await manager.flush_outbox() == (1, 0)
    await manager.store.disconnect()


# -- 6. and 7. bounded values: a decompression bomb, a runaway journal ---------------------------


async def test_a_decompression_bomb_in_a_profile_is_refused_cheaply(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    assert await _call(manager, "c1", "hello") is not None
    store = manager.store
    key = store.keys.profile(store.hasher.hash(NUMBER))
    bomb = zlib.compress(b'{"v":1,"user_id":"' + b"A" * 300_000_000 + b'"}', 9)
    assert len(bomb) < 400_000  # 300 MB once inflated
    await redis_client.set(key, bomb)
    with pytest.raises(codec.UnreadableValue):
        codec.inflate(bomb)  # stops at the size of the largest profile
    ctx = await manager.start_session(session_id="c2", phone_number=NUMBER)
    assert ctx.status == "new"  # unreadable: greeted as new, the value kept aside at the save
    manager.add_turn("c2", "user", "hello again")
    assert await manager.end_session("c2") is not None
    assert await redis_client.get(f"{key}:unreadable") == bomb
    await store.disconnect()


async def test_a_runaway_call_keeps_its_journal_bounded(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    await manager.start_session(session_id="runaway", phone_number=NUMBER)
    long_turn = "blah " * 800  # 4,000 characters
    for i in range(1_200):
        manager.add_turn("runaway", "user", f"{i} {long_turn}")
        if i % 50 == 0:
            await asyncio.sleep(0)  # as turns arrive: the journal writes in between
    key = manager.store.keys.session("runaway")

    async def settled() -> bool:
        return (await redis_client.strlen(key)) > codec.MAX_JOURNAL_BYTES // 2

    await eventually(settled)
    assert await redis_client.strlen(key) <= codec.MAX_JOURNAL_BYTES
    profile = await manager.end_session("runaway")
    assert profile is not None
    record = await manager.store.get_session("runaway")
    assert record is not None and len(record.turns) == MAX_TURNS
    assert record.turns[-1].text.startswith("1199 ")  # the end of the call is kept
    await manager.store.disconnect()


async def test_a_recovered_journal_keeps_the_ends_of_a_runaway_call(
    config: RedisConfig,
) -> None:
    lines = [json.dumps({"role": "user", "text": f"turn {i}"}) for i in range(1_000)]
    header = json.dumps(
        {"journal": 1, "session_id": "r", "user_id": "u", "started_at": "2026-01-01T00:00:00Z"}
    )
    record, _ = codec.parse_journal("\n".join([header, *lines]))
    assert len(record.turns) == MAX_TURNS
    assert record.turns[0].text == "turn 0" and record.turns[-1].text == "turn 999"


def test_summaries_with_any_text_are_kept(tmp_path: Path) -> None:
    # What a model writes is checked like the transcript: a lone surrogate does not fail it.
    summary = call_summary("Booked \ud83d", fact_op("add", "name", "Ana\udc00", "I'm Ana\udc00"))
    from livekit.plugins.caller_memory.models import CallerProfile

    profile = merge_call(
        CallerProfile(user_id="u"), summary, session_id="s", ended_at=utcnow(), max_summaries=5
    )
    stored = codec.encode_profile(profile)
    decoded = codec.decode_profile(stored)
    assert decoded.calls[-1].summary == "Booked \ufffd"
    assert decoded.name == "Ana\ufffd" and decoded.facts[0].evidence == "I'm Ana\ufffd"


async def test_a_turn_or_a_call_past_its_bounds_is_cut_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryStore(RedisConfig(persistence=False, phone_hash_secret=TEST_SECRET))
    manager = SessionManager(store)
    await manager.start_session(session_id="AJ_long", phone_number="+14155550179")
    secret_words = "my account password is hunter2 " * 4000
    with caplog.at_level(logging.INFO, logger="livekit.plugins.caller_memory"):
        manager.add_turn("AJ_long", "user", secret_words)
        for i in range(MAX_TURNS + 5):
            manager.add_turn("AJ_long", "user", f"line {i}")
    turns = manager.turns("AJ_long")
    assert len(turns) == MAX_TURNS and turns[-1].text == f"line {MAX_TURNS + 4}"
    assert len(turns[0].text) <= 4_000
    cut = [r.getMessage() for r in caplog.records if "cut to its bounds" in r.getMessage()]
    assert cut == ["call cut to its bounds: a turn keeps its first 4,000 characters"]
    assert "hunter2" not in caplog.text


async def test_bytes_under_a_previous_secrets_phone_key_are_not_adopted_as_an_id(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    # A rotation moves the id found under the old secret's phone key: only a user id.
    rotated = replace(
        config,
        phone_hash_secret="9f2c7a41d8e3b6f05c1a9e7d3b2f8c4a6e0d5b1f",
        phone_hash_previous_secrets="3b8e1f6a0c9d4e7b2a5f8c1d6e3b0a9f7c4d2e8b",
    )
    store = RedisMemoryStore(rotated)
    phone_hash, previous = store.hasher.hashes(NUMBER)
    await redis_client.set(store.keys.phone(previous[0]), "hello world!")
    found = await store.lookup(phone_hash, previous=previous)
    assert found.user_id == phone_hash and found.is_new
    assert await redis_client.get(store.keys.phone(phone_hash)) == phone_hash.encode()
    await store.disconnect()


async def test_a_flush_says_which_calls_it_dropped_for_an_erased_caller(
    config: RedisConfig, tmp_path: Path
) -> None:
    # Worker C kept a call in its outbox; the caller is erased from another machine; C's
    # flush drops the call, and says so rather than "0 of 1 saved, 0 waiting".
    other = SessionManager(RedisMemoryStore(replace(config, data_dir=tmp_path / "other")))
    assert await _call(other, "c1", "this is Dana") is not None
    kept = SessionManager(RedisMemoryStore(config))
    record = SessionRecord(session_id="c2", started_at=utcnow(), ended_at=utcnow(),
                           turns=[Turn(role="user", text="hello again")])  # fmt: skip
    kept.outbox.put(record, phone_hash=kept.store.hasher.hash(NUMBER))
    await other.forget_caller(NUMBER)
    flushed = operator_cli(config, "flush")
    assert flushed.returncode == 0, flushed.stderr
    assert "Outbox: 0 of 1 call(s) saved, 0 waiting, 1 dropped (their caller was erased)." in (
        flushed.stdout
    )
    lock = config.data_dir / "outbox" / ".lock"  # no wider than the calls beside it
    assert not lock.exists() or stat.S_IMODE(lock.stat().st_mode) == 0o600
    await other.store.disconnect()
    await kept.store.disconnect()
