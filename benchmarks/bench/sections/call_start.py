"""Section 0: the whole call start, ``SessionManager.start_session``, next to a bare ``GET``,
with its split: what each step of the path costs, measured one by one in the same run.

The callers are the memory section's (:class:`~..data.Population`): ``--callers`` callers with
five calls kept and a fifth as many with one, each looked up at random over the keyspace;
numbers come as a SIP trunk sends them (E.164). Tracing is off, as in a worker without a
tracer provider. The whole call start is timed for an unverified caller (the agent gets what
``MEMORY_UNVERIFIED_DISCLOSURE`` allows: the first name by default) and for a verified one (the
network's attestation or the app's check: the whole memory block, which the call start builds).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable

from livekit.plugins.caller_memory import CallerProfile, SessionContext, SessionManager
from livekit.plugins.caller_memory.calls.lookup import report_lookup
from livekit.plugins.caller_memory.store import CallerLookup, codec

from ..data import Population
from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, ms, quiet_gc

SPORADIC_GAP_S = 0.005
DECODED_SAMPLE = 500
"""Profiles read once to time the decode steps on (a random one each time)."""

WHOLE = "start_session, returning caller, 5 calls kept (whole call start)"
VERIFIED = "start_session, returning verified caller, 5 calls kept (the whole memory block)"
SMALL = "start_session, returning caller, 1 call kept (small profile)"
GET = "bare GET (a random caller's phone key)"
FLOOR = "  the floor: the lookup's EVALSHA, straight through redis-py, and the profile's decode"


async def bench_call_start(env: Env, plan: Plan, report: Report, population: Population) -> None:
    store, rng = env.store, env.rng
    numbers, small_numbers = population.numbers, population.small_numbers
    log(
        f"0. whole call start (start_session) and its split, over {len(numbers):,} + "
        f"{len(small_numbers):,} callers"
    )
    hasher, client, keys = store.hasher, store.client, store.keys
    hashes = [hasher.hash_e164(number) for number in numbers]
    manager = SessionManager(store)
    disclosure = env.config.unverified_disclosure
    ttl = env.config.profile_ttl_seconds

    # What the decode steps work on: profiles as stored, read back once.
    raws: list[bytes] = []
    for h in rng.sample(hashes, min(DECODED_SAMPLE, len(hashes))):
        raw = await store.read(keys.profile(h))
        assert raw is not None
        raws.append(raw)
    jsons = [codec.inflate(raw) for raw in raws]
    plains = [zlib.compress(data, 6) for data in jsons]  # as earlier versions stored them
    lookups = [
        CallerLookup(user_id=h, is_new=False, profile=codec.decode_profile(raw), profile_raw=raw)
        for h, raw in zip(hashes, raws, strict=False)
    ]
    sessions = iter(range(10**9))

    async def get() -> object:
        return await client.get(keys.phone(rng.choice(hashes)))

    async def start(number: str, verified: bool = False) -> object:
        session_id = f"cs-{next(sessions)}"
        context = await manager.start_session(
            session_id=session_id, phone_number=number, verified=verified
        )
        assert context.status == "returning", context.status
        manager.dont_remember(session_id)  # outside the measure: see below
        return context

    async def start_whole() -> object:
        return await start(rng.choice(numbers))

    async def start_verified() -> object:
        return await start(rng.choice(numbers), verified=True)

    async def start_small() -> object:
        return await start(rng.choice(small_numbers))

    async def normalize() -> object:
        return hasher.normalize(rng.choice(numbers))

    async def hmac() -> object:
        return hasher.hash_e164(rng.choice(numbers))

    async def round_trip() -> object:
        h = rng.choice(hashes)
        return await store.fetch_caller(
            keys.phone(h),
            keys.profile(h),
            keys.sessions(h),
            keys.unreadable_phone(h),
            mint=None,
            ttl=ttl,
        )

    async def floor() -> object:
        # What any call start that reads this profile pays: the script's EVALSHA with no
        # wrapper around it (the store's own _run: no slot, no deadline), and the decode.
        # Nothing of the call's own work.
        h = rng.choice(hashes)
        reply = await store._run(
            "lookup",
            [keys.phone(h), keys.profile(h), keys.sessions(h), keys.unreadable_phone(h)],
            ["", ttl, codec.MAX_PROFILE_BYTES],
        )
        return codec.decode_profile(reply[1])

    async def inflate() -> object:
        return codec.inflate(rng.choice(raws))

    async def inflate_plain() -> object:
        return codec.inflate(rng.choice(plains))

    async def validate() -> object:
        return CallerProfile.model_validate_json(rng.choice(jsons))

    async def context() -> object:
        return SessionContext.found("cs", rng.choice(lookups), "returning", disclosure)

    async def measured() -> object:
        # What start_session does once the caller is known: the lookup metric, the span
        # check (no tracer installed here), the debug log check.
        report_lookup("cs", "returning", time.perf_counter(), time.time_ns())
        return None

    async def context_full() -> object:
        return SessionContext.found("cs", rng.choice(lookups), "returning", "full")

    ops: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        (GET, get),
        (WHOLE, start_whole),
        (VERIFIED, start_verified),
        ("  normalize the number (phonenumbers)", normalize),
        ("  HMAC of the normal form", hmac),
        ("  the lookup's round trip (EVALSHA, raw reply)", round_trip),
        (FLOOR, floor),
        ("  decode: inflate the profile (zlib with the preset dictionary)", inflate),
        ("  (comparison: inflate it compressed without the dictionary)", inflate_plain),
        ("  validation: parse + validate the profile (pydantic-core, from JSON)", validate),
        (f"  the call's context (greeting context; an unverified caller: {disclosure})", context),
        ("  the call's context, a verified caller (the whole memory block)", context_full),
        ("  the lookup's metric and span (no tracer installed)", measured),
        (SMALL, start_small),
    ]

    async def run(
        chosen: list[tuple[str, Callable[[], Awaitable[object]]]], iterations: int, gap: float
    ) -> dict[str, Dist]:
        dists = {name: Dist() for name, _ in chosen}
        with quiet_gc():
            for i in range(plan.warmup + iterations):
                shift = i % len(chosen)  # rotate the order: no op always runs first
                for name, op in chosen[shift:] + chosen[:shift]:
                    start_ns = time.perf_counter_ns()
                    await op()
                    elapsed = time.perf_counter_ns() - start_ns
                    if i >= plan.warmup:
                        dists[name].samples.append(elapsed)
                    if gap:
                        await asyncio.sleep(gap)
                # The calls opened above are dropped without a save, off the clock.
                for session_id in manager.active_sessions:
                    await manager.end_session(session_id)
        return dists

    b2b = await run(ops, plan.back_to_back, 0.0)
    log("   sporadic")
    paced = [op for op in ops if op[0] in (GET, WHOLE, VERIFIED, SMALL)]
    sporadic = await run(paced, plan.sporadic, SPORADIC_GAP_S)

    report.call_start += [latency_row(name, dist) for name, dist in b2b.items()]
    report.call_start += [
        latency_row(f"{name} — sporadic, 1 per 5 ms", dist) for name, dist in sporadic.items()
    ]
    base, whole, small, least = b2b[GET], b2b[WHOLE], b2b[SMALL], b2b[FLOOR]
    full = b2b[VERIFIED]
    sp_base, sp_whole, sp_small = sporadic[GET], sporadic[WHOLE], sporadic[SMALL]
    sp_full = sporadic[VERIFIED]
    stored5, json5 = report.profile_sizes.get("5", (0, 0))
    stored1, json1 = report.profile_sizes.get("1", (0, 0))
    report.call_start_notes += [
        f"Callers looked up at random over {len(numbers):,} with 5 calls kept (profile p50 "
        f"{stored5:,} B stored, {json5:,} B of JSON) and {len(small_numbers):,} with 1 call "
        f"kept ({stored1:,} B stored, {json1:,} B of JSON); the bare GET reads a random "
        "caller's phone key too. The number is checked (normalize + HMAC) while Redis answers "
        "a read-only lookup of the number as given: in `start_session` that step overlaps the "
        "round trip.",
        "",
        "| start_session / bare GET | p50 ratio | p99 ratio |",
        "|---|---:|---:|",
        f"| 5 calls kept, back-to-back | {whole.p50 / base.p50:.2f}× "
        f"| {whole.p99 / base.p99:.2f}× |",
        f"| 5 calls kept, a verified caller, back-to-back | {full.p50 / base.p50:.2f}× "
        f"| {full.p99 / base.p99:.2f}× |",
        f"| 1 call kept, back-to-back | {small.p50 / base.p50:.2f}× "
        f"| {small.p99 / base.p99:.2f}× |",
        f"| 5 calls kept, sporadic | {sp_whole.p50 / sp_base.p50:.2f}× "
        f"| {sp_whole.p99 / sp_base.p99:.2f}× |",
        f"| 5 calls kept, a verified caller, sporadic | {sp_full.p50 / sp_base.p50:.2f}× "
        f"| {sp_full.p99 / sp_base.p99:.2f}× |",
        f"| 1 call kept, sporadic | {sp_small.p50 / sp_base.p50:.2f}× "
        f"| {sp_small.p99 / sp_base.p99:.2f}× |",
        f"| the floor (the script's EVALSHA and the decode, nothing else), back-to-back "
        f"| {least.p50 / base.p50:.2f}× | {least.p99 / base.p99:.2f}× |",
        "",
        "The floor is what reading this profile costs before the call does anything of its "
        f"own: {least.p50 / base.p50:.2f}× a bare `GET` leaves "
        f"{max(0.0, 2 - least.p50 / base.p50):.2f}× of it "
        f"({ms(max(0, 2 * base.p50 - least.p50))} ms) for the rest of the call start "
        f"(its wrapper, the number's check, the context, the metric), which takes "
        f"{ms(max(0, whole.p50 - least.p50))} ms.",
    ]
    report.targets[:0] = [
        (
            "Whole call start (start_session, 5 calls kept) p50 within 2× bare GET (back-to-back)",
            f"{whole.p50 / base.p50:.2f}× ({ms(whole.p50)} vs {ms(base.p50)} ms)",
            whole.p50 <= 2 * base.p50,
        ),
        (
            "Whole call start (start_session, 5 calls kept) p99 < 1 ms, sporadic",
            f"{ms(sp_whole.p99)} ms (p50 {ms(sp_whole.p50)} ms = "
            f"{sp_whole.p50 / sp_base.p50:.2f}× a paced bare GET)",
            sp_whole.p99 < 1,
        ),
        (
            "Whole call start of a verified caller (the whole memory block), 5 calls kept, "
            "p50 within 2× bare GET (back-to-back)",
            f"{full.p50 / base.p50:.2f}× ({ms(full.p50)} vs {ms(base.p50)} ms)",
            full.p50 <= 2 * base.p50,
        ),
        (
            "Whole call start, 1 call kept, p50 within 2× bare GET (back-to-back)",
            f"{small.p50 / base.p50:.2f}× ({ms(small.p50)} vs {ms(base.p50)} ms)",
            small.p50 <= 2 * base.p50,
        ),
    ]
