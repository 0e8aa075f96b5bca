"""Jobs run as a LiveKit worker runs them: in a process of their own.

Each test starts a job of ``tests/support/job_agent.py`` (an agent wired as the README shows)
through LiveKit's own ``ProcJobExecutor``, with the forkserver context: the entrypoint and
``on_session_end`` are pickled into the job process, the module is imported there afresh, and
the job ends as it does in production: the worker asks it to stop (``aclose``), it stops
itself, or it is killed. What the job left is then read from Redis by the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentServer

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.testing import job_process

from .conftest import TEST_SECRET
from .support import job_agent
from .support.facts import answer, facts, op
from .support.servers import TestServer
from .support.waiting import eventually

NUMBER = "+14155550301"
SUMMARY = answer(
    "Ivy asked to move her cleaning to Friday.",
    op("add", "name", "Ivy", "this is Ivy"),
    op("add", "cleaning", "Friday", "Friday, please"),
)


def _settings(server: TestServer, tmp_path: Path, **extra: Any) -> RedisConfig:
    """Write the job agent's settings (read in the job process at import) and return them."""
    config = {
        "url": server.url,
        "phone_hash_secret": TEST_SECRET,
        "key_prefix": "jobs",
        "data_dir": str(tmp_path / "memory"),
        "lookup_timeout_ms": 10_000,
        **extra.pop("config", {}),
    }
    Path(os.environ[job_agent.SETTINGS_VARIABLE]).write_text(
        json.dumps({"config": config, **extra})
    )
    return RedisConfig(**config)


def _script(**fields: Any) -> str:
    return json.dumps({"caller": NUMBER, "says": ["Hi, this is Ivy.", "Friday, please."], **fields})


async def _journaled(store: RedisMemoryStore, session_id: str, text: str) -> bool:
    return text.encode() in (await store.read(store.keys.session(session_id)) or b"")


@pytest.mark.parametrize(
    "agent_server", [job_agent.server, job_agent.bound_server], ids=["module", "bound"]
)
async def test_a_summary_slower_than_10_s_is_saved_when_the_worker_stops_the_job(
    server: TestServer, tmp_path: Path, agent_server: AgentServer
) -> None:
    # The save runs in on_session_end, whose window is LiveKit's session_end_timeout (300 s),
    # not the 10 s a shutdown callback gets: an 11 s summary fits, with MEMORY_SUMMARY_TIMEOUT_S
    # raised to 20. Both wirings: caller_memory.on_session_end and memory.on_session_end.
    config = _settings(
        server, tmp_path, config={"summary_timeout_s": 20}, summary=SUMMARY, summary_delay=11
    )
    store = RedisMemoryStore(config)
    async with job_process(agent_server, job_id="AJ_slow", metadata=_script()) as exe:
        await eventually(lambda: _journaled(store, "AJ_slow", "Friday, please."), timeout=60)
        await exe.aclose()  # the worker asks the job to stop (its 10 s kill timer applies)
        assert exe.exitcode == 0 and not exe.killed
    found = await store.lookup(store.hasher.hash(NUMBER), create=False)
    assert found.profile is not None and found.profile.name == "Ivy"
    assert facts(found.profile) == {"name": "Ivy", "cleaning": "Friday"}
    assert found.profile.calls[-1].source == "llm"
    assert found.profile.calls[-1].summary == SUMMARY["summary"]
    await store.disconnect()


async def test_a_job_whose_llm_holds_a_lock_starts_and_saves(
    server: TestServer, tmp_path: Path
) -> None:
    # CallerMemory(llm=<an OpenAI-like client with locks>) at module level, and LiveKit
    # pickling memory.on_session_end into the job process: the process starts.
    config = _settings(server, tmp_path, summary=SUMMARY)
    store = RedisMemoryStore(config)
    async with job_process(
        job_agent.bound_server, job_id="AJ_lock", metadata=_script(hang_up=True)
    ) as exe:
        await exe.join()  # the job stops itself
        assert exe.exitcode == 0
    assert (await store.get_session("AJ_lock")) is not None
    await store.disconnect()


async def test_redis_paused_at_shutdown_leaves_the_call_in_the_outbox(
    server: TestServer, tmp_path: Path
) -> None:
    config = _settings(server, tmp_path, config={"save_timeout_s": 1}, summary=SUMMARY)
    store = RedisMemoryStore(config)
    async with job_process(job_agent.server, job_id="AJ_paused", metadata=_script()) as exe:
        await eventually(lambda: _journaled(store, "AJ_paused", "Friday, please."), timeout=60)
        server.pause()  # Redis stops answering: SIGSTOP
        try:
            await exe.aclose()
            assert exe.exitcode == 0 and not exe.killed
        finally:
            server.resume()
    manager = SessionManager(store)
    assert len(manager.outbox) == 1
    assert await manager.flush_outbox() == (1, 0)
    found = await store.lookup(store.hasher.hash(NUMBER), create=False)
    assert found.profile is not None and found.profile.name == "Ivy"
    await store.disconnect()


async def test_a_killed_job_process_is_recovered_from_its_journal(
    server: TestServer, tmp_path: Path
) -> None:
    config = _settings(server, tmp_path, summary=SUMMARY)
    store = RedisMemoryStore(config)
    async with job_process(job_agent.server, job_id="AJ_killed", metadata=_script()) as exe:
        await eventually(lambda: _journaled(store, "AJ_killed", "Friday, please."), timeout=60)
        await exe.kill()  # no on_session_end, no shutdown callback: the process is gone
        assert exe.killed
    assert await store.get_session("AJ_killed") is None  # not saved, but journaled
    assert await SessionManager(store).recover_orphans(idle_s=0) == 1
    record = await store.get_session("AJ_killed")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"] == [
        "Hi, this is Ivy.",
        "Friday, please.",
    ]
    await store.disconnect()
