"""The smallest voice agent with caller memory: OpenAI for ears, voice and brain, Redis for memory.

    python examples/minimal_agent.py dev     # a worker for LIVEKIT_URL (LiveKit's Python CLI)
    lk agent dev examples/minimal_agent.py   # the same, with the LiveKit CLI

It needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET and OPENAI_API_KEY; caller memory
reads REDIS_URL and MEMORY_* (nothing set: localhost:6379, else a private server).
"""

from __future__ import annotations

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import caller_memory, openai  # openai: the agent's own voice pipeline

from livekit.plugins.caller_memory import RedisConfig
from livekit.plugins.caller_memory.server import resolve_default_redis

caller_memory.hide_numbers_in_livekit_logs()  # LiveKit logs a SIP caller's identity: sip_<number>
memory = caller_memory.CallerMemory()  # settings from the environment (REDIS_URL, MEMORY_*)
server = AgentServer()


class Receptionist(Agent):
    """Your agent, as it is: caller memory changes nothing in it."""

    def __init__(self) -> None:
        super().__init__(instructions="You answer the phone for a small clinic. Be brief.")


@server.rtc_session(agent_name="my-agent", on_session_end=caller_memory.on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    """One call: the caller's memory is loaded before the greeting and saved at hang-up."""
    session: AgentSession[None] = AgentSession(
        stt=openai.STT(), llm=openai.LLM(model="gpt-4.1-mini"), tts=openai.TTS()
    )
    agent = Receptionist()
    call = await memory.attach(ctx, session, agent)  # waits for the caller, loads their memory
    await session.start(agent=agent, room=ctx.room)
    session.generate_reply(instructions=call.greeting_instructions)


if __name__ == "__main__":
    # No Redis named and none on localhost:6379: start the private one here, in the worker's
    # main process, so that the job processes LiveKit forks share it (they inherit REDIS_URL).
    config, local_redis = resolve_default_redis(RedisConfig.from_env())
    if local_redis is not None:
        os.environ["REDIS_URL"] = config.redis_url()
    cli.run_app(server)
