"""What every section of the benchmark is handed: the :class:`Plan` of the run (how many
iterations), its :class:`Env` (the private server and the clients), and the :class:`Report`
that the sections fill and :mod:`.report` renders; plus the run's constants and :func:`log`."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.server import EmbeddedRedis

from .wire import Meter, WireCounter

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
SECRET = "bench-only-8e1a6c3f9d2b7045c1e8a3f6d9b2"
PREFIX = "bench"
CONCURRENT = 200
"""Call starts at once in the concurrency section."""


@dataclass
class Plan:
    """Iterations of one run."""

    quick: bool
    callers: int
    warmup: int
    back_to_back: int
    sporadic: int
    saves: int
    bursts: int
    e2e_calls: int
    e2e_timed: int
    first_reply_pairs: int
    validate_callers: int

    @classmethod
    def make(cls, quick: bool, callers: int | None) -> Plan:
        if quick:
            return cls(
                quick=True,
                callers=callers or 10_000,
                warmup=100,
                back_to_back=1_000,
                sporadic=300,
                saves=300,
                bursts=8,
                e2e_calls=20,
                e2e_timed=100,
                first_reply_pairs=40,
                validate_callers=30,
            )
        return cls(
            quick=False,
            callers=callers or 100_000,
            warmup=300,
            back_to_back=5_000,
            sporadic=2_000,
            saves=2_000,
            bursts=25,
            e2e_calls=50,
            e2e_timed=500,
            first_reply_pairs=300,
            validate_callers=200,
        )


@dataclass
class Env:
    """The private server and the clients of a run."""

    server: EmbeddedRedis
    config: RedisConfig
    store: RedisMemoryStore
    admin: aioredis.Redis
    wire: WireCounter
    meter: Meter
    rng: random.Random
    numbers: Iterator[int]
    """Hands out caller numbers, so no two sections share a caller."""

    def phone_number(self) -> str:
        i = next(self.numbers)
        return f"+1 (415) 7{i // 10_000 % 100:02d}-{i % 10_000:04d}"


@dataclass
class Report:
    """What the sections found, rendered at the end."""

    targets: list[tuple[str, str, bool]] = field(default_factory=list)
    call_start: list[str] = field(default_factory=list)
    call_start_notes: list[str] = field(default_factory=list)
    latency: list[str] = field(default_factory=list)
    ratios: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    concurrency: list[str] = field(default_factory=list)
    concurrency_notes: list[str] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    memory_keys: list[str] = field(default_factory=list)
    memory_sizes: list[str] = field(default_factory=list)
    """Rows of the profile size distribution."""
    profile_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Median profile size (stored, JSON) by calls kept ("5", "1")."""
    memory_notes: list[str] = field(default_factory=list)
    first_reply: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
