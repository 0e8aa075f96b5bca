"""Section 4: the Redis memory held per caller at ``--callers`` callers (90-day data, written
with pipelines from the store's own models and codec) and per finished call (24-hour data),
``MEMORY USAGE`` per key type, and a check that the store's real save path writes the same
profiles. It empties the server first (``FLUSHALL``), so it runs last."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from livekit.plugins.caller_memory.store import codec

from ..data import Caller, SummaryPool, make_caller, make_record, now_utc
from ..env import Env, Plan, Report, log


async def used_memory(admin: aioredis.Redis) -> tuple[int, int]:
    """``used_memory`` and the client buffers in it, once the server has settled."""
    last = -1
    info: dict[str, Any] = {}
    for _ in range(20):  # wait for incremental rehashing to finish
        info = await admin.info("memory")
        value = int(info["used_memory"])
        if abs(value - last) <= max(4096, value // 2000):
            break
        last = value
        await asyncio.sleep(0.25)
    return int(info["used_memory"]), int(info.get("mem_clients_normal", 0))


async def bench_memory(env: Env, plan: Plan, report: Report) -> None:
    log(f"4. memory at {plan.callers:,} callers")
    config, admin, store, rng = env.config, env.admin, env.store, env.rng
    keys = store.keys
    profile_ttl, session_ttl = config.profile_ttl_seconds, config.session_ttl_seconds
    await admin.flushall()
    now = now_utc()
    base_mem, base_clients = await used_memory(admin)

    n = plan.callers
    batch = 1_000
    summaries = SummaryPool(rng)
    callers: list[Caller] = []
    profile_bytes = 0
    stored_bytes = 0
    session_bytes = 0
    started = time.perf_counter()
    for start in range(0, n, batch):
        chunk = [
            make_caller(rng, store.hasher.hash_e164(f"+1{2000000000 + i}"), now, summaries)
            for i in range(start, min(n, start + batch))
        ]
        async with admin.pipeline(transaction=False) as pipe:
            for c in chunk:
                profile = c.profile(config.max_summaries)
                stored = codec.encode_profile(profile)
                profile_bytes += len(profile.model_dump_json(exclude_none=True))
                stored_bytes += len(stored)
                pipe.set(keys.phone(c.phone_hash), c.user_id, ex=profile_ttl)
                pipe.set(keys.profile(c.user_id), stored, ex=profile_ttl)
                pipe.rpush(keys.sessions(c.user_id), *c.session_ids[-config.max_sessions :])
                pipe.expire(keys.sessions(c.user_id), profile_ttl)
            await pipe.execute()
        callers += chunk
    write_s = time.perf_counter() - started
    caller_mem, caller_clients = await used_memory(admin)

    # The 24-hour data: one finished call per caller (its full record, 10 turns).
    for start in range(0, n, batch):
        async with admin.pipeline(transaction=False) as pipe:
            for c in callers[start : start + batch]:
                record = make_record(c.session_ids[-1], c.user_id, c.name, c.ended[-1])
                record = record.model_copy(update={"summary": c.summaries[-1]})
                session_json = record.model_dump_json()
                session_bytes += len(session_json)
                pipe.set(keys.session(c.session_ids[-1]), session_json, ex=session_ttl)
            await pipe.execute()
    session_mem, session_clients = await used_memory(admin)

    per_caller = (caller_mem - base_mem) / n
    per_caller_data = ((caller_mem - caller_clients) - (base_mem - base_clients)) / n
    per_session = (session_mem - caller_mem) / n
    per_session_data = ((session_mem - session_clients) - (caller_mem - caller_clients)) / n
    report.memory += [
        f"| Callers written | {n:,} (pipelines, {write_s:.1f} s) |",
        f"| 90-day data per caller: `used_memory` delta / N | {per_caller:,.0f} B |",
        f"| … without client buffers (`mem_clients_normal`) | {per_caller_data:,.0f} B |",
        f"| Mean profile JSON length | {profile_bytes / n:,.0f} B |",
        f"| Mean profile as stored (zlib over 200 B) | {stored_bytes / n:,.0f} B |",
        f"| 24-hour data per finished call (`session:{{id}}`, 10 turns) | {per_session:,.0f} B |",
        f"| … without client buffers | {per_session_data:,.0f} B |",
        f"| Mean session JSON length | {session_bytes / n:,.0f} B |",
        f"| Total `used_memory` at the end | {session_mem / 2**20:,.1f} MiB |",
    ]
    report.targets.append(
        (
            f"≤ 700 bytes per caller at {n:,} callers (90-day data)",
            f"{per_caller_data:,.0f} B",
            per_caller_data <= 700,
        )
    )

    # MEMORY USAGE per key type, sampled.
    sample = rng.sample(callers, min(500, n))
    kinds: list[tuple[str, Callable[[Caller], str], str]] = [
        ("`phone:{hash}` (string, user id)", lambda c: keys.phone(c.phone_hash), "strlen"),
        ("`user:{id}:profile` (string, JSON)", lambda c: keys.profile(c.user_id), "strlen"),
        ("`user:{id}:sessions` (list of 5 ids)", lambda c: keys.sessions(c.user_id), "llen"),
        (
            "`session:{id}` (string, JSON, 24 h)",
            lambda c: keys.session(c.session_ids[-1]),
            "strlen",
        ),
    ]
    mean_usage: dict[str, float] = {}
    for label, key_of, length_cmd in kinds:
        async with admin.pipeline(transaction=False) as pipe:
            for c in sample:
                pipe.execute_command("MEMORY", "USAGE", key_of(c), "SAMPLES", "0")
                pipe.execute_command(length_cmd.upper(), key_of(c))
            values = await pipe.execute()
        usage = [int(v) for v in values[0::2]]
        lengths = [int(v) for v in values[1::2]]
        unit = "items" if length_cmd == "llen" else "B value"
        mean_usage[label] = sum(usage) / len(usage)
        report.memory_keys.append(
            f"| {label} | {len(sample)} | {sum(usage) / len(usage):,.0f} B "
            f"| {sum(lengths) / len(lengths):,.0f} {unit} |"
        )

    # The values above were written with pipelines; check that the store's real save path
    # writes the same profile for the same calls, byte for byte.
    await validate_real_path(env, plan, report, now, summaries, mean_usage[kinds[1][0]])


async def validate_real_path(
    env: Env,
    plan: Plan,
    report: Report,
    now: dt.datetime,
    summaries: SummaryPool,
    piped_usage: float,
) -> None:
    store, config, rng, admin = env.store, env.config, env.rng, env.admin
    same = 0
    usage: list[int] = []
    for i in range(plan.validate_callers):
        phone_hash = store.hasher.hash_e164(f"+1{3000000000 + i}")
        found = await store.lookup(phone_hash)
        assert found.user_id is not None
        c = make_caller(rng, phone_hash, now, summaries)
        c.user_id = found.user_id
        for sid, summary, ended in zip(c.session_ids, c.summaries, c.ended, strict=True):
            base = await store.lookup(phone_hash)
            record = make_record(sid, c.user_id, c.name, ended)
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
        raw = await store.read(store.keys.profile(c.user_id))
        stored = None if raw is None else codec.inflate(raw)
        expected = c.profile(config.max_summaries).model_dump_json(exclude_none=True).encode()
        same += stored == expected
        usage.append(await admin.memory_usage(store.keys.profile(c.user_id), samples=0) or 0)
    k = plan.validate_callers
    report.memory_notes.append(
        f"- Check of the shortcut: {k} callers saved 5 times each through the store's real path "
        f"(`lookup` + `save_call`): {same}/{k} stored profiles are byte-identical to the value "
        f"the benchmark builds from the same calls; their profile key's mean `MEMORY USAGE` is "
        f"{sum(usage) / k:,.0f} B (pipelined callers: {piped_usage:,.0f} B)."
    )
