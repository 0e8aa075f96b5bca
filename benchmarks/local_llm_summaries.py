"""How often the local model writes a usable summary, with and without a JSON schema.

Each recorded call of ``sarah_agent/recorded_calls.json`` is summarized by SmolLM2-135M-Instruct
on llama.cpp's server (``sarah_agent.local_llm``), through livekit-plugins-openai, with the
summarizer's own prompt: once greedily (temperature 0, what Sarah runs) and ``--samples`` times
sampled (temperature 0.8, seeds 1..N), each way unconstrained (the prompt asks for JSON in
words) and constrained (``response_format`` with caller memory's ``prompts.SUMMARY_SCHEMA``).
Every answer goes through the real ``Summarizer``, which counts it:

- *usable*: the summarizer used it (valid JSON of the answer's shape, and what it proposed
  passed the checks or it proposed nothing: source ``llm``); otherwise the call gets the
  fallback summary, the caller's own lines;
- *in 6 s*: usable and answered within the default ``MEMORY_SUMMARY_TIMEOUT_S`` (the runs here
  give the model 120 s, to measure what it writes rather than how fast);
- *facts proposed* and *kept*: the operations (add, update, withdraw) of the answers, and those
  the evidence checks kept (each backed by the caller's own words);
- *names dropped*: a name op for a name the caller did not give for themself (a name the model
  invented, or the agent's).

Run: ``python -m benchmarks.local_llm_summaries [--samples 5]`` (needs
``pip install --no-deps -r requirements-llm.txt``; about 5 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm

from livekit.plugins.caller_memory import prompts
from livekit.plugins.caller_memory.memory import check_answer
from livekit.plugins.caller_memory.models import FactOp, Turn
from livekit.plugins.caller_memory.summarizer import Summarizer
from livekit.plugins.caller_memory.testing import ScriptedLLM
from sarah_agent import local_llm
from sarah_agent.replay import load_calls

TIMEOUT_S = 120.0
DEFAULT_TIMEOUT_S = 6.0
NAME_DROPS = ("not_self_named", "agents_name")
"""The reasons the checks give for a name that is not the caller's own."""


@dataclass
class Tally:
    """Counts of one way of asking."""

    answers: int = 0
    usable: int = 0
    in_time: int = 0
    proposed: int = 0
    kept: int = 0
    names_dropped: int = 0
    seconds: list[float] = field(default_factory=list)

    def row(self, label: str) -> str:
        """One line of the results table (Markdown)."""
        n = self.answers

        def pct(k: int) -> str:
            return f"{k}/{n} ({100 * k / n:.0f} %)" if n else "-"

        median = statistics.median(self.seconds) if self.seconds else 0.0
        return (
            f"| {label} | {pct(self.usable)} | {pct(self.in_time)} | {self.proposed} | "
            f"{self.kept} | {self.names_dropped} | {median:.1f} s |"
        )


def _proposed(answer: str) -> list[FactOp]:
    """The operations of an answer that are of the right shape (as the summarizer reads it)."""
    try:
        raw = json.loads(answer[answer.find("{") : answer.rfind("}") + 1])
    except ValueError:
        return []
    items = raw.get("ops") if isinstance(raw, dict) else None
    ops = []
    for item in items if isinstance(items, list) else []:
        try:
            ops.append(FactOp.model_validate(item))
        except ValueError:
            continue
    return ops


async def _ask(model: llm.LLM[Any], turns: list[Turn], seed: int | None) -> tuple[str, float]:
    chat_ctx = llm.ChatContext.empty()
    chat_ctx.add_message(role="system", content=prompts.SUMMARY_INSTRUCTIONS)
    chat_ctx.add_message(role="user", content=prompts.summary_request(turns, None))
    extra: dict[str, Any] = {} if seed is None else {"seed": seed}
    started = time.perf_counter()
    stream = model.chat(
        chat_ctx=chat_ctx,
        conn_options=APIConnectOptions(max_retry=0, timeout=TIMEOUT_S),
        extra_kwargs=extra,
    )
    answer = await stream.collect()
    return answer.text, time.perf_counter() - started


async def _judge(tally: Tally, answer: str, seconds: float, turns: list[Turn]) -> None:
    # The summarizer's verdict on exactly this answer: it is replayed through a scripted LLM.
    summary = await Summarizer(ScriptedLLM(summary=answer), timeout=TIMEOUT_S).summarize(turns)
    tally.answers += 1
    tally.seconds.append(seconds)
    ops = _proposed(answer)
    checked = check_answer(ops, "", turns)
    tally.proposed += len(ops)
    tally.kept += len(checked.ops)
    tally.names_dropped += sum(checked.dropped[reason] for reason in NAME_DROPS)
    if summary.source != "llm":
        return
    tally.usable += 1
    tally.in_time += seconds <= DEFAULT_TIMEOUT_S


async def main(samples: int) -> None:
    """Measure and print the table."""
    calls = [
        [Turn(role="user" if who == "caller" else "assistant", text=text) for who, text in c.turns]
        for c in load_calls()
    ]
    server = local_llm.LocalLLMServer()
    server.start()
    print(
        f"{local_llm.MODEL_NAME} on xllamacpp {local_llm.engine_version()}, "
        f"started in {server.started_in:.1f} s; {len(calls)} recorded calls"
    )
    rows = []
    try:
        for constrained in (False, True):
            for temperature, seeds in ((0.0, [None]), (0.8, list(range(1, samples + 1)))):
                if temperature and not samples:
                    continue
                model = local_llm.summary_llm(
                    server, constrained=constrained, temperature=temperature
                )
                tally = Tally()
                for seed in seeds:
                    for turns in calls:
                        answer, seconds = await _ask(model, turns, seed)
                        await _judge(tally, answer, seconds, turns)
                await model.aclose()
                how = "constrained (JSON schema)" if constrained else "unconstrained"
                sampled = "greedy" if not temperature else f"T=0.8, {samples} seeds"
                rows.append(tally.row(f"{how}, {sampled}"))
                print(rows[-1], flush=True)
    finally:
        server.stop()
    print(
        "\n| Summaries | usable | usable in 6 s | facts proposed | kept | names dropped "
        "| median time |\n|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="sampled answers per call")
    logging.getLogger("livekit.plugins.caller_memory").setLevel(logging.ERROR)  # one per answer
    asyncio.run(main(parser.parse_args().samples))
