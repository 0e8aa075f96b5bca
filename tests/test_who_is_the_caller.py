"""Who the caller is, when a call holds more than the caller: a supervisor or a transfer target
the agent dialled, a web supervisor; and whose number the network vouches for.

The room shapes LiveKit SIP makes (livekit/protocol ``sip/sip.go`` for an inbound leg,
``rpc/sip.go`` for one dialled with ``CreateSIPParticipant``), with LiveKit's real classes: a
never-connected ``rtc.Room``, real ``RemoteParticipant``s, ``AgentSession``s in text mode, and a
real Redis. Only the model is scripted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from livekit import rtc
from livekit.agents import Agent, AgentSession, llm

from livekit.plugins.caller_memory import CallerMemory, RedisConfig, RedisMemoryStore
from livekit.plugins.caller_memory.participants import NOT_CALLER_ATTRIBUTE
from livekit.plugins.caller_memory.testing import (
    ScriptedLLM,
    join,
    leave,
    offline_job,
    participant,
    shut_down,
    sip_caller,
    sip_dialled,
    text_session,
)

from .conftest import dump_keys, replace
from .support.facts import answer, op
from .support.livekit import texts
from .support.waiting import eventually

INSTRUCTIONS = "You are Sarah, the receptionist of a dental practice."
MEMORY_TAG = "<caller_memory>"
SUPERVISOR = "+14155550190"
"""The supervisor's own phone, which the agent dials to bring her into a call."""
FLEET_KEYS = (":maintenance", ":versions")


async def _about_callers(client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    keys = await dump_keys(client, prefix)
    return {k: v for k, v in keys.items() if not k.endswith(FLEET_KEYS)}


async def _remember(config: RedisConfig, number: str, name: str) -> None:
    """A call of ``number`` as an inbound caller who said their name, saved."""
    memory = CallerMemory(config=config)
    summary = answer(f"{name} asked about opening hours.", op("add", "name", name, f"I'm {name}"))
    caller = sip_caller(number, f"sip_{number}")
    with offline_job(f"AJ_first_{name}", fake=False) as ctx:
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Hello!", summary=summary))
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        assert call.context.status == "new"
        await session.start(agent)
        await session.run(user_input=f"Hi, I'm {name}. When do you open?")
        leave(ctx.room, caller)
        await _end(memory, ctx, session)


async def _end(memory: CallerMemory, ctx: Any, session: AgentSession[Any]) -> None:
    await session.aclose()
    await memory.on_session_end(ctx)
    await shut_down(ctx)
    await memory.aclose()


def _memory_in(requests: list[llm.ChatContext]) -> list[str]:
    """The memory blocks the agent's LLM was given."""
    return [text for r in requests for _, text in texts(r) if MEMORY_TAG in text]


# -- a caller without a number, and a supervisor the agent dials in -----------------------------


@pytest.mark.parametrize(
    "hidden",
    [
        None,  # the dispatch rule's hide_phone_number: no sip.phoneNumber at all
        "",  # an empty From user
        "anonymous",  # a withheld caller id, as carriers send it
    ],
    ids=["hide_phone_number", "empty_from", "anonymous"],
)
async def test_a_supervisor_dialled_into_a_call_without_a_number_is_never_its_caller(
    config: RedisConfig, redis_client: aioredis.Redis, hidden: str | None
) -> None:
    # The supervisor once rang the line herself: her number has a memory of its own.
    await _remember(config, SUPERVISOR, "Sue")
    before = await _about_callers(redis_client, config.key_prefix)

    says = {
        "Ana": ["Hi, I'm Ana, my account number is 4417.", "Thanks, that helps."],
        "Ben": ["Hello, I'm Ben, I'd like to move my appointment.", "Great, bye."],
    }
    for i, (name, lines) in enumerate(says.items()):
        memory = CallerMemory(config=config)
        summary = answer(f"{name} asked for a supervisor.", op("add", "name", name, f"I'm {name}"))
        fake = ScriptedLLM("Let me bring in my supervisor.", summary=summary)
        with offline_job(f"AJ_hidden_{hidden}_{i}", fake=False) as ctx:
            # LiveKit names a caller sip_<From user>, or sip_<hash> with hide_phone_number.
            caller = sip_caller(hidden, f"sip_{hidden}" if hidden is not None else f"sip_9f{i}")
            join(ctx.room, caller)
            session = text_session(fake)
            agent = Agent(instructions=INSTRUCTIONS)
            call = await memory.attach(ctx, session, agent)
            assert call.participant is caller and call.context.status == "no_number"
            await session.start(agent)
            await session.run(user_input=lines[0])
            # The agent dials the supervisor in (CreateSIPParticipant): sip.phoneNumber is the
            # number it dialled.
            supervisor = sip_dialled(SUPERVISOR)
            join(ctx.room, supervisor)
            await asyncio.sleep(0.2)  # a lookup would start now: give it the chance
            await session.run(user_input=lines[1])
            assert call.participant is caller
            assert call.context.status == "no_number" and call.context.user_id is None
            assert not call.is_returning
            leave(ctx.room, supervisor)
            await asyncio.sleep(0.1)
            assert fake.summary_requests == []  # the supervisor leaving is no hang-up
            leave(ctx.room, caller)
            await _end(memory, ctx, session)
        # Neither Sue's memory nor the earlier caller's ever reached the agent.
        assert _memory_in(fake.requests) == []
        for request in fake.conversation_requests:
            given = " ".join(text for role, text in texts(request) if role != "user")
            assert "Sue" not in given
            if name == "Ben":
                everything = " ".join(text for _, text in texts(request))
                assert "Ana" not in everything and "4417" not in everything

    # Nothing read or written under the supervisor's number: her memory is as she left it,
    # and no call of a caller without a number was stored at all.
    assert await _about_callers(redis_client, config.key_prefix) == before
    store = RedisMemoryStore(config)
    user_id = await store.get_or_create_user_id(phone_number=SUPERVISOR)
    profile = await store.get_profile(user_id)
    assert profile is not None and profile.call_count == 1
    await store.disconnect()


# -- a leg that is not the caller joins before the caller ---------------------------------------


def _web_supervisor() -> rtc.RemoteParticipant:
    """A supervisor who joins from a web app, marked by the app's token."""
    return participant(
        "supervisor-web",
        kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        attributes={"sip.phoneNumber": SUPERVISOR, NOT_CALLER_ATTRIBUTE: "true"},
    )


@pytest.mark.parametrize(
    "first_in",
    [
        lambda: sip_dialled(SUPERVISOR, "transfer-target"),  # warm transfer: dialled, moved in
        _web_supervisor,
    ],
    ids=["dialled_transfer_target", "marked_web_supervisor"],
)
async def test_a_leg_that_joins_before_the_caller_is_not_taken_for_the_caller(
    config: RedisConfig, redis_client: aioredis.Redis, first_in: Any
) -> None:
    await _remember(config, SUPERVISOR, "Sue")
    await _remember(config, "+14155550191", "Cleo")
    before = await _about_callers(redis_client, config.key_prefix)
    # The dev-room setting, so that the web supervisor's own number would count.
    memory = CallerMemory(config=replace(config, trust_participant_numbers=True))
    fake = ScriptedLLM("Hello!", summary={"summary": "Cleo called about her crown."})
    with offline_job("AJ_transfer", fake=False) as ctx:
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        attaching = asyncio.ensure_future(memory.attach(ctx, session, agent))
        other = first_in()
        join(ctx.room, other)
        await asyncio.sleep(0.3)
        assert not attaching.done()  # still waiting for the caller
        caller = sip_caller("+14155550191", "sip_+14155550191")
        join(ctx.room, caller)
        call = await asyncio.wait_for(attaching, 20)
        assert call.participant is caller
        assert call.is_returning and call.context.caller_name == "Cleo"
        await session.start(agent)
        await session.generate_reply(instructions=call.greeting_instructions)
        assert any("Cleo" in m and "Sue" not in m for m in _memory_in(fake.requests[-1:]))
        leave(ctx.room, other)  # the transfer target hangs up: the caller's call goes on
        await asyncio.sleep(0.1)
        assert fake.summary_requests == []
        await session.run(user_input="About my crown, it feels loose.")
        leave(ctx.room, caller)
        await eventually(lambda: len(fake.summary_requests) == 1)
        await _end(memory, ctx, session)
    after = await _about_callers(redis_client, config.key_prefix)
    sue_keys = {k for k, v in before.items() if "Sue" in str(v)}
    assert sue_keys and all(after[k] == before[k] for k in sue_keys)  # Sue's memory untouched


async def test_a_caller_with_a_number_stays_the_caller_when_a_supervisor_joins(
    config: RedisConfig,
) -> None:
    await _remember(config, SUPERVISOR, "Sue")
    await _remember(config, "+14155550192", "Dana")
    memory = CallerMemory(config=config)
    fake = ScriptedLLM("One moment.", summary={"summary": "Dana asked for the supervisor."})
    with offline_job("AJ_stays", fake=False) as ctx:
        caller = sip_caller("+14155550192", "sip_+14155550192")
        join(ctx.room, caller)
        session = text_session(fake)
        agent = Agent(instructions=INSTRUCTIONS)
        call = await memory.attach(ctx, session, agent)
        assert call.context.caller_name == "Dana"
        await session.start(agent)
        await session.run(user_input="Can I talk to a supervisor?")
        supervisor = sip_dialled(SUPERVISOR)
        join(ctx.room, supervisor)
        await session.run(user_input="Hi Sue, it's about my bill.")
        assert call.participant is caller and call.context.caller_name == "Dana"
        assert all("Sue" not in m for m in _memory_in(fake.requests))
        leave(ctx.room, supervisor)
        leave(ctx.room, caller)
        profile = await asyncio.wait_for(call.wait_saved(), 20)
        await _end(memory, ctx, session)
    assert profile is not None and profile.call_count == 2  # Dana's, under Dana's number
    store = RedisMemoryStore(config)
    sue = await store.get_profile(await store.get_or_create_user_id(phone_number=SUPERVISOR))
    assert sue is not None and sue.call_count == 1
    await store.disconnect()


# -- whose number the network vouches for: P-Asserted-Identity read by its grammar -------------

NUMBER = "+14155550134"
OTHER = "+19995550100"
PASS, FAIL = "verstat=TN-Validation-Passed", "verstat=TN-Validation-Failed"


@pytest.mark.parametrize(
    ("header", "verified"),
    [
        # A display name is the caller's to write: a verstat in it proves nothing, and a
        # quoted comma, semicolon, angle bracket or escaped quote is part of the name.
        (f'"{PASS} Ana" <sip:{NUMBER}@carrier.example>', False),
        (f'"Ana;{PASS}-A;" <sip:{NUMBER}@carrier.example;{FAIL}>', False),
        (f'"Ana \\"<sip:{NUMBER};{PASS}>\\"" <sip:{NUMBER}@carrier.example>', False),
        (f'"Ana, {FAIL}" <sip:{NUMBER}@carrier.example;{PASS}>', True),
        # The verdict is about the number the URI names: another number's proves nothing.
        (f"<sip:{OTHER}@carrier.example;{PASS}>, <tel:{NUMBER};{FAIL}>", False),
        (f"<sip:{OTHER}@carrier.example;{PASS}>", False),
        # Where carriers put it: a tel URI, the user part (3GPP), after the host (Telnyx).
        (f"<sip:{OTHER}@carrier.example;{FAIL}>, <tel:{NUMBER};{PASS}>", True),
        (f"<sip:{NUMBER};{PASS}@carrier.example;user=phone>", True),
        (f'"Ana" <sip:{NUMBER}@sip.telnyx.com;{PASS}>', True),
        # An unclosed quote: the header does not parse, and proves nothing.
        (f'"Ana <sip:{NUMBER}@carrier.example;{PASS}>', False),
    ],
)
async def test_verstat_counts_only_from_the_uri_of_the_callers_number(
    config: RedisConfig, header: str, verified: bool
) -> None:
    memory = CallerMemory(config=replace(config, verified_attribute="sip.pai"))
    with offline_job("AJ_pai") as ctx:
        join(ctx.room, sip_caller(NUMBER, attributes={"sip.pai": header}))
        session = text_session(ScriptedLLM("Hi."))
        call = await memory.attach(ctx, session, Agent(instructions=INSTRUCTIONS))
        assert call.context.status == "new"
        assert call.context.verified is verified
        await session.aclose()
        await shut_down(ctx)
    await memory.aclose()
