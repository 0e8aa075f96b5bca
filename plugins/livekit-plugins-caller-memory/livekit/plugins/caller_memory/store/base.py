"""The memory store: the guide's API, and the call flow over a store's atomic operations.

A store keeps four things per the guide's key table (see :mod:`.keys`): phone hash → user id,
the caller's profile, the caller's recent session ids, and each call's full data.
:class:`MemoryStore` owns the policy of a call, written once for every store: which keys the
call-start lookup reads and renews (and how a caller moves to a new phone-hash secret), and how
a finished call is merged into the profile (a compare-and-set loop, so that two calls of one
caller ending together both land). The rest of its API comes from :mod:`.profiles` (reads and
changes of a profile), :mod:`.open_calls` (the journal, orphans) and :mod:`.rights` (erasure,
export); a backend provides the atomic operations of :mod:`.primitives`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from types import TracebackType

from ..config import RedisConfig
from ..exceptions import CallerErasedError, CallerMemoryError, StoreUnavailableError
from ..identity import PhoneHasher
from ..log import logger
from ..memory import merge_call
from ..models import CallerProfile, CallSummary, SessionRecord, to_json
from ..timeouts import CONTENTION, waiting_on
from . import codec
from .held import caller_keys
from .keys import new_user_id
from .open_calls import OpenCalls
from .primitives import to_ms
from .profiles import MAX_CAS_ATTEMPTS, ProfileAccess
from .records import CallerLookup, CallWrite, MovedCaller, VersionSaves
from .rights import ERASURE_REQUEST_TTL_S, ErasureAndExport

__all__ = ["MemoryStore"]

_REGION_NOTE_EVERY_S = 60.0
"""How often one process records a trunk region it keeps seeing, in seconds
(:meth:`MemoryStore.note_trunk_region`)."""


class MemoryStore(ErasureAndExport, OpenCalls, ProfileAccess):
    """Base class of the stores.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        hasher: The phone-number hasher; built from the settings when omitted.
    """

    def __init__(
        self, config: RedisConfig | None = None, *, hasher: PhoneHasher | None = None
    ) -> None:
        super().__init__(config, hasher=hasher)
        self._regions_noted: dict[str, float] = {}
        """When this process last recorded each trunk region (monotonic seconds)."""

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Alias of :meth:`disconnect`, the LiveKit spelling."""
        await self.disconnect()

    async def __aenter__(self) -> MemoryStore:
        if not await self.connect():
            raise StoreUnavailableError(self.last_error or "the memory store is not reachable")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def saves_by_version(self) -> list[VersionSaves]:
        """Which versions of the plugin saved calls under this prefix, the latest saver first
        (:meth:`Keys.versions`): a fleet running two versions shows. Workers before 0.2.0
        record nothing."""
        return VersionSaves.from_scores(await self.read_scores(self._keys.versions()))

    # -- the call-start lookup -------------------------------------------------------------

    async def get_or_create_user_id(self, *, phone_number: str) -> str:
        """The user id of a phone number, created on the first call (atomically).

        The app's own call: any E.164 string is taken as given (the guide's ``+1234567890``);
        the numbers of callers are checked against the numbering plans by the session manager.

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = self.hasher.hashes(phone_number, strict=False)
        found = await self.lookup(phone_hash, previous=previous, load_profile=False)
        assert found.user_id is not None
        return found.user_id

    async def lookup(
        self,
        phone_hash: str,
        *,
        previous: Sequence[str] = (),
        create: bool = True,
        load_profile: bool = True,
    ) -> CallerLookup:
        """The call-start lookup: user id, profile and recent sessions of a phone hash.

        One round trip for a returning caller, which also renews the caller's three TTLs.

        Args:
            phone_hash: :meth:`PhoneHasher.hash` of the caller's number.
            previous: The number's hashes under previous secrets: a caller found under one of
                them is moved to ``phone_hash`` (more round trips, on their first call after a
                rotation only).
            create: Mint an identity when the number is unknown.
            load_profile: Also parse the profile (the session ids come with it).
        """
        keys, ttl = self._keys, self._config.profile_ttl_seconds
        # A caller's user id is their phone hash (see new_user_id), so the profile and the
        # session list can be asked for in the same round trip as the phone key.
        mint = create and not previous
        fetched = await self.fetch_caller(
            keys.phone(phone_hash),
            keys.profile(phone_hash),
            keys.sessions(phone_hash),
            keys.unreadable_phone(phone_hash),
            mint=new_user_id(phone_hash) if mint else None,
            ttl=ttl,
        )
        at_ms = fetched.at_ms  # the call's beginning on the store's clock
        if fetched.phone_set_aside:
            logger.warning(
                "a phone key held the wrong type or no user id (not written by caller memory); "
                "it is kept aside under the key with ':unreadable' appended, and the caller gets "
                "an identity",
                extra={"key": keys.phone(phone_hash)},
            )
        user_id = fetched.user_id
        if user_id is None and mint:
            if fetched.profile is None and not fetched.has_sessions:
                return CallerLookup(user_id=phone_hash, is_new=True, at_ms=at_ms)
            user_id = phone_hash  # the mapping had expired before the profile: same caller
        if user_id is None and previous:
            old_keys = [keys.phone(h) for h in previous]
            user_id = await self.adopt_previous(keys.phone(phone_hash), old_keys, ttl=ttl)
            if user_id is not None:
                logger.info("caller moved to the current phone-hash secret")
        if user_id is None:
            if not create:
                return CallerLookup(user_id=None, is_new=False, at_ms=at_ms)
            minted = await self.fetch_caller(
                keys.phone(phone_hash),
                keys.profile(phone_hash),
                keys.sessions(phone_hash),
                keys.unreadable_phone(phone_hash),
                mint=new_user_id(phone_hash),
                ttl=ttl,
            )
            if minted.user_id is None:
                return CallerLookup(user_id=phone_hash, is_new=True, at_ms=at_ms)
            user_id, fetched = minted.user_id, minted
        if user_id != phone_hash:
            if user_id in previous and await self._move(user_id, phone_hash):
                user_id = phone_hash  # keyed by an old secret: now under the current one
            # Keyed elsewhere, or just moved: a second round trip.
            fetched = await self.fetch_profile(keys.profile(user_id), keys.sessions(user_id), ttl)
        if fetched.profile_wrong_type:
            logger.warning(
                "caller profile key holds what caller memory does not write (another type, or a "
                "value larger than any profile), treating the caller as new",
                extra={"key": keys.profile(user_id)},
            )
        profile = self._parse_profile(user_id, fetched.profile) if load_profile else None
        return CallerLookup(
            user_id=user_id,
            is_new=False,
            profile=profile,
            profile_raw=fetched.profile,
            at_ms=at_ms,
        )

    async def _move(self, old: str, new: str) -> bool:
        """Re-key a caller from their id under a previous secret to ``new``, on their first call
        after a rotation (a few round trips, once): see ``move_caller.lua``. A caller whose
        profile cannot be read stays where they are. Returns True once they are under ``new``."""
        keys = self._keys
        raw = await self.read(keys.profile(old))
        profile = self._parse_profile(old, raw)
        if raw is not None and profile is None:
            return False
        moved = MovedCaller(
            user_id=new,
            profile=None
            if profile is None
            else codec.encode_profile(profile.model_copy(update={"user_id": new})),
            unreadable=await self.read(keys.unreadable_profile(old)),
            session_ids=await self.read_list(keys.sessions(old)),
            calls=await self.read_scores(keys.calls(old)),
        )
        await self.write_moved(moved)
        await self.delete(caller_keys(keys, old))
        # An erasure the caller asked for under their old id follows them, with its time: the
        # operator's `forget --user-id` then reaches what is held now. Added before the old
        # entry goes, so a crash in between leaves both, never neither.
        asked = dict(await self.read_scores(keys.erasure_requests())).get(old)
        if asked is not None:
            await self.add_request(
                keys.erasure_requests(), new, ttl=ERASURE_REQUEST_TTL_S, at=asked
            )
            await self.remove_members(keys.erasure_requests(), [old])
        logger.info("caller re-keyed under the current phone-hash secret")
        return True

    # -- the save at hang-up ---------------------------------------------------------------

    async def save_call(
        self,
        record: SessionRecord,
        summary: CallSummary,
        *,
        phone_hash: str | None = None,
        previous: Sequence[str] = (),
        base: CallerLookup | None = None,
        replay: bool = False,
    ) -> CallerProfile:
        """Record a finished call and fold its summary into the caller's profile.

        One atomic write per attempt: the call's data (24 h), the session list and the profile
        (90 days), every TTL set inside it. When another call of the same caller saved in
        between, the summary is merged again into the newer profile, so no call is lost.
        Saving the same call twice stores it once.

        Args:
            record: The call, turns included. ``record.user_id`` may be None when the
                call-start lookup did not finish; ``phone_hash`` then resolves it.
            summary: What the call taught us.
            phone_hash: The caller's phone hash, whose mapping TTL is renewed too.
            previous: The number's hashes under previous secrets (see :meth:`lookup`).
            base: The call-start lookup, whose profile is the first compare-and-set guess.
            replay: The call may have been saved already (an outbox entry whose save failed
                only on the way back): when its data is there, nothing is merged again.

        Returns:
            The profile as stored.
        """
        user_id = record.user_id
        if user_id is None:
            if phone_hash is None:
                raise ValueError("a session without a user id needs the caller's phone_hash")
            found = await self.lookup(phone_hash, previous=previous, load_profile=False)
            user_id = found.user_id
            assert user_id is not None
        ended_at = record.ended_at or record.started_at
        record = record.model_copy(
            update={"user_id": user_id, "summary": summary, "ended_at": ended_at}
        )
        if replay:
            stored = await self.read(self._keys.session(record.session_id))
            if stored is not None and not codec.is_journal(stored):
                return await self.get_profile(user_id) or CallerProfile(user_id=user_id)
        # Calls of one caller ending together in this process take turns; the compare-and-set
        # below still guards against other processes.
        async with self._user_lock(user_id):
            return await self._merge_and_write(record, summary, phone_hash, base)

    async def _merge_and_write(
        self,
        record: SessionRecord,
        summary: CallSummary,
        phone_hash: str | None,
        base: CallerLookup | None,
    ) -> CallerProfile:
        assert record.user_id is not None and record.ended_at is not None
        user_id = record.user_id
        session_json = to_json(record)
        if base is not None and base.user_id == user_id:
            expected = base.profile_raw
        else:
            expected = await self.read(self._keys.profile(user_id))
        with contextlib.ExitStack() as contended:
            for attempt in range(MAX_CAS_ATTEMPTS):
                if attempt == 1:
                    # Another call of this caller wrote in between: should the save's time run
                    # out from here on, that is the cause, not the network.
                    contended.enter_context(waiting_on(CONTENTION))
                if attempt >= 2:  # heavy contention across processes: spread the retries
                    await asyncio.sleep(random.uniform(0, 0.002 * attempt))
                parsed = self._parse_profile(user_id, expected)
                profile = merge_call(
                    parsed or CallerProfile(user_id=user_id),
                    summary,
                    session_id=record.session_id,
                    ended_at=record.ended_at,
                    max_summaries=self._config.max_summaries,
                    consented=record.consented,
                    verified=record.verified,
                )
                outcome, expected = await self.write_call(
                    CallWrite(
                        user_id=user_id,
                        phone_hash=phone_hash,
                        expected_profile=expected,
                        profile=codec.encode_profile(profile),
                        session_id=record.session_id,
                        session=session_json,
                        # Unreadable data is kept aside (90 days), never silently overwritten.
                        set_aside=expected is not None and parsed is None,
                        started_ms=to_ms(record.started_at),
                    )
                )
                if outcome == "written":
                    return profile
                if outcome == "erased":
                    raise CallerErasedError("the caller was erased after this call began")
        raise CallerMemoryError("the caller's profile kept changing during the save; retry later")

    # -- trunk regions ---------------------------------------------------------------------

    async def note_trunk_region(self, region: str) -> None:
        """Record that a caller's number was read in the region of the trunk they dialled
        (``US``; never a number): one small sorted set for the prefix (:meth:`Keys.trunk_regions`),
        scored by the store's clock, with the profiles' TTL. The operator console reads
        numbers typed without a country code in the one region it names.

        At most once a minute per region from one process: a busy worker's calls cost one
        write a minute, not one a call.
        """
        region = region.upper()
        now = time.monotonic()
        last = self._regions_noted.get(region)
        if last is not None and now - last < _REGION_NOTE_EVERY_S:
            return
        self._regions_noted[region] = now
        try:
            await self.add_request(
                self._keys.trunk_regions(), region, ttl=self._config.profile_ttl_seconds
            )
        except BaseException:
            self._regions_noted.pop(region, None)  # not written: the next call tries again
            raise

    async def trunk_regions(self) -> list[str]:
        """The regions recorded by :meth:`note_trunk_region`, the most recently seen first."""
        found = await self.read_scores(self._keys.trunk_regions())
        return [region for region, _ in reversed(found)]
