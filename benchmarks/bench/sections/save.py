"""Section 2: the end-of-call save (``store.save_call``) of a 10-turn call with an LLM-shaped
summary, without the LLM: its latency, round trips and commands."""

from __future__ import annotations

import time

from livekit.plugins.caller_memory import CallSummary
from livekit.plugins.caller_memory.models import SessionRecord
from livekit.plugins.caller_memory.store import CallerLookup

from ..data import FIRST_NAMES, make_record, make_summary, now_utc, seed_returning
from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, quiet_gc
from ..wire import count_row


async def bench_save(env: Env, plan: Plan, report: Report) -> None:
    log("2. end-of-call save")
    store, rng = env.store, env.rng
    callers = await seed_returning(env, 100, tag="sv")
    names = {h: rng.choice(FIRST_NAMES) for h, _ in callers}
    dist = Dist()
    counter = 0

    async def prepared(i: int) -> tuple[SessionRecord, CallSummary, str, CallerLookup]:
        nonlocal counter
        counter += 1
        phone_hash, _ = callers[i % len(callers)]
        base = await store.lookup(phone_hash)
        name = names[phone_hash]
        record = make_record(f"AJ_save{counter:08d}", base.user_id, name, now_utc())
        return record, make_summary(rng, name), phone_hash, base

    with quiet_gc():
        for i in range(plan.warmup + plan.saves):
            record, summary, phone_hash, base = await prepared(i)
            start = time.perf_counter_ns()
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
            if i >= plan.warmup:
                dist.samples.append(time.perf_counter_ns() - start)
    size = len(record.model_dump_json())
    report.latency.append(latency_row(f"save_call, 10 turns (session JSON {size} B)", dist))

    k = len(callers)
    batch = [await prepared(i) for i in range(k)]
    async with env.meter.measure(k) as result:
        for record, summary, phone_hash, base in batch:
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
    report.counts.append(count_row("save_call (no LLM)", result[0]))
