"""The plugin in a dispatched job (``is_fake_job()`` false), where people join, leave and
change: a caller who joins late, a number that arrives late, a network drop and a hang-up, a
handoff to another agent, a connector caller, and a realtime model.

Real ``AgentSession``s, a real never-connected ``rtc.Room`` and real participants, real Redis;
only the models are scripted (``ScriptedLLM``, ``ScriptedRealtimeModel``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, llm

from livekit.plugins.caller_memory import CallerMemory, CallMemory, RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.testing import offline_job

from .conftest import replace
from .support.facts import answer, facts, op
from .support.livekit import (
    ScriptedLLM,
    ToolCall,
    join,
    leave,
    participant,
    set_attributes,
    shut_down,
    sip_caller,
    text_session,
    texts,
)
from .support.realtime import ScriptedRealtimeModel
from .support.waiting import eventually

INSTRUCTIONS = "You are Sarah, the friendly receptionist of a dental practice."
MEMORY_TAG = "<caller_memory>"
STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


async def _remember(config: RedisConfig, number: str, name: str) -> None:
    """A first call of ``number``, whose caller said their name, saved."""
    memory = CallerMemory(config=config)
    summary = answer(f"{name} booked a cleaning.", op("add", "name", name, f"this is {name}"))
    caller = sip_caller(number)
    with offline_job(f"AJ_first_{name}") as ctx:
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Hello!", summary=summary))
        agent = Agent(instructions=INSTRUCTIONS)
        await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.run(user_input=f"Hi, this is {name}.")
        leave(ctx.room, caller)
        await session.aclose()
        await memory.on_session_end(ctx)
        await shut_down(ctx)
    await memory.aclose()


def _has_memory(request: llm.ChatContext, name: str) -> bool:
    return any(MEMORY_TAG in text and name in text for _, text in texts(request))


async def _end(memory: CallerMemory, ctx: Any, session: AgentSession[Any]) -> None:
    await session.aclose()
    await memory.on_session_end(ctx)
    await shut_down(ctx)
    await memory.aclose()


async def test_a_caller_who_joins_15_s_after_the_agent_still_gets_their_memory(
    config: RedisConfig,
) -> None:
    # The dev-room order: the agent is dispatched into an empty room, the caller joins later.
    await _remember(config, "+14155550201", "Ana")
    memory = CallerMemory(config=config)
    fake = ScriptedLLM("Welcome back!")
    with offline_job("AJ_late", fake=False) as ctx:
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        attaching = asyncio.ensure_future(memory.attach(ctx, session, agent))
        await asyncio.sleep(15)  # longer than any old waiting limit
        assert not attaching.done()  # still waiting for the caller, as wait_for_participant
        join(ctx.room, sip_caller("+14155550201"))
        call = await attaching
        assert call.is_returning and call.context.caller_name == "Ana"
        await session.start(agent)
        await session.generate_reply(instructions=call.greeting_instructions)
        assert _has_memory(fake.conversation_requests[-1], "Ana")
        await _end(memory, ctx, session)


async def test_a_late_caller_after_attach_returned_gets_memory_and_the_greeting_hook(
    config: RedisConfig,
) -> None:
    await _remember(config, "+14155550202", "Ben")
    memory = CallerMemory(config=config, caller_wait_s=0.1)
    fake = ScriptedLLM("Hello!")
    greeted: list[CallMemory] = []

    async def greet(call: CallMemory) -> None:
        greeted.append(call)
        await session.generate_reply(instructions=call.greeting_instructions)

    with offline_job("AJ_hook", fake=False) as ctx:
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent, on_caller=greet)
        assert call.context.status == "no_number" and call.participant is None
        await session.start(agent)
        join(ctx.room, sip_caller("+14155550202"))  # the caller arrives after all
        await eventually(lambda: len(greeted) == 1)
        await eventually(lambda: bool(fake.conversation_requests))
        assert call.is_returning and call.participant is not None
        assert _has_memory(fake.conversation_requests[-1], "Ben")  # the greeting knew Ben
        assert "forget_me" in {t.id for t in agent.tools if isinstance(t, llm.Tool)}
        await _end(memory, ctx, session)


async def test_a_number_that_arrives_after_the_caller_joined_is_followed(
    config: RedisConfig,
) -> None:
    await _remember(config, "+14155550203", "Cleo")
    # A web participant's own number: the dev-room setting.
    memory = CallerMemory(config=replace(config, trust_participant_numbers=True))
    fake = ScriptedLLM("Sure.")
    loaded = asyncio.Event()
    with offline_job("AJ_attrs", fake=False) as ctx:
        web_caller = participant("web-caller", kind=STANDARD)  # no number yet
        join(ctx.room, web_caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent, on_caller=lambda _: loaded.set())
        assert call.context.status == "no_number"
        await session.start(agent)
        await session.run(user_input="Hello, are you open today?")
        set_attributes(ctx.room, web_caller, {"sip.phoneNumber": "+1 415 555 0203"})
        await asyncio.wait_for(loaded.wait(), 20)
        assert call.is_returning and call.context.caller_name == "Cleo"
        await session.run(user_input="Thanks.")
        assert _has_memory(fake.conversation_requests[-1], "Cleo")  # the next reply knew
        leave(ctx.room, web_caller)
        await _end(memory, ctx, session)
    # The turns said before the number arrived are part of Cleo's call.
    store = RedisMemoryStore(config)
    assert call.context.user_id is not None
    profile = await store.get_profile(call.context.user_id)
    assert profile is not None and profile.call_count == 2
    record = await store.get_session("AJ_attrs")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"][0] == "Hello, are you open today?"
    await store.disconnect()


async def test_a_network_drop_keeps_the_call_and_a_hang_up_ends_it(config: RedisConfig) -> None:
    # A web participant's own number: the dev-room setting.
    memory = CallerMemory(config=replace(config, trust_participant_numbers=True))
    fake = ScriptedLLM("Go on.", summary={"summary": "Dana asked twice."})
    number = "+14155550204"
    with offline_job("AJ_drop", fake=False) as ctx:
        web_caller = participant("dana", kind=STANDARD, attributes={"sip.phoneNumber": number})
        join(ctx.room, web_caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.run(user_input="First question, before my wifi drops.")
        leave(ctx.room, web_caller, rtc.DisconnectReason.SIGNAL_CLOSE)  # a network drop
        await asyncio.sleep(0.2)  # nothing is supposed to happen: give it the chance
        assert fake.summary_requests == []
        back = participant("dana", kind=STANDARD, attributes={"sip.phoneNumber": number})
        join(ctx.room, back)
        await session.run(user_input="Second question, after I came back.")
        leave(ctx.room, back)  # hung up: CLIENT_INITIATED
        profile = await asyncio.wait_for(call.wait_saved(), 20)
        assert len(fake.summary_requests) == 1
        await _end(memory, ctx, session)
    assert profile is not None and profile.call_count == 1  # one call, not two
    store = RedisMemoryStore(config)
    record = await store.get_session("AJ_drop")
    assert record is not None
    assert [t.text for t in record.turns if t.role == "user"] == [
        "First question, before my wifi drops.",
        "Second question, after I came back.",
    ]
    await store.disconnect()


async def test_a_sip_caller_leaving_for_any_reason_has_hung_up(config: RedisConfig) -> None:
    memory = CallerMemory(config=config)
    fake = ScriptedLLM("Bye.", summary={"summary": "Eve called."})
    with offline_job("AJ_sip_gone", fake=False) as ctx:
        caller = sip_caller("+14155550205")
        join(ctx.room, caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.run(user_input="Just one thing.")
        leave(ctx.room, caller, rtc.DisconnectReason.SIP_TRUNK_FAILURE)
        assert await asyncio.wait_for(call.wait_saved(), 20) is not None
        await _end(memory, ctx, session)


class _Billing(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are the billing desk.")


class _FrontDesk(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)

    @llm.function_tool
    async def transfer_to_billing(self) -> Agent:
        """Hand the caller over to the billing desk."""
        return _Billing()


async def test_memory_and_tools_follow_a_handoff_and_verify_updates_the_current_agent(
    config: RedisConfig,
) -> None:
    await _remember(config, "+14155550206", "Finn")
    memory = CallerMemory(config=config)

    def answer(request: llm.ChatContext) -> Any:
        if "billing desk" in texts(request)[0][1] and not any(
            role == "user" and "invoice" in text for role, text in texts(request)
        ):
            return "Billing here, how can I help?"
        if any("transfer" in text for role, text in texts(request) if role == "user"):
            return ToolCall("transfer_to_billing", {})
        return "Sure."

    fake = ScriptedLLM(answer)
    with offline_job("AJ_handoff", fake=False) as ctx:
        caller = sip_caller("+14155550206")
        join(ctx.room, caller)
        session = text_session(fake)
        front = _FrontDesk()
        call = await memory.attach(ctx, session, front)
        await session.start(front)
        await session.run(user_input="Please transfer me to billing.")
        await eventually(lambda: isinstance(session.current_agent, _Billing))
        await session.run(user_input="About my invoice.")
        billing_requests = [
            r for r in fake.conversation_requests if "billing desk" in texts(r)[0][1]
        ]
        assert billing_requests, "the billing agent answered"
        assert _has_memory(billing_requests[-1], "Finn")
        billing = session.current_agent
        assert "forget_me" in {t.id for t in billing.tools if isinstance(t, llm.Tool)}
        # Verified now: the agent on the line gets everything, past calls included.
        assert call.context.disclosure == "name"
        await call.verify()
        await session.run(user_input="What did we talk about last time?")
        latest = fake.conversation_requests[-1]
        assert "billing desk" in texts(latest)[0][1]
        assert any("booked a cleaning" in text for _, text in texts(latest))
        leave(ctx.room, caller)
        await _end(memory, ctx, session)


async def test_a_connector_caller_with_a_number_is_the_caller(config: RedisConfig) -> None:
    await _remember(config, "+14155550207", "Gus")
    memory = CallerMemory(config=config)
    with offline_job("AJ_connector", fake=False) as ctx:
        whatsapp = participant(
            "wa_caller",
            kind=rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
            attributes={"sip.phoneNumber": "+14155550207"},
        )
        join(ctx.room, whatsapp)
        session = text_session(ScriptedLLM("Hi!"))
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        assert call.participant is whatsapp and call.context.caller_name == "Gus"
        await session.start(agent)
        leave(ctx.room, whatsapp)
        await _end(memory, ctx, session)


@pytest.mark.parametrize("with_llm", [True, False])
async def test_a_realtime_session_is_remembered(
    config: RedisConfig, with_llm: bool, caplog: pytest.LogCaptureFixture
) -> None:
    await _remember(config, "+14155550208", "Hana")
    summarizer = ScriptedLLM(
        summary=answer(
            "Hana moved her appointment.",
            op("add", "appointment", "Friday", "move my appointment to Friday"),
        )
    )
    memory = CallerMemory(config=config, llm=summarizer if with_llm else None)
    model = ScriptedRealtimeModel(["Welcome back!", "Done, it is moved to Friday."])
    with offline_job(f"AJ_realtime_{with_llm}", fake=False) as ctx:
        caller = sip_caller("+14155550208")
        join(ctx.room, caller)
        session: AgentSession[None] = AgentSession(
            llm=model, vad=None, turn_handling={"turn_detection": None}
        )
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.generate_reply(instructions=call.greeting_instructions)
        await session.run(user_input="Can I move my appointment to Friday?")
        # The memory reached the realtime model, as the agent's context.
        held = model.last_session
        assert held is not None and held.chat_ctx.get_by_id("caller_memory") is not None
        leave(ctx.room, caller)
        with caplog.at_level(logging.WARNING, logger="livekit.plugins.caller_memory"):
            profile = await asyncio.wait_for(call.wait_saved(), 20)
        await _end(memory, ctx, session)
    assert profile is not None and profile.call_count == 2
    last = profile.calls[-1]
    assert profile.name == "Hana"
    if with_llm:
        assert last.source == "llm" and last.summary == "Hana moved her appointment."
        assert facts(profile) == {"name": "Hana", "appointment": "Friday"}
    else:
        assert last.source == "fallback" and "Friday" in last.summary
        assert "realtime model" in caplog.text
