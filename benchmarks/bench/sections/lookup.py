"""Section 1: the call-start lookup (``store.lookup``) of a returning and of a new caller,
back-to-back and sporadic, next to a bare ``GET`` on the store's own client and to the same
commands sent by plain redis-py; phone hashing; round trips and commands of each."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from ..data import seed_returning
from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, ms, quiet_gc
from ..wire import OpCount, count_row

SPORADIC_GAP_S = 0.005


async def bench_lookup(env: Env, plan: Plan, report: Report) -> None:
    store = env.store
    log("1. call-start lookup")
    (returning_hash, returning) = (await seed_returning(env, 1, tag="lk"))[0]
    assert returning.is_returning
    phone_key = store.keys.phone(returning_hash)
    client = store.client
    total = plan.warmup + max(plan.back_to_back, plan.sporadic) + 20
    fresh = [os.urandom(16).hex() for _ in range(3 * total)]
    fresh_iter = iter(fresh)

    async def get() -> object:
        return await client.get(phone_key)

    async def lookup_returning() -> object:
        return await store.lookup(returning_hash)

    async def lookup_new() -> object:
        return await store.lookup(next(fresh_iter))

    ttl = env.config.profile_ttl_seconds
    user_id = returning.user_id
    assert user_id is not None

    async def same_commands() -> object:
        # The lookup's Redis work as a plain pipeline on the same client, without the plugin.
        async with client.pipeline(transaction=False) as pipe:
            pipe.getex(phone_key, ex=ttl)
            pipe.getex(store.keys.profile(user_id), ex=ttl)
            pipe.lrange(store.keys.sessions(user_id), 0, -1)
            return await pipe.execute()

    ops: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("bare GET", get),
        ("lookup, returning caller", lookup_returning),
        ("lookup, new caller", lookup_new),
        ("its 3 commands in 1 pipelined round trip, plain redis-py", same_commands),
    ]

    async def run(iterations: int, gap: float) -> dict[str, Dist]:
        dists = {name: Dist() for name, _ in ops}
        with quiet_gc():
            for i in range(plan.warmup + iterations):
                shift = i % len(ops)  # rotate the order: no op always runs first
                for name, op in ops[shift:] + ops[:shift]:
                    start = time.perf_counter_ns()
                    await op()
                    elapsed = time.perf_counter_ns() - start
                    if i >= plan.warmup:
                        dists[name].samples.append(elapsed)
                    if gap:
                        await asyncio.sleep(gap)
        return dists

    b2b = await run(plan.back_to_back, 0.0)
    log("   sporadic")
    sporadic = await run(plan.sporadic, SPORADIC_GAP_S)

    # Phone hashing (normalize + HMAC) is part of a call start too, before the lookup.
    hash_dist = Dist()
    with quiet_gc():
        for i in range(plan.warmup + plan.back_to_back):
            number = f"+1 (415) 555-{i % 10_000:04d}"
            start = time.perf_counter_ns()
            store.hasher.hash(number)
            if i >= plan.warmup:
                hash_dist.samples.append(time.perf_counter_ns() - start)

    for mode, dists in (("back-to-back", b2b), ("sporadic, 1 per 5 ms", sporadic)):
        for name, dist in dists.items():
            report.latency.append(latency_row(f"{name} ({mode})", dist))
    report.latency.append(latency_row("phone number → hash (normalize + HMAC)", hash_dist))

    raw_name = ops[3][0]
    for mode, dists in (("back-to-back", b2b), ("sporadic", sporadic)):
        base = dists["bare GET"]
        for name in ("lookup, returning caller", "lookup, new caller", raw_name):
            d = dists[name]
            report.ratios.append(
                f"| {name} ({mode}) | {d.p50 / base.p50:.2f}× | {d.p99 / base.p99:.2f}× |"
            )
        d, raw = dists["lookup, returning caller"], dists[raw_name]
        report.ratios.append(
            f"| lookup, returning caller / plain redis-py, same commands ({mode}) "
            f"| {d.p50 / raw.p50:.2f}× | {d.p99 / raw.p99:.2f}× |"
        )

    # Round trips and commands.
    counts: dict[str, OpCount] = {}
    k = 100
    for name, op in ops[:3]:
        async with env.meter.measure(k) as result:
            for _ in range(k):
                await op()
        counts[name] = result[0]
        report.counts.append(count_row(name, result[0]))

    ret_b2b, new_b2b, get_b2b = (
        b2b["lookup, returning caller"],
        b2b["lookup, new caller"],
        b2b["bare GET"],
    )
    ret_sp, new_sp, get_sp = (
        sporadic["lookup, returning caller"],
        sporadic["lookup, new caller"],
        sporadic["bare GET"],
    )
    rt = counts["lookup, returning caller"].sends
    report.targets += [
        ("Returning-caller lookup ≤ 2 round trips", f"{rt:g} round trips", rt <= 2),
        (
            "Lookup p50 within 2× bare GET (returning, back-to-back)",
            f"{ret_b2b.p50 / get_b2b.p50:.2f}× ({ms(ret_b2b.p50)} vs {ms(get_b2b.p50)} ms)",
            ret_b2b.p50 <= 2 * get_b2b.p50,
        ),
        (
            "Lookup p50 within 2× bare GET (returning, sporadic)",
            f"{ret_sp.p50 / get_sp.p50:.2f}× ({ms(ret_sp.p50)} vs {ms(get_sp.p50)} ms)",
            ret_sp.p50 <= 2 * get_sp.p50,
        ),
        (
            "Lookup p50 within 2× bare GET (new caller, back-to-back)",
            f"{new_b2b.p50 / get_b2b.p50:.2f}× ({ms(new_b2b.p50)} vs {ms(get_b2b.p50)} ms)",
            new_b2b.p50 <= 2 * get_b2b.p50,
        ),
        (
            "Lookup p99 < 1 ms, sporadic (returning)",
            f"{ms(ret_sp.p99)} ms",
            ret_sp.p99 < 1,
        ),
        ("Lookup p99 < 1 ms, sporadic (new caller)", f"{ms(new_sp.p99)} ms", new_sp.p99 < 1),
    ]
