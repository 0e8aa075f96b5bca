"""The guide's session manager: one object for the calls of a process, made of three parts
that change for different reasons: the call's life (:mod:`.lifecycle`), the caller's rights
(:mod:`.rights`) and what outages leave behind (:mod:`.maintenance`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import RedisConfig
from ..exceptions import CallerMemoryError
from ..outbox import Outbox, outbox_target
from ..recovery import CLOSE_WAIT_S, Recovery
from ..redaction import Redactor
from ..store import MemoryStore, open_store
from ..summarizer import Summarizer
from ..telemetry import observe_outbox
from .lifecycle import CallLifecycle
from .maintenance import Maintenance
from .rights import CallerRights
from .state import CallState
from .turns import TurnRecorder

if TYPE_CHECKING:  # the model's type only: LiveKit Agents loads with the first model asked
    from livekit.agents import llm as lk_llm

__all__ = ["SessionManager", "get_session_manager", "init_session_manager"]


class SessionManager(CallLifecycle, CallerRights, Maintenance):
    """Keeps the calls in progress and turns each finished one into memory.

    Nothing a call learned is lost to an outage: turns are journaled as the call goes (a
    worker killed mid-call loses at most its last turn, and recovery saves such calls later),
    and a call that cannot be saved at hang-up goes to a durable local outbox, written at start,
    every ``MEMORY_OUTBOX_FLUSH_S`` and by ``caller-memory flush`` (see :mod:`..recovery`).

    Args:
        store: Where memory is kept (connected or not: a down store means calls without
            memory, not failed calls).
        llm: Summarizes calls at hang-up; None stores a deterministic summary.
        owns_store: Close the store in :meth:`aclose`.
        outbox: Where unsaved calls wait; ``MEMORY_DATA_DIR/outbox`` by default.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        llm: lk_llm.LLM[Any] | None = None,
        owns_store: bool = False,
        outbox: Outbox | None = None,
    ) -> None:
        _ = store.hasher  # the secret is checked (or the development one made) now, not per call
        self._store = store
        self._config = store.config
        redact = Redactor(self._config.redact_kinds, region=self._config.default_region or "US")
        self._recorder = TurnRecorder(store, redact)
        self._summarizer = Summarizer(llm, timeout=self._config.summary_timeout_s, redact=redact)
        self._owns_store = owns_store
        self._outbox = outbox or Outbox(
            self._config.data_dir / "outbox", target=outbox_target(store)
        )
        self._calls: dict[str, CallState] = {}
        self._ending: dict[str, CallState] = {}
        self._recovery = Recovery(
            store,
            self._outbox,
            self._summarizer,
            is_live=self._is_live,
            live_calls=self._journaled_calls,
        )
        observe_outbox(self._outbox)

    @classmethod
    async def open(
        cls,
        llm: lk_llm.LLM[Any] | None = None,
        *,
        config: RedisConfig | None = None,
        store: MemoryStore | None = None,
        connect_later: bool = False,
    ) -> SessionManager:
        """A manager on the store the settings ask for, its maintenance started.

        Args:
            llm: Any LiveKit LLM, used to summarize calls.
            config: Settings; :meth:`RedisConfig.from_env` when omitted.
            store: A store to use as is (not closed by :meth:`aclose`); otherwise one is
                opened from ``config`` (Redis, the embedded server, or in-process memory).
            connect_later: Return at once and connect in the background (for a call already
                waiting); the first lookup is then bounded by its budget like any other.
        """
        owns = store is None
        if store is None:
            store = await open_store(config, connect_later=connect_later)
        manager = cls(store, llm=llm, owns_store=owns)
        manager.start_maintenance()
        return manager

    @property
    def store(self) -> MemoryStore:
        """The memory store."""
        return self._store

    @property
    def config(self) -> RedisConfig:
        """The settings in force."""
        return self._config

    @property
    def outbox(self) -> Outbox:
        """Calls that wait for the store to come back."""
        return self._outbox

    async def aclose(self, *, held_wait_s: float = CLOSE_WAIT_S) -> None:
        """End the calls still open, stop the maintenance, and close the store if owned.

        Calls held in memory (the store and the outbox's disk both refused them) are tried
        again, for up to ``held_wait_s`` (by default what is left of LiveKit's shutdown window
        after the plugin's shutdown callback); those still held then are lost, and an ERROR
        line says how many and why.
        """
        for session_id in list(self._calls):
            await self.end_session(session_id)
        await self.stop_maintenance()
        await self.release_held(held_wait_s)
        if self._owns_store:
            await self._store.disconnect()


_manager: SessionManager | None = None


async def init_session_manager(
    llm: lk_llm.LLM[Any] | None = None,
    *,
    config: RedisConfig | None = None,
    store: MemoryStore | None = None,
    connect_later: bool = False,
) -> SessionManager:
    """Create the process's session manager (the guide's entry point); see
    :meth:`SessionManager.open` for the arguments. :func:`get_session_manager` returns it."""
    global _manager
    _manager = await SessionManager.open(
        llm, config=config, store=store, connect_later=connect_later
    )
    return _manager


def get_session_manager() -> SessionManager:
    """The manager made by :func:`init_session_manager`.

    Raises:
        CallerMemoryError: :func:`init_session_manager` has not run in this process.
    """
    if _manager is None:
        raise CallerMemoryError("call init_session_manager() first")
    return _manager
