"""Section 6: the time the plugin adds to the first reply of a text-mode ``AgentSession``,
in alternating pairs of offline calls (``caller_memory.testing``: a real ``JobContext``, a SIP
caller and a scripted LLM that answers at once) without and with ``CallerMemory.attach``, and
with the per-turn journal off for comparison."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from livekit.agents import Agent, llm

from livekit.plugins.caller_memory import CallerMemory, RedisMemoryStore, testing

from ..env import Env, Plan, Report, log
from ..stats import Dist, latency_row, ms, quiet_gc


async def bench_first_reply(env: Env, plan: Plan, report: Report) -> None:
    log("6. first reply of an AgentSession, with and without the plugin")
    statuses: Counter[str] = Counter()
    number = "+1 (415) 555-0134"
    arms: list[tuple[str, CallerMemory | None]] = [
        ("without", None),
        ("with", CallerMemory(store=env.store, use_session_llm=False)),
    ]
    journal_off: RedisMemoryStore | None = None
    if env.config.journal_turns:
        # For comparison: the same plugin with its per-turn journal turned off.
        journal_off = RedisMemoryStore(
            env.config.model_copy(update={"journal_turns": False}), hasher=env.store.hasher
        )
        await journal_off.connect()
        arms.append(("journal off", CallerMemory(store=journal_off, use_session_llm=False)))

    async def one(index: int, arm: str, memory: CallerMemory | None) -> tuple[int, int]:
        fake = testing.ScriptedLLM("Hello Ana! Sarah here. How can I help you today?")
        caller = testing.sip_caller(number)
        with testing.offline_job(f"AJ_fr{index:05d}{arm.replace(' ', '')}") as ctx:
            testing.join(ctx.room, caller)
            session = testing.text_session(fake)
            agent = Agent(instructions="You are Sarah, the receptionist of a dental practice.")
            first: list[int] = []

            def on_item(event: Any) -> None:
                item = getattr(event, "item", None)
                if isinstance(item, llm.ChatMessage) and item.role == "assistant" and not first:
                    first.append(time.perf_counter_ns())

            session.on("conversation_item_added", on_item)
            t0 = time.perf_counter_ns()
            if memory is not None:
                call = await memory.attach(ctx, session, agent)
                statuses[f"{arm}: {call.context.status}"] += 1
            t_attach = time.perf_counter_ns()
            await session.start(agent)
            await session.run(user_input="Hi, this is Ana. Can I book a cleaning next week?")
            t_done = time.perf_counter_ns()
            testing.leave(ctx.room, caller)
            if memory is not None:
                await memory.on_session_end(ctx)
            await session.aclose()
            await testing.shut_down(ctx)
        return t_attach - t0, (first[0] if first else t_done) - t0

    reply = {name: Dist() for name, _ in arms}
    attach = {name: Dist() for name, _ in arms}
    added = {name: Dist() for name, _ in arms}
    warm = 10
    with quiet_gc():
        for i in range(warm + plan.first_reply_pairs):
            shift = i % len(arms)  # rotate: no arm always runs first or after another
            got: dict[str, tuple[int, int]] = {}
            for name, memory in arms[shift:] + arms[:shift]:
                got[name] = await one(i, name, memory)
            if i >= warm:
                for name, (attach_ns, first_ns) in got.items():
                    reply[name].samples.append(first_ns)
                    attach[name].samples.append(attach_ns)
                    added[name].samples.append(first_ns - got["without"][1])
    for _, memory in arms:
        if memory is not None:
            await memory.aclose()
    if journal_off is not None:
        await journal_off.disconnect()

    without, with_, diff = reply["without"], reply["with"], added["with"]
    report.first_reply += [
        latency_row("without the plugin: entry → first assistant message", without),
        latency_row("with `CallerMemory.attach` (returning caller)", with_),
        latency_row(
            "… of which `attach` itself (wait caller, lookup, load memory)", attach["with"]
        ),
        latency_row("**added by the plugin**, paired difference (with − without)", diff),
        f"| added, difference of the percentiles (with − without) | {with_.n} "
        f"| {ms(with_.p50 - without.p50)} | {ms(with_.p99 - without.p99)} |  |  |",
    ]
    if "journal off" in reply:
        report.first_reply += [
            latency_row(
                "comparison: with `attach`, `MEMORY_JOURNAL_TURNS=false`", reply["journal off"]
            ),
            latency_row("… added, paired difference (journal off − without)", added["journal off"]),
        ]
    seen = ", ".join(f"{status} ×{n}" for status, n in sorted(statuses.items()))
    report.notes.append(f"- Lookup status of the calls with the plugin (warm-up included): {seen}.")
    report.targets += [
        ("< 5 ms added to the first reply (p50, paired)", f"{ms(diff.p50)} ms", diff.p50 < 5),
        ("< 5 ms added to the first reply (p99, paired)", f"{ms(diff.p99)} ms", diff.p99 < 5),
    ]
