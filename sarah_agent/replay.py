"""``sarah replay``: recorded calls played through the real plugin and a real AgentSession.

Each call runs as LiveKit would run it, minus the audio: a job context, a room with a SIP
participant carrying the caller's number, an ``AgentSession`` in text mode, and
``CallerMemory`` attached to it. Memory goes to the configured Redis, or to the private server
under ``.caller-memory/`` when none is configured, so a second run remembers the first.

Without ``OPENAI_API_KEY``, Sarah's side is the recording (a stand-in LLM replays her lines) and
calls are summarized from the transcript; with it, OpenAI answers and summarizes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from livekit.agents import llm
from livekit.agents.llm import ChatContext

from livekit.plugins.caller_memory import CallerMemory, CallerProfile, CallMemory, testing
from livekit.plugins.caller_memory.testing import ScriptedLLM

from .config import memory_config
from .persona import Sarah

__all__ = ["RecordedCall", "load_calls", "recording_llm", "replay"]

_MEMORY_BLOCK = re.compile(r"<caller_memory>\s*(\{.*?\})\s*</caller_memory>", re.DOTALL)


@dataclass(frozen=True)
class RecordedCall:
    """One recorded call: the caller's number (None when withheld) and who said what."""

    caller: str | None
    turns: list[tuple[str, str]]

    @property
    def caller_lines(self) -> list[str]:
        """What the caller said, in order."""
        return [text for who, text in self.turns if who == "caller"]

    @property
    def sarah_lines(self) -> list[str]:
        """What Sarah said on the recording, in order."""
        return [text for who, text in self.turns if who == "sarah"]


def load_calls(path: Path | None = None) -> list[RecordedCall]:
    """Read recorded calls (the ones shipped with Sarah by default)."""
    if path is None:
        text = resources.files("sarah_agent").joinpath("recorded_calls.json").read_text()
    else:
        text = path.read_text()
    data = json.loads(text)
    return [
        RecordedCall(caller=c.get("caller"), turns=[(who, said) for who, said in c["turns"]])
        for c in data["calls"]
    ]


def recording_llm(recorded: RecordedCall) -> ScriptedLLM:
    """Stand-in LLM for offline replays: Sarah's recorded lines, in order.

    The greeting is the one thing not on the recording: it is made from the caller memory the
    plugin put into the request (the name), which shows that memory reached the LLM. Summary
    requests get no answer the summarizer can use, so calls get the fallback summary.
    """
    lines = list(recorded.sarah_lines)
    greeted = False

    def answer(chat_ctx: ChatContext) -> str:
        nonlocal greeted
        if not greeted:
            greeted = True
            return _greeting(chat_ctx)
        return lines.pop(0) if lines else "Is there anything else?"

    return ScriptedLLM(answer, summary="(no summary offline)")


def _greeting(chat_ctx: ChatContext) -> str:
    for message in chat_ctx.messages():
        match = _MEMORY_BLOCK.search(message.text_content or "")
        if match:
            name = json.loads(match.group(1)).get("name")
            return f"Welcome back{', ' + name if name else ''}! Sarah here, how can I help today?"
    return "Hello, you're speaking with Sarah. How can I help?"


def mask(number: str | None) -> str:
    """A number as the replay prints it: enough to tell callers apart, not to dial them."""
    if not number:
        return "withheld"
    digits = re.sub(r"\D", "", number)
    return f"…{digits[-4:]}" if len(digits) > 4 else "…"


async def _play(
    memory: CallerMemory, recorded: RecordedCall, job_id: str, live_llm: llm.LLM[Any] | None
) -> tuple[CallMemory, CallerProfile | None, list[tuple[str, str]]]:
    said: list[tuple[str, str]] = []
    with testing.offline_job(job_id) as ctx:
        caller = testing.sip_caller(recorded.caller)
        testing.join(ctx.room, caller)
        session = testing.text_session(live_llm or recording_llm(recorded))
        session.on(
            "conversation_item_added",
            lambda ev: (
                said.append((ev.item.role, ev.item.text_content or ""))
                if isinstance(ev.item, llm.ChatMessage)
                else None
            ),
        )
        agent = Sarah()
        call = await memory.attach(ctx, session, agent)
        await session.start(agent)
        await session.generate_reply(instructions=call.greeting_instructions)
        for line in recorded.caller_lines:
            await session.run(user_input=line)
        testing.leave(ctx.room, caller)
        profile = await call.wait_saved()
        await session.aclose()
        await testing.shut_down(ctx)
    return call, profile, said


async def replay(path: Path | None = None, *, verbose: bool = False) -> int:
    """Play the recorded calls and print what memory did on each. Returns an exit code."""
    calls = load_calls(path)
    live_llm: llm.LLM[Any] | None = None
    if os.environ.get("OPENAI_API_KEY"):
        from livekit.plugins import openai

        live_llm = openai.LLM(model=os.environ.get("SARAH_LLM_MODEL", "gpt-4.1-mini"))
    config = memory_config()
    memory = CallerMemory(config=config, use_session_llm=live_llm is not None)
    manager = await memory.manager()
    health = await manager.store.health_check()
    where = health.get("server", "?")
    print(f"Caller memory: {where} ({'ok' if health['healthy'] else health.get('error')})")
    print("LLM: " + ("OpenAI" if live_llm else "offline (recorded lines, transcript summaries)"))
    run = os.urandom(3).hex()
    try:
        for number, recorded in enumerate(calls, start=1):
            call, profile, said = await _play(memory, recorded, f"replay-{run}-{number}", live_llm)
            _print_call(number, len(calls), recorded, call, profile, said, verbose=verbose)
    finally:
        await memory.aclose()
        if live_llm is not None:
            await live_llm.aclose()
    return 0


def _print_call(
    number: int,
    total: int,
    recorded: RecordedCall,
    call: CallMemory,
    profile: CallerProfile | None,
    said: list[tuple[str, str]],
    *,
    verbose: bool,
) -> None:
    ctx = call.context
    status = {
        "returning": "returning caller",
        "new": "new caller",
        "no_number": "number withheld: no memory for this call",
        "invalid_number": "unusable number: no memory for this call",
        "timeout": "lookup over budget: greeted as new",
        "error": "memory store unreachable: greeted as new",
    }[ctx.status]
    print(f"\n── Call {number}/{total} · caller {mask(recorded.caller)} · {status}")
    print(f"   greeting context: {ctx.greeting_context or '(none)'}")
    lines = said if verbose else [next(item for item in said if item[0] == "assistant")]
    for role, text in lines:
        print(f"   {'Sarah ' if role == 'assistant' else 'Caller'}: {text}")
    if profile is None:
        print("   stored: nothing (no caller number to remember)")
        return
    print(f"   stored profile: name={profile.name or '-'} · calls={profile.call_count}")
    if profile.preferences:
        prefs = ", ".join(f"{k}: {v}" for k, v in profile.preferences.items())
        print(f"      preferences: {prefs}")
    if profile.follow_ups:
        print(f"      open follow-ups: {'; '.join(profile.follow_ups)}")
    if profile.calls:
        last = profile.calls[-1]
        print(f"      last call ({last.source} summary): {last.summary}")
