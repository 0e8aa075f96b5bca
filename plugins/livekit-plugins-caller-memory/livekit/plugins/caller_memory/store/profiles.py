"""A caller's profile and calls as the store reads them, and the changes made outside a save.

Reading never trusts what is stored: a profile that cannot be read, or that names another user,
is treated as absent (and kept aside at the next save). A change outside a call's save (a
withdrawn consent, an operator's withdrawal of a fact) is a compare-and-set of the profile with
its TTL kept, so that a call saved meanwhile is not lost. Calls of one caller take turns on a
lock of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from pydantic import ValidationError

from ..config import RedisConfig
from ..exceptions import CallerMemoryError
from ..identity import PhoneHasher
from ..log import logger
from ..memory.merge import withdraw_consent, withdraw_fact
from ..models import CallerProfile, SessionRecord
from ..timeouts import CONTENTION, waiting_on
from . import codec
from .primitives import StorePrimitives

__all__ = ["MAX_CAS_ATTEMPTS", "ProfileAccess"]

MAX_CAS_ATTEMPTS = 64
"""How many times a compare-and-set of a profile is tried before giving up."""


class ProfileAccess(StorePrimitives):
    """Reads of a caller's profile, session list and calls; changes of the profile outside a
    save; the per-caller lock of this process."""

    def __init__(
        self, config: RedisConfig | None = None, *, hasher: PhoneHasher | None = None
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._user_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def _parse_profile(self, user_id: str, raw: bytes | None) -> CallerProfile | None:
        """``raw`` read as ``user_id``'s profile, or None (absent, unreadable, another's)."""
        if raw is None:
            return None
        try:
            profile = codec.decode_profile(raw)
        except codec.UnreadableValue:
            # Name the key (an opaque id), never the content: it is personal data.
            logger.warning(
                "unreadable caller profile, treating the caller as new; it is kept aside "
                "under the key with ':unreadable' appended at the next save",
                extra={"key": self._keys.profile(user_id)},
            )
            return None
        if profile.user_id != user_id:
            logger.warning(
                "caller profile belongs to another user id, ignoring it",
                extra={"key": self._keys.profile(user_id)},
            )
            return None
        return profile

    async def get_profile(self, user_id: str) -> CallerProfile | None:
        """A caller's profile, or None when there is none (or it cannot be read)."""
        return self._parse_profile(user_id, await self.read(self._keys.profile(user_id)))

    async def get_session_ids(self, user_id: str) -> list[str]:
        """A caller's recent session ids, oldest first."""
        return await self.read_list(self._keys.sessions(user_id))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One call's full data, or None once it has expired (or while it is a journal)."""
        key = self._keys.session(session_id)
        raw = await self.read(key)
        if raw is None or codec.is_journal(raw):
            return None
        try:
            return SessionRecord.model_validate_json(raw)
        except ValidationError:
            logger.warning("unreadable session data ignored", extra={"key": key})
            return None

    async def withdraw_consent(self, user_id: str) -> bool:
        """Clear a caller's consent (``consented_at``); nothing else of the profile changes.
        With ``MEMORY_CONSENT_REQUIRED``, their calls are not remembered until they agree again.

        Returns:
            True when a consent was cleared (False: there was none, or no readable profile).
        """
        return await self._change_profile(user_id, withdraw_consent) is not None

    async def withdraw_fact(self, user_id: str, fact_id: int) -> CallerProfile | None:
        """Withdraw one of a caller's facts: an operator found it wrong (see
        :func:`~..memory.merge.withdraw_fact`). The caller's other facts, and everything else, stay.

        A compare-and-set of the profile with its TTL kept, as :meth:`withdraw_consent`: a
        call of the caller saved meanwhile is not lost, and the withdrawal is made again on
        the newer profile. An erased caller has no profile left, and none is made again.

        Returns:
            The profile as stored, or None when it holds no current fact ``fact_id`` (or
            there is no readable profile).
        """
        async with self._user_lock(user_id):
            withdrawn = await self._change_profile(
                user_id, lambda profile: withdraw_fact(profile, fact_id)
            )
        if withdrawn is not None:
            key = self._keys.profile(user_id)
            logger.info("fact withdrawn", extra={"key": key, "fact_id": fact_id})
        return withdrawn

    async def _change_profile(
        self, user_id: str, change: Callable[[CallerProfile], CallerProfile | None]
    ) -> CallerProfile | None:
        # Compare-and-set until it lands; None when there is no readable profile, or nothing
        # to change in it.
        key = self._keys.profile(user_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            raw = await self.read(key)
            profile = self._parse_profile(user_id, raw)
            if raw is None or profile is None:
                return None
            changed = change(profile)
            if changed is None:
                return None
            if await self.replace_value(key, raw, codec.encode_profile(changed)):
                return changed
        raise CallerMemoryError("the caller's profile kept changing; retry later")

    @contextlib.asynccontextmanager
    async def _user_lock(self, user_id: str) -> AsyncIterator[None]:
        """Hold this process's lock of one caller: their saves and changes take turns here
        (a compare-and-set still guards against other processes)."""
        entry = self._user_locks.setdefault(user_id, (asyncio.Lock(), [0]))
        lock, users = entry
        users[0] += 1
        try:
            if lock.locked():
                # Another call of this caller is saving: should the time run out while this
                # one waits, that is the cause, not the network.
                with waiting_on(CONTENTION):
                    await lock.acquire()
            else:
                await lock.acquire()
            try:
                yield
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._user_locks[user_id]
