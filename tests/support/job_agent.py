"""An agent wired as the README shows, for the job-process tests.

LiveKit imports this module afresh in each job process (the worker pickles the entrypoint and
``on_session_end`` by name), so ``memory`` is made there at import, as in any agent. Its
settings come from the JSON file named by ``CALLER_MEMORY_TEST_SETTINGS`` (the tests write it
before a job process starts; the variable is set when the tests start, before LiveKit's
forkserver, which passes it on to every job process). Each job's script is its metadata.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentServer, JobContext
from livekit.plugins import caller_memory

from livekit.plugins.caller_memory import RedisConfig, testing

SETTINGS_VARIABLE = "CALLER_MEMORY_TEST_SETTINGS"


def _settings() -> dict[str, Any]:
    path = os.environ.get(SETTINGS_VARIABLE)
    if not path or not Path(path).is_file():  # the worker's side, before any test wrote one
        return {
            "config": {
                "persistence": False,
                "phone_hash_secret": "job-agent-default-7d3f9a1c5e2b8047a6c9d1f3",
            },
            "summary": {"summary": "A call."},
        }
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


class LockedLLM(testing.ScriptedLLM):
    """An LLM that holds a lock, as an OpenAI client does: it cannot be pickled."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.RLock()


_SETTINGS = _settings()
memory = caller_memory.CallerMemory(
    config=RedisConfig(**_SETTINGS["config"]),
    llm=LockedLLM(summary=_SETTINGS["summary"], summary_delay=_SETTINGS.get("summary_delay", 0))
    if "summary" in _SETTINGS
    else None,
)

server = AgentServer()  # the README's wiring: the module's own on_session_end
bound_server = AgentServer()  # the 0.1 README's wiring: the object's


async def entrypoint(ctx: JobContext) -> None:
    """One call from the job's script: the caller's number, what they say, how it ends."""
    script = json.loads(ctx.job.metadata)
    session = testing.text_session(testing.ScriptedLLM(script.get("replies", "Sure.")))
    agent = Agent(instructions="You are Sarah, the receptionist.")
    # A fake job's room is a mock nobody joins: the number comes with the script.
    await memory.attach(ctx, session, agent, phone_number=script["caller"])
    await session.start(agent)
    for line in script["says"]:
        await session.run(user_input=line)
    if script.get("done_file"):  # the test waits for it when Redis cannot tell
        Path(script["done_file"]).touch()
    if script.get("hang_up"):
        ctx.shutdown("the caller hung up")


server.rtc_session(agent_name="test-agent", on_session_end=caller_memory.on_session_end)(entrypoint)
bound_server.rtc_session(agent_name="test-agent", on_session_end=memory.on_session_end)(entrypoint)
bare_server = AgentServer()  # no on_session_end: the save is left to the shutdown callback
bare_server.rtc_session(agent_name="test-agent")(entrypoint)
