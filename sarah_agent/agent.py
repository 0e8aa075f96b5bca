"""Sarah on LiveKit: an AgentServer entrypoint with an OpenAI voice pipeline and caller memory.

Run it with the usual LiveKit commands (see the README):

    sarah start                         # a worker: LIVEKIT_URL, LIVEKIT_API_KEY/SECRET
    sarah dev                           # the same for a development server
    lk agent dev sarah_agent/agent.py   # the same, reloading on changes (LiveKit's CLI)
    sarah console --text                # talk to Sarah in the terminal, no server needed
"""

from __future__ import annotations

import os

from livekit.agents import AgentServer, AgentSession, JobContext
from livekit.plugins import caller_memory, openai

from .config import memory_config
from .persona import Sarah

__all__ = ["AGENT_NAME", "entrypoint", "memory", "server"]

AGENT_NAME = os.environ.get("SARAH_AGENT_NAME", "sarah")
"""The name SIP dispatch rules ask for (explicit dispatch)."""

caller_memory.hide_numbers_in_livekit_logs()  # LiveKit logs a SIP caller's identity, sip_<number>
memory = caller_memory.CallerMemory(config=memory_config())
server = AgentServer()


@server.rtc_session(agent_name=AGENT_NAME, on_session_end=caller_memory.on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    """One phone call: Sarah answers, knowing the caller if they called before."""
    session: AgentSession[None] = AgentSession(
        stt=openai.STT(model=os.environ.get("SARAH_STT_MODEL", "gpt-4o-mini-transcribe")),
        llm=openai.LLM(model=os.environ.get("SARAH_LLM_MODEL", "gpt-4.1-mini")),
        tts=openai.TTS(voice=os.environ.get("SARAH_TTS_VOICE", "coral")),
    )
    agent = Sarah()
    # Console mode has no SIP participant: SARAH_CONSOLE_CALLER poses as the caller's number.
    console_number = os.environ.get("SARAH_CONSOLE_CALLER") if ctx.is_fake_job() else None
    call = await memory.attach(ctx, session, agent, phone_number=console_number)
    await session.start(agent=agent, room=ctx.room)
    session.generate_reply(instructions=call.greeting_instructions)
