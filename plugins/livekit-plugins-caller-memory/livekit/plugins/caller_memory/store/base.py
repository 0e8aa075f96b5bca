"""The memory store contract: the guide's API over a handful of atomic operations.

A store keeps four things per the guide's key table (see :mod:`.keys`): phone hash → user id,
the caller's profile, the caller's recent session ids, and each call's full data. This class
owns the policy, written once for every store: which keys a lookup reads and renews, how a
finished call is merged into the profile (a compare-and-set loop, so that two calls of one
caller ending together both land), what is erased and exported. A store only provides the
atomic operations, each one round trip on Redis (the abstract methods at the end).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone  # datetime.UTC is Python 3.11+
from types import TracebackType
from typing import Any, Literal

from pydantic import ValidationError

from ..config import RedisConfig
from ..exceptions import CallerErasedError, CallerMemoryError, StoreUnavailableError
from ..identity import PhoneHasher, load_hasher
from ..log import logger
from ..memory import merge_call
from ..memory.merge import withdraw_fact as withdrawn_from
from ..models import (
    CallerProfile,
    CallSummary,
    JournalHeader,
    SessionRecord,
    Turn,
    to_json,
)
from ..timeouts import CONTENTION, waiting_on
from . import codec
from .keys import Keys

__all__ = [
    "JournalWrite",
    "WriteOutcome",
    "CallWrite",
    "CallerLookup",
    "Fetched",
    "HeldData",
    "MemoryStore",
    "MovedCaller",
    "VersionSaves",
    "new_user_id",
]

_MAX_CAS_ATTEMPTS = 64
_ORPHAN_LEASE_S = 300.0
"""How long a recovery holds an orphaned call before another worker may take it."""


def _from_ms(unix_ms: int) -> datetime:
    return datetime.fromtimestamp(unix_ms // 1000, timezone.utc).replace(
        microsecond=unix_ms % 1000 * 1000
    )


def _to_ms(when: datetime) -> int:
    # Exact: timestamp() * 1000 is a float, and .439 s can come out as 438.99... ms.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def new_user_id(phone_hash: str) -> str:
    """The user id given to a new caller: their phone hash.

    It is as opaque as a random id (an HMAC under a secret that is not in Redis), and it lets
    the call-start lookup name the profile keys before the phone key has answered, which
    saves a round trip. A caller moved from a previous secret keeps the id they had.
    """
    return phone_hash


@dataclass(frozen=True)
class CallerLookup:
    """What the call-start lookup found for one phone hash."""

    user_id: str | None
    """``None`` only when the lookup was asked not to create an identity and found none."""
    is_new: bool
    """True when this lookup created the identity: the caller has never called before."""
    profile: CallerProfile | None = None
    session_ids: list[str] = field(default_factory=list)
    """Recent session ids, oldest first."""
    profile_raw: bytes | None = field(default=None, repr=False)
    """The profile exactly as stored: the starting point of the compare-and-set at hang-up."""
    at_ms: int | None = None
    """When the store answered, on its clock (Unix ms; Redis's ``TIME``): the call's
    beginning, which an erasure is compared with. None when it could not say."""

    @property
    def is_returning(self) -> bool:
        """True when the caller has a remembered profile."""
        return self.profile is not None


@dataclass(frozen=True)
class Fetched:
    """What one read of a caller's keys returned, as stored."""

    user_id: str | None
    profile: bytes | None = None
    profile_wrong_type: bool = False
    """The profile key holds something else than a string (another program's key), or a
    value larger than any profile."""
    session_ids: list[str] = field(default_factory=list)
    phone_set_aside: bool = False
    """The phone key held the wrong type and was set aside (:meth:`Keys.unreadable_phone`)."""
    at_ms: int | None = None
    """The store's clock when it read them (Unix ms), when it says."""


@dataclass(frozen=True)
class CallWrite:
    """One end-of-call write: compare-and-set of the profile, and the call's keys, with TTLs."""

    user_id: str
    phone_hash: str | None
    """Its mapping's TTL is renewed too."""
    expected_profile: bytes | None
    profile: bytes
    session_id: str
    session: str
    set_aside: bool
    """Copy the current (unreadable) profile to :meth:`Keys.unreadable_profile` first."""
    started_ms: int
    """When the call began (Unix ms, on the store's clock: :meth:`MemoryStore.call_started_at`):
    refused if the caller was erased since."""


JournalWrite = Literal["written", "gone", "full"]
"""How an append to a call's journal went (see :meth:`MemoryStore.append_journal`)."""

WriteOutcome = Literal["written", "changed", "erased"]
"""How a :class:`CallWrite` went: written; the profile changed meanwhile (try again); or the
caller was erased after the call began (the call is not saved)."""


@dataclass(frozen=True)
class MovedCaller:
    """A caller's keys as they move to a new user id (see :meth:`MemoryStore.lookup`)."""

    user_id: str
    """The new id: the number's hash under the current secret (and its phone key's tag)."""
    profile: bytes | None
    unreadable: bytes | None
    session_ids: list[str]
    calls: list[tuple[str, float]]


@dataclass(frozen=True)
class VersionSaves:
    """How many calls one version of the plugin saved under a prefix, and when it last did."""

    version: str
    saves: int
    last: float | None
    """Unix seconds."""


@dataclass(frozen=True)
class HeldData:
    """Everything a store holds about one caller: what erasure deletes and export returns."""

    user_ids: list[str]
    keys: list[str]
    session_ids: list[str]


_REGION_NOTE_EVERY_S = 60.0
"""How often one process records a trunk region it keeps seeing, in seconds
(:meth:`MemoryStore.note_trunk_region`)."""


class MemoryStore(abc.ABC):
    """Base class of the stores.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        hasher: The phone-number hasher; built from the settings when omitted.
    """

    def __init__(
        self, config: RedisConfig | None = None, *, hasher: PhoneHasher | None = None
    ) -> None:
        self._config = config or RedisConfig.from_env()
        self._keys = Keys(self._config.key_prefix)
        self._hasher = hasher
        self._user_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._clock_offset_ms = 0.0
        """The store's clock minus this process's, as last measured (see :meth:`clock_ms`)."""
        self._regions_noted: dict[str, float] = {}
        """When this process last recorded each trunk region (monotonic seconds)."""
        self.last_error: str | None = None
        """Why the last :meth:`connect` failed (the guide's troubleshooting text), or None."""

    @property
    def config(self) -> RedisConfig:
        """The settings this store was made with."""
        return self._config

    @property
    def keys(self) -> Keys:
        """The key names this store writes."""
        return self._keys

    @property
    def hasher(self) -> PhoneHasher:
        """The phone-number hasher (the development secret is loaded on first use)."""
        if self._hasher is None:
            self._hasher = load_hasher(self._config)
        return self._hasher

    # -- the store's clock -----------------------------------------------------------------
    # Times one machine writes and another compares (an erasure and a call's beginning, a
    # heartbeat and an orphan's age) are the store's: Redis's TIME, inside the scripts. This
    # process's clock, corrected by its offset from the store's as last measured, serves
    # where no round trip says the time (a call that began while Redis was unreachable).

    def clock_ms(self) -> int:
        """Now on the store's clock (Unix ms): this process's clock plus its offset from the
        store's as last measured (none for the in-process store: it has one clock)."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    def now(self) -> datetime:
        """:meth:`clock_ms` as a time, to the second, as stored times are."""
        return datetime.fromtimestamp(self.clock_ms() // 1000, timezone.utc)

    def call_started_at(self, lookup: CallerLookup | None) -> datetime:
        """When a call began, on the store's clock, to the millisecond: the time of its
        call-start lookup as the store ran it, else :meth:`clock_ms`. An erasure is compared
        with it (``save_call.lua``): the two are ordered as Redis ran them, whichever machine
        asked and whatever its clock says."""
        at_ms = lookup.at_ms if lookup is not None and lookup.at_ms is not None else None
        return _from_ms(self.clock_ms() if at_ms is None else at_ms)

    def _clock_seen(self, store_ms: float, received_s: float) -> None:
        """The store said its time was ``store_ms`` in a reply received at ``received_s`` on
        this process's clock: remember the offset."""
        self._clock_offset_ms = store_ms - received_s * 1000

    @property
    @abc.abstractmethod
    def server(self) -> str:
        """Where the memory is, for messages: ``host:port``, never credentials."""

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> bool:
        """Open the connection and check it. Returns False, with :attr:`last_error` set and
        logged, when it fails."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close what this store opened. Safe to call twice."""

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

    @abc.abstractmethod
    async def health_check(self) -> dict[str, Any]:
        """Ping the store. Returns at least ``{"healthy": bool, "latency_ms": float,
        "server": str}``, and ``error`` when unhealthy."""

    @abc.abstractmethod
    async def stats(self, *, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Counts for operators (callers, sessions, calls in progress, keys without a TTL,
        memory). Reads the whole prefix: for a terminal, not for a call.

        Args:
            progress: Told how many more keys were read, as the scan goes (a progress bar).
        """

    async def saves_by_version(self) -> list[VersionSaves]:
        """Which versions of the plugin saved calls under this prefix, the latest saver first
        (:meth:`Keys.versions`): a fleet running two versions shows. Workers before 0.2.0
        record nothing."""
        found: dict[str, dict[str, float]] = {}
        for member, score in await self.read_scores(self._keys.versions()):
            what, _, version = member.partition(":")
            if what in ("saves", "last") and version:
                found.setdefault(version, {})[what] = score
        saves = [
            VersionSaves(version, int(v.get("saves", 0)), v.get("last"))
            for version, v in found.items()
        ]
        return sorted(saves, key=lambda s: s.last or 0.0, reverse=True)

    # -- the guide's API -------------------------------------------------------------------

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
            mint=new_user_id(phone_hash) if mint else None,
            ttl=ttl,
        )
        at_ms = fetched.at_ms  # the call's beginning on the store's clock
        if fetched.phone_set_aside:
            logger.warning(
                "a phone key held the wrong type (not written by caller memory); it is kept "
                "aside under the key with ':unreadable' appended, and the caller gets an identity",
                extra={"key": keys.phone(phone_hash)},
            )
        user_id = fetched.user_id
        if user_id is None and mint:
            if fetched.profile is None and not fetched.session_ids:
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
                "caller profile key holds the wrong type, treating the caller as new",
                extra={"key": keys.profile(user_id)},
            )
        profile = self._parse_profile(user_id, fetched.profile) if load_profile else None
        return CallerLookup(
            user_id=user_id,
            is_new=False,
            profile=profile,
            session_ids=fetched.session_ids,
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
        await self.delete([
            keys.profile(old), keys.unreadable_profile(old), keys.sessions(old), keys.calls(old)
        ])  # fmt: skip
        # An erasure the caller asked for under their old id follows them, with its time: the
        # operator's `forget --user-id` then reaches what is held now. Added before the old
        # entry goes, so a crash in between leaves both, never neither.
        asked = dict(await self.read_scores(keys.erasure_requests())).get(old)
        if asked is not None:
            await self.add_request(keys.erasure_requests(), new, ttl=30 * 86400, at=asked)
            await self.remove_members(keys.erasure_requests(), [old])
        logger.info("caller re-keyed under the current phone-hash secret")
        return True

    async def withdraw_consent(self, user_id: str) -> bool:
        """Clear a caller's consent (``consented_at``); nothing else of the profile changes.
        With ``MEMORY_CONSENT_REQUIRED``, their calls are not remembered until they agree again.

        Returns:
            True when a consent was cleared (False: there was none, or no readable profile).
        """
        key = self._keys.profile(user_id)
        for _ in range(_MAX_CAS_ATTEMPTS):
            raw = await self.read(key)
            profile = self._parse_profile(user_id, raw)
            if raw is None or profile is None or profile.consented_at is None:
                return False
            withdrawn = profile.model_copy(update={"consented_at": None})
            if await self.replace_value(key, raw, codec.encode_profile(withdrawn)):
                return True
        raise CallerMemoryError("the caller's profile kept changing; retry later")

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
        key = self._keys.profile(user_id)
        async with self._user_lock(user_id):
            for _ in range(_MAX_CAS_ATTEMPTS):
                raw = await self.read(key)
                profile = self._parse_profile(user_id, raw)
                if raw is None or profile is None:
                    return None
                withdrawn = withdrawn_from(profile, fact_id)
                if withdrawn is None:
                    return None
                if await self.replace_value(key, raw, codec.encode_profile(withdrawn)):
                    logger.info("fact withdrawn", extra={"key": key, "fact_id": fact_id})
                    return withdrawn
        raise CallerMemoryError("the caller's profile kept changing; retry later")

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
            for attempt in range(_MAX_CAS_ATTEMPTS):
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
                        started_ms=_to_ms(record.started_at),
                    )
                )
                if outcome == "written":
                    return profile
                if outcome == "erased":
                    raise CallerErasedError("the caller was erased after this call began")
        raise CallerMemoryError("the caller's profile kept changing during the save; retry later")

    @contextlib.asynccontextmanager
    async def _user_lock(self, user_id: str) -> AsyncIterator[None]:
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

    # -- the call journal (crash safety) ---------------------------------------------------

    async def open_journal(self, header: JournalHeader) -> None:
        """Start a call's journal in its session key, and list the call as in progress."""
        await self.write_journal_header(header.session_id, codec.journal_header(header))

    async def append_journal(self, session_id: str, turns: Sequence[Turn]) -> JournalWrite:
        """Append turns to a call's journal, in one command.

        Returns:
            ``written``; ``gone`` when the journal is gone (saved, erased, expired): it is not
            made again; ``full`` when it holds :data:`codec.MAX_JOURNAL_BYTES` already.
        """
        if not turns:
            return "written"
        lines = codec.journal_lines(turns)
        size = await self.append_journal_lines(session_id, lines, codec.MAX_JOURNAL_BYTES)
        return "written" if size >= 0 else "gone" if size == -1 else "full"

    async def claim_orphans(self, idle_s: float) -> list[tuple[str, bytes | None]]:
        """Calls in progress whose worker has not beaten for ``idle_s`` seconds: it died.

        A worker beats for its calls (:meth:`heartbeat`), and the beats and their age are
        measured on the store's clock (Redis's ``TIME``), never a worker's own: a worker hours
        behind is not taken for dead, nor one days ahead for alive. Reading a journal (an
        export, ``caller-memory stats``) does not count. Each orphan is leased to one claimer
        only; hand it back with :meth:`release_orphan` when it cannot be saved now (a lease
        also runs out by itself). A batch holds at most a few dozen calls: call again until it
        comes back empty.

        Returns:
            ``(session_id, journal)`` pairs; the journal is None when it has expired.
        """
        return await self.lease_orphans(idle_s, lease_s=_ORPHAN_LEASE_S)

    async def heartbeat(self, session_ids: Sequence[str]) -> None:
        """This worker is alive and its calls ``session_ids`` go on: they are not orphans."""
        if session_ids:
            await self.beat(session_ids)

    async def orphans_waiting(self, idle_s: float) -> int:
        """How many calls in progress have had no heartbeat for ``idle_s`` seconds."""
        return await self.count_open_calls(idle_s)

    async def discard_session(self, session_id: str) -> None:
        """Delete a call's data (or journal) and drop it from the calls in progress."""
        await self.delete([self._keys.session(session_id)])
        await self.drop_open_calls([session_id])

    # -- erasure and export ----------------------------------------------------------------

    async def held_data(self, phone_hash: str, *, previous: Sequence[str] = ()) -> HeldData:
        """Every key that holds something about the caller of a phone hash.

        That is each phone mapping (current and previous secrets), and for the user they point
        to (and the hashes themselves: a caller's id is their phone hash): the profile, its
        unreadable copy, the session list, the index of every call still held, each of those
        calls, and the journal of each call in progress.
        """
        keys = self._keys
        phone_keys = [keys.phone(h) for h in (phone_hash, *previous)]
        user_ids: list[str] = []
        for key in list(phone_keys):
            phone_keys.append(f"{key}:unreadable")  # a wrong-typed mapping, set aside
            user_id = codec.text(await self.read(key))
            if user_id and user_id not in user_ids:
                user_ids.append(user_id)
        candidates = list(dict.fromkeys([*user_ids, phone_hash, *previous]))
        return await self._held(phone_keys, candidates, {phone_hash, *previous})

    async def held_data_of_user(self, user_id: str) -> HeldData:
        """Every key that holds something about one user id (an operator's erasure request)."""
        keys = self._keys
        phone_keys = [keys.phone(user_id), keys.unreadable_phone(user_id)]
        return await self._held(phone_keys, [user_id], {user_id})

    async def _held(self, phone_keys: list[str], user_ids: list[str], hashes: set[str]) -> HeldData:
        keys = self._keys
        held = list(phone_keys)
        session_ids: list[str] = []
        found_users: list[str] = []
        for user_id in user_ids:
            user_keys = [
                keys.profile(user_id),
                keys.unreadable_profile(user_id),
                keys.sessions(user_id),
                keys.calls(user_id),
            ]
            listed = await self.read_list(keys.sessions(user_id))
            indexed = await self.read_members(keys.calls(user_id))
            if listed or indexed or await self.read(keys.profile(user_id)) is not None:
                found_users.append(user_id)
            held += user_keys
            session_ids += listed + indexed
        for session_id in await self.open_call_ids():
            raw = await self.read(keys.session(session_id))
            if raw is None or not codec.is_journal(raw):
                continue
            try:
                header = codec.read_journal_header(raw)
            except codec.UnreadableValue:
                continue
            if header.phone_hash in hashes or header.user_id in user_ids:
                session_ids.append(session_id)
        session_ids = list(dict.fromkeys(session_ids))
        held += [keys.session(sid) for sid in session_ids]
        return HeldData(
            user_ids=found_users, keys=list(dict.fromkeys(held)), session_ids=session_ids
        )

    async def forget(self, phone_hash: str, *, previous: Sequence[str] = ()) -> list[str]:
        """Delete everything held about the caller of a phone hash, and keep them erased.

        Each user id is first marked erased (:meth:`Keys.erased`, kept as long as a caller's
        memory is): from then on, the save of a call of theirs that began before (on another
        worker, from an outbox, from a journal) is refused atomically. Then every key of
        :meth:`held_data` is deleted, one transaction per slot.

        Returns:
            The keys that existed and were deleted (empty when the number is unknown).
        """
        return await self._erase(await self.held_data(phone_hash, previous=previous))

    async def forget_user(self, user_id: str) -> list[str]:
        """:meth:`forget` by user id (an operator acting on an erasure request)."""
        return await self._erase(await self.held_data_of_user(user_id))

    async def _erase(self, held: HeldData) -> list[str]:
        users = list(dict.fromkeys([*held.user_ids, *self._users_in(held.keys)]))
        await self.mark_erased(users, ttl=self._config.profile_ttl_seconds)
        deleted = await self.delete(held.keys)
        await self.drop_open_calls(held.session_ids)
        await self.remove_members(self._keys.erasure_requests(), users)  # they are answered
        return deleted

    def _users_in(self, keys: Sequence[str]) -> list[str]:
        # The user ids named by profile keys (a profile with no mapping left is a user too).
        found = []
        for key in keys:
            if self._keys.kind(key) == "profile":
                found.append(key.split("{", 1)[1].split("}", 1)[0])
        return found

    async def request_erasure(self, user_id: str) -> None:
        """Ask an operator to erase a user: a caller asked it on a call, unverified."""
        await self.add_request(self._keys.erasure_requests(), user_id, ttl=30 * 86400)

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

    async def purge_history(self) -> bool:
        """Make deleted data leave the server's disk too; True when it did.

        A store without a log on disk has nothing to do. See the Redis store's override.
        """
        return False

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
            if raw is None:
                continue
            found[key] = self._exported(kind, raw)
        return {"user_ids": held.user_ids, "keys": found}

    @staticmethod
    def _exported(kind: str, raw: bytes) -> Any:
        # What is stored, made readable: a profile is read as the agent reads it (inflated,
        # an older layout migrated) and shown whole, each fact with its evidence, times,
        # status and verification, absent fields included; one that cannot be read is shown
        # as stored.
        if kind == "profile":
            with contextlib.suppress(codec.UnreadableValue):
                return codec.decode_profile(raw).model_dump(mode="json")
        data = raw
        if kind in ("profile", "unreadable"):
            with contextlib.suppress(codec.UnreadableValue):
                data = codec.inflate(raw)
        value = codec.text(data) or ""
        try:
            return json.loads(value)
        except ValueError:
            return value

    # -- helpers ---------------------------------------------------------------------------

    def _parse_profile(self, user_id: str, raw: bytes | None) -> CallerProfile | None:
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

    # -- the atomic operations a store provides (one round trip each on Redis) -------------

    @abc.abstractmethod
    async def fetch_caller(
        self, phone_key: str, profile_key: str, sessions_key: str, *, mint: str | None, ttl: int
    ) -> Fetched:
        """Read a caller's three keys and renew their TTLs; with ``mint``, set the phone key
        to it if absent (``user_id`` is then None when this call minted it)."""

    @abc.abstractmethod
    async def fetch_profile(self, profile_key: str, sessions_key: str, ttl: int) -> Fetched:
        """Read a profile and its session list, renewing both TTLs (``user_id`` is None)."""

    @abc.abstractmethod
    async def adopt_previous(
        self, phone_key: str, old_phone_keys: Sequence[str], *, ttl: int
    ) -> str | None:
        """Find a user id under an old phone key, map ``phone_key`` to it, drop the old keys."""

    @abc.abstractmethod
    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        """The end-of-call write (see :class:`CallWrite`), all or nothing; the call leaves the
        calls in progress. Returns ``("written", None)``; ``("changed", current profile)``
        when the profile is no longer ``expected_profile``; ``("erased", None)`` when the
        caller was erased after the call began (nothing is written)."""

    @abc.abstractmethod
    async def write_journal_header(self, session_id: str, header: str) -> None:
        """Start a call's journal (session TTL) and list the call as in progress."""

    @abc.abstractmethod
    async def append_journal_lines(self, session_id: str, lines: str, limit: int) -> int:
        """Append to a call's journal unless that makes it larger than ``limit`` bytes.
        Returns its size; -1 when it is gone (it is not made again), -2 when it is full."""

    @abc.abstractmethod
    async def lease_orphans(
        self, idle_s: float, *, lease_s: float
    ) -> list[tuple[str, bytes | None]]:
        """Lease a batch of calls in progress whose last heartbeat (their score in the calls in
        progress) is ``idle_s`` old or more, for ``lease_s`` (see :meth:`claim_orphans`): both
        measured on the store's clock."""

    @abc.abstractmethod
    async def beat(self, session_ids: Sequence[str]) -> None:
        """Move the calls' heartbeat forward to now on the store's clock: only calls still
        listed, and never back (a lease in the future stays)."""

    @abc.abstractmethod
    async def count_open_calls(self, idle_s: float) -> int:
        """How many calls in progress last beat ``idle_s`` ago or longer (the store's clock)."""

    @abc.abstractmethod
    async def release_orphan(self, session_id: str) -> None:
        """Put a leased orphan back among the calls in progress, for a later recovery."""

    @abc.abstractmethod
    async def open_call_ids(self) -> list[str]:
        """The calls in progress."""

    @abc.abstractmethod
    async def drop_open_calls(self, session_ids: Sequence[str]) -> None:
        """Remove calls from the calls in progress."""

    @abc.abstractmethod
    async def acquire_maintenance(self, seconds: float) -> bool:
        """Take the fleet-wide maintenance turn for ``seconds``; False when another has it."""

    @abc.abstractmethod
    async def read(self, key: str) -> bytes | None:
        """A string key's value as stored."""

    @abc.abstractmethod
    async def read_list(self, key: str) -> list[str]:
        """A list key's items."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> list[str]:
        """Delete ``keys`` atomically (per slot on a cluster); return those that existed."""

    @abc.abstractmethod
    async def read_members(self, key: str) -> list[str]:
        """A sorted set's members, lowest score first."""

    @abc.abstractmethod
    async def read_scores(self, key: str) -> list[tuple[str, float]]:
        """A sorted set's members and scores, lowest score first."""

    @abc.abstractmethod
    async def remove_members(self, key: str, members: Sequence[str]) -> None:
        """Remove members from a sorted set."""

    @abc.abstractmethod
    async def mark_erased(self, user_ids: Sequence[str], *, ttl: int) -> None:
        """Set each user's :meth:`Keys.erased` to now on the store's clock (Unix ms; Redis's
        ``TIME``, never the eraser's own clock), with ``ttl``."""

    @abc.abstractmethod
    async def add_request(
        self, key: str, member: str, *, ttl: int, at: float | None = None
    ) -> None:
        """Add ``member`` to a sorted set, scored ``at`` (Unix seconds; default now on the
        store's clock), the set's TTL renewed."""

    @abc.abstractmethod
    async def write_moved(self, moved: MovedCaller) -> bool:
        """Write a re-keyed caller under their new id, all at once (``move_caller.lua``);
        False when another call moved them first."""

    @abc.abstractmethod
    async def replace_value(self, key: str, expected: bytes, value: bytes) -> bool:
        """Set ``key`` to ``value``, keeping its TTL, if it still holds ``expected``."""

    @abc.abstractmethod
    async def drop_identity(
        self, phone_key: str, profile_key: str, sessions_key: str, user_id: str
    ) -> bool:
        """Delete ``phone_key`` if it names ``user_id`` and the two others do not exist."""
