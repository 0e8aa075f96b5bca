"""The store's side of erasure and export: what is held about a caller, found, deleted or
returned, and the erasures callers asked for. :mod:`..privacy` coordinates the store with the
outbox and the calls held in memory.

What is held is found from the phone mappings (current and previous secrets) and the user ids
they name (:func:`held_data`); which keys and journals belong to the caller, and how a value is
shown, is decided by the pure functions of :mod:`.held`. Erasure first marks each user erased,
so that the save of a call that began before is refused atomically, then deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..log import logger
from . import codec
from .held import caller_keys, erased_users, exported, is_journal_of, phone_keys
from .keys import new_user_id
from .primitives import StoreFull, StorePrimitives
from .records import HeldData

__all__ = ["ERASURE_REQUEST_TTL_S", "ErasureAndExport"]

ERASURE_REQUEST_TTL_S = 30 * 86400
"""How long an unverified caller's erasure request waits for an operator."""


class ErasureAndExport(StorePrimitives):
    """The store's side of erasure and export: everything held about a caller, found, erased
    or exported; and the erasures callers asked for."""

    async def held_data(self, phone_hash: str, *, previous: Sequence[str] = ()) -> HeldData:
        """Every key that holds something about the caller of a phone hash.

        That is each phone mapping (current and previous secrets), and for the user they point
        to (and the hashes themselves: a caller's id is their phone hash): the profile, its
        unreadable copy, the session list, the index of every call still held, each of those
        calls, and the journal of each call in progress.
        """
        hashes = [phone_hash, *previous]
        user_ids: list[str] = []
        for key in [self._keys.phone(h) for h in hashes]:
            user_id = codec.text(await self.read(key))
            if user_id and user_id not in user_ids:
                user_ids.append(user_id)
        candidates = list(dict.fromkeys([*user_ids, *hashes]))
        return await self._held(
            phone_keys(self._keys, hashes), candidates, set(hashes), named=user_ids
        )

    async def held_data_of_user(self, user_id: str) -> HeldData:
        """Every key that holds something about one user id (an operator's erasure request)."""
        return await self._held(phone_keys(self._keys, [user_id]), [user_id], {user_id})

    async def _held(
        self,
        phones: list[str],
        user_ids: list[str],
        hashes: set[str],
        *,
        named: Sequence[str] = (),
    ) -> HeldData:
        # named: the ids a phone mapping names, held even before any call was saved.
        keys = self._keys
        held = list(phones)
        session_ids: list[str] = []
        found_users: list[str] = []
        for user_id in user_ids:
            listed = await self.read_list(keys.sessions(user_id))
            indexed = await self.read_members(keys.calls(user_id))
            if (
                user_id in named
                or listed
                or indexed
                or await self.read(keys.profile(user_id)) is not None
            ):
                found_users.append(user_id)
            held += caller_keys(keys, user_id)
            session_ids += listed + indexed
        for session_id in await self.open_call_ids():
            if is_journal_of(await self.read(keys.session(session_id)), hashes, user_ids):
                session_ids.append(session_id)
        session_ids = list(dict.fromkeys(session_ids))
        held += [keys.session(sid) for sid in session_ids]
        return HeldData(
            user_ids=found_users, keys=list(dict.fromkeys(held)), session_ids=session_ids
        )

    async def forget(self, phone_hash: str, *, previous: Sequence[str] = ()) -> list[str]:
        """Delete everything held about the caller of a phone hash, and keep them erased.

        Each user id is marked erased (:meth:`Keys.erased`, kept as long as a caller's memory
        is): from then on, the save of a call of theirs that began before (on another worker,
        from an outbox, from a journal) is refused atomically. Every key of :meth:`held_data`
        is deleted in the same script as the marks of its slot (:meth:`erase`): a call that
        begins after the mark never reads what is erased.

        Returns:
            The keys that existed and were deleted (empty when the number is unknown).
        """
        return await self._erase(await self.held_data(phone_hash, previous=previous))

    async def forget_user(self, user_id: str) -> list[str]:
        """:meth:`forget` by user id (an operator acting on an erasure request)."""
        return await self._erase(await self.held_data_of_user(user_id))

    async def _erase(self, held: HeldData) -> list[str]:
        users = erased_users(self._keys, held.user_ids, held.keys)
        ttl = self._config.profile_ttl_seconds
        try:
            deleted = await self.erase(held.keys, users, ttl=ttl)
        except StoreFull as full:
            # A full Redis that refuses even a script flagged allow-oom (6.2) refuses the mark
            # but not the deletes, which make room for it. A save that slips in between needs
            # room too, and the mark refuses what comes after.
            logger.warning("Redis is out of memory (maxmemory): erasing first, marking after")
            deleted = full.deleted + await self.delete(held.keys)
            await self.mark_erased(users, ttl=ttl)
        await self.drop_open_calls(held.session_ids)
        await self.remove_members(self._keys.erasure_requests(), users)  # they are answered
        return deleted

    async def request_erasure(self, user_id: str) -> None:
        """Ask an operator to erase a user: a caller asked it on a call, unverified."""
        await self.add_request(self._keys.erasure_requests(), user_id, ttl=ERASURE_REQUEST_TTL_S)

    async def erasure_requests(self) -> list[tuple[str, float]]:
        """The erasures callers asked for, unverified: ``(user_id, unix time)``, oldest first."""
        return await self.read_scores(self._keys.erasure_requests())

    async def drop_new_identity(self, phone_hash: str) -> bool:
        """Remove the identity a call minted for a new caller who declined to be remembered,
        if nothing was saved for them meanwhile. Returns True when it was removed."""
        keys = self._keys
        return await self.drop_identity(
            keys.phone(phone_hash), keys.profile(phone_hash), keys.sessions(phone_hash),
            new_user_id(phone_hash),
        )  # fmt: skip

    async def export(self, phone_hash: str, *, previous: Sequence[str] = ()) -> dict[str, Any]:
        """Everything held about the caller of a phone hash, as JSON-ready data.

        What a subject-access request returns: the user id(s), the profile, the list of
        sessions and each call's full data (or journal), keyed by the Redis key it is in. The
        profile is shown whole, as the current schema reads it: each fact with its id, label,
        value, evidence (the caller's words), ``said_at``, ``confirmed_at``, ``status``
        (current, replaced or withdrawn) and ``verified``.
        """
        held = await self.held_data(phone_hash, previous=previous)
        found: dict[str, Any] = {}
        for key in held.keys:
            kind = self._keys.kind(key)
            try:
                if kind == "sessions":
                    if items := await self.read_list(key):
                        found[key] = items
                    continue
                if kind == "calls":
                    if members := await self.read_members(key):
                        found[key] = members
                    continue
                raw = await self.read(key)
            except Exception:  # a key of the wrong type: say so rather than fail the export
                found[key] = "(not a value caller memory writes)"
                continue
            if raw is not None:
                found[key] = exported(kind, raw)
        return {"user_ids": held.user_ids, "keys": found}
