"""Soak: 500 calls at once against one server, restarted in the middle of them."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

from .conftest import TEST_SECRET
from .support.servers import TestServer

CALLS = 500
CALLERS = 250


async def test_500_parallel_calls_survive_a_redis_restart(tmp_path: Path) -> None:
    server = TestServer(data_dir=tmp_path / "redis", appendonly=True)
    server.start()
    config = RedisConfig(
        url=server.url,
        phone_hash_secret=TEST_SECRET,
        data_dir=tmp_path / "memory",
        socket_timeout=1.0,
        key_prefix="soak",
    )
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    rng = random.Random(7)
    started = asyncio.Event()
    in_flight = 0

    async def call(i: int) -> str:
        nonlocal in_flight
        session_id = f"soak-{i}"
        number = f"+1415555{(i % CALLERS):04d}"
        await asyncio.sleep(rng.uniform(0, 1.0))  # calls arrive over a second
        ctx = await manager.start_session(session_id=session_id, phone_number=number)
        in_flight += 1
        if in_flight >= CALLS // 3:
            started.set()
        for turn in range(4):
            manager.add_turn(session_id, "user", f"call {i} says thing {turn}")
            manager.add_turn(session_id, "assistant", "Got it.")
            await asyncio.sleep(rng.uniform(0, 0.3))
        await manager.end_session(session_id)
        return ctx.status

    async def restart_in_the_middle() -> None:
        await started.wait()
        server.stop()
        await asyncio.sleep(0.5)
        server.start()  # same port, same append-only data

    try:
        results = await asyncio.gather(
            restart_in_the_middle(), *(call(i) for i in range(CALLS)), return_exceptions=True
        )
        crashed = [r for r in results if isinstance(r, BaseException)]
        assert crashed == []  # zero crashed calls

        # Whatever Redis could not take during the restart waited in the outbox.
        waiting = len(manager.outbox)
        saved, left = await manager.flush_outbox()
        assert (saved, left) == (waiting, 0)

        # Zero lost sessions: every call is in Redis, and in its caller's profile.
        for i in range(CALLS):
            assert await store.get_session(f"soak-{i}") is not None, i
        counts = 0
        for n in range(CALLERS):
            found = await store.lookup(store.hasher.hash(f"+1415555{n:04d}"), create=False)
            assert found.profile is not None, n
            counts += found.profile.call_count
        assert counts == CALLS
        statuses = [r for r in results[1:] if isinstance(r, str)]
        print(f"call starts: { {s: statuses.count(s) for s in set(statuses)} }, outbox: {waiting}")
    finally:
        await store.disconnect()
        server.stop()
