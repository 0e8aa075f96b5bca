"""The memory store contract, shared by the Redis store and the in-process one.

A store keeps four things per the guide's key table: phone hash → user id, the caller's profile,
the caller's recent session ids, and each session's full data. Subclasses implement a few raw
operations on JSON strings; this class turns them into the guide's API, parses and validates what
comes back, and merges a finished call into the profile with a compare-and-set loop so that two
calls from one caller ending together both land.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from .config import RedisConfig
from .exceptions import CallerMemoryError, StoreUnavailableError
from .identity import PhoneHasher, load_dev_secret
from .keys import Keys
from .log import logger
from .models import (
    CallerProfile,
    CallSummary,
    JournalHeader,
    SessionRecord,
    Turn,
    is_journal,
    migrate_profile,
)

__all__ = ["CallerKeys", "CallerLookup", "MemoryStore", "Raw", "new_user_id"]

Raw = str | bytes
"""A value as the store keeps it (the Redis store compresses large profiles)."""

_MAX_CAS_ATTEMPTS = 64


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
    profile_raw: Raw | None = field(default=None, repr=False)
    """The profile exactly as stored, the starting point of the compare-and-set at hang-up."""

    @property
    def is_returning(self) -> bool:
        """True when the caller has a remembered profile."""
        return self.profile is not None


@dataclass(frozen=True)
class CallerKeys:
    """The keys that hold something about one caller."""

    user_ids: list[str]
    keys: list[str]
    session_ids: list[str]


@dataclass(frozen=True)
class _RawLookup:
    user_id: str | None
    is_new: bool
    profile_raw: Raw | None = None
    session_ids: list[str] = field(default_factory=list)


class MemoryStore(abc.ABC):
    """Base class of the stores: the guide's API over a handful of raw operations.

    Args:
        config: Settings; :meth:`RedisConfig.from_env` when omitted.
        hasher: The phone-number hasher; built from ``MEMORY_PHONE_HASH_SECRET`` when omitted.
    """

    def __init__(
        self, config: RedisConfig | None = None, *, hasher: PhoneHasher | None = None
    ) -> None:
        self._config = config or RedisConfig.from_env()
        self._keys = Keys(self._config.key_prefix)
        self._hasher = hasher
        self._user_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

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
            config = self._config
            secret = config.phone_hash_secret
            config.check_secret()
            if secret is not None:
                key = secret.get_secret_value().encode()
            else:
                key = load_dev_secret(config.data_dir)
            self._hasher = PhoneHasher(
                key, default_region=config.default_region, previous=config.previous_secrets
            )
        return self._hasher

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> bool:
        """Open the connection and check it. Returns False (and logs why) when it fails."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close what this store opened. Safe to call twice."""

    async def aclose(self) -> None:
        """Alias of :meth:`disconnect`, the LiveKit spelling."""
        await self.disconnect()

    async def __aenter__(self) -> MemoryStore:
        if not await self.connect():
            reason = getattr(self, "last_error", None) or "the memory store is not reachable"
            raise StoreUnavailableError(reason)
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
        """Ping the store. Returns at least ``{"healthy": bool, "latency_ms": float}``."""

    # -- raw operations, one per subclass --------------------------------------------------

    @abc.abstractmethod
    async def _lookup_raw(
        self, phone_hash: str, *, create: bool, previous: Sequence[str] = ()
    ) -> _RawLookup: ...

    @abc.abstractmethod
    async def _save_raw(
        self,
        *,
        user_id: str,
        phone_hash: str | None,
        expected_profile: Raw | None,
        profile: str,
        session_id: str,
        session: str,
        set_aside: bool,
    ) -> tuple[bool, Raw | None]:
        """Compare-and-set of the profile plus the session writes, all or nothing.

        With ``set_aside``, the current (unreadable) profile is first copied to
        ``{profile key}:unreadable``. The call leaves the in-progress list.

        Returns ``(True, None)`` when written, ``(False, current_profile)`` when the profile
        changed since ``expected_profile`` was read.
        """

    @abc.abstractmethod
    async def _get_raw(self, key: str) -> str | None:
        """A string key's value as text (decoded, decompressed)."""

    async def _get_profile_raw(self, user_id: str) -> Raw | None:
        """The profile exactly as stored, for the compare-and-set."""
        return await self._get_raw(self._keys.profile(user_id))

    def _decode_profile(self, raw: Raw) -> str:
        """The profile's JSON from its stored form."""
        return raw if isinstance(raw, str) else raw.decode()

    @abc.abstractmethod
    async def _list_raw(self, key: str) -> list[str]: ...

    # -- the guide's API -------------------------------------------------------------------

    async def get_or_create_user_id(self, *, phone_number: str) -> str:
        """The user id of a phone number, created on the first call (atomically).

        Raises:
            InvalidPhoneNumberError: ``phone_number`` is not a phone number.
        """
        phone_hash, previous = self.hasher.hashes(phone_number)
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

        At most two round trips for a returning caller, and the caller's TTLs are refreshed
        by the reads themselves.

        Args:
            phone_hash: :meth:`PhoneHasher.hash` of the caller's number.
            previous: The number's hashes under previous secrets: a caller found under one of
                them is moved to ``phone_hash`` (one more round trip, on their first call
                after a rotation only).
            create: Mint an identity when the number is unknown.
            load_profile: Also read the profile and the session list.
        """
        raw = await self._lookup_raw(phone_hash, create=create, previous=previous)
        if raw.user_id is None or raw.is_new or not load_profile:
            return CallerLookup(user_id=raw.user_id, is_new=raw.is_new)
        profile = self._parse_profile(raw.user_id, raw.profile_raw)
        return CallerLookup(
            user_id=raw.user_id,
            is_new=False,
            profile=profile,
            session_ids=raw.session_ids,
            profile_raw=raw.profile_raw,
        )

    async def get_profile(self, user_id: str) -> CallerProfile | None:
        """A caller's profile, or None when there is none (or it cannot be read)."""
        return self._parse_profile(user_id, await self._get_raw(self._keys.profile(user_id)))

    async def get_session_ids(self, user_id: str) -> list[str]:
        """A caller's recent session ids, oldest first."""
        return await self._list_raw(self._keys.sessions(user_id))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """One session's full data, or None once it has expired."""
        key = self._keys.session(session_id)
        raw = await self._get_raw(key)
        if raw is None:
            return None
        try:
            return SessionRecord.model_validate_json(raw)
        except ValidationError:
            logger.warning("unreadable session data set aside", extra={"key": key})
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

        One atomic write per attempt: the session's data (24 h), the session list and the
        profile (90 days), every TTL set inside it. When another call of the same caller saved
        in between, the summary is merged again into the newer profile, so no call is lost.
        Saving the same session twice stores it once.

        Args:
            record: The session, turns included. ``record.user_id`` may be None when the
                call-start lookup did not finish; ``phone_hash`` then resolves it.
            summary: What the call taught us.
            phone_hash: The caller's phone hash, whose mapping TTL is refreshed too.
            previous: The number's hashes under previous secrets (see :meth:`lookup`).
            base: The call-start lookup, whose profile is the first compare-and-set guess.
            replay: The call may have been saved already (an outbox entry whose save failed
                only on the way back): when its session data is there, nothing is merged again.

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
            record = record.model_copy(update={"user_id": user_id})
        ended_at = record.ended_at or record.started_at
        record = record.model_copy(update={"summary": summary, "ended_at": ended_at})
        if replay:
            stored = await self._get_raw(self._keys.session(record.session_id))
            if stored is not None and not is_journal(stored):
                return await self.get_profile(user_id) or CallerProfile(user_id=user_id)

        # Calls of one caller ending together in this process take turns; the compare-and-set
        # below still guards against other processes.
        async with self._user_lock(user_id):
            return await self._merge_and_save(record, summary, user_id, phone_hash, base)

    async def _merge_and_save(
        self,
        record: SessionRecord,
        summary: CallSummary,
        user_id: str,
        phone_hash: str | None,
        base: CallerLookup | None,
    ) -> CallerProfile:
        ended_at = record.ended_at or record.started_at
        session_json = record.model_dump_json()
        if base is not None and base.user_id == user_id:
            expected = base.profile_raw
        else:
            expected = await self._get_profile_raw(user_id)
        for attempt in range(_MAX_CAS_ATTEMPTS):
            if attempt >= 2:  # heavy contention across processes: spread the retries
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            parsed = self._parse_profile(user_id, expected)
            current = parsed or CallerProfile(user_id=user_id)
            profile = current.merged(
                summary,
                session_id=record.session_id,
                ended_at=ended_at,
                max_summaries=self._config.max_summaries,
                consented=record.consented,
            )
            done, latest = await self._save_raw(
                user_id=user_id,
                phone_hash=phone_hash,
                expected_profile=expected,
                profile=profile.model_dump_json(exclude_none=True),
                session_id=record.session_id,
                session=session_json,
                # Unreadable data is kept aside (90 days), never silently overwritten.
                set_aside=expected is not None and parsed is None,
            )
            if done:
                return profile
            expected = latest
        raise CallerMemoryError("the caller's profile kept changing during the save; retry later")

    @contextlib.asynccontextmanager
    async def _user_lock(self, user_id: str) -> AsyncIterator[None]:
        entry = self._user_locks.setdefault(user_id, (asyncio.Lock(), [0]))
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._user_locks[user_id]

    # -- the call journal (crash safety) ---------------------------------------------------

    async def open_journal(self, header: JournalHeader) -> None:
        """Start a call's journal in its session key, and list the call as in progress."""
        await self._journal_open(header.session_id, header.model_dump_json())

    async def append_journal(self, session_id: str, turns: list[Turn]) -> None:
        """Append turns to a call's journal, in one command."""
        if turns:
            lines = "".join("\n" + turn.model_dump_json() for turn in turns)
            await self._journal_append(session_id, lines)

    async def claim_orphans(self, idle_s: float) -> list[tuple[str, str | None]]:
        """Calls in progress whose journal has been idle ``idle_s`` seconds: their worker died.

        Each orphan is claimed by one caller only (it leaves the in-progress list); hand it
        back with :meth:`release_orphan` when it cannot be saved now.

        Returns:
            ``(session_id, journal)`` pairs; the journal is None when it has expired.
        """
        return await self._claim_orphans(idle_s)

    @abc.abstractmethod
    async def acquire_maintenance(self, seconds: float) -> bool:
        """Take the fleet-wide maintenance turn for ``seconds``; False when another has it."""

    async def release_orphan(self, session_id: str) -> None:
        """Put a claimed orphan back on the in-progress list, for a later recovery."""
        await self._journal_release(session_id)

    @abc.abstractmethod
    async def _journal_open(self, session_id: str, header: str) -> None: ...

    @abc.abstractmethod
    async def _journal_append(self, session_id: str, lines: str) -> None: ...

    @abc.abstractmethod
    async def _claim_orphans(self, idle_s: float) -> list[tuple[str, str | None]]: ...

    @abc.abstractmethod
    async def _journal_release(self, session_id: str) -> None: ...

    async def caller_keys(self, phone_hash: str, *, previous: Sequence[str] = ()) -> CallerKeys:
        """Every key that holds something about the caller of a phone hash.

        That is each phone mapping (current and previous secrets), and for the user they point
        to: the profile, its unreadable copy, the session list, each listed session and each
        journal of a call in progress.
        """
        phone_keys = [self._keys.phone(h) for h in (phone_hash, *previous)]
        user_ids: list[str] = []
        for key in phone_keys:
            user_id = await self._get_raw(key)
            if user_id and user_id not in user_ids:
                user_ids.append(user_id)
        keys = list(phone_keys)
        session_ids: list[str] = []
        for user_id in user_ids:
            profile_key = self._keys.profile(user_id)
            keys += [profile_key, f"{profile_key}:unreadable", self._keys.sessions(user_id)]
            session_ids += await self._list_raw(self._keys.sessions(user_id))
        hashes = {phone_hash, *previous}
        for session_id in await self._open_session_ids():
            raw = await self._get_raw(self._keys.session(session_id))
            if raw is not None and is_journal(raw):
                header = JournalHeader.model_validate_json(raw.splitlines()[0])
                if header.phone_hash in hashes or header.user_id in user_ids:
                    session_ids.append(session_id)
        keys += [self._keys.session(sid) for sid in dict.fromkeys(session_ids)]
        return CallerKeys(
            user_ids=user_ids, keys=keys, session_ids=list(dict.fromkeys(session_ids))
        )

    async def forget(self, phone_hash: str, *, previous: Sequence[str] = ()) -> list[str]:
        """Delete everything held about the caller of a phone hash, in one atomic step.

        Returns:
            The keys that existed and were deleted (empty when the number is unknown).
        """
        found = await self.caller_keys(phone_hash, previous=previous)
        deleted = await self._delete_raw(found.keys)
        await self._forget_open(found.session_ids)
        return deleted

    async def export(self, phone_hash: str, *, previous: Sequence[str] = ()) -> dict[str, Any]:
        """Everything held about the caller of a phone hash, as JSON-ready data.

        What a subject-access request returns: the user id(s), the profile, the list of
        sessions and each session's full data (or journal), keyed by the Redis key it is in.
        """
        found = await self.caller_keys(phone_hash, previous=previous)
        held: dict[str, Any] = {}
        for key in found.keys:
            if key.endswith(":sessions"):
                items = await self._list_raw(key)
                if items:
                    held[key] = items
                continue
            try:
                raw = await self._get_raw(key)
            except Exception:  # a key of the wrong type: say so rather than fail the export
                held[key] = "(not a string value)"
                continue
            if raw is None:
                continue
            try:
                held[key] = json.loads(raw)
            except ValueError:
                held[key] = raw
        return {"user_ids": found.user_ids, "keys": held}

    async def discard_session(self, session_id: str) -> None:
        """Delete a call's session data (or journal) and drop it from the calls in progress."""
        await self._delete_raw([self._keys.session(session_id)])
        await self._forget_open([session_id])

    @abc.abstractmethod
    async def _open_session_ids(self) -> list[str]: ...

    @abc.abstractmethod
    async def _forget_open(self, session_ids: list[str]) -> None: ...

    @abc.abstractmethod
    async def _delete_raw(self, keys: list[str]) -> list[str]:
        """Delete ``keys`` atomically; return those that existed."""

    # -- helpers ---------------------------------------------------------------------------

    def _parse_profile(self, user_id: str, raw: Raw | None) -> CallerProfile | None:
        if raw is None:
            return None
        try:
            data = json.loads(self._decode_profile(raw))
            profile = CallerProfile.model_validate(migrate_profile(data))
        except (ValidationError, ValueError, TypeError, AttributeError, zlib.error):
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
