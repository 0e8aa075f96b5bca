"""One cold start in a fresh process (``python -m benchmarks.peers.cold SETUP``, a JSON job on
stdin): import, open the store with its callers already in it, load one returning caller; prints
one JSON line with the times and the process's resident memory. The parent runs it."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .offline import blocked, guard_network, set_environment


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set now (``VmRSS``) or at its peak (``VmHWM``), in KiB; 0 where
    /proc is missing. (``ru_maxrss`` would not do: it carries the parent's peak over exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def plugin(job: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

    t1 = time.perf_counter()
    config = RedisConfig(
        url=job["url"],
        key_prefix=job["prefix"],
        phone_hash_secret=job["secret"],
        data_dir=Path(job["root"]) / "cold-plugin",
        embedded_redis=False,
    )
    store = RedisMemoryStore(config)
    if not await store.connect():
        raise SystemExit(f"cannot connect: {store.last_error}")
    manager = SessionManager(store)
    t2 = time.perf_counter()
    context = await manager.start_session(session_id="cold-1", phone_number=job["number"])
    t3 = time.perf_counter()
    rss = rss_kib()
    if context.profile is None or len(context.profile.calls) != job["expected"]:
        raise SystemExit("the plugin's cold start did not load the caller's profile")
    manager.dont_remember("cold-1")
    await manager.end_session("cold-1")
    await store.disconnect()
    return {
        "import": t1 - t0,
        "open": t2 - t1,
        "first": t3 - t2,
        "done": time.time(),
        "rss_kib": rss,
    }


def mem0(setup: str, job: dict[str, Any]) -> dict[str, float]:
    set_environment(tempfile.mkdtemp(prefix="peers-mem0-"))
    t0 = time.perf_counter()
    from . import mem0_side

    importlib.import_module("mem0")
    t1 = time.perf_counter()
    memory = mem0_side.open_memory(setup, Path(job["root"]))
    t2 = time.perf_counter()
    found = memory.get_all(filters={"user_id": job["user_id"]}, top_k=mem0_side.TOP_K)
    t3 = time.perf_counter()
    rss = rss_kib()
    if len(found["results"]) != job["expected"]:
        raise SystemExit(f"mem0/{setup} cold start did not load the caller's memories")
    mem0_side.close_memory(memory)
    return {
        "import": t1 - t0,
        "open": t2 - t1,
        "first": t3 - t2,
        "done": time.time(),
        "rss_kib": rss,
    }


def main() -> int:
    started = time.time()
    guard_network()
    setup = sys.argv[1]
    job = json.loads(sys.stdin.read())
    if setup == "plugin":
        result = asyncio.run(plugin(job))
    else:
        result = mem0(setup, job)
    result["started"] = started
    result["maxrss_kib"] = rss_kib("VmHWM")
    result["blocked"] = len(blocked)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
