"""A timeout says its true cause (issue 20: "contention on one number and CPU overload are
logged as 'check the host is reachable (firewall…)'").

- The worker's own event loop busy (a blocking call on the loop while a Redis command is in
  flight to a real server): "the worker's CPU was busy: the event loop ran N ms late".
- Another call of the same caller holding the record: "another call of this caller held the
  record".
- A silent network (the fault proxy's black hole): the guide's firewall text, as before.

Each call still ends in the outbox, and reaches Redis with the next flush.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.store.records import CallWrite, Fetched, WriteOutcome
from livekit.plugins.caller_memory.timeouts import ContendedTimeout, LoopLateTimeout, deadline

from .conftest import TEST_SECRET
from .support.proxy import FaultProxy, fault_proxy
from .support.servers import TestServer

NUMBER = "+14155550177"
CPU = re.compile(r"the worker's CPU was busy: the event loop ran (\d+) ms late")
CONTENTION = "another call of this caller held the record"
FIREWALL = "Check the host is reachable from this machine (firewall, security group)"


class BusyWorker(RedisMemoryStore):
    """The real store; while one of its commands is in flight, the event loop is blocked for
    ``block_s`` by a synchronous call, as a CPU-bound piece of an agent would block it."""

    block_s = 0.0

    def _block_soon(self) -> None:
        if self.block_s:
            # Runs on the loop's next turn: the command is sent by then, its reply awaited.
            asyncio.get_running_loop().call_soon(time.sleep, self.block_s)

    async def fetch_caller(self, *args: Any, **kwargs: Any) -> Fetched:
        self._block_soon()
        return await super().fetch_caller(*args, **kwargs)

    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        self._block_soon()
        return await super().write_call(write)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestServer]:
    with TestServer(data_dir=tmp_path / "redis", appendonly=True) as started:
        yield started


def _config(url: str, tmp_path: Path, **changes: Any) -> RedisConfig:
    settings: dict[str, Any] = {
        "url": url,
        "phone_hash_secret": TEST_SECRET,
        "data_dir": tmp_path / "memory",
        "lookup_timeout_ms": 10_000,
        "key_prefix": "causes",
    }
    return RedisConfig(**{**settings, **changes})


def _said(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and needle in r.getMessage()
    ]


async def test_a_save_timed_out_by_a_busy_event_loop_names_the_cpu(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BusyWorker(_config(server.url, tmp_path, save_timeout_s=0.3))
    manager = SessionManager(store)
    await manager.start_session(session_id="busy", phone_number=NUMBER)
    manager.add_turn("busy", "user", "I'd like to move my appointment to Friday")
    store.block_s = 1.0  # the loop does nothing else for a second, the save's window is 0.3 s
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        assert await manager.end_session("busy") is None
    [said] = _said(caplog, "kept in the local outbox")
    assert said.startswith("call not saved in time (the worker's CPU was busy: the event loop ran ")
    found = CPU.search(said)
    assert found is not None and int(found.group(1)) >= 500, said
    assert "firewall" not in said and "unavailable" not in said and NUMBER[-4:] not in said
    store.block_s = 0.0
    assert len(manager.outbox) == 1
    assert await manager.flush_outbox() == (1, 0)  # Redis was there all along
    await store.disconnect()


async def test_a_lookup_timed_out_by_a_busy_event_loop_names_the_cpu(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = BusyWorker(_config(server.url, tmp_path, lookup_timeout_ms=300))
    assert await store.connect()
    manager = SessionManager(store)
    store.block_s = 1.0
    with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
        ctx = await manager.start_session(session_id="busy-start", phone_number=NUMBER)
    assert ctx.status == "timeout"
    [said] = _said(caplog, "caller lookup over its budget")
    assert said.startswith("caller lookup over its budget (the worker's CPU was busy: ")
    assert said.endswith("ms late), greeting as a new caller") and CPU.search(said)
    store.block_s = 0.0
    await manager.end_session("busy-start")
    await store.disconnect()


async def test_a_save_waiting_for_another_call_of_the_caller_names_the_contention(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two calls of one number end together on a worker whose Redis answers in 0.4 s: the
    # second waits for the first's save (the caller's record is held), then finds the profile
    # changed and merges again; its 1 s runs out on the way. Redis answered every time.
    with fault_proxy(server.port, delay_s=0.4) as proxy:
        store = RedisMemoryStore(
            _config(proxy.url, tmp_path, save_timeout_s=1.0, journal_turns=False)
        )
        manager = SessionManager(store)
        await manager.start_session(session_id="earlier", phone_number=NUMBER)
        await manager.end_session("earlier")  # the scripts are loaded, the caller known
        first = await manager.start_session(session_id="first", phone_number=NUMBER)
        await manager.start_session(session_id="second", phone_number=NUMBER)
        assert first.user_id is not None
        manager.add_turn("first", "user", "Book me for Tuesday")
        manager.add_turn("second", "user", "Also, my address changed")
        proxy.set_mode("delay")
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            saved, kept = await asyncio.gather(
                manager.end_session("first"), manager.end_session("second")
            )
        assert saved is not None and kept is None
        [said] = _said(caplog, "kept in the local outbox")
        assert said.startswith(f"call not saved in time ({CONTENTION})"), said
        assert "firewall" not in said and "CPU" not in said and NUMBER[-4:] not in said
        proxy.set_mode("pass")
        assert await manager.flush_outbox() == (1, 0)
        profile = await store.get_profile(first.user_id)
        assert profile is not None and profile.call_count == 3  # no call lost
        await store.disconnect()


async def test_two_workers_saving_one_caller_name_the_contention(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two workers (each its own store, no lock in common) save calls of one number at once,
    # Redis answering in 0.4 s: one write wins, the other finds the record changed, merges
    # again, and its 0.6 s run out during that retry.
    with fault_proxy(server.port, delay_s=0.4) as proxy:
        stores = [
            RedisMemoryStore(
                _config(proxy.url, tmp_path / name, save_timeout_s=0.6, journal_turns=False)
            )
            for name in ("worker-a", "worker-b")
        ]
        managers = [SessionManager(store) for store in stores]
        await managers[0].start_session(session_id="earlier", phone_number=NUMBER)
        await managers[0].end_session("earlier")  # the scripts are loaded, the caller known
        for i, manager in enumerate(managers):
            await manager.start_session(session_id=f"call-{i}", phone_number=NUMBER)
            manager.add_turn(f"call-{i}", "user", f"Note {i}: I moved house")
        proxy.set_mode("delay")
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            ended = await asyncio.gather(
                *(manager.end_session(f"call-{i}") for i, manager in enumerate(managers))
            )
        assert sorted(profile is None for profile in ended) == [False, True], ended
        [said] = _said(caplog, "kept in the local outbox")
        assert said.startswith(f"call not saved in time ({CONTENTION})"), said
        proxy.set_mode("pass")
        assert sum([(await m.flush_outbox())[0] for m in managers]) == 1
        user_id = (await stores[0].lookup(stores[0].hasher.hash(NUMBER))).user_id
        assert user_id is not None
        profile = await stores[0].get_profile(user_id)
        assert profile is not None and profile.call_count == 3  # no call lost
        for store in stores:
            await store.disconnect()


async def test_a_silent_network_still_names_the_firewall(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with fault_proxy(server.port) as proxy:
        store = RedisMemoryStore(
            # Windows wide enough that a loaded test machine's loop is never late by a quarter.
            _config(proxy.url, tmp_path, save_timeout_s=1.0, lookup_timeout_ms=1000)
        )
        manager = SessionManager(store)
        await manager.start_session(session_id="quiet", phone_number=NUMBER)
        manager.add_turn("quiet", "user", "Is my order ready?")
        proxy.set_mode("blackhole")
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            assert await manager.end_session("quiet") is None
            ctx = await manager.start_session(session_id="quiet-2", phone_number=NUMBER)
        assert ctx.status == "timeout"
        [said] = _said(caplog, "kept in the local outbox")
        assert said.startswith("memory store unavailable (Timeout): "), said
        assert FIREWALL in said and "CPU" not in said and CONTENTION not in said
        assert _said(caplog, "caller lookup over its budget") == [
            "caller lookup over its budget, greeting as a new caller"
        ]
        proxy.set_mode("pass")
        await manager.end_session("quiet-2")
        assert await manager.flush_outbox() == (1, 0)  # quiet-2 was saved directly
        await store.disconnect()


async def test_a_deadline_names_only_what_it_saw() -> None:
    # A loop on time at a deadline: a plain TimeoutError (the network's). Late by far more than
    # the deadline's time: the CPU's. Passed while marked as waiting for the caller's record:
    # contention.
    with pytest.raises(TimeoutError) as plain:
        async with deadline(0.05):
            await asyncio.sleep(1)
    assert type(plain.value) is TimeoutError

    with pytest.raises(LoopLateTimeout) as late:
        async with deadline(0.05):
            asyncio.get_running_loop().call_soon(time.sleep, 0.4)
            await asyncio.sleep(1)
    assert late.value.late_ms >= 300

    from livekit.plugins.caller_memory.timeouts import CONTENTION as MARK
    from livekit.plugins.caller_memory.timeouts import waiting_on

    lock = asyncio.Lock()
    await lock.acquire()
    with pytest.raises(ContendedTimeout):
        async with deadline(0.05):
            with waiting_on(MARK):
                await lock.acquire()
    # Once the wait is over, the mark is gone: a later silence is the network's again.
    with pytest.raises(TimeoutError) as after:
        async with deadline(0.05):
            with waiting_on(MARK):
                pass
            await asyncio.sleep(1)
    assert type(after.value) is TimeoutError


_ = FaultProxy  # the proxy's type, for readers of fault_proxy
