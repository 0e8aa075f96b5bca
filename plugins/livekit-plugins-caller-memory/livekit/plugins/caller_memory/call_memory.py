"""Caller memory for one call: who the caller is, their memory in the call's agents, the
turns and the save, following the room's and the session's events (:class:`CallMemory`)."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, llm

from . import prompts
from .agent_context import memory_tools, with_memory
from .calls import SessionContext, SessionManager
from .identity import in_trunk_region, trunk_region
from .log import logger
from .models import CallerProfile
from .participants import (
    CALLER_KINDS,
    CallerChoice,
    caller_phone_number,
    hung_up,
    is_attested,
    trunk_phone_number,
    why_not_caller,
)
from .run_now import run_now

__all__ = ["CallMemory", "OnCaller"]

OnCaller = Callable[["CallMemory"], Awaitable[None] | None]
"""The greeting hook: called when a caller's memory is loaded after ``attach`` returned."""

_region_writes: set[asyncio.Task[None]] = set()
"""Writes of a trunk's region under way (:meth:`CallMemory._note_trunk_region`)."""


class CallMemory:
    """Caller memory for one call: who the caller is, their memory in the agents, the save.

    Made by :meth:`CallerMemory.attach`; not meant to be built by hand. It follows the room
    (the caller joining late, their number arriving late, a hang-up) and the session (turns,
    agent handoffs, the close).
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        job_id: str,
        session_id: str,
        session: AgentSession[Any],
        summary_llm: llm.LLM[Any] | None,
        use_session_llm: bool,
        on_caller: OnCaller | None,
    ) -> None:
        self._manager = manager
        self._job_id = job_id
        self._session_id = session_id
        self._session = session
        self._summary_llm = summary_llm
        self._use_session_llm = use_session_llm
        self._on_caller = on_caller
        self._context = SessionContext(session_id=session_id, status="no_number")
        self._choice = CallerChoice(trust_standard=manager.config.trust_participant_numbers)
        """Who the caller is: decided once, by the rules of :mod:`.participants`."""
        self._not_callers: set[str] = set()
        """Identities of participants said not to be the caller (each said once)."""
        self._caller_arrived = asyncio.Event()
        self._starting: asyncio.Task[SessionContext] | None = None
        """The call's start (the lookup): it goes on when ``attach`` is cancelled under it."""
        self._early_turns: list[tuple[str, str]] = []
        """Turns said before the call's start finished (a session started before ``attach``)."""
        self._attached = False
        """``attach`` returned: a caller identified from now on fires ``on_caller``."""
        self._identifying: asyncio.Task[None] | None = None
        self._finish_task: asyncio.Task[CallerProfile | None] | None = None
        self._agents: weakref.WeakSet[Agent] = weakref.WeakSet()
        """The agents that have the memory (and, once there is a number, the tools)."""
        self._agent: Agent | None = None

    # -- what is known ---------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The id the call is stored under: the LiveKit job id (``<job id>-2``, ... for a
        second session in the same job)."""
        return self._session_id

    @property
    def job_id(self) -> str:
        """The LiveKit job the call belongs to."""
        return self._job_id

    @property
    def context(self) -> SessionContext:
        """What is known about the caller (``is_returning``, ``greeting_context``, profile)."""
        return self._context

    @property
    def is_returning(self) -> bool:
        """True when the caller has called before and their memory was loaded."""
        return self._context.is_returning

    @property
    def participant(self) -> rtc.RemoteParticipant | None:
        """The caller's participant, when one was found."""
        return self._choice.participant

    @property
    def greeting_instructions(self) -> str:
        """Instructions for the first reply: a welcome back by name, or the normal greeting."""
        ctx = self._context
        return prompts.greeting_instructions(
            returning=ctx.is_returning,
            has_name=ctx.caller_name is not None,
            disclosure=ctx.disclosure,
            ask_consent=self._manager.config.consent_required
            and not (ctx.profile is not None and ctx.profile.consented_at is not None),
        )

    async def wait_for_caller(self) -> SessionContext:
        """Wait until a caller is in the room (and looked up, when they carry a number)."""
        await self._caller_arrived.wait()
        if self._identifying is not None:
            await asyncio.shield(self._identifying)
        return self._context

    # -- the call's start (by CallerMemory.attach) -----------------------------------------

    def follow(self, room: rtc.Room) -> None:
        """Follow the session's events (turns, handoffs, the close) and the room's (the
        caller joining, their attributes changing, their hang-up). :meth:`CallerMemory.attach`
        drives a call's three steps, in order: this, :meth:`open`, then :meth:`before_exit`."""
        session = self._session
        session.on("conversation_item_added", self._on_item_added)
        session.on("close", self._on_close)
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_attributes_changed", self._on_attributes_changed)
        room.on("participant_disconnected", self._on_participant_disconnected)

    async def open(
        self,
        ctx: JobContext,
        agent: Agent | None,
        *,
        participant: rtc.RemoteParticipant | None,
        phone_number: str | None,
        caller_wait_s: float | None,
    ) -> None:
        """Find the caller, look them up, and give ``agent`` their memory: the second step
        :meth:`CallerMemory.attach` drives (which explains the arguments)."""
        if participant is not None:
            self._choice.take(participant)  # the app's word
            self._caller_arrived.set()
        elif phone_number is not None:
            self._choice.close()  # the app decided the call: nobody who joins is its caller
        elif self._choice.pick(ctx.room) is not None:  # among those in the room already
            self._caller_arrived.set()
        elif not ctx.is_fake_job():  # a fake job's mock room never has anyone join
            await ctx.connect()  # idempotent; session.start would do it a moment later
            await self._wait_for_caller(caller_wait_s)
        if phone_number is None and self.participant is not None:
            phone_number = self._number(self.participant)
        await self._start(phone_number)
        if agent is not None:
            await self.load_into(agent)
        self._attached = True

    async def _wait_for_caller(self, wait_s: float | None) -> None:
        try:
            await asyncio.wait_for(self._caller_arrived.wait(), wait_s)
        except asyncio.TimeoutError:
            logger.info(
                "no caller in the room yet: the call starts without memory, and gets it when "
                "the caller joins",
                extra={"waited_s": wait_s},
            )

    # -- the caller ------------------------------------------------------------------------

    async def _start(self, phone_number: str | None) -> None:
        participant = self.participant
        # A task, shielded: a caller who hangs up while the lookup waits on Redis ends the job,
        # which may cancel attach; the call is still opened, and then ended and saved.
        self._starting = asyncio.get_running_loop().create_task(
            self._manager.start_session(
                session_id=self._session_id,
                phone_number=phone_number,
                verified=participant is not None and self._attested(participant),
            ),
            name=f"caller_memory.start.{self._session_id}",
        )
        self._context = await asyncio.shield(self._starting)
        for role, text in self._early_turns:
            self._manager.add_turn(self._session_id, role, text)
        self._early_turns.clear()
        if self._context.status == "timeout" and self._identifying is None:
            # The lookup missed its budget: it goes on in the background, and the agent gets
            # the caller's memory before its next reply, as for a number that arrives late.
            self._identifying = asyncio.get_running_loop().create_task(
                self._identify(None), name=f"caller_memory.late_lookup.{self._session_id}"
            )

    @property
    def _started(self) -> bool:
        return self._starting is not None

    def _number(self, participant: rtc.Participant) -> str | None:
        config = self._manager.config
        number = caller_phone_number(participant, trust_standard=config.trust_participant_numbers)
        if number is not None and config.default_region is None:
            # A national number is read in the region of the trunk the caller dialled.
            trunk = trunk_phone_number(participant)
            number = in_trunk_region(number, trunk)
            self._note_trunk_region(trunk)
        return number

    def _note_trunk_region(self, trunk_number: str | None) -> None:
        """Record the trunk's region (``US``, never a number) for the operator console, which
        reads numbers typed without a country code in it: in the background, after the call's
        start (the greeting never waits for it), and never failing the call."""
        region = trunk_region(trunk_number) if trunk_number else None
        if region is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._write_trunk_region(region), name=f"caller_memory.trunk_region.{self._session_id}"
        )
        _region_writes.add(task)  # held: a task nobody holds may be collected mid-write
        task.add_done_callback(_region_writes.discard)

    async def _write_trunk_region(self, region: str) -> None:
        if self._starting is not None:  # set by now: _start runs before this task does
            await asyncio.wait([self._starting])  # after the lookup, off the greeting's path
        try:
            await self._manager.store.note_trunk_region(region)
        except Exception as e:  # a hint for the console: a call never fails for it
            logger.debug(
                "the trunk's region was not recorded",
                extra={"session_id": self._session_id, "error": type(e).__name__},
            )

    def _attested(self, participant: rtc.Participant) -> bool:
        config = self._manager.config
        return is_attested(participant, config.verified_attribute, config.verified_value_set)

    def _consider(self, participant: rtc.RemoteParticipant) -> None:
        """A participant joined, came back or changed attributes: is it the caller?

        :class:`~.participants.CallerChoice` decides, once: a dialled leg (a supervisor, a
        transfer target) is never the caller, and nobody replaces the caller, with a number
        or without.
        """
        offer = self._choice.offer(participant)
        if offer not in ("chosen", "again"):
            identity = getattr(participant, "identity", None)
            if (
                getattr(participant, "kind", None) in CALLER_KINDS
                and offer != "decided"
                and isinstance(identity, str)
                and identity not in self._not_callers
            ):
                self._not_callers.add(identity)
                # Who joined, never their identity or number (LiveKit's is sip_<number>).
                logger.info(
                    "a participant joined who is not the caller: %s",
                    why_not_caller(participant) or "the call's caller is chosen already",
                    extra={"session_id": self._session_id},
                )
            return
        self._caller_arrived.set()
        number = self._number(participant)
        if number and self._started and self._identifying is None and self._needs_number():
            self._identifying = asyncio.get_running_loop().create_task(
                self._identify(number), name=f"caller_memory.identify.{self._session_id}"
            )

    def _needs_number(self) -> bool:
        return self._context.status in ("no_number", "invalid_number")

    async def _identify(self, number: str | None) -> None:
        # The number arrived after the call started (or, None, the lookup at the start missed
        # its budget): look the caller up now, and give the live agent their memory before its
        # next reply.
        if number is None:
            context = await self._manager.finish_lookup(self._session_id)
        else:
            verified = self.participant is not None and self._attested(self.participant)
            context = await self._manager.identify_caller(
                self._session_id, number, verified=verified
            )
        if context is self._context or context is None:
            return
        self._context = context
        if self._agent is not None:
            await self.load_into(self._current_agent() or self._agent)
        if self._attached and self._on_caller is not None:
            result = self._on_caller(self)
            if inspect.isawaitable(result):
                await result

    # -- the agents ------------------------------------------------------------------------

    async def load_into(self, agent: Agent, *, tools: bool = True) -> None:
        """Put the caller's memory into ``agent``'s context, before its next reply.

        The memory goes in as a separate fenced message (id ``caller_memory``): the agent's
        own instructions are left exactly as they are. With ``tools``, the agent also gets the
        memory tools (:meth:`tools`) once the caller has a number.
        """
        self._agent = agent
        self._agents.add(agent)
        await agent.update_chat_ctx(with_memory(agent.chat_ctx, self._context.memory_prompt()))
        if tools and self._wants_tools(agent):
            await agent.update_tools([*agent.tools, *self.tools()])

    def _wants_tools(self, agent: Agent) -> bool:
        if self._context.status in ("no_number", "invalid_number"):
            return False
        names = {tool.id for tool in agent.tools if isinstance(tool, llm.Tool)}
        return "forget_me" not in names

    def _prepare(self, agent: Agent) -> None:
        """The session hands over to ``agent`` (it has not started yet): give it the memory and
        the tools now, before LiveKit starts it and before its first reply."""
        if agent in self._agents:
            return
        self._agent = agent
        self._agents.add(agent)
        # Agent.update_chat_ctx and update_tools finish without suspending while the agent has
        # not started: run them to their end here, in the event handler, so that they land
        # before LiveKit starts the agent (a task would race it).
        run_now(agent.update_chat_ctx(with_memory(agent.chat_ctx, self._context.memory_prompt())))
        if self._wants_tools(agent):
            run_now(agent.update_tools([*agent.tools, *self.tools()]))

    def _current_agent(self) -> Agent | None:
        try:
            return self._session.current_agent
        except RuntimeError:  # the session has not started
            return None

    async def verify(self) -> SessionContext:
        """The app verified the caller (a PIN, a security question): give the current agent
        everything remembered, past calls included, from its next reply on."""
        context = self._manager.mark_verified(self._session_id)
        if context is not None:
            self._context = context
            agent = self._current_agent() or self._agent
            if agent is not None:
                await self.load_into(agent, tools=False)
        return self._context

    # -- the caller's choices --------------------------------------------------------------

    def dont_remember(self) -> None:
        """Do not store this call (the caller asked); earlier memory stays."""
        self._manager.dont_remember(self._session_id)

    def set_consent(self, granted: bool) -> None:
        """Record whether the caller agreed to be remembered (``MEMORY_CONSENT_REQUIRED``)."""
        self._manager.set_consent(self._session_id, granted)

    async def forget_caller(self) -> list[str]:
        """Erase everything held about this caller now, and do not store this call."""
        return await self._manager.forget_caller(session_id=self._session_id)

    def tools(self) -> list[llm.FunctionTool[..., Any]]:
        """Function tools that let the caller control their memory through the agent:
        ``forget_me`` (confirms first), ``dont_remember_this_call``, and with
        ``MEMORY_CONSENT_REQUIRED`` ``record_memory_consent``."""
        return memory_tools(self._manager, self._session_id)

    def add_turn(self, role: str, text: str) -> None:
        """Record a turn by hand (the session's events already do this)."""
        if self._starting is None or not self._starting.done():
            self._early_turns.append((role, text))  # recorded once the call has started
            return
        self._manager.add_turn(self._session_id, role, text)

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> asyncio.Task[CallerProfile | None]:
        """Summarize and save the call, once; later calls return the same task."""
        if self._finish_task is None:
            self._finish_task = asyncio.get_running_loop().create_task(
                self._finish(), name=f"caller_memory.finish.{self._session_id}"
            )
        return self._finish_task

    async def wait_saved(self, timeout: float | None = None) -> CallerProfile | None:
        """Finish the call if needed and wait for its save (shielded from cancellation).

        Returns:
            The caller's profile as saved; None when there was nothing to save, the call went
            to the outbox, or ``timeout`` passed first (the save goes on).
        """
        task = self.finish()
        done, _ = await asyncio.wait([task], timeout=timeout)
        return task.result() if done else None

    async def _finish(self) -> CallerProfile | None:
        if self._starting is None:
            return None  # no caller ever came: nothing to save
        await asyncio.wait([self._starting])  # a hang-up during the lookup: the call still ends
        if self._starting.cancelled() or self._starting.exception() is not None:
            return None
        for role, text in self._early_turns:
            self._manager.add_turn(self._session_id, role, text)
        self._early_turns.clear()
        if self._identifying is not None:
            await asyncio.wait([self._identifying])  # a late caller's lookup, then the save
        return await self._manager.end_session(self._session_id, llm=self._summarizer())

    def _summarizer(self) -> llm.LLM[Any] | None:
        if self._summary_llm is not None or not self._use_session_llm:
            return self._summary_llm
        model = self._session.llm
        if isinstance(model, llm.LLM):
            return model
        if isinstance(model, llm.RealtimeModel):
            _warn_realtime_once()
        return None

    async def before_exit(self, wait_s: float) -> None:
        """The job shuts down: make sure the call is saved, or in the outbox, within
        ``wait_s``. The last step :meth:`CallerMemory.attach` drives (its shutdown callback)."""
        # The last code LiveKit runs in the job, and the process may be killed any moment from
        # here. The save normally ended in on_session_end; if it still runs (on_session_end not
        # wired, a slow LLM or store), the call is put in the outbox first, then its save gets
        # what is left of LiveKit's window (a save that lands after all makes the outbox copy
        # a replay, stored once).
        task = self.finish()
        if not task.done():
            self._manager.keep_unfinished(self._session_id)
            await asyncio.wait([task], timeout=wait_s)

    # -- LiveKit's events (handlers are sync: LiveKit's emitter refuses coroutines) ---------

    def _on_item_added(self, event: Any) -> None:
        item = getattr(event, "item", None)
        if isinstance(item, llm.ChatMessage):
            if item.role in ("user", "assistant"):
                self.add_turn(item.role, item.text_content or "")
        elif isinstance(item, llm.AgentHandoff):
            agent = self._current_agent()
            if agent is not None:
                self._prepare(agent)

    def _on_close(self, _event: Any) -> None:
        self.finish()

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        self._consider(participant)

    def _on_attributes_changed(
        self, _changed: dict[str, str], participant: rtc.Participant
    ) -> None:
        if isinstance(participant, rtc.RemoteParticipant):
            self._consider(participant)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        caller = self.participant
        if caller is None or participant.identity != caller.identity:
            return
        if hung_up(participant):
            self.finish()
        else:  # a web caller's network drop: they may come back, and the call goes on
            logger.info(
                "caller disconnected, waiting for them to come back",
                extra={"session_id": self._session_id, "reason": participant.disconnect_reason},
            )


_realtime_warned = False


def _warn_realtime_once() -> None:
    global _realtime_warned
    if not _realtime_warned:
        _realtime_warned = True
        logger.warning(
            "the session's model is a realtime model, which cannot summarize a call: calls get "
            "the fallback summary. Pass CallerMemory(llm=...) to summarize with an LLM."
        )
