"""Section 0: the whole call start, ``SessionManager.start_session``, next to a bare ``GET``,
with its split: what each step of the path costs, measured one by one in the same run.

The callers have five saved calls each, written through the store's real save path, and are
picked at random; numbers come as a SIP trunk sends them (E.164). Tracing is off, as in a
worker without a tracer provider.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from livekit.plugins.caller_memory import SessionContext, SessionManager
from livekit.plugins.caller_memory.store import codec

from ..data import SummaryPool, make_record, now_utc
from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, ms, quiet_gc

CALLERS = 200


async def bench_call_start(env: Env, plan: Plan, report: Report) -> None:
    store, rng = env.store, env.rng
    log("0. whole call start (start_session) and its split")
    pool = SummaryPool(rng, per_name=20)
    numbers = [f"+1415{rng.randrange(2_000_000, 9_999_999):07d}" for _ in range(CALLERS)]
    for number in numbers:  # five calls each, through the real path
        phone_hash = store.hasher.hash(number)
        for i in range(5):
            found = await store.lookup(phone_hash)
            name = "Ana"
            record = make_record(f"AJ_cs{phone_hash[:6]}{i}", found.user_id, name, now_utc())
            await store.save_call(record, pool.pick(name, 1)[0], phone_hash=phone_hash, base=found)
    manager = SessionManager(store)
    client, keys = store.client, store.keys
    probe_hash = store.hasher.hash(numbers[0])
    raw_profile = await store.read(keys.profile(probe_hash))
    assert raw_profile is not None
    lookup = await store.lookup(probe_hash)
    disclosure = env.config.unverified_disclosure
    ttl = env.config.profile_ttl_seconds
    sessions = iter(range(10**9))
    picks: list[str] = []

    def pick() -> str:
        number = rng.choice(numbers)
        picks.append(number)
        return number

    async def get() -> object:
        return await client.get(keys.phone(probe_hash))

    async def start_session() -> object:
        session_id = f"cs-{next(sessions)}"
        context = await manager.start_session(session_id=session_id, phone_number=pick())
        manager.dont_remember(session_id)  # outside the measure: see below
        return context

    async def hashing() -> object:
        return store.hasher.hashes(pick())

    hashes = [store.hasher.hash(number) for number in numbers]

    async def round_trip() -> object:
        h = rng.choice(hashes)
        return await store.fetch_caller(
            keys.phone(h), keys.profile(h), keys.sessions(h), mint=None, ttl=ttl
        )

    async def decode() -> object:
        return codec.decode_profile(raw_profile)

    async def context() -> object:
        return SessionContext.found("cs", lookup, "returning", disclosure)

    async def memory_block() -> object:
        return SessionContext.found("cs", lookup, "returning", disclosure).memory_prompt()

    ops: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("bare GET", get),
        ("start_session, returning caller (whole call start)", start_session),
        ("  normalize + HMAC (E.164 as SIP sends it)", hashing),
        ("  the lookup's round trip (EVALSHA, raw reply)", round_trip),
        ("  decode + validate the profile", decode),
        ("  the call's context (greeting context)", context),
        ("memory block for the agent (made by attach, after the call start)", memory_block),
    ]
    dists = {name: Dist() for name, _ in ops}
    iterations = plan.back_to_back
    with quiet_gc():
        for i in range(plan.warmup + iterations):
            shift = i % len(ops)
            for name, op in ops[shift:] + ops[:shift]:
                start = time.perf_counter_ns()
                await op()
                elapsed = time.perf_counter_ns() - start
                if i >= plan.warmup:
                    dists[name].samples.append(elapsed)
            # The calls opened above are dropped without a save, off the clock.
            for session_id in manager.active_sessions:
                await manager.end_session(session_id)
    for name, dist in dists.items():
        report.call_start.append(latency_row(name, dist))
    base = dists["bare GET"]
    whole = dists[ops[1][0]]
    report.call_start_notes.append(
        f"Profile of a returning caller here: {len(raw_profile)} B stored "
        f"({len(codec.inflate(raw_profile))} B of JSON), 5 calls kept. The number is checked "
        "(normalize + HMAC) while Redis answers a read-only lookup of the number as given: in "
        "`start_session` that step overlaps the round trip."
    )
    report.targets.insert(
        0,
        (
            "Whole call start (start_session) p50 within 2× bare GET",
            f"{whole.p50 / base.p50:.2f}× ({ms(whole.p50)} vs {ms(base.p50)} ms)",
            whole.p50 <= 2 * base.p50,
        ),
    )
