"""Who the caller is, when a call holds more than the caller; and whose number the network
vouches for.

LiveKit's real classes: a never-connected ``rtc.Room``, real ``RemoteParticipant``s,
``AgentSession``s in text mode, and a real Redis. Only the model is scripted.
"""

from __future__ import annotations

import pytest
from livekit.agents import Agent

from livekit.plugins.caller_memory import CallerMemory, RedisConfig
from livekit.plugins.caller_memory.testing import (
    ScriptedLLM,
    join,
    offline_job,
    shut_down,
    sip_caller,
    text_session,
)

from .conftest import replace

INSTRUCTIONS = "You are Sarah, the receptionist of a dental practice."


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
