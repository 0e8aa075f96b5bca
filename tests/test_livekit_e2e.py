"""A caller rings twice: real AgentSession, real Room and participants, real Redis.

Only the LLM is scripted. The plugin is used through its public names, as an agent outside
this repository would use it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from livekit import rtc
from livekit.agents import Agent, APIConnectionError
from livekit.agents.llm import ChatContext, ChatMessage

from livekit.plugins.caller_memory import CallerMemory, RedisConfig, RedisMemoryStore

from .conftest import replace
from .support.facts import answer, facts, op
from .support.livekit import (
    ScriptedLLM,
    job,
    join,
    leave,
    participant,
    shut_down,
    sip_caller,
    text_session,
    texts,
)
from .support.waiting import eventually

INSTRUCTIONS = "You are Sarah, the friendly receptionist of a dental practice."
ANA_SAYS = "Hi, this is Ana. When do you open? Mornings suit me best, I need a cleaning."
ANA_SUMMARY = answer(
    "Ana asked about opening hours and wants a cleaning appointment.",
    op("add", "name", "Ana", "this is Ana"),
    op("add", "appointment time", "mornings", "Mornings suit me best"),
    op("add", "open request", "book a cleaning", "I need a cleaning"),
)


async def _call(
    memory: CallerMemory,
    fake: ScriptedLLM,
    *,
    job_id: str,
    caller: rtc.RemoteParticipant | None,
    says: list[str],
    greet: bool = True,
) -> tuple[Any, str]:
    """One whole call: join, greeting, the caller's lines, hang-up, job shutdown.

    Returns the call's memory handle and what the agent said to greet the caller.
    """
    with job(job_id) as ctx:
        if caller is not None:
            join(ctx.room, caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        greeting = ""
        if greet:
            handle = session.generate_reply(instructions=call.greeting_instructions)
            await handle
            greeting = " ".join(
                m.text_content or "" for m in handle.chat_items if isinstance(m, ChatMessage)
            )
        for line in says:
            await session.run(user_input=line)
        if caller is not None:
            leave(ctx.room, caller)
        await memory.on_session_end(ctx)
        await session.aclose()
        await shut_down(ctx)
        return call, greeting


async def test_a_caller_rings_twice_and_is_remembered(
    config: RedisConfig, redis_client: Any
) -> None:
    memory = CallerMemory(config=config)

    first_llm = ScriptedLLM("Happy to help! We open at 8.", summary=ANA_SUMMARY)
    call1, _ = await _call(
        memory,
        first_llm,
        job_id="AJ_call1",
        caller=sip_caller("+14155550134"),
        says=[ANA_SAYS],
    )
    assert call1.context.status == "new" and not call1.is_returning

    # The summary request saw the whole transcript, and Redis holds the profile.
    transcript = texts(first_llm.summary_requests[0])[-1][1]
    assert f"Caller: {ANA_SAYS}" in transcript
    assert "Agent: Happy to help! We open at 8." in transcript
    store = RedisMemoryStore(config)
    assert call1.context.user_id is not None
    profile = await store.get_profile(call1.context.user_id)
    assert profile is not None
    assert profile.name == "Ana" and profile.call_count == 1
    assert facts(profile) == {
        "name": "Ana",
        "appointment time": "mornings",
        "open request": "book a cleaning",
    }
    session1 = await store.get_session("AJ_call1")
    assert session1 is not None
    assert [t.role for t in session1.turns] == ["assistant", "user", "assistant"]

    # Call 2: the same number, spelled another way, and vouched for by the carrier (STIR/SHAKEN
    # A, mapped by the trunk): the agent gets all of the memory. This LLM greets the way it is
    # told to: by the name it finds in the fenced memory.
    def greets_by_name(chat_ctx: ChatContext) -> str:
        request = "\n".join(text for _, text in texts(chat_ctx))
        if "by the name in <caller_memory>" in request:
            block = request.split("<caller_memory>\n", 1)[1].split("\n</caller_memory>", 1)[0]
            return f"Welcome back, {json.loads(block)['name']}!"
        return "Sure, let me book that."

    second_llm = ScriptedLLM(greets_by_name, summary={"summary": "Booked the cleaning."})
    call2, greeting2 = await _call(
        memory,
        second_llm,
        job_id="AJ_call2",
        caller=sip_caller(
            "+1 (415) 555-0134", attributes={"sip.verstat": "TN-Validation-Passed-A"}
        ),
        says=["Can I book that cleaning?"],
    )
    assert call2.is_returning and call2.context.caller_name == "Ana"
    assert call2.context.user_id == call1.context.user_id
    assert "Ana" in call2.context.greeting_context

    first_request = texts(second_llm.conversation_requests[0])
    system_texts = [text for role, text in first_request if role == "system"]
    # The agent's own instructions are untouched; memory comes as fenced data after them.
    assert system_texts[0] == INSTRUCTIONS
    memory_block = next(t for t in system_texts if "<caller_memory>" in t)
    assert "Ana" in memory_block and "opening hours" in memory_block
    remembered = json.loads(memory_block.split("<caller_memory>\n", 1)[1].split("\n</", 1)[0])
    assert {f["about"]: f["value"] for f in remembered["facts"]} == {
        "appointment time": "mornings",
        "open request": "book a cleaning",
    }
    # The greeting is asked for by name, and comes out with it.
    assert "by the name in <caller_memory>" in system_texts[-1]
    assert greeting2 == "Welcome back, Ana!"

    profile = await store.get_profile(call1.context.user_id)
    assert profile is not None and profile.call_count == 2
    # No fact in the model's answer: the call is kept in the caller's own words.
    assert profile.last_summary == "Caller said: Can I book that cleaning?"
    assert profile.name == "Ana"  # not said again, still remembered
    assert await store.get_session_ids(call1.context.user_id) == ["AJ_call1", "AJ_call2"]
    await store.disconnect()
    await memory.aclose()


async def test_withheld_number_is_a_normal_call_with_no_memory(
    config: RedisConfig, redis_client: Any
) -> None:
    memory = CallerMemory(config=config)
    fake = ScriptedLLM("Hello! How can I help?")
    call, _ = await _call(
        memory, fake, job_id="AJ_anon", caller=sip_caller(None), says=["Hi there"]
    )
    assert call.context.status == "no_number" and call.context.user_id is None
    # The conversation went on normally...
    assert len(fake.conversation_requests) == 2
    # ...and nothing was written.
    written = [k async for k in redis_client.scan_iter(match=f"{config.key_prefix}:*")]
    assert [k for k in written if not k.endswith(b":maintenance")] == []  # only the workers' lock
    await memory.aclose()


async def test_dev_room_participant_with_the_attribute_is_a_caller(config: RedisConfig) -> None:
    # The README's dev-room recipe allows participants' own numbers; production does not.
    memory = CallerMemory(config=replace(config, trust_participant_numbers=True))
    dev_user = participant(
        "dev-user",
        kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        attributes={"sip.phoneNumber": "+442079460958"},
    )
    fake = ScriptedLLM(
        "Hi!", summary=answer("Tested the line.", op("add", "name", "Dev", "this is Dev"))
    )
    call, _ = await _call(
        memory, fake, job_id="AJ_dev1", caller=dev_user, says=["Testing, this is Dev"]
    )
    assert call.participant is not None and call.participant.identity == "dev-user"
    assert call.context.status == "new"

    again = participant(
        "dev-user-2",
        kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        attributes={"sip.phoneNumber": "+44 20 7946 0958"},
    )
    call2, greeting2 = await _call(
        memory, ScriptedLLM("Hi!"), job_id="AJ_dev2", caller=again, says=[]
    )
    assert call2.is_returning and call2.context.caller_name == "Dev"
    await memory.aclose()


async def test_caller_hanging_up_during_the_greeting_is_still_recorded(
    config: RedisConfig,
) -> None:
    memory = CallerMemory(config=config)
    fake = ScriptedLLM("Good morning, this is Sarah speaking...", delay=5.0)
    caller = sip_caller("+14155550177")
    with job("AJ_hangup") as ctx:
        join(ctx.room, caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        greeting = session.generate_reply(instructions=call.greeting_instructions)
        await eventually(lambda: len(fake.requests) == 1)  # the greeting is being generated...
        leave(ctx.room, caller)  # ...when the caller hangs up
        await session.aclose()
        await memory.on_session_end(ctx)
        await shut_down(ctx)
        assert greeting.interrupted or greeting.done()

    store = RedisMemoryStore(config)
    assert call.context.user_id is not None
    profile = await store.get_profile(call.context.user_id)
    assert profile is not None and profile.call_count == 1
    assert profile.calls[-1].source == "fallback"
    assert await store.get_session("AJ_hangup") is not None
    await store.disconnect()
    await memory.aclose()


async def test_llm_failing_at_hang_up_stores_the_fallback_summary(config: RedisConfig) -> None:
    memory = CallerMemory(config=config)
    fake = ScriptedLLM(
        "Sure, I can note that.", summary=APIConnectionError("LLM provider unreachable")
    )
    call, _ = await _call(
        memory,
        fake,
        job_id="AJ_llmdown",
        caller=sip_caller("+14155550178"),
        says=["Please remind me to renew my prescription."],
    )
    assert len(fake.summary_requests) == 1  # asked once, no retries eating the window
    store = RedisMemoryStore(config)
    assert call.context.user_id is not None
    profile = await store.get_profile(call.context.user_id)
    assert profile is not None
    assert profile.calls[-1].source == "fallback"
    assert "renew my prescription" in profile.calls[-1].summary
    await store.disconnect()
    await memory.aclose()


async def test_two_calls_at_once_in_one_process(config: RedisConfig) -> None:
    memory = CallerMemory(config=config)
    summaries = [{"summary": "Call about billing."}, {"summary": "Call about parking."}]
    calls = await asyncio.gather(
        _call(
            memory,
            ScriptedLLM("Let me check your bill.", summary=summaries[0]),
            job_id="AJ_par1",
            caller=sip_caller("+14155550181"),
            says=["I have a billing question"],
        ),
        _call(
            memory,
            ScriptedLLM("Parking is behind the building.", summary=summaries[1]),
            job_id="AJ_par2",
            caller=sip_caller("+14155550182"),
            says=["Where do I park?"],
        ),
    )
    store = RedisMemoryStore(config)
    # No fact in either answer: each call keeps its own caller's words, never the other's.
    said = ["I have a billing question", "Where do I park?"]
    for (call, _), words in zip(calls, said, strict=True):
        assert call.context.user_id is not None
        profile = await store.get_profile(call.context.user_id)
        assert profile is not None and profile.last_summary == f"Caller said: {words}"
        record = await store.get_session(call.session_id)
        assert record is not None and record.user_id == call.context.user_id
    billing = await store.get_session("AJ_par1")
    assert billing is not None
    assert "billing" in " ".join(t.text for t in billing.turns)
    assert "park" not in " ".join(t.text for t in billing.turns)
    await store.disconnect()
    await memory.aclose()


def test_an_outside_agent_needs_only_the_plugin_package() -> None:
    # A fresh interpreter: the plugin imports without the reference app and registers itself.
    code = (
        "import sys\n"
        "from livekit.agents import Plugin\n"
        "from livekit.plugins import caller_memory\n"
        "assert 'sarah_agent' not in sys.modules\n"
        "names = [p.package for p in Plugin.registered_plugins]\n"
        "print(json.dumps({'names': names, 'all': sorted(caller_memory.__all__)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "livekit.plugins.caller_memory" in result["names"]
    for name in ("CallerMemory", "RedisConfig", "RedisMemoryStore", "init_session_manager"):
        assert name in result["all"]
