"""An agent whose caller memory takes its settings from the environment and ``.env``, as the
README's wiring does (``CallerMemory()``), run as a LiveKit worker by :mod:`.env_worker`."""

from __future__ import annotations

import json

from livekit.agents import Agent, AgentServer, JobContext
from livekit.plugins import caller_memory

from livekit.plugins.caller_memory import testing

memory = caller_memory.CallerMemory(use_session_llm=False)  # REDIS_URL, MEMORY_* and .env
server = AgentServer()


@server.rtc_session(agent_name="env-agent", on_session_end=caller_memory.on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    """One call from the job's script (its metadata): the caller's number and lines."""
    script = json.loads(ctx.job.metadata)
    session = testing.text_session(testing.ScriptedLLM("Sure."))
    agent = Agent(instructions="You are Sarah, the receptionist.")
    await memory.attach(ctx, session, agent, phone_number=script["caller"])
    await session.start(agent)
    for line in script["says"]:
        await session.run(user_input=line)
    ctx.shutdown("the caller hung up")
