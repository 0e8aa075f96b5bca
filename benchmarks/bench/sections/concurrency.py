"""Section 3: :data:`~..env.CONCURRENT` call starts at once (one ``asyncio.gather`` of
lookups, repeated in bursts), through the plugin and, for reference, through plain redis-py
on a blocking pool of the same size: latency from the start of the burst, errors, lookups/s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from ..data import seed_returning
from ..env import CONCURRENT, Env, Plan, Report, log
from ..stats import Dist, ms, quiet_gc


async def burst_test(
    lookup: Callable[[str], Awaitable[object]], hashes: Sequence[str], bursts: int
) -> tuple[Dist, Counter[str], int, float]:
    """Lookups of all ``hashes`` at once, ``bursts`` times (after one warm-up burst).

    Latency is counted from the start of the burst: what a caller who rang at that instant
    waits. Returns the latencies, the errors by type, the lookups tried and lookups/s.
    """

    async def one(t0: int, phone_hash: str) -> int | BaseException:
        try:
            await lookup(phone_hash)
        except Exception as e:
            return e
        return time.perf_counter_ns() - t0

    dist = Dist()
    errors: Counter[str] = Counter()
    wall = 0
    tried = 0
    with quiet_gc():
        for b in range(bursts + 1):
            t0 = time.perf_counter_ns()
            results = await asyncio.gather(*(one(t0, h) for h in hashes))
            elapsed = time.perf_counter_ns() - t0
            if b == 0:
                continue  # warm-up: connections are opened here
            wall += elapsed
            tried += len(hashes)
            for r in results:
                if isinstance(r, BaseException):
                    errors[f"{type(r).__name__}: {r}"] += 1
                else:
                    dist.samples.append(r)
            await asyncio.sleep(0.01)
    rate = dist.n / (wall / 1e9) if wall else 0.0
    return dist, errors, tried, rate


async def bench_concurrency(env: Env, plan: Plan, report: Report) -> None:
    log(f"3. {CONCURRENT} concurrent call starts")
    store = env.store
    callers = await seed_returning(env, CONCURRENT, tag="cc")
    hashes = [h for h, _ in callers]
    pool: Any = getattr(store.client, "connection_pool", None)
    size = int(getattr(pool, "max_connections", 50))
    desc = f"plugin: `store.lookup` ({type(pool).__name__}, max_connections={size})"
    dist, errors, tried, rate = await burst_test(store.lookup, hashes, plan.bursts)
    report.concurrency.append(concurrency_row(desc, plan.bursts, tried, dist, errors, rate))
    for error, n in errors.most_common():
        report.concurrency_notes.append(f"- {desc}: {n} × `{error}`")
    errors_total = sum(errors.values())
    report.targets += [
        (
            f"{CONCURRENT} concurrent call starts: zero errors",
            f"{errors_total} errors in {tried} lookups ({100 * errors_total / tried:.1f} %)",
            errors_total == 0,
        ),
        (
            f"{CONCURRENT} concurrent call starts: p99.9 < 50 ms",
            f"{ms(dist.p999)} ms (successful lookups)",
            dist.p999 < 50,
        ),
        (f"{CONCURRENT} concurrent call starts: ≥ 5,000 lookups/s", f"{rate:,.0f}/s", rate >= 5000),
    ]

    # References, not the plugin: the same Redis work from plain redis-py, on a pool of the
    # same size that waits for a free connection (a plain ConnectionPool would raise
    # MaxConnectionsError past its size).
    blocking = aioredis.BlockingConnectionPool.from_url(
        env.server.url, max_connections=size, timeout=5
    )
    client = aioredis.Redis(connection_pool=blocking)
    keys, ttl = store.keys, env.config.profile_ttl_seconds
    user_ids = {h: lk.user_id or "" for h, lk in callers}

    async def raw_lookup(phone_hash: str) -> object:
        user_id = user_ids[phone_hash]
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(keys.phone(phone_hash), user_id, nx=True, get=True, ex=ttl)
            pipe.getex(keys.profile(user_id), ex=ttl)
            pipe.lrange(keys.sessions(user_id), 0, -1)
            return await pipe.execute()

    async def raw_get(phone_hash: str) -> object:
        return await client.get(keys.phone(phone_hash))

    references: list[tuple[str, Callable[[str], Awaitable[object]]]] = [
        ("reference: the lookup's 3 commands in 1 round trip, plain redis-py", raw_lookup),
        ("reference: one bare `GET` per caller, plain redis-py", raw_get),
    ]
    for label, op in references:
        label = f"{label} (BlockingConnectionPool, max_connections={size})"
        d, e, t, r = await burst_test(op, hashes, plan.bursts)
        report.concurrency.append(concurrency_row(label, plan.bursts, t, d, e, r))
        for error, n in e.most_common():
            report.concurrency_notes.append(f"- {label}: {n} × `{error}`")
    await client.aclose()


def concurrency_row(
    desc: str, bursts: int, tried: int, dist: Dist, errors: Counter[str], rate: float
) -> str:
    cells = [desc, str(bursts), str(tried), str(sum(errors.values())), f"{rate:,.0f}"]
    cells += [ms(dist.p50), ms(dist.p99), ms(dist.p999), ms(dist.max)]
    return "| " + " | ".join(cells) + " |"
