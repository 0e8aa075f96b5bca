"""Benchmark of livekit-plugins-caller-memory against a private Redis server.

One command measures what caller memory costs a voice agent, prints a markdown report and
writes it into ``docs/PERFORMANCE.md``:

1. the call-start lookup (``store.lookup``) of a returning and of a new caller, back-to-back and
   sporadic (one every ~5 ms), next to a bare ``GET`` on the store's own client, with the round
   trips and commands each one costs;
2. the end-of-call save (``store.save_call``) of a 10-turn call, without the LLM;
3. 200 call starts at once (``asyncio.gather`` of 200 lookups), repeated;
4. the Redis memory held per caller at ``--callers`` callers;
5. the commands of one ordinary call end to end (``SessionManager`` start, 10 turns, end);
6. the time the plugin adds to the first reply of a text-mode ``AgentSession``.

It starts its own Redis (``EmbeddedRedis`` on a free port, no persistence) and never touches
another server. Run it from the repository root::

    .venv/bin/python benchmarks/bench.py                  # full run, 2-3 min; writes the doc
    .venv/bin/python benchmarks/bench.py --quick          # ~30 s smoke run; prints only
    .venv/bin/python benchmarks/bench.py --callers 20000 --out /tmp/perf.md

Options:
    --quick: Fewer iterations and 10,000 callers. The report is printed, not written, unless
        ``--out`` is given.
    --callers N: Callers written for the memory measurement (default 100,000; 10,000 quick).
    --out PATH: Where the report goes (default ``docs/PERFORMANCE.md`` for a full run). The
        report replaces the text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
        and leaves the rest of the file (the hand-written analysis) alone; a missing file is
        created. ``--out -`` writes nothing.
    --seed N: Seed of the generated callers (default 7).

How things are counted:
    * Round trips: the benchmark wraps ``send_packed_command`` on every connection of the
      store's own connection pool (in this process only, nothing in the plugin changes) and
      counts the calls: each is one write to the socket followed by a wait for the reply. The
      written bytes are parsed as RESP to name the commands the client sent. The server's
      ``total_reads_processed`` (``INFO stats``) is shown next to it as a cross-check.
    * Commands: ``INFO commandstats`` deltas on the server, read by a separate admin
      connection (its own ``INFO`` calls are left out). Commands run inside a Lua script are
      counted there too, so a save shows ``EVALSHA`` plus what the script ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.metadata
import itertools
import os
import platform
import random
import shlex
import string
import subprocess
import sys
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

from livekit.plugins.caller_memory import (
    CallerProfile,
    CallSummary,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.models import SessionRecord, Turn
from livekit.plugins.caller_memory.store import CallerLookup
from livekit.plugins.caller_memory.embedded import EmbeddedRedis
from livekit.plugins.caller_memory.redis_store import _encode_profile as encode_profile
from livekit.plugins.caller_memory.store import new_user_id

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
SECRET = "bench-secret-0123456789abcdef"
PREFIX = "bench"
SPORADIC_GAP_S = 0.005
CONCURRENT = 200
MS = 1e6  # ns per ms

# --------------------------------------------------------------------------- statistics


@dataclass
class Dist:
    """A latency distribution, in nanoseconds."""

    samples: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    def pct(self, q: float) -> float:
        """Nearest-rank percentile ``q`` (0-100), in milliseconds."""
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
        return ordered[int(rank) - 1] / MS

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def p99(self) -> float:
        return self.pct(99)

    @property
    def p999(self) -> float:
        return self.pct(99.9)

    @property
    def max(self) -> float:
        return max(self.samples) / MS if self.samples else float("nan")


def ms(value: float) -> str:
    """A duration in ms for the tables: 3 decimals below 10 ms."""
    if value != value:  # NaN
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def latency_row(name: str, dist: Dist) -> str:
    """A table row; p99.9 only when there are 1,000 samples or more."""
    cells = [name, str(dist.n), ms(dist.p50), ms(dist.p99)]
    cells += [ms(dist.p999) if dist.n >= 1000 else "", ms(dist.max)]
    return "| " + " | ".join(cells) + " |"


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect, then freeze what exists: the timed code pays only for its own garbage."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def yes(met: bool) -> str:
    return "✅ met" if met else "❌ missed"


# --------------------------------------------------------------------------- counting


def resp_command_names(data: bytes) -> list[str]:
    """Names of the commands in a buffer of RESP arrays, as a client writes them."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] != b"*":
            raise ValueError("not a RESP array")
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        head: list[str] = []
        for i in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            pos = end + 2
            if i < 2:
                head.append(data[pos : pos + length].decode(errors="replace").upper())
            pos += length + 2
        name = head[0] if head else "?"
        if name in ("CLIENT", "SCRIPT", "CONFIG", "MEMORY") and len(head) > 1:
            name = f"{name} {head[1]}"
        names.append(name)
    return names


def _as_bytes(command: Any) -> bytes:
    if isinstance(command, str):
        return command.encode()
    if isinstance(command, bytes | bytearray | memoryview):
        return bytes(command)
    return b"".join(bytes(chunk) for chunk in command)


class WireCounter:
    """Counts the writes (round trips) and commands of one client's connection pool.

    Every connection of the pool, present and future, gets a wrapped
    ``send_packed_command`` (an instance attribute: the class and other clients are left
    alone). Counting happens only inside :meth:`counting`.
    """

    def __init__(self, client: object) -> None:
        self.sends = 0
        self.commands: Counter[str] = Counter()
        self._active = False
        self._wrapped: weakref.WeakSet[Any] = weakref.WeakSet()
        pool: Any = getattr(client, "connection_pool", None)
        if pool is None:
            raise SystemExit("the benchmark needs a standalone client with one connection pool")
        existing = [
            *getattr(pool, "_available_connections", []),
            *getattr(pool, "_in_use_connections", []),
        ]
        for conn in existing:
            self._wrap(conn)
        make_connection = pool.make_connection

        def make_counted_connection() -> Any:
            conn = make_connection()
            self._wrap(conn)
            return conn

        pool.make_connection = make_counted_connection

    def _wrap(self, conn: Any) -> None:
        if conn in self._wrapped:
            return
        self._wrapped.add(conn)
        send = conn.send_packed_command

        async def counted(command: Any, check_health: bool = True) -> None:
            if self._active:
                self.sends += 1
                self.commands.update(resp_command_names(_as_bytes(command)))
            await send(command, check_health)

        conn.send_packed_command = counted

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def reset(self) -> None:
        self.sends = 0
        self.commands.clear()


@dataclass
class ServerSnapshot:
    commands: Counter[str]
    reads: int


async def server_snapshot(admin: aioredis.Redis) -> ServerSnapshot:
    info: dict[str, Any] = await admin.info("stats", "commandstats")
    commands: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            commands[key.removeprefix("cmdstat_").upper().replace("|", " ")] = int(value["calls"])
    return ServerSnapshot(commands=commands, reads=int(info["total_reads_processed"]))


@dataclass
class OpCount:
    """Round trips and commands per operation, client side and server side."""

    ops: int
    sends: float
    client_commands: Counter[str]
    server_reads: float
    server_commands: Counter[str]

    @property
    def client_total(self) -> float:
        return sum(self.client_commands.values()) / self.ops

    @property
    def server_total(self) -> float:
        return sum(self.server_commands.values()) / self.ops

    @staticmethod
    def detail(counter: Counter[str], ops: int) -> str:
        parts = []
        for name, calls in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            per = calls / ops
            parts.append(f"{name} ×{per:g}" if per != 1 else name)
        return ", ".join(parts) or "-"


class Meter:
    """Counts what a block of operations costs, on the wire and on the server."""

    def __init__(self, wire: WireCounter, admin: aioredis.Redis) -> None:
        self._wire = wire
        self._admin = admin
        self._overhead: ServerSnapshot | None = None

    async def calibrate(self) -> None:
        # Two snapshots with nothing between them: what the snapshots themselves cost.
        a = await server_snapshot(self._admin)
        b = await server_snapshot(self._admin)
        self._overhead = ServerSnapshot(commands=b.commands - a.commands, reads=b.reads - a.reads)

    @contextlib.asynccontextmanager
    async def measure(self, ops: int) -> AsyncIterator[list[OpCount]]:
        assert self._overhead is not None, "calibrate() first"
        out: list[OpCount] = []
        self._wire.reset()
        before = await server_snapshot(self._admin)
        with self._wire.counting():
            yield out
        after = await server_snapshot(self._admin)
        server = after.commands - before.commands - self._overhead.commands
        server.pop("INFO", None)
        out.append(
            OpCount(
                ops=ops,
                sends=self._wire.sends / ops,
                client_commands=Counter(self._wire.commands),
                server_reads=(after.reads - before.reads - self._overhead.reads) / ops,
                server_commands=+server,
            )
        )


# --------------------------------------------------------------------------- realistic data

FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Inés", "Jon"]
PREFERENCES = [
    ("appointment_time", ["mornings", "late afternoons", "Saturdays", "after 5pm"]),
    ("language", ["Spanish", "English", "French", "Portuguese"]),
    ("contact_method", ["text message", "email", "phone call"]),
    ("hygienist", ["Maria", "Tom", "no preference"]),
    ("reminders", ["two days before", "the day before"]),
]
FOLLOW_UPS = [
    "Call back with the estimate for the crown on the lower left molar",
    "Email the new-patient forms and the parking instructions",
    "Confirm whether the insurance covers the second cleaning this year",
    "Book a follow-up appointment with Dr. Patel in three weeks",
    "Send a reminder about the payment plan for the orthodontic work",
]
TOPICS = [
    "asked about the opening hours on Saturday and wanted a cleaning appointment",
    "called to move next Tuesday's appointment because of a work trip abroad",
    "asked whether the practice takes their dental insurance and what is covered",
    "reported a sensitive tooth after the last filling and asked for an earlier slot",
    "wanted to know the price of teeth whitening and whether it can be paid in parts",
    "asked for a copy of the last invoice and the x-rays to send to a specialist",
]
OUTCOMES = [
    "An appointment was booked for a weekday morning and a confirmation text was promised.",
    "The receptionist explained the options and said the dentist would call them back.",
    "They agreed to call again after checking with their employer about the coverage.",
    "The booking was moved and the new time was read back to them to confirm it.",
]
USER_LINES = [
    "Hi, this is {name}, I'd like to book a cleaning if you have anything next week.",
    "Mornings are best for me, ideally before nine because of work.",
    "Do you take Delta Dental? I changed jobs and my insurance changed too.",
    "Great, and can you send me a reminder the day before?",
    "No, that's everything, thank you so much.",
]
AGENT_LINES = [
    "Hello {name}, Sarah here. I can help with that: let me check next week's openings.",
    "I have Tuesday at eight or Thursday at eight thirty. Which one suits you better?",
    "Yes, we accept Delta Dental. Please bring the new card to the appointment.",
    "Of course. You'll get a text the day before. Is this the best number to reach you?",
    "You're welcome, {name}. See you on Tuesday at eight. Have a lovely day!",
]


def job_id(rng: random.Random) -> str:
    """An id shaped like a LiveKit job id (``AJ_`` and 12 characters)."""
    return "AJ_" + "".join(rng.choices(string.ascii_letters + string.digits, k=12))


def summary_text(rng: random.Random, name: str) -> str:
    """A call summary of about 150 characters, cut at a word."""
    text = f"{name} {rng.choice(TOPICS)}. {rng.choice(OUTCOMES)}"
    if len(text) > 155:
        text = text[:155].rsplit(" ", 1)[0] + "."
    return text


def make_summary(rng: random.Random, name: str) -> CallSummary:
    """What an LLM would return: a summary, the name, 3 preferences, 2 open follow-ups.

    The preference names are the same three on every call, so that a profile that merged
    five calls holds three preferences.
    """
    return CallSummary(
        summary=summary_text(rng, name),
        caller_name=name,
        preferences={key: rng.choice(values) for key, values in PREFERENCES[:3]},
        follow_ups=rng.sample(FOLLOW_UPS, 2),
    )


def make_turns(name: str) -> list[Turn]:
    turns: list[Turn] = []
    for user, agent in zip(USER_LINES, AGENT_LINES, strict=True):
        turns.append(Turn(role="user", text=user.format(name=name)))
        turns.append(Turn(role="assistant", text=agent.format(name=name)))
    return turns


def make_record(
    session_id: str, user_id: str | None, name: str, ended_at: dt.datetime
) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        user_id=user_id,
        started_at=ended_at - dt.timedelta(minutes=4),
        ended_at=ended_at,
        turns=make_turns(name),
    )


@dataclass
class Caller:
    """One synthetic caller with five past calls, as the store would hold it."""

    phone_hash: str
    user_id: str
    name: str
    session_ids: list[str]
    summaries: list[CallSummary]
    ended: list[dt.datetime]

    def profile(self, max_summaries: int) -> CallerProfile:
        """The profile the store's save path builds from these calls (``merged`` in turn)."""
        profile = CallerProfile(user_id=self.user_id)
        for sid, summary, ended in zip(self.session_ids, self.summaries, self.ended, strict=True):
            profile = profile.merged(
                summary, session_id=sid, ended_at=ended, max_summaries=max_summaries
            )
        return profile


class SummaryPool:
    """Pre-built summaries per first name: building 500,000 of them would dominate the run."""

    def __init__(self, rng: random.Random, per_name: int = 200) -> None:
        self._rng = rng
        self._by_name = {
            name: [make_summary(rng, name) for _ in range(per_name)] for name in FIRST_NAMES
        }

    def pick(self, name: str, k: int) -> list[CallSummary]:
        return self._rng.sample(self._by_name[name], k)


def make_caller(rng: random.Random, phone_hash: str, now: dt.datetime, pool: SummaryPool) -> Caller:
    name = rng.choice(FIRST_NAMES)
    days = sorted(rng.sample(range(1, 85), 5), reverse=True)
    return Caller(
        phone_hash=phone_hash,
        user_id=new_user_id(phone_hash),
        name=name,
        session_ids=[job_id(rng) for _ in range(5)],
        summaries=pool.pick(name, 5),
        ended=[now - dt.timedelta(days=d, minutes=rng.randrange(600)) for d in days],
    )


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


# --------------------------------------------------------------------------- setup


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
    latency: list[str] = field(default_factory=list)
    ratios: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    concurrency: list[str] = field(default_factory=list)
    concurrency_notes: list[str] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    memory_keys: list[str] = field(default_factory=list)
    memory_notes: list[str] = field(default_factory=list)
    first_reply: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def seed_returning(env: Env, count: int, *, tag: str) -> list[tuple[str, CallerLookup]]:
    """``count`` callers with one saved call each, through the store's real path."""
    store, rng = env.store, env.rng
    out: list[tuple[str, CallerLookup]] = []

    async def one(i: int) -> tuple[str, CallerLookup]:
        phone_hash = store.hasher.hash(env.phone_number())
        first = await store.lookup(phone_hash)
        name = rng.choice(FIRST_NAMES)
        record = make_record(f"AJ_{tag}{i:07d}", first.user_id, name, now_utc())
        await store.save_call(record, make_summary(rng, name), phone_hash=phone_hash, base=first)
        return phone_hash, await store.lookup(phone_hash)

    for start in range(0, count, 25):
        out += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 25))))
    return out


# --------------------------------------------------------------------------- 1. lookup


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
            pipe.set(phone_key, user_id, nx=True, get=True, ex=ttl)
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


def count_row(name: str, c: OpCount) -> str:
    return (
        f"| {name} | {c.sends:g} | {c.server_reads:g} | {c.client_total:g} "
        f"({OpCount.detail(c.client_commands, c.ops)}) | {c.server_total:g} "
        f"({OpCount.detail(c.server_commands, c.ops)}) |"
    )


# --------------------------------------------------------------------------- 2. save


async def bench_save(env: Env, plan: Plan, report: Report) -> None:
    log("2. end-of-call save")
    store, rng = env.store, env.rng
    callers = await seed_returning(env, 100, tag="sv")
    names = {h: rng.choice(FIRST_NAMES) for h, _ in callers}
    dist = Dist()
    counter = 0

    async def prepared(i: int) -> tuple[SessionRecord, CallSummary, str, CallerLookup]:
        nonlocal counter
        counter += 1
        phone_hash, _ = callers[i % len(callers)]
        base = await store.lookup(phone_hash)
        name = names[phone_hash]
        record = make_record(f"AJ_save{counter:08d}", base.user_id, name, now_utc())
        return record, make_summary(rng, name), phone_hash, base

    with quiet_gc():
        for i in range(plan.warmup + plan.saves):
            record, summary, phone_hash, base = await prepared(i)
            start = time.perf_counter_ns()
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
            if i >= plan.warmup:
                dist.samples.append(time.perf_counter_ns() - start)
    size = len(record.model_dump_json())
    report.latency.append(latency_row(f"save_call, 10 turns (session JSON {size} B)", dist))

    k = len(callers)
    batch = [await prepared(i) for i in range(k)]
    async with env.meter.measure(k) as result:
        for record, summary, phone_hash, base in batch:
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
    report.counts.append(count_row("save_call (no LLM)", result[0]))


# --------------------------------------------------------------------------- 3. concurrency


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


# --------------------------------------------------------------------------- 4. memory


async def used_memory(admin: aioredis.Redis) -> tuple[int, int]:
    """``used_memory`` and the client buffers in it, once the server has settled."""
    last = -1
    info: dict[str, Any] = {}
    for _ in range(20):  # wait for incremental rehashing to finish
        info = await admin.info("memory")
        value = int(info["used_memory"])
        if abs(value - last) <= max(4096, value // 2000):
            break
        last = value
        await asyncio.sleep(0.25)
    return int(info["used_memory"]), int(info.get("mem_clients_normal", 0))


async def bench_memory(env: Env, plan: Plan, report: Report) -> None:
    log(f"4. memory at {plan.callers:,} callers")
    config, admin, store, rng = env.config, env.admin, env.store, env.rng
    keys = store.keys
    profile_ttl, session_ttl = config.profile_ttl_seconds, config.session_ttl_seconds
    await admin.flushall()
    now = now_utc()
    base_mem, base_clients = await used_memory(admin)

    n = plan.callers
    batch = 1_000
    summaries = SummaryPool(rng)
    callers: list[Caller] = []
    profile_bytes = 0
    stored_bytes = 0
    session_bytes = 0
    started = time.perf_counter()
    for start in range(0, n, batch):
        chunk = [
            make_caller(rng, store.hasher.hash_e164(f"+1{2000000000 + i}"), now, summaries)
            for i in range(start, min(n, start + batch))
        ]
        async with admin.pipeline(transaction=False) as pipe:
            for c in chunk:
                profile_json = c.profile(config.max_summaries).model_dump_json(exclude_none=True)
                profile_bytes += len(profile_json)
                stored_bytes += len(encode_profile(profile_json))
                pipe.set(keys.phone(c.phone_hash), c.user_id, ex=profile_ttl)
                pipe.set(keys.profile(c.user_id), encode_profile(profile_json), ex=profile_ttl)
                pipe.rpush(keys.sessions(c.user_id), *c.session_ids[-config.max_sessions :])
                pipe.expire(keys.sessions(c.user_id), profile_ttl)
            await pipe.execute()
        callers += chunk
    write_s = time.perf_counter() - started
    caller_mem, caller_clients = await used_memory(admin)

    # The 24-hour data: one finished call per caller (its full record, 10 turns).
    for start in range(0, n, batch):
        async with admin.pipeline(transaction=False) as pipe:
            for c in callers[start : start + batch]:
                record = make_record(c.session_ids[-1], c.user_id, c.name, c.ended[-1])
                record = record.model_copy(update={"summary": c.summaries[-1]})
                session_json = record.model_dump_json()
                session_bytes += len(session_json)
                pipe.set(keys.session(c.session_ids[-1]), session_json, ex=session_ttl)
            await pipe.execute()
    session_mem, session_clients = await used_memory(admin)

    per_caller = (caller_mem - base_mem) / n
    per_caller_data = ((caller_mem - caller_clients) - (base_mem - base_clients)) / n
    per_session = (session_mem - caller_mem) / n
    per_session_data = ((session_mem - session_clients) - (caller_mem - caller_clients)) / n
    report.memory += [
        f"| Callers written | {n:,} (pipelines, {write_s:.1f} s) |",
        f"| 90-day data per caller: `used_memory` delta / N | {per_caller:,.0f} B |",
        f"| … without client buffers (`mem_clients_normal`) | {per_caller_data:,.0f} B |",
        f"| Mean profile JSON length | {profile_bytes / n:,.0f} B |",
        f"| Mean profile as stored (zlib over 200 B) | {stored_bytes / n:,.0f} B |",
        f"| 24-hour data per finished call (`session:{{id}}`, 10 turns) | {per_session:,.0f} B |",
        f"| … without client buffers | {per_session_data:,.0f} B |",
        f"| Mean session JSON length | {session_bytes / n:,.0f} B |",
        f"| Total `used_memory` at the end | {session_mem / 2**20:,.1f} MiB |",
    ]
    report.targets.append(
        (
            f"≤ 700 bytes per caller at {n:,} callers (90-day data)",
            f"{per_caller_data:,.0f} B",
            per_caller_data <= 700,
        )
    )

    # MEMORY USAGE per key type, sampled.
    sample = rng.sample(callers, min(500, n))
    kinds: list[tuple[str, Callable[[Caller], str], str]] = [
        ("`phone:{hash}` (string, user id)", lambda c: keys.phone(c.phone_hash), "strlen"),
        ("`user:{id}:profile` (string, JSON)", lambda c: keys.profile(c.user_id), "strlen"),
        ("`user:{id}:sessions` (list of 5 ids)", lambda c: keys.sessions(c.user_id), "llen"),
        (
            "`session:{id}` (string, JSON, 24 h)",
            lambda c: keys.session(c.session_ids[-1]),
            "strlen",
        ),
    ]
    mean_usage: dict[str, float] = {}
    for label, key_of, length_cmd in kinds:
        async with admin.pipeline(transaction=False) as pipe:
            for c in sample:
                pipe.execute_command("MEMORY", "USAGE", key_of(c), "SAMPLES", "0")
                pipe.execute_command(length_cmd.upper(), key_of(c))
            values = await pipe.execute()
        usage = [int(v) for v in values[0::2]]
        lengths = [int(v) for v in values[1::2]]
        unit = "items" if length_cmd == "llen" else "B value"
        mean_usage[label] = sum(usage) / len(usage)
        report.memory_keys.append(
            f"| {label} | {len(sample)} | {sum(usage) / len(usage):,.0f} B "
            f"| {sum(lengths) / len(lengths):,.0f} {unit} |"
        )

    # The values above were written with pipelines; check that the store's real save path
    # writes the same profile for the same calls, byte for byte.
    await validate_real_path(env, plan, report, now, summaries, mean_usage[kinds[1][0]])


async def validate_real_path(
    env: Env,
    plan: Plan,
    report: Report,
    now: dt.datetime,
    summaries: SummaryPool,
    piped_usage: float,
) -> None:
    store, config, rng, admin = env.store, env.config, env.rng, env.admin
    same = 0
    usage: list[int] = []
    for i in range(plan.validate_callers):
        phone_hash = store.hasher.hash_e164(f"+1{3000000000 + i}")
        found = await store.lookup(phone_hash)
        assert found.user_id is not None
        c = make_caller(rng, phone_hash, now, summaries)
        c.user_id = found.user_id
        for sid, summary, ended in zip(c.session_ids, c.summaries, c.ended, strict=True):
            base = await store.lookup(phone_hash)
            record = make_record(sid, c.user_id, c.name, ended)
            await store.save_call(record, summary, phone_hash=phone_hash, base=base)
        stored = await store._get_raw(store.keys.profile(c.user_id))
        expected = c.profile(config.max_summaries).model_dump_json(exclude_none=True)
        same += stored == expected
        usage.append(await admin.memory_usage(store.keys.profile(c.user_id), samples=0) or 0)
    k = plan.validate_callers
    report.memory_notes.append(
        f"- Check of the shortcut: {k} callers saved 5 times each through the store's real path "
        f"(`lookup` + `save_call`): {same}/{k} stored profiles are byte-identical to the value "
        f"the benchmark builds from the same calls; their profile key's mean `MEMORY USAGE` is "
        f"{sum(usage) / k:,.0f} B (pipelined callers: {piped_usage:,.0f} B)."
    )


# --------------------------------------------------------------------------- 5. end to end


async def bench_call_commands(env: Env, plan: Plan, report: Report) -> None:
    log("5. commands per ordinary call")
    await calls_end_to_end(env, plan, report, env.store, env.meter, "", tag="d", timed=True)
    if getattr(env.config, "journal_turns", False):
        # For comparison: the same calls with the per-turn journal turned off.
        store = RedisMemoryStore(
            env.config.model_copy(update={"journal_turns": False}), hasher=env.store.hasher
        )
        await store.connect()
        meter = Meter(WireCounter(store.client), env.admin)
        await meter.calibrate()
        label = ", `MEMORY_JOURNAL_TURNS=false` (comparison)"
        await calls_end_to_end(env, plan, report, store, meter, label, tag="j", timed=False)
        await store.disconnect()


async def calls_end_to_end(
    env: Env,
    plan: Plan,
    report: Report,
    store: RedisMemoryStore,
    meter: Meter,
    label: str,
    *,
    tag: str,
    timed: bool,
) -> None:
    """Whole calls through ``SessionManager``: counted, and (``timed``) timed."""
    manager = SessionManager(store, llm=None)
    turns = make_turns("Ana")
    start_dist, end_dist = Dist(), Dist()
    counter = 0

    async def call(number: str, *, turn_gap: float, record: bool) -> None:
        nonlocal counter
        counter += 1
        sid = f"AJ_e2e{tag}{counter:07d}"
        t0 = time.perf_counter_ns()
        await manager.start_session(session_id=sid, phone_number=number)
        t1 = time.perf_counter_ns()
        for turn in turns:
            manager.add_turn(sid, turn.role, turn.text)
            if turn_gap:
                await asyncio.sleep(turn_gap)  # turns come seconds apart in a real call
        await asyncio.sleep(0.005)  # the caller's last words come a moment before hang-up
        t2 = time.perf_counter_ns()
        await manager.end_session(sid)
        t3 = time.perf_counter_ns()
        if record:
            start_dist.samples.append(t1 - t0)
            end_dist.samples.append(t3 - t2)

    k = plan.e2e_calls
    numbers = [env.phone_number() for _ in range(k)]
    warm = env.phone_number()
    for _ in range(2):  # a new and a returning call: the plugin's scripts get loaded
        await call(warm, turn_gap=0.005, record=False)
    for kind in ("new", "returning"):
        async with meter.measure(k) as result:
            for number in numbers:
                await call(number, turn_gap=0.005, record=False)
            await asyncio.sleep(0.1)  # let any background write of the plugin land
        report.counts.append(
            count_row(f"whole call, {kind} caller (start + 10 turns + end){label}", result[0])
        )
    if timed:
        warmup = plan.warmup // 3
        with quiet_gc():
            for i in range(warmup + plan.e2e_timed):
                await call(numbers[i % k], turn_gap=0.0, record=i >= warmup)
        report.latency.append(
            latency_row("SessionManager.start_session (returning; hash + lookup)", start_dist)
        )
        report.latency.append(
            latency_row("SessionManager.end_session (returning; fallback summary + save)", end_dist)
        )
    await manager.aclose()


# --------------------------------------------------------------------------- 6. first reply


async def bench_first_reply(env: Env, plan: Plan, report: Report) -> None:
    log("6. first reply of an AgentSession, with and without the plugin")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from livekit.agents import Agent, llm

    from livekit.plugins.caller_memory import CallerMemory
    from tests.livekit_fakes import (
        ScriptedLLM,
        job,
        join,
        leave,
        shut_down,
        sip_caller,
        text_session,
    )

    statuses: Counter[str] = Counter()
    number = "+1 (415) 555-0134"
    arms: list[tuple[str, CallerMemory | None]] = [
        ("without", None),
        ("with", CallerMemory(store=env.store, use_session_llm=False)),
    ]
    journal_off: RedisMemoryStore | None = None
    if getattr(env.config, "journal_turns", False):
        # For comparison: the same plugin with its per-turn journal turned off.
        journal_off = RedisMemoryStore(
            env.config.model_copy(update={"journal_turns": False}), hasher=env.store.hasher
        )
        await journal_off.connect()
        arms.append(("journal off", CallerMemory(store=journal_off, use_session_llm=False)))

    async def one(index: int, arm: str, memory: CallerMemory | None) -> tuple[int, int]:
        fake = ScriptedLLM("Hello Ana! Sarah here. How can I help you today?")
        caller = sip_caller(number)
        with job(f"AJ_fr{index:05d}{arm.replace(' ', '')}") as ctx:
            join(ctx.room, caller)
            session = text_session(fake)
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
            leave(ctx.room, caller)
            if memory is not None:
                await memory.on_session_end(ctx)
            await session.aclose()
            await shut_down(ctx)
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


# --------------------------------------------------------------------------- machine


def settings(config: RedisConfig) -> str:
    """The settings that shape the numbers (some come from the environment)."""
    names = [
        "lookup_timeout_ms",
        "socket_timeout",
        "max_connections",
        "journal_turns",
        "max_sessions",
        "max_summaries",
        "session_ttl_hours",
        "profile_ttl_days",
    ]
    values = [f"{n}={getattr(config, n)}" for n in names if hasattr(config, n)]
    return ", ".join(values)


def machine(
    server_info: dict[str, Any],
    load: tuple[float, float],
    others: tuple[float, float] | None,
    config: RedisConfig,
) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} cores" + (f" ({usable} usable)" if usable is not None else "")
    try:
        hiredis = f"yes (hiredis {importlib.metadata.version('hiredis')})"
    except importlib.metadata.PackageNotFoundError:
        hiredis = "yes" if HIREDIS_AVAILABLE else "no"
    if not HIREDIS_AVAILABLE:
        hiredis = "no"
    version = server_info.get("valkey_version") or server_info.get("redis_version")
    kind = "Valkey" if "valkey_version" in server_info else "Redis"
    exe = server_info.get("executable", "?")
    return [
        f"| CPU | {cpu} (`model name` in /proc/cpuinfo), {cores} |",
        f"| OS | {platform.system()} {platform.release()} ({platform.machine()}) |",
        f"| Python | {platform.python_implementation()} {platform.python_version()} |",
        f"| redis-py | {redis.__version__}, hiredis {hiredis} |",
        f"| pydantic | {importlib.metadata.version('pydantic')} |",
        f"| livekit-agents | {importlib.metadata.version('livekit-agents')} |",
        f"| Server | {kind} {version} (`{exe}`), private, loopback TCP, no persistence |",
        f"| Load average (1 min) | {load[0]:.2f} at the start, {load[1]:.2f} at the end "
        "(this run included) |",
        f"| CPU used by other processes during the run | {describe_others(others)} |",
        f"| Niceness of this process and its server | {os.nice(0)} |",
        f"| Code | {git_state()} |",
        f"| Plugin settings | {settings(config)} |",
    ]


def git_state() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10
        )
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line[3:] for line in git("status", "--porcelain", "--", "plugins").splitlines() if line
    ]
    if not changed:
        return f"git {head}, plugin as committed"
    files = "file" if len(changed) == 1 else "files"
    return f"git {head} + uncommitted changes to {len(changed)} plugin {files}"


# --------------------------------------------------------------------------- report


def describe_others(others: tuple[float, float] | None) -> str:
    if others is None:
        return "unknown (no /proc)"
    used, stolen = others
    return (
        f"{used:.2f} cores on average (/proc/stat busy time minus this process and the "
        f"server); {stolen:.2f} cores stolen by the hypervisor"
    )


def load_warning(others: tuple[float, float] | None) -> list[str]:
    if others is None or others[0] + others[1] < 0.2:
        return []
    cores = os.cpu_count() or 1
    return [
        f"> **Other processes shared the CPU during this run** ({others[0]:.2f} of {cores} "
        f"cores on average, {others[1]:.2f} stolen): tails (p99, max) and throughput are worse "
        "than on an idle machine; medians and counts are less affected.",
        "",
    ]


def render(
    report: Report,
    plan: Plan,
    machine_rows: list[str],
    others: tuple[float, float] | None,
    command: str,
    took: float,
) -> str:
    mode = "quick" if plan.quick else "full"
    lines = [
        BEGIN,
        "## Results",
        "",
        f"Generated by `{command}` on {now_utc():%Y-%m-%d %H:%M} UTC ({mode} run, "
        f"{took:.0f} s). Times in milliseconds.",
        "",
        "### Machine",
        "",
        *load_warning(others),
        "| | |",
        "|---|---|",
        *machine_rows,
        "",
        "### Targets",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
        *(f"| {t} | {m} | {yes(ok)} |" for t, m, ok in report.targets),
        "",
        "### Latency",
        "",
        "| Operation | N | p50 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|",
        *report.latency,
        "",
        "Lookup / bare `GET` (same client, same run, same pacing):",
        "",
        "| Operation | p50 ratio | p99 ratio |",
        "|---|---:|---:|",
        *report.ratios,
        "",
        "### Round trips and commands per operation",
        "",
        "| Operation | Round trips (client writes) | Server reads | Commands sent "
        "| Commands run on the server |",
        "|---|---:|---:|---|---|",
        *report.counts,
        "",
        f"### {CONCURRENT} call starts at once",
        "",
        "| Client pool | Bursts | Lookups | Errors | Lookups/s | p50 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *report.concurrency,
        "",
        *(report.concurrency_notes or ["No errors."]),
        "",
        f"### Memory at {plan.callers:,} callers",
        "",
        "| | |",
        "|---|---:|",
        *report.memory,
        "",
        "| Key | Sampled | Mean `MEMORY USAGE` | Mean size |",
        "|---|---:|---:|---:|",
        *report.memory_keys,
        "",
        *report.memory_notes,
        "",
        "### First reply of a text-mode AgentSession",
        "",
        "| | N | p50 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|",
        *report.first_reply,
        "",
        *report.notes,
        "",
        "### Method",
        "",
        *METHOD,
        END,
    ]
    return "\n".join(lines) + "\n"


METHOD = [
    "- One asyncio process, one `RedisMemoryStore` with the plugin's default client "
    "(`redis.asyncio`, `decode_responses`, its retry and pool settings) against a private "
    "server started for the run (`EmbeddedRedis`, free port, `appendonly no`). Timings "
    "use `time.perf_counter_ns`; each loop starts after warm-up iterations, with "
    "`gc.collect()` + `gc.freeze()` before it (the timed code still pays for its own "
    "garbage). Percentiles are nearest-rank.",
    "- Lookup: a returning caller is one with one saved call; a new caller is a fresh random "
    "phone hash each time (the lookup mints the identity). The bare `GET` reads the "
    "caller's phone key through the store's own client. The three operations are interleaved, "
    "in a rotating order, back-to-back or with a 5 ms `asyncio.sleep` after each.",
    "- Round trips: `send_packed_command` of every connection of the store's pool is wrapped "
    "(instance attribute, this process only) and its calls counted; each is one write "
    "followed by a wait for the reply. The written bytes are parsed as RESP for the "
    "command names. `total_reads_processed` (`INFO stats`) is the server's count of reads, a "
    "cross-check. Commands run on the server: `INFO commandstats` deltas, read from a "
    "separate admin connection, whose own calls are calibrated out; commands inside the "
    "save's Lua script are counted there.",
    "- Save: `store.save_call(record, CallSummary(...), phone_hash=..., base=lookup)` with a "
    "10-turn record and an LLM-shaped summary; the lookup that provides `base` is not timed. "
    "Callers cycle over 100 returning callers, so profiles reach the 5-summary cap.",
    f"- Concurrency: {CONCURRENT} returning callers looked up with one `asyncio.gather`, "
    "latency measured from the start of the burst (what a caller ringing at that instant "
    "waits); one warm-up burst is not counted. Errors are counted, not retried; lookups/s "
    "counts successful lookups over the bursts' wall time.",
    "- Memory: N callers written with pipelines from the store's own models (phone key, "
    "profile = `CallerProfile.merged` of 5 LLM-shaped summaries with a name, 3 preferences "
    "and 2 follow-ups, `model_dump_json(exclude_none=True)`; the session list of 5 job "
    "ids; the 90-day TTL), then one 10-turn `session:{id}` record per caller with the "
    "24-hour TTL. `used_memory` (`INFO memory`) is read after the server settles; the "
    "difference over N is the cost per caller, shown with and without the client buffers. "
    "A sample of callers saved through the real `save_call` path checks that the values "
    "are the same.",
    "- End to end: `SessionManager(store, llm=None)`: `start_session`, 10 `add_turn`, "
    "`end_session` (fallback summary, no LLM), averaged over the calls of the block.",
    "- First reply: a real `AgentSession` in text mode with a scripted LLM that answers "
    "at once, `fake_job_context` and a SIP `RemoteParticipant` (`tests/livekit_fakes.py`). "
    "Time from the start of the entrypoint (before `attach`) to the first assistant "
    "message of `session.run(user_input=...)`, with and without "
    "`CallerMemory.attach` (returning caller), in alternating pairs.",
]


def write_report(path: Path, section: str) -> None:
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + section.rstrip("\n") + tail)
            return
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Performance of caller memory\n\n"
        "Measured by `benchmarks/bench.py`; the section between the markers is rewritten by "
        "each run.\n\n" + section
    )


# --------------------------------------------------------------------------- CPU of others


@dataclass
class CpuSample:
    """CPU seconds so far: the whole machine (busy, stolen), this process, the server."""

    wall: float
    busy: float
    steal: float
    own: float
    server: float


def cpu_sample(server_pid: int | None) -> CpuSample | None:
    """Read /proc (Linux only): None elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        steal = fields[7] if len(fields) > 7 else 0
        busy = sum(fields[:8]) - idle
        server = 0.0
        if server_pid is not None:
            stat = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    times = os.times()
    return CpuSample(
        wall=time.monotonic(),
        busy=busy / tick,
        steal=steal / tick,
        own=times.user + times.system,
        server=server,
    )


def others_cpu(start: CpuSample | None, end: CpuSample | None) -> tuple[float, float] | None:
    """Cores used on average by other processes during the run, and cores stolen by the host."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    wall = end.wall - start.wall
    others = (end.busy - start.busy) - (end.own - start.own) - (end.server - start.server)
    return max(0.0, others) / wall, (end.steal - start.steal) / wall


# --------------------------------------------------------------------------- main


async def run(plan: Plan, seed: int) -> tuple[Report, list[str], tuple[float, float] | None]:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="caller-memory-bench-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False)
        await asyncio.to_thread(server.start)
        try:
            config = RedisConfig(
                url=server.url,
                key_prefix=PREFIX,
                phone_hash_secret=SECRET,
                data_dir=Path(tmp),
                embedded_redis=False,
            )
            store = RedisMemoryStore(config)
            if not await store.connect():
                raise SystemExit(f"cannot connect to the private server: {store.last_error}")
            admin = aioredis.Redis.from_url(server.url, decode_responses=True)
            wire = WireCounter(store.client)
            meter = Meter(wire, admin)
            await meter.calibrate()
            env = Env(
                server=server,
                config=config,
                store=store,
                admin=admin,
                wire=wire,
                meter=meter,
                rng=random.Random(seed),
                numbers=itertools.count(),
            )
            server_info: dict[str, Any] = await admin.info("server")
            load_start = os.getloadavg()[0]
            cpu_start = cpu_sample(server.pid)
            await bench_lookup(env, plan, report)
            await bench_save(env, plan, report)
            await bench_concurrency(env, plan, report)
            await bench_call_commands(env, plan, report)
            await bench_first_reply(env, plan, report)
            await bench_memory(env, plan, report)
            others = others_cpu(cpu_start, cpu_sample(server.pid))
            rows = machine(server_info, (load_start, os.getloadavg()[0]), others, config)
            await store.disconnect()
            await admin.aclose()
        finally:
            await asyncio.to_thread(server.stop)
    return report, rows, others


def command_line(argv: Iterable[str]) -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    return shlex.join([str(exe), *argv])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (~30 s)")
    parser.add_argument("--callers", type=int, help="callers for the memory measurement")
    parser.add_argument("--out", help="report file (default docs/PERFORMANCE.md; '-': none)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    args = parser.parse_args(argv)
    if args.callers is not None and args.callers < 1:
        parser.error("--callers must be at least 1")
    plan = Plan.make(args.quick, args.callers)
    out = args.out
    if out is None and not plan.quick:
        out = str(ROOT / "docs" / "PERFORMANCE.md")
    command = command_line(sys.argv if argv is None else ["benchmarks/bench.py", *argv])

    started = time.perf_counter()
    report, rows, others = asyncio.run(run(plan, args.seed))
    took = time.perf_counter() - started
    section = render(report, plan, rows, others, command, took)
    print(section)
    if out and out != "-":
        write_report(Path(out), section)
        log(f"report written to {out}")
    missed = [t for t, _, ok in report.targets if not ok]
    log(f"done in {took:.0f} s; targets missed: {len(missed)}/{len(report.targets)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
