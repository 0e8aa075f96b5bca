"""Memory-quality benchmark: multi-call callers, scored on what the next call's agent receives.

Run: ``python -m benchmarks.memory_quality [--llm none oracle local] [--model NAME]``. Each
caller of ``dataset.json`` rings 3-4 times; every call goes through a real ``SessionManager``
and a private Redis server, ends with the chosen model's summary (``none``: no LLM, the
fallback; ``oracle``: a scripted model that returns the right operations, so any miss is the
pipeline's; ``local``: a real local model on llama.cpp's server, see
``sarah_agent.local_llm``), and after each call the memory block the next call's agent is given
is scored (:mod:`.score`). Prints a Markdown table, one row per model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from livekit.agents import llm as lk_llm

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.server import EmbeddedRedis

from .dataset import Caller, Truth, load
from .oracle import oracle_llm
from .score import Score

__all__ = ["run", "run_caller"]

SECRET = "memory-quality-only-5c2e9a7f1d3b8046e"


async def run_caller(
    manager: SessionManager,
    caller: Caller,
    number: str,
    mode: str,
    model: lk_llm.LLM[Any] | None,
    score: Score,
) -> None:
    """Play one caller's calls through ``manager`` and score the memory after each."""
    truth = Truth()
    said: list[str] = []
    for n, call in enumerate(caller.calls, start=1):
        sid = f"{caller.id}-{n}"
        await manager.start_session(session_id=sid, phone_number=number)
        for role, line in call.turns:
            manager.add_turn(sid, "user" if role == "caller" else "assistant", line)
        summarizer = oracle_llm(call, truth) if mode == "oracle" else model
        started = time.perf_counter()
        profile = await manager.end_session(sid, llm=summarizer)
        seconds = time.perf_counter() - started
        truth.after(call)
        said += call.caller_lines
        source = profile.calls[-1].source if profile is not None and profile.calls else "lost"
        score.call_ended(source, seconds)
        score.stored_facts(profile, said)
        peek = f"{sid}-next"
        ctx = await manager.start_session(session_id=peek, phone_number=number)
        manager.dont_remember(peek)  # looking is not a call
        await manager.end_session(peek)
        score.checkpoint(f"{caller.id} after call {n}", ctx.memory_prompt(), truth, profile)


async def run(
    callers: Sequence[Caller],
    mode: str,
    config: RedisConfig,
    model: lk_llm.LLM[Any] | None = None,
) -> Score:
    """Score one way of summarizing (``none``, ``oracle``, or ``model``) over ``callers``."""
    score = Score()
    config = config.model_copy(update={"trust_caller_id": True})
    manager = SessionManager(RedisMemoryStore(config), llm=None, owns_store=True)
    try:
        for i, caller in enumerate(callers):
            number = f"+1415555{i:04d}"
            await run_caller(manager, caller, number, mode, model, score)
    finally:
        await manager.aclose()
    return score


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[RedisConfig]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False)
        await asyncio.to_thread(server.start)
        try:
            yield RedisConfig(
                url=server.url,
                key_prefix="quality",
                phone_hash_secret=SECRET,
                data_dir=Path(tmp),
                embedded_redis=False,
            )
        finally:
            await asyncio.to_thread(server.stop)


async def _main(args: argparse.Namespace) -> int:
    callers = load()[: args.callers] if args.callers else load()
    rows: list[tuple[str, dict[str, str]]] = []
    async with _server() as config:
        config = config.model_copy(update={"summary_timeout_s": args.timeout})
        for n, mode in enumerate(args.llm):
            config = config.model_copy(update={"key_prefix": f"quality{n}"})
            if mode == "local":
                from sarah_agent import local_llm

                model = args.model_file or local_llm.model_path()
                with local_llm.LocalLLMServer(model=model, threads=args.threads) as server:
                    score = await run(callers, mode, config, local_llm.summary_llm(server))
                label = f"local: {model.name if model else local_llm.MODEL_NAME}"
            else:
                score = await run(callers, mode, config)
                label = {"none": "no LLM (fallback)", "oracle": "scripted oracle"}[mode]
            rows.append((label, score.row()))
            if args.verbose:
                print("\n".join(score.misses), file=sys.stderr)
    heads = list(rows[0][1])
    print(f"| model | {' | '.join(heads)} |")
    print(f"|---|{'---|' * len(heads)}")
    for label, row in rows:
        print(f"| {label} | {' | '.join(row[h] for h in heads)} |")
    print(f"\n{len(callers)} callers, {sum(len(c.calls) for c in callers)} calls")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_quality")
    parser.add_argument("--llm", nargs="+", choices=["none", "oracle", "local"],
                        default=["oracle", "none", "local"])  # fmt: skip
    parser.add_argument(
        "--model-file",
        type=Path,
        default=None,
        help="a GGUF file for --llm local (default: the shipped SmolLM2)",
    )
    parser.add_argument("--threads", type=int, default=2, help="the local model's threads")
    parser.add_argument("--callers", type=int, default=0, help="first N callers only")
    parser.add_argument("--timeout", type=float, default=6.0, help="summary timeout, seconds")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
