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

Each call attached is a :class:`~.call_memory.CallMemory`; what its agents are given is in
:mod:`.agent_context`.

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
import contextlib
import inspect
import threading
from typing import Any

import phonenumbers
from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, Plugin, llm

from . import worker_settings
from .call_memory import CallMemory, OnCaller
from .calls import SessionManager
from .config import RedisConfig
from .config_sources import settings_variables
from .identity import load_hasher
from .log import logger
from .outbox import check_outbox_folder
from .secret import load_dev_secret
from .store import MemoryStore
from .version import __version__

__all__ = ["CallerMemory", "on_session_end"]

SHUTDOWN_MARGIN_S = 3.0
"""What the shutdown callback leaves of LiveKit's ``shutdown_process_timeout`` (the time between
the worker asking a job to stop and its kill) for the rest of the job's shutdown."""
LIVEKIT_SHUTDOWN_PROCESS_TIMEOUT_S: float = (
    inspect.signature(AgentServer).parameters["shutdown_process_timeout"].default
)
"""LiveKit's own default for ``AgentServer(shutdown_process_timeout=...)`` (10 s in 1.8)."""

_calls: dict[str, list[CallMemory]] = {}
"""The calls of this process, by job id: what :func:`on_session_end` waits for. A job usually
holds one; an app that starts a second ``AgentSession`` in the same job (a restart after an
error) attaches a second call, saved under a session id of its own."""


def _session_id(job_id: str) -> str:
    """The id a new call of this job is stored under: the job id, then ``<job id>-2``, ...

    A save is idempotent by session id: a second session of the job stored under the first's id
    would be taken for a replay of it, and its turns never reach memory."""
    taken = len(_calls.get(job_id, ()))
    return job_id if taken == 0 else f"{job_id}-{taken + 1}"


def _unregister(call: CallMemory) -> None:
    calls = _calls.get(call.job_id, [])
    if call in calls:
        calls.remove(call)
    if not calls:
        _calls.pop(call.job_id, None)


async def on_session_end(ctx: JobContext) -> None:
    """Save this job's call inside LiveKit's session-end window, and wait for it.

    Pass it as ``@server.rtc_session(on_session_end=caller_memory.on_session_end)``, or await
    it from an ``on_session_end`` of your own. It is a module-level function: LiveKit pickles
    it into each job process by name.
    """
    for call in list(_calls.get(ctx.job.id, ())):
        await call.wait_saved()


def _warm_up(config: RedisConfig) -> None:
    """In a job process, before its call: what the first lookup would otherwise load while
    the caller waits (the secret's strength check, phonenumbers' patterns; ~25 ms here)."""
    with contextlib.suppress(Exception):  # any problem is the call's to report, not this
        hasher = load_hasher(config)
        for region in dict.fromkeys(("US", config.default_region or "US")):
            example = phonenumbers.example_number(region)
            if example is not None:
                hasher.hashes(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
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
        worker = not worker_settings.is_child_process()  # the worker, not one of its jobs
        self._config.check_secret(production=worker and worker_settings.in_production())
        if worker:
            if self._config.persistence:  # where calls wait while Redis is down
                check_outbox_folder(self._config.data_dir)
            if self._config.phone_hash_secret is None:
                load_dev_secret()  # its warning when the worker starts, not at its first call
            worker_settings.publish(settings_variables())
            logger.info(
                "caller memory settings checked; its jobs will use them: %s, key prefix %r",
                self._config.describe_server(),
                self._config.key_prefix,
            )
        else:
            _warm_up(self._config)
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
        call.follow(ctx.room)

        async def before_exit(reason: str) -> None:
            loop = asyncio.get_running_loop()
            until = loop.time() + self._shutdown_process_timeout - SHUTDOWN_MARGIN_S
            try:
                await call.before_exit(until - loop.time())
            finally:
                _unregister(call)
            self._open_calls.discard(call)
            if not self._open_calls:  # the job ends: leave no background task pending
                await manager.stop_maintenance()
                await manager.release_held(until - loop.time())
                await manager.flush_before_exit(until - loop.time())

        ctx.add_shutdown_callback(before_exit)
        await call.open(
            ctx,
            agent,
            participant=participant,
            phone_number=phone_number,
            caller_wait_s=self._caller_wait_s,
        )
        return call

    async def on_session_end(self, ctx: JobContext) -> None:
        """Same as the module's :func:`on_session_end` (which needs no ``memory`` object)."""
        await on_session_end(ctx)

    async def aclose(self) -> None:
        """Save the calls still open and close the store."""
        for call in list(self._open_calls):
            await call.wait_saved()
            _unregister(call)
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


class CallerMemoryPlugin(Plugin):
    """Registers caller memory with LiveKit Agents (its logger and version): a worker logs it
    at its start and preloads the package in its forkserver."""

    def __init__(self) -> None:
        package = __name__.rsplit(".", 1)[0]
        super().__init__(package, __version__, package, logger)


if threading.current_thread() is threading.main_thread():  # LiveKit refuses another thread
    Plugin.register_plugin(CallerMemoryPlugin())
