"""One clock (issue 20): the times one machine writes and another compares are Redis's.

A fleet's machines disagree about the time. Each test here runs the plugin as a deployment
does, worker and operator processes against one private Redis server, with the clock of some
of them hours, days or a year off (libfaketime, preloaded into that process only), and checks
what a user sees: a live call kept whole, a dead worker's call recovered, a caller remembered
again after an erasure, an erasure and a call ordered as Redis ran them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

from .conftest import TEST_SECRET, replace
from .support.cli import operator_cli
from .support.servers import TestServer
from .support.waiting import eventually
from .support.worker import WorkerProcess

NUMBER = "+14155550161"
ORPHAN_AFTER_S = 3
LIBFAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
)
"""Debian's libfaketime (package faketime), for this machine's architecture."""


def _clock(offset: str) -> dict[str, str]:
    """The environment that puts a process's clock ``offset`` away ("-2h", "+2d", "+365d")."""
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        # Only the wall clock is off, as on a machine whose NTP is broken: the monotonic clock
        # an event loop runs on is not a date.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@pytest.fixture(scope="module", autouse=True)
def faketime() -> None:
    """libfaketime, checked to move a child's clock (``.ci/run`` installs it with apt-get)."""
    if not LIBFAKETIME.exists():
        pytest.skip(f"libfaketime is not installed ({LIBFAKETIME}; apt-get install faketime)")
    probe = "import time; print(time.time())"
    env = {**os.environ, **_clock("+2d")}
    moved = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    if moved.returncode != 0 or float(moved.stdout) - time.time() < 86400:
        pytest.skip("libfaketime does not move this machine's clock for a child process")


@pytest.fixture
def settings(config: RedisConfig, redis_server: TestServer) -> dict[str, str]:
    """A worker's environment: the test's Redis, prefix and secret; orphans after 3 s."""
    return {
        "REDIS_URL": redis_server.url,
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": TEST_SECRET,
        "MEMORY_ORPHAN_AFTER_S": str(ORPHAN_AFTER_S),
        "MEMORY_LOOKUP_TIMEOUT_MS": "10000",
    }


@pytest.fixture
def workers(settings: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Started workers, stopped at the end whatever happens (each by its own process)."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _worker(
    workers: list[WorkerProcess], settings: dict[str, str], folder: Path, clock: str | None = None
) -> WorkerProcess:
    env = {**settings, "MEMORY_DATA_DIR": str(folder)}
    worker = WorkerProcess({**env, **(_clock(clock) if clock else {})})
    workers.append(worker)
    return worker


def _operator(
    config: RedisConfig, clock: str, *args: str, monkeypatch: pytest.MonkeyPatch
) -> subprocess.CompletedProcess[str]:
    """``caller-memory ARGS`` run by an operator whose machine's clock is ``clock`` away."""
    with monkeypatch.context() as patched:
        for name, value in _clock(clock).items():
            patched.setenv(name, value)
        return operator_cli(config, *args)


async def _journaled(store: RedisMemoryStore, session_id: str, said: str) -> bool:
    raw = await store.read(store.keys.session(session_id))
    return raw is not None and said.encode() in raw


async def _server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- a worker 2 h behind: its live call is not an orphan ----------------------------------------


async def test_a_worker_two_hours_behind_keeps_its_live_call_and_saves_it_whole(
    config: RedisConfig,
    settings: dict[str, str],
    workers: list[WorkerProcess],
    redis_client: aioredis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    behind = _worker(workers, settings, tmp_path / "behind", "-2h")
    # Another worker, on time, looks for orphans every second meanwhile.
    _worker(workers, settings, tmp_path / "on-time")
    store = RedisMemoryStore(replace(config, orphan_after_s=ORPHAN_AFTER_S))
    try:
        behind.ask("start", session="live", number=NUMBER)
        behind.ask("turn", session="live", text="first half: my dog is called Pepper")
        await eventually(lambda: _journaled(store, "live", "Pepper"))
        open_key = store.keys.open_calls()
        first = await redis_client.zscore(open_key, "live")
        assert first is not None
        # The worker beats for its call past the orphan delay (its heartbeats on the server's
        # clock), while the other worker's maintenance runs.
        await eventually(
            lambda: _beaten_past(redis_client, open_key, first + ORPHAN_AFTER_S + 1),
            what="the call's heartbeat moving past the orphan delay (a call gone from the "
            "calls in progress was taken for an orphan)",
        )
        # An operator's flush on a machine an hour ahead finds no orphan either.
        flushed = _operator(replace(config, orphan_after_s=ORPHAN_AFTER_S), "+1h", "flush",
                            monkeypatch=monkeypatch)  # fmt: skip
        assert flushed.returncode == 0, flushed.stderr
        assert "recovered from the journals of dead workers: 0, 0 left" in flushed.stdout
        assert await store.get_session("live") is None  # nobody saved half of it

        behind.ask("turn", session="live", text="second half: Pepper needs her booster")
        assert behind.ask("end", session="live")["saved"] is True
        saved = await store.get_session("live")
        assert saved is not None
        said = [turn.text for turn in saved.turns]
        assert said == [
            "first half: my dog is called Pepper",
            "second half: Pepper needs her booster",
        ]
    finally:
        await store.disconnect()


async def _beaten_past(client: aioredis.Redis, key: str, score: float) -> bool:
    return (await client.zscore(key, "live") or 0) >= score


# -- a worker 2 days ahead that dies mid-call: recovered ---------------------------------------


async def test_a_crashed_worker_two_days_ahead_is_recovered_by_a_flush_on_time(
    config: RedisConfig,
    settings: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    ahead = _worker(workers, settings, tmp_path / "ahead", "+2d")
    store = RedisMemoryStore(replace(config, orphan_after_s=ORPHAN_AFTER_S))
    try:
        ahead.ask("start", session="cut-off", number=NUMBER)
        ahead.ask("turn", session="cut-off", text="please move my cleaning to Friday")
        await eventually(lambda: _journaled(store, "cut-off", "Friday"))
        ahead.kill()
        # An operator (clock right) flushes until the orphan delay has passed on the server.
        report = ""
        for _ in range(60):
            done = operator_cli(replace(config, orphan_after_s=ORPHAN_AFTER_S), "flush")
            assert done.returncode == 0, done.stderr
            report = done.stdout
            if "dead workers: 1, 0 left" in report:
                break
        assert "recovered from the journals of dead workers: 1, 0 left" in report
        saved = await store.get_session("cut-off")
        assert saved is not None
        assert [turn.text for turn in saved.turns] == ["please move my cleaning to Friday"]
        assert await store.orphans_waiting(ORPHAN_AFTER_S) == 0
    finally:
        await store.disconnect()


# -- forget on a machine a year ahead: the caller's next call is remembered --------------------


async def test_forget_on_a_machine_a_year_ahead_refuses_only_calls_begun_before_it(
    config: RedisConfig,
    settings: dict[str, str],
    workers: list[WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = _worker(workers, settings, tmp_path / "worker")
    worker.ask("start", session="before", number=NUMBER)
    worker.ask("turn", session="before", text="I prefer morning appointments")
    assert worker.ask("end", session="before")["saved"] is True
    # A call of theirs is going on while the operator erases them.
    worker.ask("start", session="during", number=NUMBER)
    worker.ask("turn", session="during", text="my new address is on Elm Street")

    erased = _operator(config, "+365d", "forget", NUMBER, "--yes", monkeypatch=monkeypatch)
    assert erased.returncode == 0, erased.stderr

    # The call begun before the erasure is not saved: the erasure holds.
    assert worker.ask("end", session="during")["saved"] is False
    # The caller calls again: that call is remembered, and the one after recognizes them.
    after = worker.ask("start", session="after", number=NUMBER)
    assert after["returning"] is False  # erased: a new caller
    worker.ask("turn", session="after", text="my name is Dana and I need a cleaning")
    assert worker.ask("end", session="after")["saved"] is True
    assert worker.ask("start", session="next", number=NUMBER)["returning"] is True
    exported = operator_cli(config, "export", NUMBER)
    assert exported.returncode == 0, exported.stderr
    assert "Elm Street" not in exported.stdout and "morning" not in exported.stdout
    assert "Dana" in exported.stdout


async def test_an_erasure_mark_0_2_0_wrote_a_year_ahead_blocks_no_later_call(
    config: RedisConfig,
    settings: dict[str, str],
    workers: list[WorkerProcess],
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    # What 0.2.0's forget wrote on a machine a year ahead: its own clock in ms, kept as long
    # as a profile (`SET erased <ms> EX <profile TTL>`), just now.
    user_id = RedisMemoryStore(config).hasher.hash(NUMBER)
    year_ahead = await _server_ms(redis_client) + 365 * 86400 * 1000
    erased_key = RedisMemoryStore(config).keys.erased(user_id)
    await redis_client.set(erased_key, year_ahead, ex=config.profile_ttl_seconds)
    worker = _worker(workers, settings, tmp_path / "worker")
    worker.ask("start", session="after", number=NUMBER)
    worker.ask("turn", session="after", text="I would like a reminder the day before")
    assert worker.ask("end", session="after")["saved"] is True
    assert worker.ask("start", session="next", number=NUMBER)["returning"] is True


# -- an erasure and a call in the same second: Redis's order decides ---------------------------


async def _to_the_next_second(client: aioredis.Redis) -> None:
    """Wait until just past the server's next whole second: what follows fits in one second."""
    await asyncio.sleep((1000 - await _server_ms(client) % 1000 + 20) / 1000)


async def test_an_erasure_and_a_call_in_the_same_second_are_ordered_as_redis_ran_them(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    manager = SessionManager(RedisMemoryStore(config), owns_store=True)
    operator = RedisMemoryStore(config)  # another process's store: the operator's forget
    assert await operator.connect()
    phone_hash = operator.hasher.hash(NUMBER)

    async def erased_then_called(session_id: str) -> bool:
        await operator.forget(phone_hash)
        await manager.start_session(session_id=session_id, phone_number=NUMBER)
        manager.add_turn(session_id, "user", "call me on Tuesdays")
        return await manager.end_session(session_id) is not None

    async def called_then_erased(session_id: str) -> bool:
        await manager.start_session(session_id=session_id, phone_number=NUMBER)
        manager.add_turn(session_id, "user", "I am allergic to penicillin")
        await operator.forget(phone_hash)
        return await manager.end_session(session_id) is not None

    try:
        outcomes: dict[str, bool] = {}
        for order in (erased_then_called, called_then_erased):
            for attempt in range(5):  # a loaded machine may cross a second: not a try then
                await manager.start_session(session_id=f"known-{order.__name__}-{attempt}",
                                            phone_number=NUMBER)  # fmt: skip
                await manager.end_session(f"known-{order.__name__}-{attempt}")
                await _to_the_next_second(redis_client)
                begun = await _server_ms(redis_client)
                saved = await order(f"{order.__name__}-{attempt}")
                if begun // 1000 == await _server_ms(redis_client) // 1000:
                    outcomes[order.__name__] = saved
                    break
        # Each order fitted in one second of the server's clock, milliseconds apart.
        assert outcomes == {"erased_then_called": True, "called_then_erased": False}
    finally:
        await manager.aclose()
        await operator.disconnect()
