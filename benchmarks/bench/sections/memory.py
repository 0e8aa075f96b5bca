"""Section 4 (run first): the Redis memory held per caller at ``--callers`` callers with five
calls kept (90-day data, written with pipelines from the store's own models and codec), per
caller with one call kept, and per finished call (24-hour data); the distribution of the
profiles' sizes; ``MEMORY USAGE`` per key type; and a check that the store's real save path
writes the same profiles. It empties the server first, and leaves its callers for the
call-start section, which looks them up at random (:class:`~..data.Population`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import zlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from livekit.plugins.caller_memory.store import codec

from ..data import (
    Caller,
    Population,
    SummaryPool,
    keyspace_number,
    make_caller,
    make_record,
    now_utc,
)
from ..env import Env, Plan, Report, log

TARGETS_BYTES = (1024, 1536)
"""At most this much 90-day data per caller with five calls kept: 1 KB, the first performance
issue's target (set before profiles held facts); 1.5 KB, the memory issue's."""


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


def pct(values: list[int], q: float) -> int:
    """Nearest-rank percentile of sizes."""
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * q // 100))) - 1]


def size_row(label: str, json_sizes: list[int], stored: list[int], plain: list[int]) -> str:
    return (
        f"| {label} | {len(stored):,} | {pct(json_sizes, 50):,} / {pct(json_sizes, 99):,} "
        f"| {pct(plain, 50):,} / {pct(plain, 99):,} "
        f"| {pct(stored, 50):,} / {pct(stored, 99):,} |"
    )


def plain_zlib(json_bytes: bytes) -> int:
    """The size the profile had as earlier versions stored it (zlib, no dictionary)."""
    if len(json_bytes) <= codec.COMPRESS_OVER:
        return len(json_bytes)
    return min(len(json_bytes), len(zlib.compress(json_bytes, 6)))


async def write_callers(
    env: Env,
    callers: list[Caller],
    sizes: tuple[list[int], list[int], list[int]],
    *,
    session_list: bool = True,
) -> None:
    """The 90-day keys of ``callers`` as the save path leaves them, in one pipeline
    (``session_list=False``: without the ``user:{id}:sessions`` key, for comparison)."""
    config, keys = env.config, env.store.keys
    ttl = config.profile_ttl_seconds
    json_sizes, stored_sizes, plain_sizes = sizes
    async with env.admin.pipeline(transaction=False) as pipe:
        for c in callers:
            profile = c.profile(config.max_summaries)
            stored = codec.encode_profile(profile)
            json_bytes = profile.model_dump_json(exclude_none=True).encode()
            json_sizes.append(len(json_bytes))
            stored_sizes.append(len(stored))
            plain_sizes.append(plain_zlib(json_bytes))
            pipe.set(keys.phone(c.phone_hash), c.user_id, ex=ttl)
            pipe.set(keys.profile(c.user_id), stored, ex=ttl)
            if session_list:
                pipe.rpush(keys.sessions(c.user_id), *c.session_ids[-config.max_sessions :])
                pipe.expire(keys.sessions(c.user_id), ttl)
        await pipe.execute()


async def bench_memory(env: Env, plan: Plan, report: Report) -> Population:
    log(f"4. memory at {plan.callers:,} callers (written first: the call start reads them)")
    config, admin, store, rng = env.config, env.admin, env.store, env.rng
    keys = store.keys
    session_ttl = config.session_ttl_seconds
    now = now_utc()
    n = plan.callers

    # For comparison only: the same callers without the session list (its ids are in the
    # profile too). The guide's key table has the key: the store keeps writing it.
    await admin.flushall()
    before = await used_memory(admin)
    pool = SummaryPool(rng)
    for start in range(0, n, 1_000):
        chunk = [
            make_caller(rng, store.hasher.hash_e164(keyspace_number(i)), now, pool)
            for i in range(start, min(n, start + 1_000))
        ]
        await write_callers(env, chunk, ([], [], []), session_list=False)
    no_list = await used_memory(admin)
    await admin.flushall()
    base_mem, base_clients = await used_memory(admin)

    n_small = max(1, n // 5)
    batch = 1_000
    summaries = SummaryPool(rng)
    callers: list[Caller] = []
    sizes: tuple[list[int], list[int], list[int]] = ([], [], [])
    started = time.perf_counter()
    for start in range(0, n, batch):
        chunk = [
            make_caller(rng, store.hasher.hash_e164(keyspace_number(i)), now, summaries)
            for i in range(start, min(n, start + batch))
        ]
        await write_callers(env, chunk, sizes)
        callers += chunk
    write_s = time.perf_counter() - started
    caller_mem, caller_clients = await used_memory(admin)

    # Callers with one call kept, after them: the server's key tables are sized for the
    # others by then, unless these keys take the count past a power of two (Redis doubles
    # its tables there), which the report says.
    keys_before = await admin.dbsize()
    small_sizes: tuple[list[int], list[int], list[int]] = ([], [], [])
    for start in range(0, n_small, batch):
        chunk = [
            make_caller(
                rng,
                store.hasher.hash_e164(keyspace_number(i, small=True)),
                now,
                summaries,
                calls=1,
            )
            for i in range(start, min(n_small, start + batch))
        ]
        await write_callers(env, chunk, small_sizes)
    small_mem, small_clients = await used_memory(admin)
    keys_after = await admin.dbsize()
    table = 1 << (keys_before - 1).bit_length()  # the key table's slots: a power of two
    table_growth = (
        f"including the key tables' doubling: {keys_before:,} → {keys_after:,} keys, past {table:,}"
        if keys_after > table
        else "the tables' growth not included"
    )

    # The 24-hour data: one finished call per caller with five calls (its full record, 10
    # turns), and its entry in the caller's index of calls held (`user:{id}:calls`).
    session_bytes = 0
    for start in range(0, n, batch):
        async with admin.pipeline(transaction=False) as pipe:
            for c in callers[start : start + batch]:
                record = make_record(c.session_ids[-1], c.user_id, c.name, c.ended[-1])
                record = record.model_copy(update={"summary": c.summaries[-1]})
                session_json = record.model_dump_json()
                session_bytes += len(session_json)
                pipe.set(keys.session(c.session_ids[-1]), session_json, ex=session_ttl)
                expires = now.timestamp() + session_ttl
                pipe.zadd(keys.calls(c.user_id), {c.session_ids[-1]: expires})
                pipe.expire(keys.calls(c.user_id), session_ttl)
            await pipe.execute()
    session_mem, session_clients = await used_memory(admin)

    def per(after: tuple[int, int], before: tuple[int, int], count: int) -> tuple[float, float]:
        (a, a_clients), (b, b_clients) = after, before
        return (a - b) / count, ((a - a_clients) - (b - b_clients)) / count

    per_caller, per_caller_data = per((caller_mem, caller_clients), (base_mem, base_clients), n)
    per_small, per_small_data = per(
        (small_mem, small_clients), (caller_mem, caller_clients), n_small
    )
    per_session, per_session_data = per(
        (session_mem, session_clients), (small_mem, small_clients), n
    )
    _, per_no_list = per(no_list, before, n)
    json_sizes, stored_sizes, plain_sizes = sizes
    report.memory += [
        f"| Callers written, 5 calls kept | {n:,} (pipelines, {write_s:.1f} s) |",
        f"| **90-day data per caller, 5 calls kept**: `used_memory` delta / N "
        f"| **{per_caller:,.0f} B** |",
        f"| … without client buffers (`mem_clients_normal`) | {per_caller_data:,.0f} B |",
        f"| Mean profile JSON / as stored (zlib with the preset dictionary) "
        f"| {sum(json_sizes) / n:,.0f} B / {sum(stored_sizes) / n:,.0f} B |",
        f"| … for comparison, without the `user:{{id}}:sessions` key (a key of the guide's "
        f"table: not done) | {per_no_list:,.0f} B |",
        f"| 90-day data per caller, 1 call kept ({n_small:,} more callers; {table_growth}) "
        f"| {per_small_data:,.0f} B |",
        f"| **24-hour data per finished call** (`session:{{id}}`, 10 turns, and its entry in "
        f"`user:{{id}}:calls`) | **{per_session_data:,.0f} B** |",
        f"| Mean session JSON length | {session_bytes / n:,.0f} B |",
        f"| Total `used_memory` at the end | {session_mem / 2**20:,.1f} MiB |",
    ]
    report.memory_sizes += [
        size_row("5 calls kept", *sizes),
        size_row("1 call kept", *small_sizes),
    ]
    report.profile_sizes = {
        "5": (pct(stored_sizes, 50), pct(json_sizes, 50)),
        "1": (pct(small_sizes[1], 50), pct(small_sizes[0], 50)),
    }
    report.targets += [
        (
            f"≤ {target / 1024:g} KB ({target:,} B) of 90-day data per caller, 5 calls kept, "
            f"at {n:,} callers",
            f"{per_caller_data:,.0f} B",
            round(per_caller_data) <= target,
        )
        for target in TARGETS_BYTES
    ]

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
        ("`user:{id}:calls` (sorted set, 24 h)", lambda c: keys.calls(c.user_id), "zcard"),
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
        unit = "B value" if length_cmd == "strlen" else "items"
        mean_usage[label] = sum(usage) / len(usage)
        report.memory_keys.append(
            f"| {label} | {len(sample)} | {sum(usage) / len(usage):,.0f} B "
            f"| {sum(lengths) / len(lengths):,.0f} {unit} |"
        )

    # The same profiles as earlier versions stored them (zlib without the dictionary): what
    # their key would take, for a sample, put back afterwards.
    plain_usage: list[int] = []
    for c in sample:
        key = keys.profile(c.user_id)
        stored = codec.encode_profile(c.profile(config.max_summaries))
        plain = zlib.compress(codec.inflate(stored), 6)
        async with admin.pipeline(transaction=False) as pipe:
            pipe.set(key, plain, keepttl=True)
            pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
            pipe.set(key, stored, keepttl=True)
            plain_usage.append(int((await pipe.execute())[1]))
    report.memory_keys.insert(
        2,
        f"| … the same profiles zlib-compressed without the dictionary (as earlier versions "
        f"stored them) | {len(sample)} | {sum(plain_usage) / len(plain_usage):,.0f} B | |",
    )

    # The values above were written with pipelines; check that the store's real save path
    # writes the same profile for the same calls, byte for byte.
    await validate_real_path(env, plan, report, now, summaries, mean_usage[kinds[1][0]])
    return Population(
        numbers=[keyspace_number(i) for i in range(n)],
        small_numbers=[keyspace_number(i, small=True) for i in range(n_small)],
    )


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
