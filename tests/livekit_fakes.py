"""Real LiveKit objects without a server, and the one fake of the suite: a scripted LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    AgentSession,
    APIConnectOptions,
    JobContext,
    llm,
)
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta, FunctionToolCall
from livekit.agents.testing import fake_job_context
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NotGivenOr
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.rtc._proto import participant_pb2


@dataclass(frozen=True)
class ToolCall:
    """A scripted answer that calls one of the agent's tools."""

    name: str
    arguments: dict[str, Any]


Reply = str | BaseException | ToolCall
Responder = Callable[[ChatContext], Reply]

SUMMARY_MARKER = "You maintain the memory"


def is_summary_request(chat_ctx: ChatContext) -> bool:
    """True for the plugin's end-of-call summary request."""
    return any(SUMMARY_MARKER in (m.text_content or "") for m in chat_ctx.messages())


def last_item(chat_ctx: ChatContext) -> tuple[str, str]:
    """(role, text) of the request's last item; ``("tool", output)`` for a tool's answer."""
    item = chat_ctx.items[-1]
    if item.type == "function_call_output":
        return "tool", item.output
    if item.type == "message":
        return item.role, item.text_content or ""
    return item.type, ""


def texts(chat_ctx: ChatContext) -> list[tuple[str, str]]:
    """(role, text) of every message of a request."""
    return [(m.role, m.text_content or "") for m in chat_ctx.messages()]


class _Stream(llm.LLMStream):
    def __init__(self, fake: ScriptedLLM, reply: Reply, delay: float, **kwargs: Any) -> None:
        super().__init__(fake, **kwargs)
        self._reply = reply
        self._delay = delay

    async def _run(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        if isinstance(self._reply, BaseException):
            raise self._reply
        if isinstance(self._reply, ToolCall):
            call = FunctionToolCall(
                name=self._reply.name,
                arguments=json.dumps(self._reply.arguments),
                call_id=f"call_{self._reply.name}",
            )
            self._event_ch.send_nowait(
                ChatChunk(id="scripted", delta=ChoiceDelta(role="assistant", tool_calls=[call]))
            )
            return
        for i, word in enumerate(self._reply.split(" ")):
            piece = word if i == 0 else " " + word
            self._event_ch.send_nowait(
                ChatChunk(id="scripted", delta=ChoiceDelta(role="assistant", content=piece))
            )


class ScriptedLLM(llm.LLM[Any]):
    """An LLM whose answers come from a script; it keeps every request it received.

    Args:
        reply: Answers conversation requests (a fixed text, or a function of the request).
        summary: Answers the plugin's summary requests: a dict (sent as JSON), a text, or an
            exception to raise.
        delay: Seconds each conversation answer takes to start.
        summary_delay: Seconds each summary answer takes to start.
    """

    def __init__(
        self,
        reply: Reply | Responder = "Hello! How can I help?",
        *,
        summary: dict[str, Any] | Reply = "not json",
        delay: float = 0.0,
        summary_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self._delay = delay
        self._summary_delay = summary_delay
        self._reply = reply
        self._summary = json.dumps(summary) if isinstance(summary, dict) else summary
        self.requests: list[ChatContext] = []

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "tests"

    @property
    def conversation_requests(self) -> list[ChatContext]:
        """Requests of the conversation, summaries left out."""
        return [r for r in self.requests if not is_summary_request(r)]

    @property
    def summary_requests(self) -> list[ChatContext]:
        """The plugin's summary requests."""
        return [r for r in self.requests if is_summary_request(r)]

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.requests.append(chat_ctx.copy())
        delay = self._delay
        if is_summary_request(chat_ctx):
            reply: Reply = self._summary
            delay = self._summary_delay
        elif callable(self._reply) and not isinstance(self._reply, BaseException | ToolCall):
            reply = self._reply(chat_ctx)
        else:
            reply = self._reply
        return _Stream(
            self, reply, delay, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


def text_session(fake: llm.LLM[Any]) -> AgentSession[None]:
    """A text-only AgentSession (no VAD, no turn detector, no retries on LLM errors)."""
    return AgentSession(
        llm=fake,
        vad=None,
        turn_handling={"turn_detection": None},
        conn_options=SessionConnectOptions(llm_conn_options=APIConnectOptions(max_retry=0)),
    )


def participant(
    identity: str,
    *,
    kind: rtc.ParticipantKind.ValueType = rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    attributes: dict[str, str] | None = None,
) -> rtc.RemoteParticipant:
    """A real RemoteParticipant that needs no server (handle id 0: no FFI call)."""
    owned = participant_pb2.OwnedParticipant()
    owned.handle.id = 0
    owned.info.sid = f"PA_{identity}"
    owned.info.identity = identity
    owned.info.kind = kind
    owned.info.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
    owned.info.attributes.update(attributes or {})
    return rtc.RemoteParticipant(owned)


def sip_caller(number: str | None, identity: str = "sip_caller") -> rtc.RemoteParticipant:
    """A LiveKit SIP inbound caller; ``None`` for a withheld number."""
    attributes = {"sip.callID": "SCL_test", "sip.trunkPhoneNumber": "+15550001111"}
    if number is not None:
        attributes["sip.phoneNumber"] = number
    return participant(identity, attributes=attributes)


def join(room: rtc.Room, p: rtc.RemoteParticipant) -> None:
    """What the room does when a participant joins, minus the server."""
    room._remote_participants[p.identity] = p
    room.emit("participant_connected", p)


def leave(room: rtc.Room, p: rtc.RemoteParticipant) -> None:
    """What the room does when a participant hangs up."""
    room._remote_participants.pop(p.identity, None)
    room.emit("participant_disconnected", p)


@contextmanager
def job(job_id: str) -> Iterator[JobContext]:
    """A real JobContext for a fake job, around a never-connected room."""
    with fake_job_context(room=rtc.Room(), job_id=job_id) as ctx:
        try:
            yield ctx
        finally:
            ctx._tempdir.cleanup()


async def shut_down(ctx: JobContext, reason: str = "test") -> None:
    """Run the job's shutdown callbacks as LiveKit's job runner does: all at once."""
    await asyncio.gather(*(callback(reason) for callback in ctx._shutdown_callbacks))
