"""The LiveKit-native entry: caller memory added to a job and its ``AgentSession`` in a few lines.

```python
from livekit.plugins import caller_memory

memory = caller_memory.CallerMemory()          # one per process; settings from the environment

@server.rtc_session(agent_name="my-agent", on_session_end=memory.on_session_end)
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(llm=..., stt=..., tts=...)
    agent = MyAgent()
    call = await memory.attach(ctx, session, agent)   # caller found, memory loaded into agent
    await session.start(agent=agent, room=ctx.room)
    session.generate_reply(instructions=call.greeting_instructions)
```

From there on everything is driven by events: turns are captured from
``conversation_item_added``, and when the caller hangs up (``participant_disconnected``, or the
session's ``close``) the call is summarized with the session's LLM and saved. The save is awaited
by ``on_session_end`` and by a job shutdown callback, so it finishes inside LiveKit's shutdown
window instead of being cancelled with the process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, JobContext, llm

from . import prompts
from .calls import SessionContext, SessionManager
from .config import RedisConfig
from .log import logger
from .models import CallerProfile
from .participants import caller_phone_number, find_caller
from .store import MemoryStore

__all__ = ["CallMemory", "CallerMemory"]

MEMORY_MESSAGE_ID = "caller_memory"
"""Id of the system message that carries the caller's memory in the agent's context."""
SHUTDOWN_BUDGET_S = 9.0
"""LiveKit kills a job process ~10 s (``shutdown_process_timeout``) after shutdown starts."""


class CallMemory:
    """Caller memory for one call: what was found at the start, and the save at the end.

    Made by :meth:`CallerMemory.attach`; not meant to be built by hand.
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        session_id: str,
        session: AgentSession[Any],
        summary_llm: llm.LLM[Any] | None,
        use_session_llm: bool,
    ) -> None:
        self._manager = manager
        self._session_id = session_id
        self._session = session
        self._summary_llm = summary_llm
        self._use_session_llm = use_session_llm
        self._context = SessionContext(session_id=session_id, status="no_number")
        self._participant: rtc.RemoteParticipant | None = None
        self._started = False
        self._finish_task: asyncio.Task[CallerProfile | None] | None = None
        self._agent: Agent | None = None
        self._tools_added = False

    @property
    def session_id(self) -> str:
        """The id the call is stored under (the LiveKit job id)."""
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
        return self._participant

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

    async def start(self, phone_number: str | None) -> SessionContext:
        if self._started:
            return self._context
        self._started = True
        self._context = await self._manager.start_session(
            session_id=self._session_id, phone_number=phone_number
        )
        return self._context

    async def load_into(self, agent: Agent, *, tools: bool = True) -> None:
        """Put the caller's memory into ``agent``'s context, before the agent's first reply.

        The memory goes in as a separate fenced message (id ``caller_memory``): the agent's
        own instructions are left exactly as they are. With ``tools``, the agent also gets
        the memory tools (:meth:`tools`).
        """
        self._agent = agent
        prompt = self._context.memory_prompt()
        if prompt:
            chat_ctx = agent.chat_ctx.copy()
            existing = chat_ctx.get_by_id(MEMORY_MESSAGE_ID)
            if existing is not None:
                chat_ctx.items.remove(existing)
            chat_ctx.add_message(role="system", content=prompt, id=MEMORY_MESSAGE_ID)
            await agent.update_chat_ctx(chat_ctx)
        if tools and self._context.status != "no_number" and not self._tools_added:
            self._tools_added = True
            await agent.update_tools([*agent.tools, *self.tools()])

    async def verify(self) -> SessionContext:
        """The app verified the caller (a PIN, a security question): give the agent everything
        remembered, past calls included, from its next reply on."""
        context = self._manager.mark_verified(self._session_id)
        if context is not None:
            self._context = context
            if self._agent is not None:
                await self.load_into(self._agent, tools=False)
        return self._context

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
            deleted = await self.forget_caller()
            logger.info("caller erased on request", extra={"items": len(deleted)})
            return prompts.FORGET_ME.done

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
        self._manager.add_turn(self._session_id, role, text)

    def finish(self) -> asyncio.Task[CallerProfile | None]:
        """Summarize and save the call, once; later calls return the same task."""
        if self._finish_task is None:
            self._finish_task = asyncio.get_running_loop().create_task(
                self._finish(), name=f"caller_memory.finish.{self._session_id}"
            )
        return self._finish_task

    async def wait_saved(self, timeout: float | None = None) -> CallerProfile | None:
        """Finish the call if needed and wait for its save (shielded from cancellation)."""
        task = self.finish()
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            logger.error(
                "caller memory save still running at shutdown",
                extra={"session_id": self._session_id},
            )
            return None

    async def _finish(self) -> CallerProfile | None:
        if not self._started:
            return None
        summary_llm = self._summary_llm
        if summary_llm is None and self._use_session_llm and isinstance(self._session.llm, llm.LLM):
            summary_llm = self._session.llm
        return await self._manager.end_session(self._session_id, llm=summary_llm)

    # -- event handlers (sync: LiveKit's emitter refuses coroutines) ------------------------

    def _on_item_added(self, event: Any) -> None:
        item = getattr(event, "item", None)
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            self.add_turn(item.role, item.text_content or "")

    def _on_close(self, _event: Any) -> None:
        self.finish()

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if self._participant is not None and participant.identity == self._participant.identity:
            self.finish()


class CallerMemory:
    """Caller memory for a LiveKit agent: one per process, attached to each call.

    Args:
        llm: Summarizes calls at hang-up. Default: each session's own LLM.
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        store: A store to use instead of opening one from the settings.
        caller_wait_s: How long :meth:`attach` waits for the caller to join the room.
        use_session_llm: With no ``llm``, summarize with the session's LLM. False stores the
            deterministic summary of the transcript instead.
    """

    def __init__(
        self,
        *,
        llm: llm.LLM[Any] | None = None,
        config: RedisConfig | None = None,
        store: MemoryStore | None = None,
        caller_wait_s: float = 10.0,
        use_session_llm: bool = True,
    ) -> None:
        self._llm = llm
        self._use_session_llm = use_session_llm
        # Read and checked now, when the worker starts: a bad setting fails the worker, not a
        # call.
        self._config = config or (store.config if store else RedisConfig.from_env())
        self._config.check_secret()
        self._store = store
        self._caller_wait_s = caller_wait_s
        self._manager: SessionManager | None = None
        self._manager_lock: asyncio.Lock | None = None
        self._manager_loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[str, CallMemory] = {}

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
    ) -> CallMemory:
        """Remember this call: find the caller, load their memory, record and save the call.

        Call it before ``session.start(agent, ...)``: the memory is then in the agent's context
        for its very first reply. The lookup is bounded by ``MEMORY_LOOKUP_TIMEOUT_MS``;
        past it the call goes on as a new caller's. Never raises for a missing or bad number
        or an unreachable store.

        Args:
            ctx: The job.
            session: The call's session; its events are followed from now on.
            agent: The first agent, which receives the caller's memory.
            participant: The caller, when the app already has it; otherwise the first SIP
                participant (or a standard one carrying ``sip.phoneNumber``) is waited for.
            phone_number: The caller's number, when it comes from somewhere else than the
                participant's attributes (e.g. a console test).
        """
        manager = await self.manager()
        manager.start_maintenance()  # again, if a job that ended before stopped it
        call = CallMemory(
            manager,
            session_id=ctx.job.id,
            session=session,
            summary_llm=self._llm,
            use_session_llm=self._use_session_llm,
        )
        self._calls[call.session_id] = call
        session.on("conversation_item_added", call._on_item_added)
        session.on("close", call._on_close)
        ctx.room.on("participant_disconnected", call._on_participant_disconnected)

        async def save_before_exit() -> None:
            try:
                await call.wait_saved(timeout=SHUTDOWN_BUDGET_S)
            finally:
                self._calls.pop(call.session_id, None)
                if not self._calls:  # the job ends: leave no background task pending
                    await manager.stop_maintenance()

        ctx.add_shutdown_callback(save_before_exit)

        if participant is None and phone_number is None:
            # A fake job (console mode) has a mock room where nobody ever joins: look, but
            # do not wait.
            if ctx.is_fake_job():
                participant = find_caller(ctx.room)
            else:
                await ctx.connect()  # idempotent; session.start would do it a moment later
                participant = await self._wait_for_caller(ctx.room)
        call._participant = participant
        if phone_number is None and participant is not None:
            phone_number = caller_phone_number(participant)
        await call.start(phone_number)
        if agent is not None:
            await call.load_into(agent)
        return call

    async def on_session_end(self, ctx: JobContext) -> None:
        """Pass as ``rtc_session(on_session_end=...)``: the save then gets LiveKit's longer
        session-end window (300 s by default) rather than the 10 s shutdown window."""
        call = self._calls.get(ctx.job.id)
        if call is not None:
            await call.wait_saved()

    async def _wait_for_caller(self, room: rtc.Room) -> rtc.RemoteParticipant | None:
        found = find_caller(room)
        if found is not None:
            return found
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_participant(_participant: rtc.RemoteParticipant) -> None:
            if find_caller(room) is not None and not arrived.done():
                arrived.set_result(None)

        room.on("participant_connected", on_participant)
        try:
            await asyncio.wait_for(arrived, self._caller_wait_s)
        except asyncio.TimeoutError:
            logger.warning(
                "no caller joined the room in time; the call has no memory",
                extra={"waited_s": self._caller_wait_s},
            )
        finally:
            room.off("participant_connected", on_participant)
        return find_caller(room)

    async def aclose(self) -> None:
        """Save the calls still open and close the store."""
        for call in list(self._calls.values()):
            await call.wait_saved()
        self._calls.clear()
        if self._manager is not None:
            await self._manager.aclose()
            self._manager = None
