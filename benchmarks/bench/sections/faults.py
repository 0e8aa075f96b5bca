"""Section 8: what a hostile turn and a silent network cost. ``add_turn`` on 4,000-character
turns built to be slow to redact (each shape repeated to the length), and ``end_session``
against a Redis that accepts connections and never answers (a black hole, through the test
suite's fault proxy): the worst time a save can hold a job's shutdown."""

from __future__ import annotations

import time

from livekit.plugins.caller_memory import InMemoryStore, RedisMemoryStore, SessionManager

from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, ms, quiet_gc

ADVERSARIAL = {
    "`1 1 1 … x`": "1 ",
    "`1-1-1-…`": "1-",
    "`1 x 1 x …`": "1 x ",
    "`123 x …`": "123 x ",
    "`555 0123 x …`": "555 0123 x ",
    "`one one …`": "one ",
    "`a@a.a@a.a…`": "a@a.a",
    "`a at b dot …`": "a at b dot ",
    "`ssn 1 …`": "ssn 1 ",
    "prose": "I'd like to move my cleaning to next Tuesday morning if that works, thanks. ",
}
TURN_CHARS = 4_000
ADD_TURN_TARGET_MS = 1.0


async def bench_faults(env: Env, plan: Plan, report: Report) -> None:
    log("8. add_turn on adversarial turns; a save against a black-holed Redis")
    manager = SessionManager(InMemoryStore(env.config.model_copy(update={"journal_turns": False})))
    await manager.start_session(session_id="adversarial", phone_number="+14155550134")
    worst = 0.0
    runs = 100 if plan.quick else 400
    with quiet_gc():
        for name, unit in ADVERSARIAL.items():
            text = (unit * (TURN_CHARS // len(unit) + 1))[:TURN_CHARS]
            dist = Dist()
            for i in range(runs):
                turn = f"{text[: TURN_CHARS - 4]}{i:04d}"  # never the same text twice
                start = time.perf_counter_ns()
                manager.add_turn("adversarial", "user", turn)
                dist.samples.append(time.perf_counter_ns() - start)
            report.faults.append(latency_row(f"add_turn, 4,000 chars of {name}", dist))
            worst = max(worst, dist.p99)
    await manager.end_session("adversarial")
    report.targets.append(
        (
            f"add_turn of a 4,000-character adversarial turn: p99 ≤ {ADD_TURN_TARGET_MS:g} ms",
            f"worst p99 {ms(worst)} ms",
            worst <= ADD_TURN_TARGET_MS,
        )
    )
    await _black_hole(env, plan, report)


async def _black_hole(env: Env, plan: Plan, report: Report) -> None:
    from tests.support.proxy import FaultProxy  # the test suite's proxy: one implementation

    proxy = FaultProxy(env.server.port).start()
    try:
        config = env.config.replaced(url=proxy.url)
        store = RedisMemoryStore(config, hasher=env.store.hasher)
        await store.connect()
        manager = SessionManager(store)
        dist = Dist()
        kept = 0
        for i in range(3 if plan.quick else 10):
            session_id = f"AJ_blackhole{i:03d}"
            await manager.start_session(session_id=session_id, phone_number="+14155550134")
            for turn in range(10):
                manager.add_turn(session_id, "user", f"turn {turn} of a call")
            proxy.set_mode("blackhole")
            start = time.perf_counter_ns()
            kept += await manager.end_session(session_id) is None
            dist.samples.append(time.perf_counter_ns() - start)
            proxy.set_mode("pass")
        report.faults.append(latency_row("end_session, Redis black-holed (to the outbox)", dist))
        # The save's deadline and the journal's grace, plus the outbox's own write.
        budget = config.save_timeout_s + 1.0 + 0.5
        report.targets.append(
            (
                "end_session against a black-holed Redis: in the outbox within the save "
                f"deadline + the journal's grace + 0.5 s ({budget:g} s; LiveKit waits 10 s)",
                f"max {ms(dist.max)} ms, {kept} of {dist.n} calls in the outbox",
                dist.max <= budget * 1000 and kept == dist.n,
            )
        )
        await manager.flush_outbox()
        await manager.aclose()
        await store.disconnect()
    finally:
        proxy.stop()
