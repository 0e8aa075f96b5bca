"""Section 5: whole ordinary calls through ``SessionManager`` (start, 10 turns, end with the
fallback summary): the round trips and commands of a call of a new and of a returning caller,
the latency of ``start_session`` and ``end_session``, and the same counts with the per-turn
journal off for comparison."""

from __future__ import annotations

import asyncio
import time

from livekit.plugins.caller_memory import RedisMemoryStore, SessionManager

from ..data import make_turns
from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, quiet_gc
from ..wire import Meter, WireCounter, count_row


async def bench_call_commands(env: Env, plan: Plan, report: Report) -> None:
    log("5. commands per ordinary call")
    await calls_end_to_end(env, plan, report, env.store, env.meter, "", tag="d", timed=True)
    if env.config.journal_turns:
        # For comparison: the same calls with the per-turn journal turned off.
        store = RedisMemoryStore(
            env.config.model_copy(update={"journal_turns": False}), hasher=env.store.hasher
        )
        await store.connect()
        meter = Meter(WireCounter(store.client), env.admin)
        await meter.calibrate()
        label = ", `MEMORY_JOURNAL_TURNS=false` (comparison)"
        await calls_end_to_end(env, plan, report, store, meter, label, tag="j", timed=False)
        await store.disconnect()


async def calls_end_to_end(
    env: Env,
    plan: Plan,
    report: Report,
    store: RedisMemoryStore,
    meter: Meter,
    label: str,
    *,
    tag: str,
    timed: bool,
) -> None:
    """Whole calls through ``SessionManager``: counted, and (``timed``) timed."""
    manager = SessionManager(store, llm=None)
    turns = make_turns("Ana")
    start_dist, end_dist = Dist(), Dist()
    counter = 0

    async def call(number: str, *, turn_gap: float, record: bool) -> None:
        nonlocal counter
        counter += 1
        sid = f"AJ_e2e{tag}{counter:07d}"
        t0 = time.perf_counter_ns()
        await manager.start_session(session_id=sid, phone_number=number)
        t1 = time.perf_counter_ns()
        for turn in turns:
            manager.add_turn(sid, turn.role, turn.text)
            if turn_gap:
                await asyncio.sleep(turn_gap)  # turns come seconds apart in a real call
        await asyncio.sleep(0.005)  # the caller's last words come a moment before hang-up
        t2 = time.perf_counter_ns()
        await manager.end_session(sid)
        t3 = time.perf_counter_ns()
        if record:
            start_dist.samples.append(t1 - t0)
            end_dist.samples.append(t3 - t2)

    k = plan.e2e_calls
    numbers = [env.phone_number() for _ in range(k)]
    warm = env.phone_number()
    for _ in range(2):  # a new and a returning call: the plugin's scripts get loaded
        await call(warm, turn_gap=0.005, record=False)
    for kind in ("new", "returning"):
        async with meter.measure(k) as result:
            for number in numbers:
                await call(number, turn_gap=0.005, record=False)
            await asyncio.sleep(0.1)  # let any background write of the plugin land
        report.counts.append(
            count_row(f"whole call, {kind} caller (start + 10 turns + end){label}", result[0])
        )
    if timed:
        warmup = plan.warmup // 3
        with quiet_gc():
            for i in range(warmup + plan.e2e_timed):
                await call(numbers[i % k], turn_gap=0.0, record=i >= warmup)
        report.latency.append(
            latency_row("SessionManager.start_session (returning; hash + lookup)", start_dist)
        )
        report.latency.append(
            latency_row("SessionManager.end_session (returning; fallback summary + save)", end_dist)
        )
    await manager.aclose()
