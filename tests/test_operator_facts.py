"""An operator withdraws one wrong fact of a caller instead of erasing everything.

The store's withdrawal is a compare-and-set of the profile with its TTL kept, alike on Redis, a
Redis Cluster and the in-process store; a call saved meanwhile is not lost, and an erased caller
stays erased. ``caller-memory export`` shows each fact with its evidence and status, and
``caller-memory withdraw-fact`` withdraws one, audited, as an operator runs it (a subprocess):
the next call's agent no longer hears it, and wrong ids and reasons get one line each.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import (
    CallSummary,
    InMemoryStore,
    MemoryStore,
    RedisConfig,
    RedisMemoryStore,
)
from livekit.plugins.caller_memory.console.audit import AuditLog
from livekit.plugins.caller_memory.memory.merge import withdraw_fact
from livekit.plugins.caller_memory.models import (
    MAX_PAST_FACTS,
    CallerProfile,
    Fact,
    FactOp,
    SessionRecord,
    Turn,
)
from livekit.plugins.caller_memory.privacy import InvalidReasonError, check_reason
from livekit.plugins.caller_memory.store import codec

from .conftest import replace
from .support.console import ANA, connected, console_env, holds_number, next_call_prompt, seed_ana

CLI = [sys.executable, "-m", "livekit.plugins.caller_memory.cli"]
FACT_FIELDS = {"id", "label", "value", "evidence", "said_at", "confirmed_at", "status", "verified"}
SAID_AT = datetime(2026, 11, 2, 10, 14, tzinfo=timezone.utc)


def _add(label: str, value: str, evidence: str) -> FactOp:
    return FactOp(op="add", label=label, value=value, evidence=evidence)


async def _remember(store: MemoryStore, session_id: str = "c1", *ops: FactOp) -> str:
    """One verified call of Ana's, saved as the summarizer would: returns her user id."""
    phone_hash = store.hasher.hash(ANA)
    found = await store.lookup(phone_hash)
    assert found.user_id is not None
    record = SessionRecord(
        session_id=session_id,
        user_id=found.user_id,
        started_at=SAID_AT,
        ended_at=SAID_AT,
        turns=[Turn(role="user", text="I'm Ana. I drive a 2014 Transit; mornings suit me.")],
        verified=True,
    )
    summary = CallSummary(
        summary="Ana drives a 2014 Transit. She prefers mornings.",
        ops=list(ops)
        or [
            _add("name", "Ana", "I'm Ana"),
            _add("vehicle", "2014 Transit", "I drive a 2014 Transit"),
            _add("appointment time", "mornings", "mornings suit me"),
        ],
    )
    await store.save_call(record, summary, phone_hash=phone_hash, base=found)
    return found.user_id


# -- the store -----------------------------------------------------------------------------


async def test_one_fact_is_withdrawn_and_the_rest_stays(store: MemoryStore) -> None:
    user_id = await _remember(store)
    before = await store.get_profile(user_id)
    assert before is not None
    vehicle = next(f for f in before.facts if f.label == "vehicle")

    stored = await store.withdraw_fact(user_id, vehicle.id)
    assert stored is not None and stored == await store.get_profile(user_id)
    assert [(f.id, f.status) for f in stored.facts] == [
        (f.id, "withdrawn" if f.id == vehicle.id else "current") for f in before.facts
    ]
    assert stored.facts[vehicle.id - 1] == vehicle.model_copy(update={"status": "withdrawn"})
    assert [c.summary for c in stored.calls] == ["She prefers mornings."]  # the sentence cut
    assert stored.model_copy(update={"facts": before.facts, "calls": before.calls}) == before
    assert stored == withdraw_fact(before, vehicle.id)

    assert await store.withdraw_fact(user_id, vehicle.id) is None  # withdrawn already
    assert await store.withdraw_fact(user_id, 99) is None
    assert await store.withdraw_fact("nobody", 1) is None
    assert await store.get_profile(user_id) == stored


def test_a_withdrawal_keeps_as_few_past_facts_as_a_call_does() -> None:
    facts = [
        Fact(id=i, label=f"item {i}", value=f"thing {i}", said_at=SAID_AT,
             status="current" if i > MAX_PAST_FACTS else "replaced")
        for i in range(1, MAX_PAST_FACTS + 3)
    ]  # fmt: skip
    profile = CallerProfile(user_id="u", facts=facts)
    withdrawn = withdraw_fact(profile, MAX_PAST_FACTS + 1)
    assert withdrawn is not None
    assert [f.id for f in withdrawn.facts if not f.current] == list(range(2, MAX_PAST_FACTS + 2))
    assert [f.id for f in withdrawn.current_facts] == [MAX_PAST_FACTS + 2]
    assert withdraw_fact(profile, 1) is None  # replaced already: no current fact


async def test_an_erased_caller_stays_erased(store: MemoryStore) -> None:
    user_id = await _remember(store)
    assert await store.forget(store.hasher.hash(ANA))
    assert await store.withdraw_fact(user_id, 1) is None
    assert await store.read(store.keys.profile(user_id)) is None  # no profile made again


async def test_a_profile_changed_meanwhile_is_not_lost(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another worker saves a call of Ana's between the withdrawal's read and its write: the
    # compare-and-set fails, and the withdrawal is made again on the newer profile.
    user_id = await _remember(store)
    key = store.keys.profile(user_id)
    read, replace_value = store.read, store.replace_value
    reads: list[str] = []

    async def read_then_change(asked: str) -> bytes | None:
        raw = await read(asked)
        reads.append(asked)
        if asked == key and len(reads) == 1 and raw is not None:
            profile = codec.decode_profile(raw)
            other = profile.model_copy(update={"call_count": profile.call_count + 1})
            assert await replace_value(key, raw, codec.encode_profile(other))
        return raw

    monkeypatch.setattr(store, "read", read_then_change)
    stored = await store.withdraw_fact(user_id, 2)
    assert reads == [key, key]
    assert stored is not None and stored.call_count == 2  # the other write is kept
    assert [f.status for f in stored.facts] == ["current", "withdrawn", "current"]
    assert await store.get_profile(user_id) == stored


async def test_withdrawals_and_saves_of_other_workers_all_land(config: RedisConfig) -> None:
    # Two stores on one Redis are two workers: no lock of this process serializes them.
    async with RedisMemoryStore(config) as one, RedisMemoryStore(config) as two:
        user_id = await _remember(one)
        ops = [[_add(f"item {i}", f"thing number {i}", f"thing number {i}")] for i in range(8)]
        await asyncio.gather(
            one.withdraw_fact(user_id, 2),
            *(_remember(two, f"c{i + 2}", *op) for i, op in enumerate(ops)),
            one.withdraw_fact(user_id, 3),
        )
        profile = await one.get_profile(user_id)
    assert profile is not None and profile.call_count == 9
    status = {f.label: f.status for f in profile.facts}
    assert status["vehicle"] == status["appointment time"] == "withdrawn"
    assert sum(s == "current" for s in status.values()) == 9  # the name and eight items


def _aging_redis(client: aioredis.Redis, prefix: str) -> Callable[[float], Awaitable[None]]:
    async def age(seconds: float) -> None:
        async for raw in client.scan_iter(match=f"{prefix}:*"):
            left = await client.ttl(raw) - seconds
            await client.expire(raw, round(left))

    return age


async def test_both_stores_keep_the_profile_ttl(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    # The caller last called 80 days ago: a withdrawal is no call, and renews nothing.
    async with RedisMemoryStore(config) as on_redis:
        user_id = await _remember(on_redis)
        await _aging_redis(redis_client, config.key_prefix)(80 * 86400)
        on_redis_profile = await on_redis.withdraw_fact(user_id, 2)
        key = on_redis.keys.profile(user_id)
        redis_ttl = await redis_client.ttl(key)
    now = [time.monotonic()]
    in_memory = InMemoryStore(replace(config, persistence=False), clock=lambda: now[0])
    assert await _remember(in_memory) == user_id
    now[0] += 80 * 86400
    assert await in_memory.withdraw_fact(user_id, 2) == on_redis_profile
    memory_ttl = in_memory.ttl(key)
    assert memory_ttl is not None
    assert round(redis_ttl / 3600) == round(memory_ttl / 3600) == 10 * 24
    assert in_memory.dump()[key] == await redis_client.get(key)  # the same bytes


# -- the commands --------------------------------------------------------------------------


def _run(
    config: RedisConfig, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=console_env(config, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What a command said on standard error, but the line saying which memory it read."""
    return [line for line in done.stderr.splitlines() if not line.startswith("memory: ")]


def _profile(exported: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert exported.returncode == 0, exported.stderr
    keys = json.loads(exported.stdout)["keys"]
    found = next(v for k, v in keys.items() if k.endswith(":profile"))
    assert isinstance(found, dict)
    return found


def _facts(profile: dict[str, object]) -> dict[str, dict[str, object]]:
    facts = profile["facts"]
    assert isinstance(facts, list)
    return {f["value"]: f for f in facts}


async def test_export_shows_each_fact_with_its_evidence_and_status(config: RedisConfig) -> None:
    async with connected(config) as store:
        await seed_ana(store)
    facts = _facts(_profile(_run(config, "export", "(415) 555-0134")))
    for fact in facts.values():
        assert set(fact) == FACT_FIELDS  # every field, those never set included
    assert facts["mornings"] == {
        **facts["mornings"],
        "label": "appointment time",
        "evidence": "mornings are best for me",
        "status": "current",
        "confirmed_at": None,
        "verified": True,
    }
    assert datetime.fromisoformat(str(facts["mornings"]["said_at"]).replace("Z", "+00:00"))
    assert facts["cleaning on Tuesday at 10"]["verified"] is False  # an unverified call's


async def test_withdraw_fact_command(config: RedisConfig, tmp_path: Path) -> None:
    async with connected(config) as store:
        await seed_ana(store)
        user_id = store.hasher.hash(ANA)
        before = _facts(_profile(_run(config, "export", ANA)))
        mornings, booked = before["mornings"]["id"], before["cleaning on Tuesday at 9"]["id"]
        audit = AuditLog(config.data_dir / "console" / "audit.jsonl")

        reason = "The caller says she never gave a preferred time"
        done = _run(config, "withdraw-fact", "-", str(mornings), "--reason", reason,
                    "--operator", "Dana", stdin=ANA + "\n")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"Fact #{mornings} withdrawn: the agent no longer hears")
        assert "(1 earlier call summary cut)" in done.stdout and str(audit.path) in done.stdout
        assert not holds_number(done.stdout + done.stderr) and "mornings" not in done.stdout
        assert done.stderr.startswith("memory: Redis 127.0.0.1:")  # which Redis, which prefix
        assert f", prefix {config.key_prefix} (MEMORY_KEY_PREFIX; 1 caller)" in done.stderr

        after = _profile(_run(config, "export", ANA))
        assert _facts(after)["mornings"]["status"] == "withdrawn"
        assert {v: f["status"] for v, f in _facts(after).items() if v != "mornings"} == {
            v: f["status"] for v, f in before.items() if v != "mornings"
        }
        calls = after["calls"]
        assert isinstance(calls, list) and "mornings" not in json.dumps(calls)
        prompt = await next_call_prompt(store)
        assert "mornings" not in prompt and "cleaning on Tuesday at 9" in prompt

        # Wrong ids: one line each, exit 1.
        for fact_id, says in (
            (str(mornings), f"fact #{mornings} of this caller is withdrawn already"),
            ("99", "this caller has no fact #99 (the export lists each fact with its id)"),
        ):
            wrong = _run(config, "withdraw-fact", ANA, fact_id, "--reason", reason)
            assert (wrong.returncode, wrong.stdout) == (1, ""), wrong.stderr
            assert _said(wrong) == [f"❌ {says}"]
        unknown = _run(config, "withdraw-fact", "+1 415 555 0199", "1", "--reason", reason)
        assert unknown.returncode == 1
        [said] = _said(unknown)
        assert said.startswith("❌ nothing is held about this caller") and "0199" not in said

        # Missing or unusable reasons (every rule: test_a_reason_keeps_no_caller_data): exit 2.
        missing = _run(config, "withdraw-fact", ANA, str(booked))
        assert missing.returncode == 2
        assert missing.stderr == (
            "❌ caller-memory withdraw-fact: the following arguments are required: --reason "
            "(see caller-memory withdraw-fact --help)\n"
        )
        for bad, says in (
            ("she is really on 415 555 0134", "looks like a phone number"),
            ("It is not Tuesday at 9, please", "repeats the fact"),
        ):
            refused = _run(config, "withdraw-fact", ANA, str(booked), "--reason", bad)
            assert refused.returncode == 2 and says in refused.stderr, refused.stderr
            assert len(_said(refused)) == 1 and not holds_number(refused.stderr)
            assert "Tuesday" not in refused.stderr
        profile = await store.get_profile(user_id)
        assert profile is not None and booked in {f.id for f in profile.current_facts}

        # MEMORY_CONSOLE_AUDIT_LOG names another audit log. The reason comes from a Latin-1
        # terminal: a byte that is no UTF-8 is kept as U+FFFD, not a crash of the audit.
        elsewhere = tmp_path / "audit" / "operators.jsonl"
        latin1 = os.fsdecode(b"Booked in error, caf\xe9 line")
        moved = _run(config, "withdraw-fact", ANA, str(booked), "--reason", latin1,
                     MEMORY_CONSOLE_AUDIT_LOG=str(elsewhere))  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert "(1 earlier call summary cut)" in moved.stdout  # "booked ... Tuesday at 9am"

    records = [r for r in audit.read() if r["action"] == "withdraw_fact"]  # exports too
    assert records == [
        {
            "at": records[0]["at"],
            "who": "Dana",
            "action": "withdraw_fact",
            "client": None,
            "via": "cli",
            "user_ids": [user_id],
            "fact_id": mornings,
            "reason": reason,
        }
    ]
    other = AuditLog(elsewhere).read()
    assert [(r["action"], r["fact_id"], r["reason"]) for r in other] == [
        ("withdraw_fact", booked, "Booked in error, caf\ufffd line")
    ]
    assert other[0]["who"]  # the login name
    for log in (audit.path, elsewhere):
        text = log.read_text()
        assert not holds_number(text)
        assert all(said not in text for said in ("mornings", "Lopez", "Tuesday at 9"))


def test_a_reason_keeps_no_caller_data() -> None:
    fact = Fact(id=3, label="vehicle", value="2014 Transit", evidence="I drive a 2014 Transit",
                said_at=SAID_AT)  # fmt: skip
    assert check_reason("  Wrong\ncaller on   the line ", fact) == "Wrong caller on the line"
    assert check_reason("Per ticket 48213: never said", fact) == "Per ticket 48213: never said"
    for bad, says in (
        ("", "a reason is required"),
        (" \t\n ", "a reason is required"),
        ("no", "the reason is too short"),
        ("z" * 201, "too long: 200 characters at most"),
        ("she is on 020 7946 0958", "looks like a phone number"),
        ("write to ana.lopez@example.com", "e-mail"),
        ("card 4111 1111 1111 1111", "a card"),
        ("caller does not own a 2014 transit", "repeats the fact"),
        ("she said: I drive a 2014 Transit. Not true", "repeats the fact"),
    ):
        with pytest.raises(InvalidReasonError, match=says) as refused:
            check_reason(bad, fact, region="GB")
        assert bad.strip() == "" or bad.strip() not in str(refused.value)
    check_reason("the vehicle was someone else's", fact)  # its label is no caller data
