"""A caller's rights over their memory: consent, not remembering a call, verification, and
erasure and export (carried out across the store, the outbox and the calls held by
:mod:`..privacy`)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from .. import privacy
from ..config import RedisConfig
from ..log import logger
from ..outbox import Outbox
from ..recovery import Recovery
from ..store import CallerLookup, MemoryStore
from .lookup import look_up_again
from .state import CallState, SessionContext, context_for
from .turns import TurnRecorder

__all__ = ["CallerRights"]


class CallerRights:
    """What a caller may ask of their memory: a part of :class:`~.manager.SessionManager`,
    which sets the attributes below."""

    _store: MemoryStore
    _config: RedisConfig
    _outbox: Outbox
    _recovery: Recovery
    _calls: dict[str, CallState]
    _ending: dict[str, CallState]
    _recorder: TurnRecorder

    # -- during the call -------------------------------------------------------------------

    def set_consent(self, session_id: str, granted: bool) -> None:
        """Record the caller's answer to "may I remember this call?".

        With ``MEMORY_CONSENT_REQUIRED=true`` a call is remembered only after the caller
        agreed, in this call or an earlier one. Consent given during a call covers what is
        said from then on: the turns before it are not stored (they were said without it).

        Declining is never ignored. Nothing of this call is stored, and a new caller's identity
        is dropped at hang-up. A caller who had agreed in an earlier call withdraws that
        consent: later calls are not remembered until they agree again (anyone may do this:
        the worst a spoofer achieves is that the real caller is asked again). What is held
        is then erased for a verified caller; for an unverified one, who may be a spoofer,
        the erasure is filed for an operator (``caller-memory requests``).
        """
        call = self._calls.get(session_id)
        if call is None:
            return
        self._recorder.redact_now(call)  # the turns said before the answer are kept before it
        if granted:
            if (
                not call.consented
                and call.remember
                and not call.may_remember(self._config.consent_required)
            ):
                call.consent_from = len(call.turns)  # it covers the call from now on
            call.consented = True
            return
        call.consented = False
        call.opt_out()
        if call.phone_hash is not None and call.withdrawal is None:
            call.withdrawal = asyncio.get_running_loop().create_task(
                self._withdraw(call), name=f"caller_memory.withdraw.{session_id}"
            )

    async def _withdraw(self, call: CallState) -> None:
        try:
            lookup = await self._caller_now(call)
            profile = lookup.profile if lookup else None
            # With consent required, what is stored was stored with it: a verified caller's
            # memory goes even when a spoofer's withdrawal cleared the mark of their consent.
            verified_owner = call.verified and self._config.consent_required
            if profile is None or (
                profile.consented_at is None and not (verified_owner and profile.is_established)
            ):
                return
            assert lookup is not None and lookup.user_id is not None
            user_id = lookup.user_id
            if call.verified:
                await self.forget_caller(session_id=call.session_id)
            else:
                await self._store.withdraw_consent(user_id)
                await self._store.request_erasure(user_id)
        except Exception as e:
            logger.warning(
                "could not record a withdrawal of consent; it is asked again at the next call "
                "only if the store was reachable",
                extra={"session_id": call.session_id, "error": type(e).__name__},
            )
        else:
            extra = {"session_id": call.session_id, "verified": call.verified}
            logger.info("caller withdrew consent", extra=extra)

    def dont_remember(self, session_id: str) -> None:
        """The caller asked not to remember this call: nothing of it will be stored, and what
        was journaled so far is deleted now. The earlier memory is left as it is."""
        call = self._calls.get(session_id)
        if call is not None:
            call.opt_out()

    def mark_verified(self, session_id: str) -> SessionContext | None:
        """The app verified the caller (a PIN, a security question, a call back): the agent
        gets everything remembered, and the call may change the caller's memory.

        Returns:
            The call's new context, or None for an unknown call.
        """
        call = self._calls.get(session_id)
        if call is None:
            return None
        call.verified = True
        call.context = context_for(self._config, session_id, call.lookup, call.context.status, True)
        return call.context

    def is_verified(self, session_id: str) -> bool:
        """Whether the caller of a call in progress is verified."""
        call = self._calls.get(session_id)
        return call is not None and call.verified

    # -- erasure and export ----------------------------------------------------------------

    async def _caller_now(self, call: CallState) -> CallerLookup | None:
        """The call's lookup; read again (within ``MEMORY_SAVE_TIMEOUT_S``) when the one at
        call start missed its budget or found the store down. Raises when it still fails."""
        if call.lookup is not None or call.phone_hash is None:
            return call.lookup
        return await look_up_again(self._store, call.phone_hash, call.previous_hashes)

    async def ask_to_forget(
        self, session_id: str
    ) -> Literal["erased", "requested", "none", "unavailable"]:
        """The caller asked on the call to be forgotten (the ``forget_me`` tool).

        Caller ID can be spoofed, so only a verified caller is erased at once (as
        :meth:`forget_caller`). An unverified caller's request is filed for an operator
        (``caller-memory requests``, then ``caller-memory forget --user-id``): nothing is
        erased, and this call is not stored.

        Returns:
            ``erased``, ``requested``, ``none`` for a call without a known caller, or
            ``unavailable`` when the store did not answer: this call is not stored, and what
            was stored before is left (the caller asks again, or an operator erases).
        """
        call = self._calls.get(session_id)
        if call is None or call.phone_hash is None:
            return "none"
        call.opt_out()
        try:
            if call.verified:
                await self.forget_caller(session_id=session_id)
                return "erased"
            lookup = await self._caller_now(call)
            if lookup is None or lookup.user_id is None or lookup.is_new:
                return "erased"  # a new caller: not storing this call leaves nothing of them
            await self._store.request_erasure(lookup.user_id)
        except Exception as e:
            logger.warning(
                "caller asked to be erased but the store did not answer: nothing erased, this "
                "call not stored",
                extra={"session_id": session_id, "error": type(e).__name__},
            )
            return "unavailable"
        logger.info("caller asked to be erased, unverified: filed for an operator",
                    extra={"session_id": session_id})  # fmt: skip
        return "requested"

    async def forget_caller(
        self, phone_number: str | None = None, *, session_id: str | None = None
    ) -> list[str]:
        """Erase everything held about a caller, at once: every phone mapping of the user,
        the profile, the session list, every call's data and journal, and the local outbox's
        entries. A call of theirs in progress is not saved either.

        Args:
            phone_number: The caller's number, in any spelling.
            session_id: Or: the caller of this call in progress.

        Returns:
            What was deleted: store keys, then ``outbox:<file>`` for outbox entries.

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = await self._caller_hashes(phone_number, session_id)
        if phone_hash is None:
            return []
        hashes = {phone_hash, *previous}
        for call in self._calls.values():
            if call.phone_hash in hashes:
                call.opt_out()
        return await privacy.forget_caller(
            self._store, self._outbox, self._recovery, phone_hash, previous
        )

    async def forget_user(self, user_id: str) -> list[str]:
        """:meth:`forget_caller` by user id: an operator acting on an erasure request a caller
        made unverified (:meth:`~..store.MemoryStore.erasure_requests`)."""
        for call in self._calls.values():
            if call.user_id == user_id:
                call.opt_out()
        return await privacy.forget_user(self._store, self._outbox, self._recovery, user_id)

    async def export_caller(self, phone_number: str) -> dict[str, Any]:
        """Everything held about a caller (a subject-access request), as JSON-ready data.

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = await privacy.caller_hashes(self._store, phone_number)
        return await privacy.export_caller(self._store, self._outbox, phone_hash, previous)

    async def _caller_hashes(
        self, phone_number: str | None, session_id: str | None
    ) -> tuple[str | None, list[str]]:
        if phone_number is not None:
            return await privacy.caller_hashes(self._store, phone_number)
        # A call whose end has begun still names its caller (a withdrawal runs beside it).
        call = self._calls.get(session_id or "") or self._ending.get(session_id or "")
        if call is None:
            return None, []
        return call.phone_hash, call.previous_hashes
