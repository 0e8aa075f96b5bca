"""What the console's health page costs at 10,000 callers: its answer time without a full
count, the Redis commands one load sends, and what the full count (the button) takes.

A private Redis server is started (never the one on 6379) and filled through the store's own
save path: ``--callers`` callers (10,000) with one saved call each, made of a real 10-turn
call and a summary with facts. The console is served by uvicorn on loopback, as
``caller-memory serve`` serves it, and read over HTTP by a logged-in client:

- ``/health`` and ``/health/panel`` (the 15-second refresh), each ``--loads`` times, with the
  random sample reused (``MEMORY_CONSOLE_STATS_TTL_S``, 30 s) and drawn again at every load
  (``0``: the worst case);
- the Redis commands of one load (``INFO commandstats`` before and after, which counts the
  commands a script runs too: the sample's ``RANDOMKEY`` are run inside ``sample.lua``, one
  ``EVALSHA``), ``SCAN`` among them, and the bytes the server read and wrote for it;
- the server's own time per ``EVALSHA`` (the sample script blocks Redis for that long);
- the full count, once, as the button starts it;
- the estimates against the full count's exact numbers.

Run: ``python -m benchmarks.console_health`` (``--callers 2000`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import uvicorn

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.console import ConsoleSettings, create_app
from livekit.plugins.caller_memory.server import EmbeddedRedis

from .bench.data import FIRST_NAMES, make_record, make_summary

TARGET_MS = 200.0
SECRET = "bench-only-8e1a6c3f9d2b7045c1e8a3f6d9b2"
TOKEN = "bench-console-token-5b1e9d7c"


async def fill(store: RedisMemoryStore, callers: int, rng: random.Random) -> None:
    """``callers`` callers with one saved call each, through the store's save path."""

    async def one(i: int) -> None:
        phone_hash = store.hasher.hash(f"+1212{2_000_000 + i:07d}")
        found = await store.lookup(phone_hash)
        name = rng.choice(FIRST_NAMES)
        ended = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=rng.uniform(0, 600))
        record = make_record(f"AJ_health{i:07d}", found.user_id, name, ended)
        await store.save_call(record, make_summary(rng, name), phone_hash=phone_hash, base=found)

    for start in range(0, callers, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(callers, start + 50))))
        if start % 2000 == 0:
            print(f"  {start:,} callers saved", file=sys.stderr)


async def commands(admin: aioredis.Redis) -> dict[str, int]:
    """Commands the server has answered, by name (those run by scripts included)."""
    stats = await admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands by name between two :func:`commands`, less the INFO that took ``before``
    (counted in ``after``'s answer; ``after``'s own is not)."""
    found = {name: n - before.get(name, 0) for name, n in after.items()}
    found["info"] = found.get("info", 0) - 1
    return {name: n for name, n in sorted(found.items()) if n}


async def net_bytes(admin: aioredis.Redis) -> tuple[int, int]:
    """Bytes the server has read and written, in all."""
    stats = await admin.info("stats")
    return int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


async def load_bytes(
    admin: aioredis.Redis, http: aiohttp.ClientSession, url: str
) -> tuple[int, int]:
    """Bytes the server read and wrote for one GET ``url``, less those of the measure itself
    (two ``INFO stats`` with nothing between)."""
    start = await net_bytes(admin)
    idle = await net_bytes(admin)
    await timed_loads(http, url, 1)
    end = await net_bytes(admin)
    return (end[0] - idle[0]) - (idle[0] - start[0]), (end[1] - idle[1]) - (idle[1] - start[1])


async def timed_loads(http: aiohttp.ClientSession, url: str, loads: int) -> list[float]:
    """Milliseconds of each GET ``url`` (status checked)."""
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200, response.status
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> str:
    """``p50 / p95 / max`` in ms."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


def tile(html: str, tile_id: str) -> str:
    """A tile's text."""
    found = re.search(rf'id="{tile_id}">(.*?)</b>', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()) if found else "-"


async def serve_and_measure(
    config: RedisConfig, admin: aioredis.Redis, loads: int, stats_ttl_s: float
) -> dict[str, Any]:
    """The console served with ``stats_ttl_s``; its pages timed."""
    settings = ConsoleSettings(token=TOKEN, stats_ttl_s=stats_ttl_s)
    app = create_app(config, settings=settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    sock = socket.socket()
    # Without it, a response written in two parts waits out the client's delayed ACK (40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    out: dict[str, Any] = {}
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            page = await (await http.get(f"{base}/login")).text()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf
            await http.post(
                f"{base}/login", data={"name": "bench", "token": TOKEN, "csrf_token": csrf[1]}
            )
            await admin.config_resetstat()  # the script's own time, below, is this load's
            before = await commands(admin)
            first = await timed_loads(http, f"{base}/health", 1)
            after = await commands(admin)
            script = (await admin.info("commandstats")).get("cmdstat_evalsha", {})
            out["script_us"] = float(script.get("usec", 0))
            out["first_ms"] = first[0]
            out["by_name"] = delta(before, after)
            out["commands"] = sum(out["by_name"].values())
            out["scans"] = after.get("scan", 0) - before.get("scan", 0)
            out["net"] = await load_bytes(admin, http, f"{base}/health")

            out["health"] = await timed_loads(http, f"{base}/health", loads)
            out["panel"] = await timed_loads(http, f"{base}/health/panel", loads)
            html = await (await http.get(f"{base}/health")).text()
            out["estimates"] = {t: tile(html, t) for t in ("now-callers", "now-held", "now-memory")}
            page = await (await http.get(f"{base}/health")).text()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf
            before = await commands(admin)
            started = time.perf_counter()
            await http.post(f"{base}/health/count", data={"csrf_token": csrf[1]})
            while True:
                html = await (await http.get(f"{base}/health/panel")).text()
                if 'id="callers-count"' in html:
                    break
                await asyncio.sleep(0.2)
            out["full_s"] = time.perf_counter() - started
            after = await commands(admin)
            out["full_commands"] = sum(delta(before, after).values())
            out["exact"] = {t: tile(html, t) for t in ("callers-count",)}
            held = re.search(r"<b>(\d+)</b><span>calls held in full", html)
            out["exact"]["held"] = held[1] if held else "-"
    finally:
        server.should_exit = True
        await task
        sock.close()
    return out


async def run(callers: int, loads: int) -> None:
    with tempfile.TemporaryDirectory(prefix="caller-memory-console-bench-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp) / "redis", appendonly=False)
        await asyncio.to_thread(server.start)
        try:
            config = RedisConfig(
                url=server.url,
                key_prefix="bench",
                phone_hash_secret=SECRET,
                data_dir=Path(tmp),
                embedded_redis=False,
                lookup_timeout_ms=10_000,
            )
            store = RedisMemoryStore(config)
            assert await store.connect(), store.last_error
            admin = aioredis.Redis.from_url(server.url, decode_responses=True)
            started = time.perf_counter()
            await fill(store, callers, random.Random(7))
            print(f"filled {callers:,} callers in {time.perf_counter() - started:.0f} s")
            print(f"keys in the database: {await admin.dbsize():,}")
            for ttl in (30.0, 0.0):
                found = await serve_and_measure(config, admin, loads, ttl)
                print(f"\nMEMORY_CONSOLE_STATS_TTL_S={ttl:g}")
                first = found["first_ms"]
                print(f"  first /health (templates compiled, sample drawn): {first:.1f} ms")
                print(f"  its Redis commands: {found['commands']:,}, SCAN: {found['scans']}")
                by_name = found["by_name"]
                print(f"  by name (a script's own included): {by_name}")
                in_script = sum(by_name.get(n, 0) for n in ("randomkey", "memory|usage", "dbsize"))
                sent = found["commands"] - in_script
                print(f"  sent by the console (less those sample.lua runs): {sent}")
                net_in, net_out = found["net"]
                print(f"  bytes the server read / wrote for it: {net_in:,} / {net_out:,}")
                print(f"  the server's time in its EVALSHA: {found['script_us'] / 1000:.1f} ms")
                print(f"  /health x{loads}: {summary(found['health'])}")
                print(f"  /health/panel x{loads}: {summary(found['panel'])}")
                worst = max([*found["health"], *found["panel"]])
                verdict = "met" if worst < TARGET_MS else "missed"
                print(f"  slowest timed load {worst:.1f} ms: < {TARGET_MS:g} ms {verdict}")
                print(f"  estimates: {found['estimates']}")
                print(
                    f"  full count (the button): {found['full_s']:.1f} s, "
                    f"{found['full_commands']:,} commands; exact: {found['exact']}"
                )
            await admin.aclose()
            await store.disconnect()
        finally:
            await asyncio.to_thread(server.stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_health")
    parser.add_argument("--callers", type=int, default=10_000, help="callers to fill")
    parser.add_argument("--loads", type=int, default=30, help="loads of each page timed")
    args = parser.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"{dt.date.today()} at commit {commit or '?'}; Python {sys.version.split()[0]}")
    asyncio.run(run(args.callers, args.loads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
