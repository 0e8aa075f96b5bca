"""A call's turns as they come: cleaned, redacted (a long one in the background, a slice at
a time), kept in the call and journaled."""

from __future__ import annotations

import asyncio

from ..config import RedisConfig
from ..journal import Journal
from ..log import logger
from ..models import MAX_TURN_CHARS, MAX_TURNS, JournalHeader, Turn, clean_text
from ..redaction import Redactor
from ..redaction.slices import SLICE_CHARS, SlicedRedaction
from ..store import MemoryStore
from .state import CallState

__all__ = ["TurnRecorder"]


class TurnRecorder:
    """Records the turns of the calls in progress.

    Args:
        store: Where the journals are written.
        redact: What takes personal data out of a turn.
    """

    def __init__(self, store: MemoryStore, redact: Redactor) -> None:
        self._store = store
        self._config: RedisConfig = store.config
        self._redact = redact

    def add(self, call: CallState, role: str, text: str) -> None:
        """Record one utterance of ``call``; see :meth:`~.manager.SessionManager.add_turn`."""
        if not text or not text.strip():
            return
        if role not in ("user", "assistant"):
            raise ValueError("role must be 'user' or 'assistant'")
        text = text.strip()
        if len(text) > MAX_TURN_CHARS:
            self._say_cut(call, f"a turn keeps its first {MAX_TURN_CHARS:,} characters")
        text = clean_text(text[:MAX_TURN_CHARS]).strip()
        if not text:  # control characters only
            return
        if call.unredacted or (len(text) > SLICE_CHARS and self._redact.enabled):
            # Turns keep their order: any turn after a long one waits behind it.
            call.unredacted.append((role, text))
            if call.redacting is None or call.redacting.done():
                call.redacting = asyncio.get_running_loop().create_task(
                    self._redact_in_slices(call), name=f"caller_memory.redact.{call.session_id}"
                )
            return
        self._keep(call, Turn(role=role, text=self._redact(text)))

    @staticmethod
    def _say_cut(call: CallState, bound: str) -> None:
        if not call.cut:
            call.cut = True
            logger.info("call cut to its bounds: %s", bound, extra={"session_id": call.session_id})

    async def _redact_in_slices(self, call: CallState) -> None:
        while call.unredacted:
            role, text = call.unredacted[0]
            sliced = SlicedRedaction(self._redact, text)
            while not sliced.done:
                sliced.step()
                await asyncio.sleep(0)  # the loop serves the call between slices
            call.unredacted.pop(0)
            self._keep(call, Turn(role=role, text=sliced.result))

    async def redacted(self, call: CallState) -> None:
        """Wait until every turn of ``call`` is redacted and kept."""
        if call.redacting is not None and not call.redacting.done():
            await asyncio.wait([call.redacting])
        self.redact_now(call)

    def redact_now(self, call: CallState) -> None:
        """Redact and keep the turns still waiting, at once (consent splits the call here)."""
        if call.redacting is not None:
            call.redacting.cancel()
            call.redacting = None
        while call.unredacted:
            role, text = call.unredacted.pop(0)
            self._keep(call, Turn(role=role, text=self._redact(text)))

    def _keep(self, call: CallState, turn: Turn) -> None:
        """Keep a redacted turn in the call, and journal it."""
        if len(call.turns) >= MAX_TURNS:
            self._say_cut(call, f"a call keeps its first and last {MAX_TURNS // 2} turns")
            # Keep the opening of the call; drop from the middle to make room for the end.
            del call.turns[MAX_TURNS // 2]
            if call.consent_from > MAX_TURNS // 2:
                call.consent_from -= 1
        call.turns.append(turn)
        if not call.remember:
            return  # the caller opted out: nothing more reaches the store
        if call.journal is not None:
            call.journal.append(turn)
        elif (
            call.may_journal
            and self._config.journal_turns
            and call.may_remember(self._config.consent_required)
        ):
            header = JournalHeader(
                session_id=call.session_id,
                user_id=call.user_id,
                phone_hash=call.phone_hash,
                started_at=call.started_at,
            )
            # With every turn so far that the caller's consent covers.
            call.journal = Journal(self._store, header, call.consented_turns)
