"""The command line (``python -m benchmarks.bench``): parse the options, start the private
server, connect the clients, run the sections in order, then print and write the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.server import EmbeddedRedis
from livekit.plugins.caller_memory.server.binaries import ENV_SERVER_BIN

from . import __doc__ as overview
from .env import PREFIX, ROOT, SECRET, Env, Plan, Report, log
from .machine import cpu_sample, machine, others_cpu
from .report import render, write_report
from .sections.call_start import bench_call_start
from .sections.calls import bench_call_commands
from .sections.concurrency import bench_concurrency
from .sections.faults import bench_faults
from .sections.first_reply import bench_first_reply
from .sections.lookup import bench_lookup
from .sections.memory import bench_memory
from .sections.save import bench_save
from .wire import Meter, WireCounter

PROG = "python -m benchmarks.bench"


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
            # First: the memory section empties the server and writes the keyspace of
            # callers that the call start then looks up at random.
            population = await bench_memory(env, plan, report)
            await bench_call_start(env, plan, report, population)
            await bench_lookup(env, plan, report)
            await bench_save(env, plan, report)
            await bench_concurrency(env, plan, report)
            await bench_call_commands(env, plan, report)
            await bench_first_reply(env, plan, report)
            await bench_faults(env, plan, report)
            others = others_cpu(cpu_start, cpu_sample(server.pid))
            rows = machine(server_info, (load_start, os.getloadavg()[0]), others, config)
            await store.disconnect()
            await admin.aclose()
        finally:
            await asyncio.to_thread(server.stop)
    return report, rows, others


def command_line(args: Iterable[str]) -> str:
    """The command that ran the benchmark with ``args``, as the report shows it (with the
    server binary it was told to use, when it was)."""
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    command = shlex.join([str(exe), "-m", "benchmarks.bench", *args])
    if binary := os.environ.get(ENV_SERVER_BIN, "").strip():
        command = f"{ENV_SERVER_BIN}={shlex.quote(binary)} {command}"
    return command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=overview.splitlines()[0] if overview else None
    )
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
    command = command_line(sys.argv[1:] if argv is None else argv)

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
