"""Offline calls: a LiveKit job, room and caller without a LiveKit server, and a scripted LLM.

For testing an agent's memory, and for replaying recorded calls (``sarah replay``): the job
context, the room, the participants and the ``AgentSession`` are LiveKit's real classes, used
without a server. ``ScriptedLLM`` stands in for the model.

```python
from livekit.plugins.caller_memory import testing

with testing.offline_job("AJ_1") as ctx:
    caller = testing.sip_caller("+14155550134")
    testing.join(ctx.room, caller)
    session = testing.text_session(testing.ScriptedLLM("Hello!"))
    call = await memory.attach(ctx, session, agent)
    ...
    testing.leave(ctx.room, caller)
    await testing.shut_down(ctx)
```

LiveKit has no public way to do some of this (a participant with no server behind it, a room
that a participant joins without a connection, a fake job's shutdown callbacks), so this module
is the one place that uses LiveKit's private names: each is listed in :data:`PRIVATE_NAMES`,
and :func:`check_private_names` fails loudly, naming them, when a LiveKit release changes one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing as mp
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import (
    NOT_GIVEN,
    AgentServer,
    AgentSession,
    APIConnectOptions,
    JobContext,
    JobProcess,
    llm,
)
from livekit.agents.ipc.job_proc_executor import ProcJobExecutor
from livekit.agents.job import JobAcceptArguments, RunningJobInfo
from livekit.agents.llm import ChatChunk, ChatContext, ChoiceDelta, FunctionToolCall
from livekit.agents.testing import fake_job_context
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NotGivenOr
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.protocol import agent as agent_proto
from livekit.protocol import models
from livekit.rtc._proto import participant_pb2

from .participants import PHONE_ATTRIBUTE, RULE_ID_ATTRIBUTE
from .prompts import SUMMARY_INSTRUCTIONS

__all__ = [
    "PRIVATE_NAMES",
    "Reply",
    "ScriptedLLM",
    "ToolCall",
    "check_private_names",
    "is_summary_request",
    "job_process",
    "join",
    "leave",
    "offline_job",
    "participant",
    "set_attributes",
    "shut_down",
    "sip_caller",
    "sip_dialled",
    "text_session",
]

PRIVATE_NAMES = (
    "livekit.rtc._proto.participant_pb2.OwnedParticipant",
    "livekit.rtc.Room._remote_participants",
    "livekit.agents.JobContext._shutdown_callbacks",
    "livekit.agents.JobContext._tempdir",
    "livekit.agents.JobContext._info",
    "livekit.rtc.Participant._info",
    "livekit.agents.AgentServer._entrypoint_fnc",
    "livekit.agents.AgentServer._session_end_fnc",
)
"""LiveKit's private names this module relies on."""


async def check_private_names() -> None:
    """Raise when a LiveKit release removed one of :data:`PRIVATE_NAMES` (a room is made:
    this runs on an event loop).

    Raises:
        RuntimeError: Names what is missing.
    """
    missing = []
    if not hasattr(participant_pb2, "OwnedParticipant"):
        missing.append(PRIVATE_NAMES[0])
    room = rtc.Room()
    if not isinstance(getattr(room, "_remote_participants", None), dict):
        missing.append(PRIVATE_NAMES[1])
    with fake_job_context(room=room, job_id="check") as ctx:
        if not isinstance(getattr(ctx, "_shutdown_callbacks", None), list):
            missing.append(PRIVATE_NAMES[2])
        cleanup = getattr(getattr(ctx, "_tempdir", None), "cleanup", None)
        if cleanup is None:
            missing.append(PRIVATE_NAMES[3])
        else:
            cleanup()
        if not dataclasses.is_dataclass(getattr(ctx, "_info", None)):
            missing.append(PRIVATE_NAMES[4])
    if not hasattr(getattr(participant("check"), "_info", None), "attributes"):
        missing.append(PRIVATE_NAMES[5])
    for index, name in ((6, "_entrypoint_fnc"), (7, "_session_end_fnc")):
        if name not in vars(AgentServer()):
            missing.append(PRIVATE_NAMES[index])
    if missing:
        raise RuntimeError(
            "this LiveKit release changed names caller_memory.testing relies on: "
            + ", ".join(missing)
        )


# -- participants and rooms ----------------------------------------------------------------


def participant(
    identity: str,
    *,
    kind: rtc.ParticipantKind.ValueType = rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    attributes: dict[str, str] | None = None,
) -> rtc.RemoteParticipant:
    """A real ``RemoteParticipant`` that needs no server (handle id 0: no FFI call)."""
    owned = participant_pb2.OwnedParticipant()
    owned.handle.id = 0
    owned.info.sid = f"PA_{identity}"
    owned.info.identity = identity
    owned.info.kind = kind
    owned.info.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
    owned.info.attributes.update(attributes or {})
    return rtc.RemoteParticipant(owned)


def sip_caller(
    number: str | None,
    identity: str = "sip_caller",
    *,
    attributes: dict[str, str] | None = None,
) -> rtc.RemoteParticipant:
    """A LiveKit SIP inbound caller, with the attributes LiveKit SIP sets for a call a dispatch
    rule let in (``sip.ruleID`` among them); ``None`` for a number hidden by the rule's
    ``hide_phone_number`` (no ``sip.phoneNumber``, ``sip.hostname`` or
    ``sip.trunkPhoneNumber``). ``attributes`` adds more: what a trunk's
    ``headers_to_attributes`` maps, such as ``{"sip.verstat": "TN-Validation-Passed-A"}``."""
    found = {
        "sip.callID": "SCL_offline",
        "sip.trunkID": "ST_offline_inbound",
        RULE_ID_ATTRIBUTE: "SDR_offline",
        "sip.callStatus": "active",
    }
    if number is not None:
        found[PHONE_ATTRIBUTE] = number
        found["sip.hostname"] = "sip.carrier.example"
        found["sip.trunkPhoneNumber"] = "+15550001111"
    return participant(identity, attributes={**found, **(attributes or {})})


def sip_dialled(
    number: str,
    identity: str | None = None,
    *,
    attributes: dict[str, str] | None = None,
) -> rtc.RemoteParticipant:
    """A SIP leg the agent dialled out with ``CreateSIPParticipant`` (a supervisor, a transfer
    target), answered, with the attributes LiveKit SIP sets for it: ``sip.phoneNumber`` is the
    number dialled, and there is no ``sip.ruleID``. ``identity`` defaults to LiveKit's
    ``sip_<number>``; ``attributes`` are the request's ``participant_attributes``."""
    found = {
        **(attributes or {}),
        "sip.callID": "SCL_offline_dialled",
        "sip.trunkID": "ST_offline_outbound",
        PHONE_ATTRIBUTE: number,
        "sip.hostname": "sip.carrier.example",
        "sip.trunkPhoneNumber": "+15550001111",
        "sip.callStatus": "active",
    }
    return participant(identity or f"sip_{number}", attributes=found)


def join(room: rtc.Room, p: rtc.RemoteParticipant) -> None:
    """What a room does when a participant joins, minus the server."""
    room._remote_participants[p.identity] = p
    room.emit("participant_connected", p)


def leave(
    room: rtc.Room,
    p: rtc.RemoteParticipant,
    reason: rtc.DisconnectReason.ValueType = rtc.DisconnectReason.CLIENT_INITIATED,
) -> None:
    """What a room does when a participant leaves: by default, they hung up
    (``CLIENT_INITIATED``); a network drop is e.g. ``SIGNAL_CLOSE``."""
    room._remote_participants.pop(p.identity, None)
    p._info.disconnect_reason = reason  # as the room copies it from the server's event
    room.emit("participant_disconnected", p)


def set_attributes(room: rtc.Room, p: rtc.RemoteParticipant, changed: dict[str, str]) -> None:
    """What a room does when a participant's attributes change after they joined."""
    p._info.attributes.update(changed)
    room.emit("participant_attributes_changed", dict(changed), p)


# -- jobs ----------------------------------------------------------------------------------


@contextmanager
def offline_job(job_id: str, *, fake: bool = True) -> Iterator[JobContext]:
    """A real ``JobContext`` around a never-connected ``rtc.Room``.

    Args:
        job_id: The job's id.
        fake: ``ctx.is_fake_job()``: True as in console mode (nobody ever joins the room);
            False as a dispatched job, whose room participants join.
    """
    with fake_job_context(room=rtc.Room(), job_id=job_id) as ctx:
        if not fake:
            ctx._info = dataclasses.replace(ctx._info, fake_job=False)
        try:
            yield ctx
        finally:
            ctx._tempdir.cleanup()  # fake_job_context leaves it behind


async def shut_down(ctx: JobContext, reason: str = "offline call finished") -> None:
    """Run the job's shutdown callbacks as LiveKit's job runner does: all at once."""
    await asyncio.gather(*(callback(reason) for callback in ctx._shutdown_callbacks))


def text_session(model: llm.LLM[Any]) -> AgentSession[None]:
    """A text-only ``AgentSession``: no VAD, no turn detector, no retries on LLM errors."""
    return AgentSession(
        llm=model,
        vad=None,
        turn_handling={"turn_detection": None},
        conn_options=SessionConnectOptions(llm_conn_options=APIConnectOptions(max_retry=0)),
    )


# -- job processes, as a LiveKit worker runs them -----------------------------------------


def _no_setup(_proc: JobProcess) -> None:
    """The job process's setup function (module-level: LiveKit pickles it by name)."""


@asynccontextmanager
async def job_process(
    server: AgentServer,
    *,
    job_id: str,
    metadata: str = "",
    room_name: str = "offline-room",
    close_timeout: float = 10.0,
    session_end_timeout: float = 300.0,
) -> AsyncIterator[ProcJobExecutor]:
    """Run one job of ``server`` in a process of its own, as a LiveKit worker does.

    The entrypoint and ``on_session_end`` registered with ``@server.rtc_session`` are pickled
    into a new process (forkserver on Linux, spawn elsewhere: the worker's default) by
    LiveKit's own ``ProcJobExecutor``, and a fake job (``is_fake_job()`` true: its room is a
    mock that nobody joins) is launched there with ``metadata``. The job runs until it shuts
    itself down (``await exe.join()``), the worker asks it to stop (``await exe.aclose()``),
    or it is killed (``await exe.kill()``); leaving the block stops it if it still runs.

    The new process imports the calling script again: run it under
    ``if __name__ == "__main__":`` (a script without that guard starts the job again from the
    job's process, which fails).

    Args:
        server: The agent's server; its module must be importable by name.
        job_id: The job's id.
        metadata: ``ctx.job.metadata`` in the job.
        room_name: ``ctx.job.room.name`` in the job.
        close_timeout: The worker's ``shutdown_process_timeout``.
        session_end_timeout: The worker's ``session_end_timeout``.
    """
    entrypoint = server._entrypoint_fnc
    if entrypoint is None:
        raise ValueError("the server has no entrypoint: decorate one with @server.rtc_session")
    context = "forkserver" if sys.platform.startswith("linux") else "spawn"
    executor = ProcJobExecutor(
        initialize_process_fnc=_no_setup,
        job_entrypoint_fnc=entrypoint,
        session_end_fnc=server._session_end_fnc,
        simulation_end_fnc=None,
        inference_executor=None,
        initialize_timeout=60.0,
        close_timeout=close_timeout,
        session_end_timeout=session_end_timeout,
        memory_warn_mb=0,
        memory_limit_mb=0,
        ping_interval=2.5,
        ping_timeout=90.0,
        high_ping_threshold=5.0,
        http_proxy=None,
        mp_ctx=mp.get_context(context),
        loop=asyncio.get_running_loop(),
    )
    await executor.start()
    try:
        await executor.initialize()
        await executor.launch_job(
            RunningJobInfo(
                accept_arguments=JobAcceptArguments(name="agent", identity="agent", metadata=""),
                job=agent_proto.Job(
                    id=job_id,
                    room=models.Room(name=room_name, sid="RM_offline"),
                    type=agent_proto.JobType.JT_ROOM,
                    metadata=metadata,
                ),
                url="",
                token="",
                worker_id="offline",
                fake_job=True,
            )
        )
        yield executor
    finally:
        if executor.exitcode is None:
            await executor.aclose()


# -- the scripted model --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A scripted answer that calls one of the agent's tools."""

    name: str
    arguments: dict[str, Any]


Reply = str | BaseException | ToolCall
"""A scripted answer: a text, an error to raise, or a tool call."""


def is_summary_request(chat_ctx: ChatContext) -> bool:
    """True for caller memory's end-of-call summary request."""
    return any(SUMMARY_INSTRUCTIONS in (m.text_content or "") for m in chat_ctx.messages())


class _Stream(llm.LLMStream):
    def __init__(self, model: ScriptedLLM, reply: Reply, delay: float, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
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
        for i, word in enumerate(self._reply.split(" ")):  # streamed word by word
            piece = word if i == 0 else " " + word
            self._event_ch.send_nowait(
                ChatChunk(id="scripted", delta=ChoiceDelta(role="assistant", content=piece))
            )


class ScriptedLLM(llm.LLM[Any]):
    """An LLM whose answers come from a script; it keeps every request it received.

    Args:
        reply: Answers conversation requests: a fixed reply, a list played in order (then
            ``"Is there anything else?"``), or a function of the request.
        summary: Answers caller memory's summary requests: a dict (sent as JSON), a reply, or
            None to answer them like conversation requests.
        delay: Seconds each conversation answer takes to start.
        summary_delay: Seconds each summary answer takes to start.
    """

    def __init__(
        self,
        reply: Reply | Sequence[str] | Callable[[ChatContext], Reply] = "Hello! How can I help?",
        *,
        summary: dict[str, Any] | Reply | None = "not json",
        delay: float = 0.0,
        summary_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self._reply = reply
        self._lines = list(reply) if isinstance(reply, list | tuple) else None
        self._summary = json.dumps(summary) if isinstance(summary, dict) else summary
        self._delay = delay
        self._summary_delay = summary_delay
        self.requests: list[ChatContext] = []
        """Every request received, in order."""

    @property
    def model(self) -> str:
        """``scripted``."""
        return "scripted"

    @property
    def provider(self) -> str:
        """``caller_memory.testing``."""
        return "caller_memory.testing"

    @property
    def conversation_requests(self) -> list[ChatContext]:
        """Requests of the conversation, summaries left out."""
        return [r for r in self.requests if not is_summary_request(r)]

    @property
    def summary_requests(self) -> list[ChatContext]:
        """Caller memory's summary requests."""
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
        """Answer from the script."""
        self.requests.append(chat_ctx.copy())
        if self._summary is not None and is_summary_request(chat_ctx):
            reply, delay = self._summary, self._summary_delay
        else:
            reply, delay = self._next_reply(chat_ctx), self._delay
        return _Stream(
            self, reply, delay, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )

    def _next_reply(self, chat_ctx: ChatContext) -> Reply:
        reply = self._reply
        if self._lines is not None:
            return self._lines.pop(0) if self._lines else "Is there anything else?"
        if isinstance(reply, str | BaseException | ToolCall):
            return reply
        assert callable(reply)
        return reply(chat_ctx)
