"""A scripted realtime (speech-to-speech) model for tests: no network, no audio.

``ScriptedRealtimeModel`` answers each reply the framework asks for with the next entry of a
script, as text, and records what LiveKit gave it (instructions, chat context, tools), so a test
can drive an ``AgentSession`` down LiveKit's realtime code paths and check what reached the model.

```python
model = ScriptedRealtimeModel(replies=["Hello!", ToolCall("lookup", {"q": "x"}), "Found it."])
session = AgentSession(llm=model, vad=None, turn_handling={"turn_detection": None})
await session.start(MyAgent())  # no room: text only
await session.generate_reply(instructions="greet")  # -> "Hello!"
result = await session.run(user_input="Hi, I'm Ana")  # -> the tool runs, then "Found it."
assert model.last_session.instructions == MyAgent().instructions
assert "lookup" in model.last_session.tool_names
await session.aclose()
```

Each reply is one of:

- ``str``: an assistant message with that text;
- ``ToolCall``: a call to one of the agent's function tools; LiveKit runs it, sends its output
  back (``update_chat_ctx``) and asks for the next reply (this model sets
  ``auto_tool_reply_generation=False``), which takes the next entry of the script;
- an ``Exception``: ``generate_reply`` fails with it (use ``llm.RealtimeError`` to get the
  framework's "failed to generate a reply" handling).

When the script runs out, replies are ``fallback``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit import rtc
from livekit.agents import llm, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

__all__ = [
    "Reply",
    "ReplyRequest",
    "ScriptedRealtimeModel",
    "ScriptedRealtimeSession",
    "ToolCall",
    "text_only_capabilities",
]


@dataclass(frozen=True)
class ToolCall:
    """A scripted reply that calls the function tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


Reply = str | ToolCall | Exception
"""One scripted reply: a text, a tool call, or an error for ``generate_reply`` to fail with."""


@dataclass
class ReplyRequest:
    """One reply the model was asked for (``generate_reply``, or ``user_spoke(reply=True)``)
    with the session's state at that time."""

    instructions: str | None
    """The per-reply instructions (``session.generate_reply(instructions=...)``), if any."""
    session_instructions: str
    """The session-level instructions (the agent's) at that time."""
    chat_ctx: llm.ChatContext
    """A copy of the chat context the model held at that time."""
    tool_names: list[str]
    """Ids of the tools the model held at that time."""
    tool_choice: NotGivenOr[llm.ToolChoice | None]
    """The tool choice for this reply (per response, or the session's)."""
    reply: Reply | None = None
    """What the script answered."""


def text_only_capabilities(**overrides: bool) -> llm.RealtimeCapabilities:
    """The default capabilities of :class:`ScriptedRealtimeModel`, with ``overrides``.

    Text only, client-side turn taking, user transcription, no automatic tool replies, and
    mutable instructions/chat context/tools (as OpenAI's model has, so that an agent handoff
    reuses the session and pushes the new agent's state to it). Pass e.g.
    ``mutable_instructions=False`` to make a handoff open a new session instead.
    """
    return dataclasses.replace(
        llm.RealtimeCapabilities(
            message_truncation=False,
            turn_detection=False,
            user_transcription=True,
            auto_tool_reply_generation=False,
            audio_output=False,
            manual_function_calls=True,
            mutable_chat_context=True,
            mutable_instructions=True,
            mutable_tools=True,
            per_response_tool_choice=True,
        ),
        **overrides,
    )


class ScriptedRealtimeModel(llm.RealtimeModel):
    """A realtime model whose replies come from a script; it keeps every session it opened.

    Args:
        replies: A list of replies played in order across all sessions (a handoff may open a
            new session), a single reply given every time, or a function answering each
            :class:`ReplyRequest`.
        fallback: The reply once the list runs out.
        capabilities: Defaults to :func:`text_only_capabilities`.
    """

    def __init__(
        self,
        replies: Reply | Sequence[Reply] | Callable[[ReplyRequest], Reply] = (),
        *,
        fallback: Reply = "Is there anything else?",
        capabilities: llm.RealtimeCapabilities | None = None,
    ) -> None:
        super().__init__(capabilities=capabilities or text_only_capabilities())
        self._answer: Callable[[ReplyRequest], Reply] | None = None
        self._script: list[Reply] = []
        self._fallback = fallback
        if isinstance(replies, str | ToolCall | Exception):
            self._fallback = replies
        elif callable(replies):
            self._answer = replies
        else:
            self._script = list(replies)
        self.sessions: list[ScriptedRealtimeSession] = []
        """Every session opened, in order."""

    @property
    def model(self) -> str:
        """``scripted``."""
        return "scripted"

    @property
    def provider(self) -> str:
        """``scripted_realtime``."""
        return "scripted_realtime"

    @property
    def last_session(self) -> ScriptedRealtimeSession:
        """The most recently opened session."""
        if not self.sessions:
            raise AssertionError("no realtime session was opened")
        return self.sessions[-1]

    @property
    def requests(self) -> list[ReplyRequest]:
        """Every ``generate_reply`` call, across sessions, in order."""
        return [r for s in self.sessions for r in s.requests]

    def session(self, *, turn_detection_disabled: bool = False) -> ScriptedRealtimeSession:
        """Open a new session (LiveKit calls this once per agent activity it cannot reuse)."""
        rt_session = ScriptedRealtimeSession(self)
        self.sessions.append(rt_session)
        return rt_session

    def next_reply(self, request: ReplyRequest) -> Reply:
        """The script's answer to ``request``."""
        if self._answer is not None:
            return self._answer(request)
        return self._script.pop(0) if self._script else self._fallback

    async def aclose(self) -> None:
        """Nothing to release."""


class ScriptedRealtimeSession(llm.RealtimeSession[Any]):
    """One conversation with :class:`ScriptedRealtimeModel`; records what it was given.

    Like a realtime server, it keeps its own chat context: what ``update_chat_ctx`` sent, plus
    the assistant messages and function calls it generated.
    """

    def __init__(self, model: ScriptedRealtimeModel) -> None:
        super().__init__(model)
        self._model = model
        self._chat_ctx = llm.ChatContext.empty()
        self._tools: list[llm.Tool] = []
        self._tool_choice: NotGivenOr[llm.ToolChoice | None] = NOT_GIVEN
        self.instructions: str = ""
        """The current session-level instructions."""
        self.instructions_updates: list[str] = []
        """Every ``update_instructions`` call, in order."""
        self.chat_ctx_updates: list[llm.ChatContext] = []
        """A copy of the chat context of every ``update_chat_ctx`` call, in order."""
        self.tools_updates: list[list[str]] = []
        """The tool ids of every ``update_tools`` call, in order."""
        self.requests: list[ReplyRequest] = []
        """Every ``generate_reply`` call, in order."""
        self.closed = False
        """Whether LiveKit closed this session."""

    # -- state LiveKit reads -------------------------------------------------------------

    @property
    def chat_ctx(self) -> llm.ChatContext:
        """The chat context as the model holds it."""
        return self._chat_ctx

    @property
    def tools(self) -> llm.ToolContext:
        """The tools as the model holds them."""
        return llm.ToolContext(self._tools)

    @property
    def tool_names(self) -> list[str]:
        """Ids of the tools the model holds."""
        return [t.id for t in self._tools]

    # -- updates LiveKit pushes ----------------------------------------------------------

    async def update_instructions(self, instructions: str) -> None:
        """Record the new session-level instructions."""
        self.instructions = instructions
        self.instructions_updates.append(instructions)

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        """Record the chat context LiveKit pushed; it replaces the model's."""
        self._chat_ctx = chat_ctx.copy()
        self.chat_ctx_updates.append(chat_ctx.copy())

    async def update_tools(self, tools: list[llm.Tool]) -> None:
        """Record the tools LiveKit pushed; they replace the model's."""
        self._tools = list(tools)
        self.tools_updates.append([t.id for t in tools])

    def update_options(self, *, tool_choice: NotGivenOr[llm.ToolChoice | None] = NOT_GIVEN) -> None:
        """Record the session-level tool choice."""
        if is_given(tool_choice):
            self._tool_choice = tool_choice

    # -- generation ----------------------------------------------------------------------

    def generate_reply(
        self,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        tools: NotGivenOr[list[llm.Tool]] = NOT_GIVEN,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        """Answer with the script's next reply, already complete when the future resolves."""
        fut: asyncio.Future[llm.GenerationCreatedEvent] = asyncio.get_running_loop().create_future()
        reply = self._next_reply(
            instructions=instructions if is_given(instructions) else None,
            tool_names=[t.id for t in tools] if is_given(tools) else self.tool_names,
            tool_choice=tool_choice if is_given(tool_choice) else self._tool_choice,
        )
        if isinstance(reply, Exception):
            fut.set_exception(reply)
            return fut
        ev = self._generation(reply, user_initiated=True)
        fut.set_result(ev)
        self.emit("generation_created", ev)  # as a real model does; LiveKit skips user-initiated
        return fut

    def user_spoke(self, transcript: str, *, reply: bool = False) -> str:
        """Act as if the user said ``transcript``: emit its final transcription, as a realtime
        model that transcribes does, and with ``reply`` a server-initiated reply to it (LiveKit
        then schedules it as a new turn, as after server-side turn detection).

        Returns:
            The id of the user's message.
        """
        item_id = utils.shortuuid("item_")
        self._chat_ctx.add_message(role="user", content=transcript, id=item_id)
        self.emit(
            "input_audio_transcription_completed",
            llm.InputTranscriptionCompleted(item_id=item_id, transcript=transcript, is_final=True),
        )
        if reply:
            answer = self._next_reply(
                instructions=None, tool_names=self.tool_names, tool_choice=self._tool_choice
            )
            if isinstance(answer, Exception):
                raise answer
            self.emit("generation_created", self._generation(answer, user_initiated=False))
        return item_id

    def _next_reply(
        self,
        *,
        instructions: str | None,
        tool_names: list[str],
        tool_choice: NotGivenOr[llm.ToolChoice | None],
    ) -> Reply:
        """Record a request and take the script's answer to it."""
        request = ReplyRequest(
            instructions=instructions,
            session_instructions=self.instructions,
            chat_ctx=self._chat_ctx.copy(),
            tool_names=tool_names,
            tool_choice=tool_choice,
        )
        self.requests.append(request)
        request.reply = self._model.next_reply(request)
        return request.reply

    def _generation(
        self, reply: str | ToolCall, *, user_initiated: bool
    ) -> llm.GenerationCreatedEvent:
        """A generation whose streams are already filled and closed: nothing runs after it."""
        messages = utils.aio.Chan[llm.MessageGeneration]()
        functions = utils.aio.Chan[llm.FunctionCall]()
        if isinstance(reply, ToolCall):
            call = llm.FunctionCall(
                call_id=utils.shortuuid("call_"),
                name=reply.name,
                arguments=json.dumps(reply.arguments),
            )
            self._chat_ctx.items.append(call)
            functions.send_nowait(call)
        else:
            message_id = utils.shortuuid("item_")
            self._chat_ctx.add_message(role="assistant", content=reply, id=message_id)
            text = utils.aio.Chan[str]()
            for i, word in enumerate(reply.split(" ")):  # streamed word by word
                text.send_nowait(word if i == 0 else " " + word)
            text.close()
            audio = utils.aio.Chan[rtc.AudioFrame]()
            audio.close()
            modalities: asyncio.Future[list[Literal["text", "audio"]]] = (
                asyncio.get_running_loop().create_future()
            )
            modalities.set_result(["text"])
            messages.send_nowait(
                llm.MessageGeneration(
                    message_id=message_id,
                    text_stream=text,
                    audio_stream=audio,
                    modalities=modalities,
                )
            )
        messages.close()
        functions.close()
        return llm.GenerationCreatedEvent(
            message_stream=messages,
            function_stream=functions,
            user_initiated=user_initiated,
            response_id=utils.shortuuid("resp_"),
        )

    # -- audio and the rest: nothing to do without audio -----------------------------------

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """Ignored: the model hears nothing."""

    def push_video(self, frame: rtc.VideoFrame) -> None:
        """Ignored: the model sees nothing."""

    def commit_audio(self) -> None:
        """Ignored: no audio buffer."""

    def clear_audio(self) -> None:
        """Ignored: no audio buffer."""

    def interrupt(self) -> None:
        """Nothing to cancel: every reply is complete when it is created."""

    def truncate(
        self,
        *,
        message_id: str,
        modalities: list[Literal["text", "audio"]],
        audio_end_ms: int,
        audio_transcript: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        """Ignored: ``message_truncation`` is off."""

    async def aclose(self) -> None:
        """Mark the session closed."""
        self.closed = True
