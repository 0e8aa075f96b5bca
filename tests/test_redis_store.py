"""What the Redis store leaves on a real server: keys, TTLs, command counts, bad data."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import (
    CallSummary,
    ConfigError,
    InvalidPhoneNumberError,
    MemoryStore,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
    StoreUnavailableError,
)
from livekit.plugins.caller_memory.models import SessionRecord, Turn, utcnow
from livekit.plugins.caller_memory.store import codec

from .conftest import TEST_SECRET, dump_keys, replace
from .support.facts import call_summary, fact_op
from .support.servers import TestServer

PHONE = "+1 415 555 0134"
DIGITS = ("14155550134", "4155550134", "5550134")


async def _one_call(store: MemoryStore, session_id: str) -> str:
    phone_hash = store.hasher.hash(PHONE)
    found = await store.lookup(phone_hash)
    assert found.user_id is not None
    now = utcnow()
    record = SessionRecord(
        session_id=session_id,
        user_id=found.user_id,
        started_at=now,
        ended_at=now,
        turns=[
            Turn(role="user", text="Hi, this is Ana, my number is 415 555 0134"),
            Turn(role="assistant", text="Thanks Ana, noted."),
        ],
    )
    summary = call_summary("Ana asked about hours.", fact_op("add", "name", "Ana", "this is Ana"))
    await store.save_call(record, summary, phone_hash=phone_hash, base=found)
    return found.user_id


async def test_every_key_of_the_table_has_its_ttl(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-1")
        phone_hash = store.hasher.hash(PHONE)

    p = config.key_prefix
    expected = {
        f"{p}:phone:{{{phone_hash}}}": 90 * 86400,
        f"{p}:user:{{{user_id}}}:profile": 90 * 86400,
        f"{p}:user:{{{user_id}}}:sessions": 90 * 86400,
        f"{p}:user:{{{user_id}}}:calls": 24 * 3600,
        f"{p}:session:{{room-1}}": 24 * 3600,
        f"{p}:versions": 90 * 86400,  # the saves by version, one key for the prefix
    }
    dump = await dump_keys(redis_client, p)
    assert set(dump) == set(expected)
    for key, ttl in expected.items():
        left = await redis_client.ttl(key)
        assert ttl - 5 <= left <= ttl, key


async def test_no_key_or_value_holds_the_callers_number(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        phone_hash = store.hasher.hash(PHONE)
        found = await store.lookup(phone_hash)
        now = utcnow()
        record = SessionRecord(
            session_id="room-2", user_id=found.user_id, started_at=now, ended_at=now,
            turns=[Turn(role="user", text="I'd like to book a table.")],
        )  # fmt: skip
        await store.save_call(record, CallSummary(summary="Booked."), phone_hash=phone_hash)
    dump = await dump_keys(redis_client, config.key_prefix)
    assert dump
    everything = " ".join(f"{k} {v}" for k, v in dump.items())
    for digits in DIGITS:
        assert digits not in everything


async def test_the_hash_is_keyed(config: RedisConfig) -> None:
    other = replace(config, phone_hash_secret="another-secret-3f8b1d6a9c2e7054f3a8b1d6")
    a = RedisMemoryStore(config).hasher.hash(PHONE)
    b = RedisMemoryStore(other).hasher.hash(PHONE)
    assert a != b


async def test_a_lookup_is_one_round_trip_and_three_commands(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        await _one_call(store, "room-3")
        for phone, returning in [(PHONE, True), ("+14155550177", False)]:
            phone_hash = store.hasher.hash(phone)
            before = await redis_client.info("all")
            found = await store.lookup(phone_hash)
            after = await redis_client.info("all")
            assert found.is_returning is returning and found.is_new is not returning
            # Read events on the server: the lookup's, plus the second INFO's own.
            assert after["total_reads_processed"] - before["total_reads_processed"] - 1 == 1
            used = {
                k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"]
                for k in after
                # The lookup's commands only (not INFO, nor a new connection's CLIENT SETINFO).
                if k.startswith("cmdstat_") and k[8:].split("|")[0] not in ("info", "client")
            }
            # One script: GETEX names the id (SET mints a new one); STRLEN bounds the profile,
            # GETEX reads it, and the GETEXs and an EXPIRE renew the three TTLs (the session
            # list is not read).
            expected = {
                "cmdstat_evalsha": 1,  # the one command sent; inside it, run by the server:
                "cmdstat_getex": 2,
                "cmdstat_strlen": 1,
                "cmdstat_expire": 1,
                "cmdstat_time": 1,  # the call's beginning, on the server's clock
            }
            if not returning:
                expected["cmdstat_set"] = 1
            assert {k: v for k, v in used.items() if v} == expected


@pytest.mark.parametrize("left", ["profile and sessions", "sessions"])
async def test_a_caller_whose_number_mapping_expired_first_is_still_the_same_caller(
    config: RedisConfig, redis_client: aioredis.Redis, left: str
) -> None:
    # The phone key went first (evicted, or deleted by hand); what is left of the caller is
    # theirs, not a new caller's: the lookup sees it without reading the session list.
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-5")
        phone_hash = store.hasher.hash(PHONE)
        assert user_id == phone_hash
        p = config.key_prefix
        await redis_client.delete(f"{p}:phone:{{{phone_hash}}}")
        if left == "sessions":
            await redis_client.delete(f"{p}:user:{{{user_id}}}:profile")
        found = await store.lookup(phone_hash)
        assert found.user_id == user_id and not found.is_new
        assert found.is_returning is (left != "sessions")
        assert found.session_ids == (["room-5"] if left != "sessions" else [])
        assert await store.get_session_ids(user_id) == ["room-5"]
        assert await redis_client.ttl(f"{p}:user:{{{user_id}}}:sessions") > 89 * 86400


async def test_corrupt_profile_is_set_aside_without_personal_data_in_the_log(
    config: RedisConfig, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-4")
        profile_key = store.keys.profile(user_id)
        await redis_client.set(profile_key, "{not json, Ana 4155550134", ex=60)
        with caplog.at_level(logging.DEBUG, logger="livekit.plugins.caller_memory"):
            found = await store.lookup(store.hasher.hash(PHONE))
        assert found.user_id == user_id and found.profile is None
        assert any(getattr(r, "key", None) == profile_key for r in caplog.records)
        for record in caplog.records:
            assert "4155550134" not in record.getMessage() and "Ana" not in record.getMessage()

        # The next save replaces the unreadable profile with a valid one.
        await _one_call(store, "room-5")
        profile = await store.get_profile(user_id)
        assert profile is not None and profile.call_count == 1


def _zlib_plain(data: bytes) -> bytes:
    return zlib.compress(data, 6)  # as 0.1 stored profiles: no dictionary (no FDICT bit)


def _zlib_first_02_dictionary(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zdict=codec.PROFILE_ZDICT_V2)  # the JSON's fixed parts only
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize(
    ("earlier", "dictionary"),
    [(_zlib_plain, None), (_zlib_first_02_dictionary, codec.PROFILE_ZDICT_V2)],
    ids=["no dictionary", "first 0.2 dictionary"],
)
async def test_profiles_compressed_as_earlier_versions_did_still_read(
    config: RedisConfig,
    redis_client: aioredis.Redis,
    earlier: Callable[[bytes], bytes],
    dictionary: bytes | None,
) -> None:
    # Those stay readable, and the next save writes the caller's profile with the current
    # preset dictionary, smaller than plain zlib.
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, f"room-z-{earlier.__name__}")
        profile_key = store.keys.profile(user_id)
        current = await redis_client.get(profile_key)
        assert isinstance(current, bytes) and current[:1] == b"x" and current[1] & 0x20  # FDICT
        stored = earlier(codec.inflate(current))
        if dictionary is None:
            assert stored[1] & 0x20 == 0
        else:
            assert int.from_bytes(stored[2:6], "big") == zlib.adler32(dictionary)
        await redis_client.set(profile_key, stored, ex=60)
        found = await store.lookup(store.hasher.hash(PHONE))
        assert found.profile is not None and found.profile.name == "Ana"
        await _one_call(store, f"room-z2-{earlier.__name__}")
        rewritten = await redis_client.get(profile_key)
        assert isinstance(rewritten, bytes) and rewritten[1] & 0x20
        assert int.from_bytes(rewritten[2:6], "big") == zlib.adler32(codec.PROFILE_ZDICT)
        profile = await store.get_profile(user_id)
        assert profile is not None and profile.call_count == 2
        assert len(rewritten) < len(zlib.compress(codec.inflate(rewritten), 6))


async def test_a_profile_compressed_with_an_unknown_dictionary_is_set_aside(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    # A later version's dictionary (or another program's): not guessed at, kept aside.
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-z3")
        profile_key = store.keys.profile(user_id)
        current = await redis_client.get(profile_key)
        assert current is not None
        deflater = zlib.compressobj(6, zdict=b'{"v":1,"another dictionary":')
        foreign = deflater.compress(codec.inflate(current)) + deflater.flush()
        await redis_client.set(profile_key, foreign, ex=60)
        with pytest.raises(codec.UnreadableValue):
            codec.inflate(foreign)
        found = await store.lookup(store.hasher.hash(PHONE))
        assert found.user_id == user_id and found.profile is None
        await _one_call(store, "room-z4")
        assert await redis_client.get(f"{profile_key}:unreadable") == foreign


async def test_profile_of_the_wrong_type_does_not_break_the_call(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-6")
        profile_key = store.keys.profile(user_id)
        await redis_client.delete(profile_key)
        await redis_client.rpush(profile_key, "not", "a", "string")
        found = await store.lookup(store.hasher.hash(PHONE))
    assert found.user_id == user_id and found.profile is None


async def test_an_existing_client_is_used_and_left_open(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    store = RedisMemoryStore(config, client=redis_client)
    assert await store.connect()
    await store.get_or_create_user_id(phone_number=PHONE)
    await store.disconnect()
    assert await redis_client.ping()


@pytest.mark.parametrize(
    "number", ["hello 555", "", "anonymous", "+1415\ud800555", "+1" + "4" * 5000]
)
async def test_get_or_create_user_id_refuses_what_is_no_number_and_writes_nothing(
    config: RedisConfig, redis_client: aioredis.Redis, number: str
) -> None:
    # The app's own call (docs/python-api.md): it raises, where a call's start goes on.
    store = RedisMemoryStore(config)
    assert await store.connect()
    try:
        with pytest.raises(InvalidPhoneNumberError) as raised:
            await store.get_or_create_user_id(phone_number=number)
    finally:
        await store.disconnect()
    assert number not in str(raised.value) or not number
    assert await dump_keys(redis_client, config.key_prefix) == {}


# -- the guide's troubleshooting messages, each against a server set up that way ---------------


async def test_closed_port_says_connection_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = TestServer(appendonly=False)
    server.start()
    port = server.port
    server.stop()  # nothing listens there any more
    store = RedisMemoryStore(RedisConfig(port=port, host="127.0.0.1", data_dir=tmp_path))
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        assert await store.connect() is False
    assert store.last_error == "Redis connection failed: Connection refused"
    assert "redis-cli ping" in caplog.text


def test_an_error_of_the_plugin_itself_is_not_blamed_on_redis(tmp_path: Path) -> None:
    from pydantic import BaseModel, ValidationError

    from livekit.plugins.caller_memory.troubleshooting import diagnose

    class Limited(BaseModel):
        text: str

    try:
        Limited.model_validate({"text": 1})
    except ValidationError as e:
        found = diagnose(e, RedisConfig(data_dir=tmp_path))
    assert "not from Redis" in found.reason and "ValidationError" in found.reason
    assert not any("redis-cli" in hint for hint in found.hints)


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        (None, "Redis connection failed: NOAUTH Authentication required"),
        ("wrong-password", "Redis connection failed: WRONGPASS invalid username-password pair"),
    ],
)
async def test_password_server_says_noauth_or_wrongpass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, password: str | None, expected: str
) -> None:
    with TestServer(appendonly=False, password="s3cret-pass") as server:
        config = RedisConfig(
            host="127.0.0.1", port=server.port, password=password, data_dir=tmp_path
        )
        store = RedisMemoryStore(config)
        with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
            assert await store.connect() is False
        assert store.last_error == expected
        assert "REDIS_PASSWORD" in caplog.text
        assert "wrong-password" not in caplog.text and "s3cret-pass" not in caplog.text
        assert "wrong-password" not in repr(config)

        good = RedisMemoryStore(replace(config, password="s3cret-pass"))
        assert await good.connect()
        await good.disconnect()


@pytest.mark.parametrize("password", [None, "wrong-password"])
async def test_a_refused_password_is_a_call_start_failure_not_a_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, password: str | None
) -> None:
    # NOAUTH and WRONGPASS never heal in a moment: retried, they spent the lookup's budget
    # and the call was told "over its budget" (raise MEMORY_LOOKUP_TIMEOUT_MS: no help).
    with TestServer(appendonly=False, password="s3cret-pass") as server:
        config = RedisConfig(
            host="127.0.0.1", port=server.port, password=password, data_dir=tmp_path,
            phone_hash_secret=TEST_SECRET,
        )  # fmt: skip
        manager = SessionManager(RedisMemoryStore(config))
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            ctx = await manager.start_session(session_id="AJ_pw", phone_number="+14155550177")
        manager.dont_remember("AJ_pw")
        await manager.aclose()
    assert ctx.status == "error"
    assert "caller lookup failed (NOAUTH" in caplog.text or "(WRONGPASS" in caplog.text
    assert "over its budget" not in caplog.text


PASSWORD = "p@ss#1/x?y%z"
"""A password with every character that ends a part of a URL."""


@pytest.mark.parametrize("spelling", ["percent-encoded", "raw"])
async def test_a_password_with_url_characters_in_redis_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spelling: str
) -> None:
    # Raw, "redis://:p@ss#1/...@host" reads as host "ss": the store would try to reach it and
    # name it in the error, a piece of the password. It is refused as what it is instead.
    with TestServer(appendonly=False, password=PASSWORD) as server:
        password = quote(PASSWORD, safe="") if spelling == "percent-encoded" else PASSWORD
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        if spelling == "percent-encoded":
            store = RedisMemoryStore(RedisConfig(url=url, data_dir=tmp_path))
            assert await store.connect()
            await store.disconnect()
            return
        with pytest.raises(ConfigError) as info:
            RedisConfig(url=url, data_dir=tmp_path)
        message = str(info.value)
        assert "REDIS_URL: its password" in message and "%23" in message
        assert "REDIS_PASSWORD" in message
        for piece in ("p@ss", "#1", "x?y", "y%z", "127.0.0.1"):
            assert piece not in message


async def test_redis_url_without_a_password_takes_redis_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestServer(appendonly=False, password=PASSWORD) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        store = RedisMemoryStore(RedisConfig(url=url, password=PASSWORD, data_dir=tmp_path))
        assert await store.connect()
        await store.disconnect()
        # Without it, the guide's message, and where else the password may go.
        with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
            bare = RedisMemoryStore(RedisConfig(url=url, data_dir=tmp_path))
            assert await bare.connect() is False
        assert bare.last_error == "Redis connection failed: NOAUTH Authentication required"
        assert "Set REDIS_PASSWORD in .env" in caplog.text and "REDIS_URL" in caplog.text


async def test_tls_against_a_plain_server_says_ssl_handshake_failed(
    redis_server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RedisConfig(host="127.0.0.1", port=redis_server.port, ssl=True, data_dir=tmp_path)
    store = RedisMemoryStore(config)
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        assert await store.connect() is False
    assert store.last_error == "Redis connection failed: SSL handshake failed"
    # TLS is on already: the advice is to turn it off for this server, not on.
    assert "REDIS_SSL=false" in caplog.text and "Set REDIS_SSL=true" not in caplog.text


async def test_every_call_start_refreshes_the_callers_ttls(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        user_id = await _one_call(store, "room-ttl")
        phone_hash = store.hasher.hash(PHONE)
        keys = [
            store.keys.phone(phone_hash),
            store.keys.profile(user_id),
            store.keys.sessions(user_id),
        ]
        for key in keys:
            await redis_client.expire(key, 100)
        await store.lookup(phone_hash)  # a call that may never be saved (an opt-out)
        for key in keys:
            assert await redis_client.ttl(key) > 89 * 86400, key


async def test_a_call_start_is_one_round_trip_for_a_returning_caller_and_two_for_a_new_one(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    # The number is looked up as given (read-only) while it is checked; a new caller's id is
    # minted in a second round trip.
    async with RedisMemoryStore(config) as store:
        await _one_call(store, "room-rt")
        manager = SessionManager(store)
        for phone, status, trips in [("+14155550134", "returning", 1), ("+14155550199", "new", 2)]:
            before = await redis_client.info("stats")
            ctx = await manager.start_session(session_id=f"rt-{phone}", phone_number=phone)
            after = await redis_client.info("stats")
            assert ctx.status == status
            # The server's read events: the call start's, plus the second INFO's own.
            assert after["total_reads_processed"] - before["total_reads_processed"] - 1 == trips


async def test_a_number_in_e164_but_not_in_its_normal_form_is_one_caller_with_it(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    async with RedisMemoryStore(config) as store:
        manager = SessionManager(store)
        # "+31 (0)6 ..." written as E.164 with its trunk 0: the same caller as its normal form.
        first = await manager.start_session(session_id="nf-1", phone_number="+31612345678")
        again = await manager.start_session(session_id="nf-2", phone_number="+310612345678")
        assert first.user_id is not None and again.user_id == first.user_id
        # The lookup of the number as given, sent while it was checked, wrote nothing.
        as_given = store.hasher.hash_as_given("+310612345678")
        assert as_given is not None and as_given != first.user_id
        assert not await redis_client.exists(store.keys.phone(as_given))


async def test_memory_persistence_false_never_writes_to_redis(tmp_path: Path) -> None:
    # "memory then lives in the process": a RedisMemoryStore made anyway (the guide's API)
    # says so, and writes nothing to the Redis its settings name.
    with TestServer(appendonly=False) as server:
        config = RedisConfig(
            url=server.url, persistence=False, data_dir=tmp_path, phone_hash_secret=TEST_SECRET
        )
        store = RedisMemoryStore(config)
        assert await store.connect() is False
        assert store.last_error is not None and "MEMORY_PERSISTENCE=false" in store.last_error
        with pytest.raises(StoreUnavailableError, match="open_store"):
            await store.get_or_create_user_id(phone_number="+14155550178")
        admin = aioredis.Redis.from_url(server.url)
        assert await admin.dbsize() == 0
        await admin.aclose()
