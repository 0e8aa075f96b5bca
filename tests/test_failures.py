"""What happens when things fail, each against a real server put in that state.

Every test here is a row of the README's "What happens when things fail" table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from livekit.plugins.caller_memory import (
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.store.codec import is_journal

from .conftest import TEST_SECRET
from .support.facts import facts
from .support.servers import TestServer, make_self_signed_cert, supports_tls
from .support.waiting import eventually

PHONE = "+14155550150"
DIGITS = "4155550150"


pytestmark = pytest.mark.durable


async def _journal_holds(store: RedisMemoryStore, session_id: str, text: str) -> bool:
    raw = await store.read(store.keys.session(session_id))
    return raw is not None and is_journal(raw) and text.encode() in raw


async def _gone(store: RedisMemoryStore, key: str) -> bool:
    return await store.read(key) is None


def _config(server: TestServer, tmp_path: Path, **changes: Any) -> RedisConfig:
    settings: dict[str, Any] = {
        "url": server.url,
        "phone_hash_secret": TEST_SECRET,
        "data_dir": tmp_path / "memory",
        "socket_timeout": 0.5,
        "lookup_timeout_ms": 10_000,
        "key_prefix": "f",
    }
    return RedisConfig(**{**settings, **changes})


async def _call(manager: SessionManager, session_id: str, *lines: str) -> Any:
    ctx = await manager.start_session(session_id=session_id, phone_number=PHONE)
    for line in lines:
        manager.add_turn(session_id, "user", line)
        manager.add_turn(session_id, "assistant", "Noted.")
    await manager.end_session(session_id)
    return ctx


def _outbox_text(manager: SessionManager) -> str:
    return "".join(p.read_text() for p in manager.outbox.folder.glob("*.json"))


async def test_slow_redis_at_call_start_greets_on_time_without_splitting_the_caller(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path, lookup_timeout_ms=200))
    manager = SessionManager(store)
    first = await _call(manager, "call-1", "My name is Ana")
    assert first.status == "new"

    server.pause()  # Redis stops answering: SIGSTOP
    try:
        ctx = await manager.start_session(session_id="call-2", phone_number=PHONE)
        assert ctx.status == "timeout" and not ctx.is_returning and ctx.user_id is None
        manager.add_turn("call-2", "user", "Hello again")
    finally:
        server.resume()
    await manager.end_session("call-2")

    # The identity was resolved at the save: the second call joined the first caller's memory.
    again = await manager.start_session(session_id="call-3", phone_number=PHONE)
    assert again.user_id == first.user_id
    assert again.profile is not None and again.profile.call_count == 2
    await manager.end_session("call-3")
    await store.disconnect()


async def test_an_invalid_number_in_e164_is_refused_whether_redis_answers_or_not(
    server: TestServer, tmp_path: Path
) -> None:
    # The number as given is looked up while it is checked: the check still decides, when
    # Redis answers and when it is silent past the budget.
    store = RedisMemoryStore(_config(server, tmp_path, lookup_timeout_ms=200))
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="bad-1", phone_number="+10000000000")
    assert ctx.status == "invalid_number" and ctx.user_id is None
    await manager.end_session("bad-1")
    server.pause()
    try:
        ctx = await manager.start_session(session_id="bad-2", phone_number="+10000000000")
        assert ctx.status == "invalid_number" and ctx.user_id is None
        ctx = await manager.start_session(session_id="bad-3", phone_number=PHONE)
        assert ctx.status == "timeout"
    finally:
        server.resume()
    await manager.end_session("bad-2")
    await manager.end_session("bad-3")
    await store.disconnect()


async def test_redis_down_at_hang_up_keeps_the_call_in_the_outbox_until_it_is_back(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="down-1", phone_number=PHONE)
    manager.add_turn("down-1", "user", "Please call me back about my bill")
    server.stop()
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        assert await manager.end_session("down-1") is None
    assert "kept in the local outbox" in caplog.text
    assert len(manager.outbox) == 1
    stored = _outbox_text(manager)
    assert "call me back about my bill" in stored  # what Redis would have held...
    assert DIGITS not in stored  # ...and never the number
    assert oct(next(manager.outbox.folder.glob("*.json")).stat().st_mode & 0o777) == "0o600"

    server.start()  # same port, same data
    assert await manager.flush_outbox() == (1, 0)
    assert await manager.flush_outbox() == (0, 0)
    assert ctx.user_id is not None
    profile = await store.get_profile(ctx.user_id)
    assert profile is not None and profile.call_count == 1
    assert "bill" in (profile.last_summary or "")
    await store.disconnect()


async def test_a_call_replayed_twice_from_the_outbox_is_stored_once(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="twice", phone_number=PHONE)
    manager.add_turn("twice", "user", "hello")
    server.stop()
    await manager.end_session("twice")
    server.start()
    entry = next(manager.outbox.folder.glob("*.json"))
    copy = entry.read_bytes()
    await manager.flush_outbox()
    entry.write_bytes(copy)  # as if a crash had left it behind after the save
    assert await manager.flush_outbox() == (1, 0)
    assert ctx.user_id is not None
    profile = await store.get_profile(ctx.user_id)
    assert profile is not None and profile.call_count == 1
    assert await store.get_session_ids(ctx.user_id) == ["twice"]
    await store.disconnect()


async def test_paused_redis_during_the_save_sends_the_call_to_the_outbox(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="paused-save", phone_number=PHONE)
    manager.add_turn("paused-save", "user", "I want to move my appointment")
    await eventually(lambda: _journal_holds(store, "paused-save", "move my appointment"))
    server.pause()
    try:
        assert await manager.end_session("paused-save") is None
    finally:
        server.resume()
    assert len(manager.outbox) == 1
    await manager.flush_outbox()
    assert ctx.user_id is not None
    profile = await store.get_profile(ctx.user_id)
    assert profile is not None and profile.call_count == 1
    await store.disconnect()


async def test_out_of_memory_is_reported_and_the_call_goes_to_the_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestServer(
        appendonly=False, extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]
    ) as server:
        filler = aioredis.Redis.from_url(server.url)
        with pytest.raises(OutOfMemoryError):  # the server is full
            for i in range(1000):
                await filler.set(f"filler:{i}", "x" * 10_000)
        await filler.aclose()
        store = RedisMemoryStore(_config(server, tmp_path))
        manager = SessionManager(store)
        ctx = await manager.start_session(session_id="oom", phone_number=PHONE)
        assert ctx.status in ("new", "error")  # reads still work; minting may not
        manager.add_turn("oom", "user", "Remember that I prefer mornings")
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            assert await manager.end_session("oom") is None
        assert "OOM command not allowed" in caplog.text
        assert "MEMORY_SESSION_TTL_HOURS" in caplog.text
        assert len(manager.outbox) == 1
        await store.disconnect()


async def test_a_killed_and_restarted_server_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # appendfsync always: Redis writes and fsyncs the append-only file before it replies. With
    # everysec (Redis' default, and the embedded server's) a write may wait for a busy fsync
    # while its reply goes out: a SIGKILL then loses up to about two seconds of writes.
    server = TestServer(data_dir=tmp_path / "redis", appendonly=True, appendfsync="always")
    server.start()
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    contexts = [await _call(manager, f"kill-{i}", f"call number {i}") for i in range(20)]
    server.kill()  # SIGKILL: no shutdown, no final fsync
    server.start()
    assert contexts[0].user_id is not None
    profile = await store.get_profile(contexts[0].user_id)
    assert profile is not None and profile.call_count == 20
    for i in range(20):
        assert await store.get_session(f"kill-{i}") is not None
    await store.disconnect()
    server.stop()


_WORKER = """
import asyncio, os, signal, sys
from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

async def main():
    config = RedisConfig(url=sys.argv[1], phone_hash_secret=sys.argv[2], key_prefix="f",
                         data_dir=sys.argv[3])
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    await manager.start_session(session_id="crash-1", phone_number=sys.argv[4])
    for i in range(3):
        manager.add_turn("crash-1", "user", f"turn {i}: I need a wheelchair ramp")
        manager.add_turn("crash-1", "assistant", "Noted.")
        await asyncio.sleep(0)
    # The turns reach Redis in the background; the test kills this worker once they have.
    while (await store.read(store.keys.session("crash-1")) or b"").count(b"Noted.") < 3:
        await asyncio.sleep(0.01)
    print("talking", flush=True)
    await asyncio.sleep(600)  # killed here, mid-call

asyncio.run(main())
"""


async def test_a_worker_killed_mid_call_is_recovered_from_its_journal(
    server: TestServer, tmp_path: Path
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WORKER), server.url, TEST_SECRET,
         str(tmp_path / "worker"), PHONE],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "talking"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker.stdout.close()

    store = RedisMemoryStore(_config(server, tmp_path))
    raw = await store.read(store.keys.session("crash-1"))
    assert raw is not None and is_journal(raw)  # the call was journaled as it went

    manager = SessionManager(store)
    assert await manager.recover_orphans(idle_s=0) == 1
    assert await manager.recover_orphans(idle_s=0) == 0  # claimed once
    found = await store.lookup(store.hasher.hash(PHONE))
    assert found.profile is not None and found.profile.call_count == 1
    assert "wheelchair ramp" in (found.profile.last_summary or "")
    record = await store.get_session("crash-1")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"] == [
        f"turn {i}: I need a wheelchair ramp" for i in range(3)
    ]
    await store.disconnect()


async def test_many_simultaneous_calls_from_one_number_all_land(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path, max_sessions=50, max_summaries=50))
    manager = SessionManager(store)
    contexts = await asyncio.gather(
        *(_call(manager, f"same-{i}", f"I am caller copy {i}") for i in range(30))
    )
    assert len({c.user_id for c in contexts}) == 1
    user_id = contexts[0].user_id
    assert user_id is not None
    profile = await store.get_profile(user_id)
    assert profile is not None and profile.call_count == 30
    assert sorted(await store.get_session_ids(user_id)) == sorted(f"same-{i}" for i in range(30))
    await store.disconnect()


async def test_unreadable_profile_is_kept_aside_and_an_old_one_is_migrated(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    client = store.client
    manager = SessionManager(store)
    ctx = await _call(manager, "c-1", "hello")
    assert ctx.user_id is not None
    key = store.keys.profile(ctx.user_id)

    await client.set(key, "\x00garbage{", ex=60)
    assert (await manager.start_session(session_id="c-2", phone_number=PHONE)).status == "new"
    await manager.end_session("c-2")
    assert await client.get(f"{key}:unreadable") == b"\x00garbage{"
    assert 0 < await client.ttl(f"{key}:unreadable")

    legacy = {
        "user_id": ctx.user_id,
        "name": "Ana",
        "preferences": ["likes mornings"],
        "last_summary": "Asked for a cleaning.",
        "call_count": 3,
        "last_call": "2026-01-05T10:00:00+00:00",
    }
    await client.set(key, json.dumps(legacy), ex=60)
    again = await manager.start_session(session_id="c-3", phone_number=PHONE)
    assert again.is_returning and again.profile is not None
    assert again.profile.name == "Ana" and again.profile.call_count == 3
    assert facts(again.profile) == {"name": "Ana", "note": "likes mornings"}
    assert again.profile.last_summary == "Asked for a cleaning."
    await manager.end_session("c-3")

    version_1 = {
        "v": 1,
        "user_id": ctx.user_id,
        "name": "Ana Lopez",
        "preferences": {"contact_time": "mornings"},
        "follow_ups": ["Send the invoice"],
        "calls": [{"session_id": "old", "at": "2026-01-05T10:00:00Z", "summary": "Invoice."}],
        "call_count": 1,
        "first_call_at": "2026-01-05T10:00:00Z",
        "last_call_at": "2026-01-05T10:00:00Z",
    }
    await client.set(key, json.dumps(version_1), ex=60)
    fourth = await manager.start_session(session_id="c-4", phone_number=PHONE)
    assert fourth.is_returning and fourth.profile is not None
    assert fourth.profile.name == "Ana Lopez" and fourth.profile.call_count == 1
    assert facts(fourth.profile) == {
        "name": "Ana Lopez",
        "contact time": "mornings",
        "open request": "Send the invoice",
    }
    assert all(f.evidence == "" and f.verified for f in fourth.profile.facts)  # 0.1 kept none
    await manager.end_session("c-4")
    await store.disconnect()


async def test_a_hand_edited_profile_with_a_blank_name_still_starts_the_call(
    server: TestServer, tmp_path: Path
) -> None:
    # Valid JSON of the current version, as a script or an operator could write it: its name
    # is blank. An unverified caller is greeted by the first word of their name.
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    ctx = await _call(manager, "b-1", "hello")
    assert ctx.user_id is not None
    edited = {
        "v": 2,
        "user_id": ctx.user_id,
        "call_count": 1,
        "facts": [{"id": 1, "label": "name", "value": " \t", "said_at": "2026-01-05T10:00:00Z"}],
    }
    await store.client.set(store.keys.profile(ctx.user_id), json.dumps(edited), ex=60)
    unverified = await manager.start_session(session_id="b-2", phone_number=PHONE)
    assert unverified.status == "returning" and unverified.greeting_context == ""
    assert unverified.caller_name is None
    await manager.end_session("b-2")
    await store.disconnect()


async def test_a_hand_edited_profile_with_times_without_a_zone_takes_the_next_call(
    server: TestServer, tmp_path: Path
) -> None:
    # Times without a UTC offset, as a script writing datetime.now().isoformat() leaves them.
    store = RedisMemoryStore(_config(server, tmp_path, trust_caller_id=True))
    manager = SessionManager(store)
    user_id = (await _call(manager, "z-1", "hello")).user_id
    assert user_id is not None
    naive = "2026-01-05T10:00:00"
    edited = {
        "v": 2,
        "user_id": user_id,
        "call_count": 1,
        "first_call_at": naive,
        "last_call_at": naive,
        "facts": [{"id": 1, "label": "name", "value": "Ana", "said_at": naive}],
        "calls": [{"session_id": "z-0", "at": naive, "summary": "Asked for the invoice."}],
    }
    await store.client.set(store.keys.profile(user_id), json.dumps(edited), ex=60)
    ctx = await _call(manager, "z-2", "It's Ana again, about the invoice")
    assert ctx.status == "returning" and ctx.caller_name == "Ana"
    profile = await store.get_profile(user_id)
    assert profile is not None and profile.call_count == 2  # saved, not left in the outbox
    assert facts(profile)["name"] == "Ana"
    assert [c.session_id for c in profile.calls] == ["z-0", "z-2"]
    assert not list(manager.outbox.folder.glob("*.json"))
    await store.disconnect()


async def test_acl_user(server: TestServer, tmp_path: Path) -> None:
    admin = aioredis.Redis.from_url(server.url)
    await admin.acl_setuser(
        "agent", enabled=True, passwords=["+agent-pass"], keys=["*"], commands=["+@all"]
    )
    await admin.aclose()
    ok = RedisMemoryStore(
        _config(server, tmp_path, url=None, host="127.0.0.1", port=server.port,
                username="agent", password="agent-pass")
    )  # fmt: skip
    assert await ok.connect()
    assert await ok.get_or_create_user_id(phone_number=PHONE)
    await ok.disconnect()
    wrong = RedisMemoryStore(
        _config(server, tmp_path, url=None, host="127.0.0.1", port=server.port,
                username="agent", password="nope")
    )  # fmt: skip
    assert not await wrong.connect()
    assert wrong.last_error == "Redis connection failed: WRONGPASS invalid username-password pair"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None or not supports_tls():
        pytest.skip("needs openssl and a server built with TLS")
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


async def test_tls_with_a_self_signed_certificate(
    tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca, cert, key = tls_files
    with TestServer(appendonly=False, tls=(cert, key, ca)) as server:
        config = RedisConfig(
            host="localhost", port=server.port, ssl=True, ssl_ca_certs=str(ca),
            phone_hash_secret=TEST_SECRET, data_dir=tmp_path,
        )  # fmt: skip
        store = RedisMemoryStore(config)
        assert await store.connect()
        manager = SessionManager(store)
        await _call(manager, "tls-1", "over TLS")
        found = await store.lookup(store.hasher.hash(PHONE))
        assert found.is_returning
        await store.disconnect()

        # The CA is not trusted without REDIS_SSL_CA_CERTS: a clear TLS message.
        untrusted = RedisMemoryStore(
            RedisConfig(host="localhost", port=server.port, ssl=True, data_dir=tmp_path)
        )
        assert not await untrusted.connect()
        assert untrusted.last_error == "Redis connection failed: SSL handshake failed"

        # A plain client against the TLS port: the same clear message, pointing at REDIS_SSL.
        plain = RedisMemoryStore(RedisConfig(host="localhost", port=server.port, data_dir=tmp_path))
        assert not await plain.connect()
        assert plain.last_error == "Redis connection failed: SSL handshake failed"


def test_outbox_files_are_private(tmp_path: Path) -> None:
    from livekit.plugins.caller_memory.models import SessionRecord, utcnow
    from livekit.plugins.caller_memory.outbox import Outbox

    box = Outbox(tmp_path / "outbox")
    path = box.put(SessionRecord(session_id="x/../y", started_at=utcnow()), phone_hash="ab")
    assert path.parent == tmp_path / "outbox" and "/" not in path.name[:-5]
    assert os.stat(path).st_mode & 0o077 == 0
    assert [e.record.session_id for e in box.entries()] == ["x/../y"]


async def test_flush_command_writes_the_outbox(server: TestServer, tmp_path: Path) -> None:
    config = _config(server, tmp_path)
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="cli-flush", phone_number=PHONE)
    manager.add_turn("cli-flush", "user", "hello")
    server.stop()
    await manager.end_session("cli-flush")
    await store.disconnect()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "MEMORY_DATA_DIR": str(config.data_dir),
        "MEMORY_PHONE_HASH_SECRET": TEST_SECRET,
        "MEMORY_KEY_PREFIX": "f",
    }
    command = [sys.executable, "-m", "livekit.plugins.caller_memory.cli", "flush"]
    down = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "Connection refused" in down.stderr
    server.start()
    up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert "Outbox: 1 of 1 call(s) saved, 0 waiting." in up.stdout
    store = RedisMemoryStore(config)
    assert ctx.user_id is not None
    assert await store.get_session_ids(ctx.user_id) == ["cli-flush"]
    await store.disconnect()


async def test_keys_of_the_wrong_type_do_not_block_the_save(
    server: TestServer, tmp_path: Path
) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    ctx = await _call(manager, "wt-1", "first call")
    assert ctx.user_id is not None
    client = store.client
    await client.delete(store.keys.profile(ctx.user_id), store.keys.sessions(ctx.user_id))
    await client.rpush(store.keys.profile(ctx.user_id), "someone", "else's", "list")
    await client.set(store.keys.sessions(ctx.user_id), "not a list")
    await _call(manager, "wt-2", "second call")
    assert len(manager.outbox) == 0  # saved, not parked
    profile = await store.get_profile(ctx.user_id)
    assert profile is not None and profile.last_summary is not None
    assert await store.get_session_ids(ctx.user_id) == ["wt-2"]
    aside = f"{store.keys.profile(ctx.user_id)}:unreadable"
    assert await client.lrange(aside, 0, -1) == [b"someone", b"else's", b"list"]
    assert await client.ttl(aside) > 0
    await store.disconnect()


async def test_opting_out_deletes_the_journal_at_once(server: TestServer, tmp_path: Path) -> None:
    store = RedisMemoryStore(_config(server, tmp_path))
    manager = SessionManager(store)
    await manager.start_session(session_id="oo-1", phone_number=PHONE)
    manager.add_turn("oo-1", "user", "before I asked")
    await eventually(lambda: _journal_holds(store, "oo-1", "before I asked"))
    manager.dont_remember("oo-1")
    manager.add_turn("oo-1", "user", "after I asked: secret")
    # If the worker died now, there would be nothing left to recover.
    await eventually(lambda: _gone(store, store.keys.session("oo-1")))
    assert await SessionManager(store).recover_orphans(idle_s=0) == 0
    await manager.end_session("oo-1")
    assert await store.get_session("oo-1") is None  # and nothing stored at hang-up either
    await store.disconnect()


async def test_a_disk_that_refuses_the_outbox_keeps_the_call_in_memory(
    server: TestServer, tmp_path: Path
) -> None:
    config = _config(server, tmp_path)
    (config.data_dir).mkdir(parents=True)
    (config.data_dir / "outbox").write_text("a file where the outbox folder should be")
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    ctx = await manager.start_session(session_id="disk-1", phone_number=PHONE)
    manager.add_turn("disk-1", "user", "remember me")
    server.stop()
    assert await manager.end_session("disk-1") is None  # no exception, no lost call
    server.start()
    assert await manager.flush_outbox() == (1, 0)
    assert ctx.user_id is not None
    assert await store.get_session_ids(ctx.user_id) == ["disk-1"]
    await store.disconnect()
