"""The memory-quality benchmark's scripted oracle, in the main suite: any miss is the pipeline's.

The oracle model answers each call of ``benchmarks/memory_quality/dataset.json`` with the right
operations, backed by the caller's own words; every call is saved to a private Redis and scored
on the memory block the next call's agent receives. Facts the caller only agreed to (the agent's
words, "yes, that works") are the checks' deliberate refusals, scored apart.
"""

from __future__ import annotations

from benchmarks.memory_quality.__main__ import run
from benchmarks.memory_quality.dataset import load
from livekit.plugins.caller_memory import RedisConfig


async def test_the_oracle_is_remembered_whole_and_nothing_else(config: RedisConfig) -> None:
    score = await run(load(), "oracle", config)
    assert score.said_facts > 150 and score.said_updates > 20 and score.withdrawals > 30
    assert score.said_recalled == score.said_facts, score.misses
    assert score.said_updates_right == score.said_updates, score.misses
    assert score.withdrawals_honoured == score.withdrawals, score.misses
    assert score.trap_hits == 0 and score.unbacked == 0, score.misses
    assert score.fallbacks == 0


async def test_without_an_llm_nothing_is_invented(config: RedisConfig) -> None:
    score = await run(load(), "none", config)
    assert score.fallbacks == score.calls == 50
    assert score.trap_hits == 0 and score.unbacked == 0, score.misses
    assert score.recalled > score.facts * 0.8, score.misses
