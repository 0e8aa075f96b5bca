"""A caller whose trunk sends their number without its country code, with
``MEMORY_DEFAULT_REGION`` unset: the number is read in the region of the trunk they dialled
(``sip.trunkPhoneNumber``), so the spellings of one caller are one memory.

LiveKit's real classes (a never-connected ``rtc.Room``, ``RemoteParticipant``s with the
attributes LiveKit SIP sets, ``AgentSession`` in text mode) and a real Redis; only the model is
scripted.
"""

from __future__ import annotations

import pytest
from livekit.agents import Agent

from livekit.plugins.caller_memory import CallerMemory, RedisConfig, SessionContext
from livekit.plugins.caller_memory.identity import in_trunk_region
from livekit.plugins.caller_memory.testing import (
    ScriptedLLM,
    join,
    leave,
    offline_job,
    shut_down,
    sip_caller,
    text_session,
)

from .conftest import replace
from .support.facts import answer, op


async def _call(
    config: RedisConfig, number: str, trunk: str, job: str, said: str
) -> SessionContext:
    """One inbound SIP call on the trunk ``trunk``, saved; the context the call started with."""
    memory = CallerMemory(config=config)
    summary = answer("Asked about opening hours.", op("add", "name", "Ana", "I'm Ana"))
    caller = sip_caller(number, "sip_caller", attributes={"sip.trunkPhoneNumber": trunk})
    with offline_job(job, fake=False) as ctx:
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Hello!", summary=summary))
        call = await memory.attach(ctx, session, Agent(instructions="You are Sarah."))
        await session.start(Agent(instructions="You are Sarah."))
        await session.run(user_input=said)
        leave(ctx.room, caller)
        await session.aclose()
        await memory.on_session_end(ctx)
        await shut_down(ctx)
    await memory.aclose()
    return call.context


async def test_a_national_number_is_read_in_the_trunks_region(config: RedisConfig) -> None:
    unset = replace(config, default_region=None)
    first = await _call(unset, "+14155550134", "+14155550000", "AJ_nat_1", "Hi, I'm Ana.")
    assert first.status == "new"
    again = await _call(unset, "(415) 555-0134", "+14155550000", "AJ_nat_2", "It's me again.")
    assert again.is_returning and again.caller_name == "Ana"
    assert again.user_id == first.user_id


async def test_the_configured_region_wins_over_the_trunks(config: RedisConfig) -> None:
    # A London number written nationally, on a US trunk, with MEMORY_DEFAULT_REGION=GB.
    gb = replace(config, default_region="GB")
    first = await _call(gb, "+442079460958", "+14155550000", "AJ_gb_1", "Hi, I'm Ana.")
    again = await _call(gb, "020 7946 0958", "+14155550000", "AJ_gb_2", "Me again.")
    assert first.status == "new" and again.user_id == first.user_id


async def test_without_a_trunk_number_a_national_number_gets_no_memory(
    config: RedisConfig,
) -> None:
    unset = replace(config, default_region=None)
    hidden_trunk = await _call(unset, "4155550134", "", "AJ_none_1", "Hi, I'm Ana.")
    assert hidden_trunk.user_id is None and not hidden_trunk.is_returning


@pytest.mark.parametrize(
    ("number", "trunk", "read"),
    [
        ("4155550134", "+14155550000", "+14155550134"),
        ("tel:415-555-0134", "+15550001111", "+14155550134"),  # a test trunk: +1's region
        ("020 7946 0958", "+442079460000", "+442079460958"),
        ("+33612345678", "+14155550000", "+33612345678"),  # E.164 already: as it is
        ("0033612345678", "+14155550000", "0033612345678"),  # international prefix: as it is
        ("4155550134", "+999", "4155550134"),  # no region: left to normalize_phone to refuse
        ("12", "+14155550000", "12"),
        ("anonymous", "+14155550000", "anonymous"),
    ],
)
def test_in_trunk_region(number: str, trunk: str, read: str) -> None:
    assert in_trunk_region(number, trunk) == read
