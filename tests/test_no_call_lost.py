"""Every call that starts is saved or kept: the ends of a call that used to lose it.

Real ``AgentSession``, real ``Room`` and participants, a private Redis this module starts (and
pauses with SIGSTOP, as a Redis that stops answering); the LLM is scripted. The job-process
cases run in LiveKit's own ``ProcJobExecutor`` (forkserver), killed at the worker's
``shutdown_process_timeout`` as LiveKit kills it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from livekit.agents import Agent
from livekit.agents.llm import ChatContext, ChatMessage

from livekit.plugins.caller_memory import (
    CallerMemory,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.agent_context import MEMORY_MESSAGE_ID
from livekit.plugins.caller_memory.models import Turn
from livekit.plugins.caller_memory.testing import job_process

from .conftest import TEST_SECRET
from .support import job_agent
from .support.cli import operator_cli
from .support.facts import answer, facts, op
from .support.livekit import (
    ScriptedLLM,
    is_summary_request,
    job,
    join,
    leave,
    shut_down,
    sip_caller,
    text_session,
)
from .support.servers import TestServer
from .support.waiting import eventually

INSTRUCTIONS = "You are Sarah, the receptionist of a dental practice."
NUMBER = "+14155550401"


def _config(server: TestServer, tmp_path: Path, **extra: object) -> RedisConfig:
    settings: dict[str, object] = {
        "url": server.url,
        "key_prefix": "lost",
        "phone_hash_secret": TEST_SECRET,
        "data_dir": tmp_path / "memory",
        "lookup_timeout_ms": 10_000,
    }
    return RedisConfig(**{**settings, **extra})


def _memory_given(chat_ctx: ChatContext) -> str:
    item = chat_ctx.get_by_id(MEMORY_MESSAGE_ID)
    return item.text_content or "" if isinstance(item, ChatMessage) else ""


async def test_a_second_session_in_one_job_is_saved_under_its_own_id(
    server: TestServer, tmp_path: Path
) -> None:
    # The app restarts its AgentSession mid-call (an error, a new pipeline): the second
    # session's turns are a call of their own, not a replay of the first (saves are idempotent
    # by session id).
    config = _config(server, tmp_path)
    memory = CallerMemory(config=config)
    caller = sip_caller(NUMBER)
    with job("AJ_twice") as ctx:
        join(ctx.room, caller)
        first = text_session(ScriptedLLM("Sure."))
        agent = Agent(instructions=INSTRUCTIONS)
        call1 = await memory.attach(ctx, first, agent)
        await first.start(agent)
        await first.run(user_input="I need a cleaning.")
        await first.aclose()
        await call1.wait_saved()

        second = text_session(ScriptedLLM("Noted."))
        agent2 = Agent(instructions=INSTRUCTIONS)
        call2 = await memory.attach(ctx, second, agent2)
        await second.start(agent2)
        await second.run(user_input="And my sister Mia needs one too.")
        leave(ctx.room, caller)
        await memory.on_session_end(ctx)
        await second.aclose()
        await shut_down(ctx)

    assert call1.session_id == "AJ_twice" and call2.session_id == "AJ_twice-2"
    assert call2.is_returning  # the first session's save is the second's memory
    store = RedisMemoryStore(config)
    first_record = await store.get_session("AJ_twice")
    second_record = await store.get_session("AJ_twice-2")
    assert first_record is not None and second_record is not None
    assert [t.text for t in first_record.turns if t.role == "user"] == ["I need a cleaning."]
    assert [t.text for t in second_record.turns if t.role == "user"] == [
        "And my sister Mia needs one too."
    ]
    assert call1.context.user_id is not None
    profile = await store.get_profile(call1.context.user_id)
    assert profile is not None and profile.call_count == 2
    await store.disconnect()
    await memory.aclose()


async def test_a_hang_up_while_the_lookup_waits_on_a_silent_redis_keeps_the_call(
    server: TestServer, tmp_path: Path
) -> None:
    # Redis stops answering; the caller joins, the lookup waits on it (within its budget), and
    # the caller hangs up before it returns. LiveKit ends the job and cancels the entrypoint
    # still in attach. The call was started: it is kept, and saved once Redis is back.
    config = _config(server, tmp_path, lookup_timeout_ms=1_500, save_timeout_s=1)
    memory = CallerMemory(config=config)
    await _connected(memory)  # while Redis answered
    caller = sip_caller(NUMBER)
    server.pause()
    with job("AJ_lookup_hangup") as ctx:
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Hello!"))
        attaching = asyncio.create_task(
            memory.attach(ctx, session, Agent(instructions=INSTRUCTIONS))
        )
        await eventually(lambda: "AJ_lookup_hangup" in _job_calls())
        leave(ctx.room, caller)  # hung up while the lookup waits
        attaching.cancel()  # LiveKit cancels an entrypoint that outlives the job
        await asyncio.gather(attaching, return_exceptions=True)
        await memory.on_session_end(ctx)
        await shut_down(ctx)

    manager = SessionManager(RedisMemoryStore(config))
    assert len(manager.outbox) == 1  # kept on this machine while Redis was silent
    server.resume()
    assert await manager.flush_outbox() == (1, 0)
    store = manager.store
    assert await store.get_session("AJ_lookup_hangup") is not None
    found = await store.lookup(store.hasher.hash(NUMBER), create=False)
    assert found.profile is not None and found.profile.call_count == 1
    await store.disconnect()
    await memory.aclose()


async def _connected(memory: CallerMemory) -> None:
    """The memory's store has connected (it connects in the background): a connect still in
    flight when Redis is paused would fail and drop the client under the lookup."""
    store = (await memory.manager()).store
    assert isinstance(store, RedisMemoryStore)
    connecting = store._connecting
    if connecting is not None:
        await connecting
    assert store.last_error is None


def _job_calls() -> set[str]:
    from livekit.plugins.caller_memory import agent

    return set(agent._calls)


async def test_a_lookup_over_its_budget_gives_the_agent_the_memory_before_its_next_reply(
    server: TestServer, tmp_path: Path
) -> None:
    config = _config(server, tmp_path)
    memory = CallerMemory(config=config)
    ana = answer(
        "Ana booked a cleaning.",
        op("add", "name", "Ana", "this is Ana"),
        op("add", "appointment time", "mornings", "mornings suit me"),
    )
    with job("AJ_first") as ctx:
        caller = sip_caller(NUMBER)
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Sure.", summary=ana))
        agent = Agent(instructions=INSTRUCTIONS)
        await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.run(user_input="Hi, this is Ana, mornings suit me.")
        leave(ctx.room, caller)
        await memory.on_session_end(ctx)
        await session.aclose()
        await shut_down(ctx)

    # The next call's lookup gets 50 ms, and Redis is silent for longer than that.
    late = CallerMemory(config=config.replaced(lookup_timeout_ms=50))
    await _connected(late)
    fake = ScriptedLLM("Of course.")
    with job("AJ_late") as ctx:
        caller = sip_caller(NUMBER)
        join(ctx.room, caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        server.pause()
        try:
            call = await late.attach(ctx, session, agent)
            assert call.context.status == "timeout" and not call.is_returning
        finally:
            server.resume()
        await session.start(agent)
        await call.wait_for_caller()  # the lookup, finished in the background
        await session.run(user_input="Can I come in tomorrow?")
        leave(ctx.room, caller)
        await late.on_session_end(ctx)
        await session.aclose()
        await shut_down(ctx)

    assert call.is_returning and call.context.caller_name == "Ana"
    # The reply to the caller's first line was asked with the memory in the agent's context.
    replies = [r for r in fake.requests if not is_summary_request(r)]
    assert "Ana" in _memory_given(replies[-1])
    store = RedisMemoryStore(config)
    found = await store.lookup(store.hasher.hash(NUMBER), create=False)
    assert found.profile is not None and found.profile.call_count == 2
    assert facts(found.profile)["name"] == "Ana"
    await store.disconnect()
    await memory.aclose()
    await late.aclose()


# -- in LiveKit's job process ----------------------------------------------------------------

SUMMARY = answer(
    "Ivy asked to move her cleaning to Friday.",
    op("add", "name", "Ivy", "this is Ivy"),
    op("add", "cleaning", "Friday", "Friday, please"),
)


def _job_settings(
    server: TestServer, tmp_path: Path, config: dict[str, object] | None = None, **extra: object
) -> RedisConfig:
    settings = {
        "url": server.url,
        "phone_hash_secret": TEST_SECRET,
        "key_prefix": "jobs",
        "data_dir": str(tmp_path / "memory"),
        "lookup_timeout_ms": 10_000,
        "save_timeout_s": 1,
        **(config or {}),
    }
    Path(os.environ[job_agent.SETTINGS_VARIABLE]).write_text(
        json.dumps({"config": settings, **extra})
    )
    return RedisConfig(**settings)


async def _journaled(store: RedisMemoryStore, session_id: str, text: str) -> bool:
    return text.encode() in (await store.read(store.keys.session(session_id)) or b"")


async def test_a_job_killed_at_a_short_shutdown_process_timeout_keeps_its_call(
    server: TestServer, tmp_path: Path
) -> None:
    # AgentServer(shutdown_process_timeout=4), no on_session_end wired, a 6 s summary, and
    # Redis silent as the worker stops the job: LiveKit kills the process at 4 s, before the
    # plugin's own wait (7 s by default, not told of the 4) would end. The call is in the
    # outbox before that wait begins.
    config = _job_settings(server, tmp_path, summary=SUMMARY, summary_delay=6)
    store = RedisMemoryStore(config)
    script = json.dumps({"caller": NUMBER, "says": ["Hi, this is Ivy.", "Friday, please."]})
    async with job_process(
        job_agent.bare_server, job_id="AJ_short", metadata=script, close_timeout=4
    ) as exe:
        await eventually(lambda: _journaled(store, "AJ_short", "Friday, please."), timeout=60)
        server.pause()
        try:
            await exe.aclose()
        finally:
            server.resume()
    manager = SessionManager(store)
    assert len(manager.outbox) == 1
    assert await manager.flush_outbox() == (1, 0)
    record = await store.get_session("AJ_short")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"] == [
        "Hi, this is Ivy.",
        "Friday, please.",
    ]
    await store.disconnect()


async def test_a_journal_write_held_back_by_the_network_does_not_spoil_the_saved_call(
    server: TestServer, tmp_path: Path
) -> None:
    # A turn's journal write whose reply was lost is sent again, or arrives late, after the
    # call was saved: the saved record stays readable (it used to be appended to, and read as
    # unreadable: the call then looked lost).
    config = _config(server, tmp_path)
    manager = SessionManager(RedisMemoryStore(config))
    await manager.start_session(session_id="held", phone_number=NUMBER)
    manager.add_turn("held", "user", "Please call me back after five.")
    store = manager.store

    async def journaled() -> bool:
        return b"after five" in (await store.read(store.keys.session("held")) or b"")

    await eventually(journaled)
    assert await manager.end_session("held") is not None
    late = [Turn(role="user", text="Please call me back after five.")]
    assert await store.append_journal("held", late) == "gone"
    record = await store.get_session("held")
    assert record is not None
    assert [t.text for t in record.turns] == ["Please call me back after five."]
    await store.disconnect()


async def test_a_call_whose_summary_outlasts_the_orphan_age_is_not_taken_by_another_worker(
    server: TestServer, tmp_path: Path
) -> None:
    # The summary takes longer than MEMORY_ORPHAN_AFTER_S: the worker keeps beating for the
    # call while it ends, so an operator's flush on another machine (its own process) finds
    # no orphan, and the call is saved once, whole, with the model's summary.
    config = _config(server, tmp_path, orphan_after_s=1.0, outbox_flush_s=0.2, summary_timeout_s=20)
    slow = ScriptedLLM(
        summary=answer("Omar wants a call back.", op("add", "name", "Omar", "it's Omar")),
        summary_delay=8,
    )
    manager = await SessionManager.open(slow, config=config)
    await manager.start_session(session_id="slow-end", phone_number=NUMBER)
    manager.add_turn("slow-end", "user", "Hi, it's Omar, please call me back.")
    store = manager.store

    async def journaled() -> bool:
        return b"call me back" in (await store.read(store.keys.session("slow-end")) or b"")

    await eventually(journaled)
    ending = asyncio.create_task(manager.end_session("slow-end"))
    await eventually(lambda: len(slow.summary_requests) == 1)
    await asyncio.sleep(2 * config.orphan_after_s)  # idle long enough, were it not beating
    flushed = await asyncio.to_thread(operator_cli, config, "flush")
    assert "recovered from the journals of dead workers: 0" in flushed.stdout, flushed.stdout
    profile = await ending
    assert profile is not None and profile.name == "Omar"
    record = await store.get_session("slow-end")
    assert record is not None and record.summary is not None
    assert record.summary.source == "llm"
    await manager.aclose()


async def test_a_call_redis_never_heard_is_in_the_outbox_before_a_kill_during_its_summary(
    server: TestServer, tmp_path: Path
) -> None:
    # Redis is silent for the whole call, so its journal holds none of the turns. The job
    # ends and its 15 s summary runs (on_session_end wired) when the process is killed
    # outright (the machine's OOM killer, a lost container): the call was copied to the
    # outbox as its end began, before the summary.
    config = _job_settings(
        server,
        tmp_path,
        summary=SUMMARY,
        summary_delay=15,
        config={"lookup_timeout_ms": 300, "summary_timeout_s": 30},
    )
    done = tmp_path / "said-everything"
    script = json.dumps(
        {"caller": NUMBER, "says": ["Hi, this is Ivy.", "Friday, please."], "done_file": str(done)}
    )
    outbox = SessionManager(RedisMemoryStore(config)).outbox
    server.pause()
    try:
        async with job_process(job_agent.server, job_id="AJ_unheard", metadata=script) as exe:
            await eventually(done.exists, timeout=60)
            closing = asyncio.create_task(exe.aclose())  # the job ends; the summary begins
            await eventually(lambda: len(outbox) == 1, timeout=10)
            await exe.kill()
            await asyncio.gather(closing, return_exceptions=True)
    finally:
        server.resume()
    store = RedisMemoryStore(config)
    manager = SessionManager(store)
    assert await manager.flush_outbox() == (1, 0)
    record = await store.get_session("AJ_unheard")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"] == [
        "Hi, this is Ivy.",
        "Friday, please.",
    ]
    await store.disconnect()


async def test_a_copy_kept_at_shutdown_goes_once_the_save_lands(tmp_path: Path) -> None:
    # The job shuts down while the call's end still runs (a slow summary): a copy goes to
    # the outbox. The save then lands after all: the copy goes, and no worker counts it as a
    # call still waiting (it would only be stored once, as a replay).
    with TestServer(appendonly=False) as server:
        manager = SessionManager(
            RedisMemoryStore(_config(server, tmp_path)),
            llm=ScriptedLLM(summary=answer("Asked about a filling."), summary_delay=1.0),
            owns_store=True,
        )
        await manager.start_session(session_id="AJ_slow", phone_number=NUMBER)
        manager.add_turn("AJ_slow", "user", "My filling feels rough.")
        ending = asyncio.ensure_future(manager.end_session("AJ_slow"))
        await eventually(lambda: manager.keep_unfinished("AJ_slow"))
        assert len(manager.outbox) == 1  # kept, as the process may be killed now
        profile = await ending
        waiting = len(manager.outbox)
        await manager.aclose()
    assert profile is not None and profile.call_count == 1
    assert waiting == 0


async def test_the_next_call_to_end_writes_what_an_outage_left_in_the_outbox(
    server: TestServer, tmp_path: Path
) -> None:
    # A worker between calls runs no maintenance, and a short call ends before its first
    # pass: the end of the job writes the outbox, so the caller's next call remembers both.
    config = _config(server, tmp_path, lookup_timeout_ms=1_000, save_timeout_s=1)
    memory = CallerMemory(config=config)
    await _connected(memory)

    async def call(job_id: str, said: str, reply: str) -> None:
        caller = sip_caller(NUMBER)
        with job(job_id) as ctx:
            join(ctx.room, caller)
            session = text_session(ScriptedLLM(reply))
            agent = Agent(instructions=INSTRUCTIONS)
            await memory.attach(ctx, session, agent)
            await session.start(agent)
            await session.run(user_input=said)
            leave(ctx.room, caller)
            await memory.on_session_end(ctx)
            await session.aclose()
            await shut_down(ctx)

    server.pause()  # Redis stops answering: the first call is kept on this machine
    await call("AJ_outage", "This is Nora, I need a crown fitted.", "Noted.")
    outbox = SessionManager(RedisMemoryStore(config)).outbox
    assert len(outbox) == 1
    server.resume()
    await call("AJ_after", "Hello again.", "Hi!")  # a short call: over in well under 5 s
    assert len(outbox) == 0
    store = RedisMemoryStore(config)
    user_id = store.hasher.hash(NUMBER)
    profile = await store.get_profile(user_id)
    assert profile is not None and profile.call_count == 2
    assert {c.session_id for c in profile.calls} == {"AJ_outage", "AJ_after"}
    await store.disconnect()
    await memory.aclose()


async def test_a_job_ending_beside_a_call_still_ending_leaves_that_calls_copy_to_it(
    server: TestServer, tmp_path: Path
) -> None:
    # B's call ends without a full journal: a copy goes to the machine's outbox before its
    # summary. A's job ends meanwhile and writes the outbox: B's copy is not A's to save (its
    # fallback summary would be stored, and B's model's facts found the call stored).
    config = _config(server, tmp_path, journal_turns=False, trust_caller_id=True)
    slow = ScriptedLLM(
        summary=answer("Booked a crown.", op("add", "treatment", "crown", "I need a crown fitted")),
        summary_delay=1.5,
    )
    b = SessionManager(RedisMemoryStore(config), llm=slow, owns_store=True)
    a = SessionManager(RedisMemoryStore(config), owns_store=True)
    await b.start_session(session_id="AJ_b", phone_number=NUMBER)
    b.add_turn("AJ_b", "assistant", "Hello, this is Sarah.")
    b.add_turn("AJ_b", "user", "This is Nora, I need a crown fitted.")
    ending = asyncio.create_task(b.end_session("AJ_b"))
    await eventually(lambda: len(a.outbox) == 1)  # B's early copy
    await a.flush_before_exit(5.0)
    assert len(a.outbox) == 1  # left to B
    await ending
    assert len(a.outbox) == 0  # B saved it and dropped its copy
    store = RedisMemoryStore(config)
    profile = await store.get_profile(store.hasher.hash(NUMBER))
    assert profile is not None and ("treatment", "crown") in [
        (f.label, f.value) for f in profile.facts
    ]
    await store.disconnect()
    await a.aclose()
    await b.aclose()
