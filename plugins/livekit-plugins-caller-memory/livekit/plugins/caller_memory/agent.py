"""The LiveKit entry: caller memory added to a job and its ``AgentSession`` in a few lines.

```python
from livekit.plugins import caller_memory

memory = caller_memory.CallerMemory()    # settings from the environment

@server.rtc_session(agent_name="my-agent", on_session_end=caller_memory.on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(llm=..., stt=..., tts=...)
    agent = MyAgent()
    call = await memory.attach(ctx, session, agent)   # waits for the caller, loads their memory
    await session.start(agent=agent, room=ctx.room)
    session.generate_reply(instructions=call.greeting_instructions)
```

How this holds in LiveKit's job model (``ipc/job_proc_executor.py``): each job runs in a process
of its own, into which the worker pickles the entrypoint and ``on_session_end``. The
entrypoint's module is imported there afresh, so ``memory`` is that process's own; the calls it
attaches are kept in a registry of the process, by job id, which :func:`on_session_end` reads.
A pickled ``memory.on_session_end`` works the same way, and pickling never takes the LLM along
(an OpenAI client holds locks that cannot be pickled).

When a job ends, LiveKit closes the session, then runs ``on_session_end`` (within
``session_end_timeout``, 300 s by default), then tells the worker it is shutting down: the save
happens there. Shutdown callbacks come last, with about 10 s left before the process is killed
when the worker asked the job to stop (``shutdown_process_timeout``); the one added here puts
a call whose save still runs in the local outbox first, so that the kill loses nothing, then
waits for the save for what is left of that window.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, llm

from . import prompts, worker_settings
from .calls import SessionContext, SessionManager
from .config import RedisConfig
from .config_sources import settings_variables
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
from .store import MemoryStore

__all__ = ["CallMemory", "CallerMemory", "OnCaller", "on_session_end"]

MEMORY_MESSAGE_ID = "caller_memory"
"""Id of the system message that carries the caller's memory in an agent's context."""
SHUTDOWN_MARGIN_S = 3.0
"""What the shutdown callback leaves of LiveKit's ``shutdown_process_timeout`` (the time between
the worker asking a job to stop and its kill) for the rest of the job's shutdown."""
LIVEKIT_SHUTDOWN_PROCESS_TIMEOUT_S: float = (
    inspect.signature(AgentServer).parameters["shutdown_process_timeout"].default
)
"""LiveKit's own default for ``AgentServer(shutdown_process_timeout=...)`` (10 s in 1.8)."""

OnCaller = Callable[["CallMemory"], Awaitable[None] | None]
"""The greeting hook: called when a caller's memory is loaded after ``attach`` returned."""

_calls: dict[str, list[CallMemory]] = {}
"""The calls of this process, by job id: what :func:`on_session_end` waits for. A job usually
holds one; an app that starts a second ``AgentSession`` in the same job (a restart after an
error) attaches a second call, saved under a session id of its own."""


_region_writes: set[asyncio.Task[None]] = set()
"""Writes of a trunk's region under way (:meth:`CallMemory._note_trunk_region`)."""


def _session_id(job_id: str) -> str:
    """The id a new call of this job is stored under: the job id, then ``<job id>-2``, ...

    A save is idempotent by session id: a second session of the job stored under the first's id
    would be taken for a replay of it, and its turns never reach memory."""
    taken = len(_calls.get(job_id, ()))
    return job_id if taken == 0 else f"{job_id}-{taken + 1}"


async def on_session_end(ctx: JobContext) -> None:
    """Save this job's call inside LiveKit's session-end window, and wait for it.

    Pass it as ``@server.rtc_session(on_session_end=caller_memory.on_session_end)``, or await
    it from an ``on_session_end`` of your own. It is a module-level function: LiveKit pickles
    it into each job process by name.
    """
    for call in list(_calls.get(ctx.job.id, ())):
        await call.wait_saved()


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
        await agent.update_chat_ctx(self._with_memory(agent.chat_ctx))
        if tools and self._wants_tools(agent):
            await agent.update_tools([*agent.tools, *self.tools()])

    def _with_memory(self, chat_ctx: llm.ChatContext) -> llm.ChatContext:
        chat_ctx = chat_ctx.copy()
        existing = chat_ctx.get_by_id(MEMORY_MESSAGE_ID)
        if existing is not None:
            chat_ctx.items.remove(existing)
        prompt = self._context.memory_prompt()
        if prompt:
            chat_ctx.add_message(role="system", content=prompt, id=MEMORY_MESSAGE_ID)
        return chat_ctx

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
        _run_now(agent.update_chat_ctx(self._with_memory(agent.chat_ctx)))
        if self._wants_tools(agent):
            _run_now(agent.update_tools([*agent.tools, *self.tools()]))

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

        async def forget_me(confirmed: bool) -> str:
            if not confirmed:
                return prompts.FORGET_ME.ask_first
            outcome = await self._manager.ask_to_forget(self._session_id)
            return prompts.FORGET_ME.requested if outcome == "requested" else prompts.FORGET_ME.done

        async def dont_remember_this_call() -> str:
            self.dont_remember()
            return prompts.DONT_REMEMBER.done

        async def record_memory_consent(agreed: bool) -> str:
            self.set_consent(agreed)
            return prompts.RECORD_CONSENT.agreed if agreed else prompts.RECORD_CONSENT.declined

        found: list[llm.FunctionTool[..., Any]] = [
            llm.function_tool(forget_me, description=prompts.FORGET_ME.description),
            llm.function_tool(
                dont_remember_this_call, description=prompts.DONT_REMEMBER.description
            ),
        ]
        if self._manager.config.consent_required:
            found.append(
                llm.function_tool(
                    record_memory_consent, description=prompts.RECORD_CONSENT.description
                )
            )
        return found

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

    async def _before_exit(self, wait_s: float) -> None:
        # A shutdown callback: the last code LiveKit runs in the job, and the process may be
        # killed any moment from here. The save normally ended in on_session_end; if it still
        # runs (on_session_end not wired, a slow LLM or store), the call is put in the outbox
        # first, then its save gets what is left of LiveKit's window (a save that lands after
        # all makes the outbox copy a replay, stored once).
        try:
            task = self.finish()
            if not task.done():
                self._manager.keep_unfinished(self._session_id)
                await asyncio.wait([task], timeout=wait_s)
        finally:
            calls = _calls.get(self._job_id, [])
            if self in calls:
                calls.remove(self)
            if not calls:
                _calls.pop(self._job_id, None)

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


class CallerMemory:
    """Caller memory for a LiveKit agent: one per process, attached to each call.

    Made at import time next to the ``AgentServer``; in each job process it is made anew
    when the entrypoint's module is imported there. Pickling it (LiveKit pickles
    ``memory.on_session_end`` into job processes) never takes the LLM or a connection along.

    Args:
        llm: Summarizes calls at hang-up (needed with a realtime model, which cannot). Default:
            each session's own LLM.
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        store: A store to use instead of opening one from the settings.
        caller_wait_s: How long :meth:`attach` waits for the caller to join; None (the
            default) waits as ``ctx.wait_for_participant`` does, until one joins or the job
            ends. A caller who joins after this still gets their memory, and ``on_caller``.
        use_session_llm: With no ``llm``, summarize with the session's LLM. False stores the
            deterministic summary of the transcript instead.
        shutdown_process_timeout: The ``shutdown_process_timeout`` given to the
            ``AgentServer`` (LiveKit's default when omitted): a save still running when the job
            shuts down is waited for :data:`SHUTDOWN_MARGIN_S` less than that, after the call
            is put in the outbox, never longer.
    """

    def __init__(
        self,
        *,
        llm: llm.LLM[Any] | None = None,
        config: RedisConfig | None = None,
        store: MemoryStore | None = None,
        caller_wait_s: float | None = None,
        use_session_llm: bool = True,
        shutdown_process_timeout: float | None = None,
    ) -> None:
        self._llm = llm
        self._shutdown_process_timeout = (
            LIVEKIT_SHUTDOWN_PROCESS_TIMEOUT_S
            if shutdown_process_timeout is None
            else shutdown_process_timeout
        )
        self._use_session_llm = use_session_llm
        # Read and checked now, when the worker starts: a bad setting fails the worker, not a
        # call. Its job processes then read the same variables, never .env again.
        self._config = config or (store.config if store else RedisConfig.from_env())
        self._config.check_secret()
        if not worker_settings.is_child_process():  # the worker, not one of its jobs
            worker_settings.publish(settings_variables())
            logger.info(
                "caller memory settings checked; its jobs will use them: %s, key prefix %r",
                self._config.describe_server(),
                self._config.key_prefix,
            )
        self._store = store
        self._caller_wait_s = caller_wait_s
        self._manager: SessionManager | None = None
        self._manager_lock: asyncio.Lock | None = None
        self._manager_loop: asyncio.AbstractEventLoop | None = None
        self._open_calls: set[CallMemory] = set()

    def __reduce__(self) -> tuple[Any, ...]:
        # What LiveKit pickles into a job process with memory.on_session_end: the settings
        # only. The LLM (a client with locks), the store and the calls stay where they are;
        # on_session_end reads the job process's own registry.
        return (
            _unpickled,
            (
                self._config,
                self._caller_wait_s,
                self._use_session_llm,
                self._shutdown_process_timeout,
            ),
        )

    async def manager(self) -> SessionManager:
        """The session manager of this event loop, opened on first use.

        One per loop: LiveKit's thread executor (Windows, console mode) runs each job on a loop
        of its own, and a Redis connection belongs to the loop that opened it.
        """
        loop = asyncio.get_running_loop()
        if self._manager is None or self._manager_loop is not loop:
            if self._manager_lock is None or self._manager_loop is not loop:
                self._manager_lock = asyncio.Lock()
                self._manager_loop = loop
                self._manager = None
            async with self._manager_lock:
                if self._manager is None:
                    # Connecting happens in the background: the first call's lookup is bounded
                    # by its budget like any other, not by a slow connection.
                    self._manager = await SessionManager.open(
                        self._llm, config=self._config, store=self._store, connect_later=True
                    )
        assert self._manager is not None
        return self._manager

    async def attach(
        self,
        ctx: JobContext,
        session: AgentSession[Any],
        agent: Agent | None = None,
        *,
        participant: rtc.RemoteParticipant | None = None,
        phone_number: str | None = None,
        on_caller: OnCaller | None = None,
    ) -> CallMemory:
        """Remember this call: find the caller, load their memory, record and save the call.

        Call it before ``session.start(agent, ...)``: the memory is then in the agent's context
        for its very first reply. It waits for the caller to join (see ``caller_wait_s``); the
        lookup is bounded by ``MEMORY_LOOKUP_TIMEOUT_MS``. Never raises for a missing or bad
        number or an unreachable store. From then on it follows the session's events: turns,
        handoffs to other agents (each gets the memory and the tools), the caller's hang-up,
        the session's close.

        Args:
            ctx: The job.
            session: The call's session.
            agent: The first agent, which receives the caller's memory (without one, the first
                agent the session starts receives it).
            participant: The caller, when the app already has it: taken as it is, whatever
                its kind or direction (an agent that phones people out passes the leg it
                dialled). Without it, the caller is chosen by the rules of
                :mod:`.participants`: someone who rang in, never a leg the call dialled out
                (a supervisor, a transfer target), chosen once and never replaced.
            phone_number: The caller's number, when it comes from somewhere else than the
                participant's attributes (a console test). Without ``participant``, the call
                has no caller participant: nobody who joins becomes its caller.
            on_caller: Called when a caller's memory is loaded after ``attach`` returned (a
                caller who joined late, or whose number arrived late): greet them there.
        """
        manager = await self.manager()
        manager.start_maintenance()  # again, if a job that ended before stopped it
        call = CallMemory(
            manager,
            job_id=ctx.job.id,
            session_id=_session_id(ctx.job.id),
            session=session,
            summary_llm=self._llm,
            use_session_llm=self._use_session_llm,
            on_caller=on_caller,
        )
        _calls.setdefault(ctx.job.id, []).append(call)
        self._open_calls.add(call)
        session.on("conversation_item_added", call._on_item_added)
        session.on("close", call._on_close)
        room = ctx.room
        room.on("participant_connected", call._on_participant_connected)
        room.on("participant_attributes_changed", call._on_attributes_changed)
        room.on("participant_disconnected", call._on_participant_disconnected)

        async def before_exit(reason: str) -> None:
            loop = asyncio.get_running_loop()
            until = loop.time() + self._shutdown_process_timeout - SHUTDOWN_MARGIN_S
            await call._before_exit(until - loop.time())
            self._open_calls.discard(call)
            if not self._open_calls:  # the job ends: leave no background task pending
                await manager.stop_maintenance()
                await manager.release_held(until - loop.time())

        ctx.add_shutdown_callback(before_exit)

        if participant is not None:
            call._choice.take(participant)  # the app's word
            call._caller_arrived.set()
        elif phone_number is not None:
            call._choice.close()  # the app decided the call: nobody who joins is its caller
        elif call._choice.pick(room) is not None:  # among those in the room already
            call._caller_arrived.set()
        elif not ctx.is_fake_job():  # a fake job's mock room never has anyone join
            await ctx.connect()  # idempotent; session.start would do it a moment later
            await self._wait_for_caller(call)
        if phone_number is None and call.participant is not None:
            phone_number = call._number(call.participant)
        await call._start(phone_number)
        if agent is not None:
            await call.load_into(agent)
        call._attached = True
        return call

    async def _wait_for_caller(self, call: CallMemory) -> None:
        try:
            await asyncio.wait_for(call._caller_arrived.wait(), self._caller_wait_s)
        except asyncio.TimeoutError:
            logger.info(
                "no caller in the room yet: the call starts without memory, and gets it when "
                "the caller joins",
                extra={"waited_s": self._caller_wait_s},
            )

    async def on_session_end(self, ctx: JobContext) -> None:
        """Same as the module's :func:`on_session_end` (which needs no ``memory`` object)."""
        await on_session_end(ctx)

    async def aclose(self) -> None:
        """Save the calls still open and close the store."""
        for call in list(self._open_calls):
            await call.wait_saved()
            calls = _calls.get(call._job_id, [])
            if call in calls:
                calls.remove(call)
        self._open_calls.clear()
        if self._manager is not None:
            await self._manager.aclose()
            self._manager = None


def _unpickled(
    config: RedisConfig,
    caller_wait_s: float | None,
    use_session_llm: bool,
    shutdown_process_timeout: float | None = None,
) -> CallerMemory:
    return CallerMemory(
        config=config,
        caller_wait_s=caller_wait_s,
        use_session_llm=use_session_llm,
        shutdown_process_timeout=shutdown_process_timeout,
    )


def _run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that does not suspend to its end, right here. Should it suspend after
    all (a LiveKit release that changed it), it is finished as a task instead."""
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return
    logger.warning("an agent update suspended; finishing it in the background")
    asyncio.get_running_loop().create_task(_resume(coroutine, awaited))


async def _resume(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    # Drive a coroutine already started by hand: wait for what it is waiting on (a future, or
    # None for a bare yield), then let it go on.
    while True:
        if awaited is None:
            await asyncio.sleep(0)
        else:
            await asyncio.wait([awaited])
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return


_realtime_warned = False


def _warn_realtime_once() -> None:
    global _realtime_warned
    if not _realtime_warned:
        _realtime_warned = True
        logger.warning(
            "the session's model is a realtime model, which cannot summarize a call: calls get "
            "the fallback summary. Pass CallerMemory(llm=...) to summarize with an LLM."
        )
