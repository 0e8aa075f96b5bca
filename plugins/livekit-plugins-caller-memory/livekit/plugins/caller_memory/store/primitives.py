"""The contract of a store: its settings, key names and clock, and the atomic operations.

A backend (Redis, or the in-process dict of :mod:`.memory`) implements the abstract methods
here and nothing else: every policy is written once above them (:mod:`.base`, :mod:`.profiles`,
:mod:`.open_calls`, :mod:`.rights`). Each operation says which keys of :mod:`.keys` it touches
and how atomic it is. "One round trip" means one command on Redis (a Lua script or a
transaction), so that nothing is half-written if the worker dies; on a cluster, a script only
touches keys of one hash tag (a caller's ``{hash}``), and keys in other slots follow it.

Times that machines compare (a call's beginning and an erasure, a heartbeat and an orphan's
age) are the store's: Redis's ``TIME`` inside the scripts, never a worker's own clock.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone  # datetime.UTC is Python 3.11+
from typing import Any

from ..config import RedisConfig
from ..identity import PhoneHasher, load_hasher
from .keys import Keys
from .records import CallerLookup, CallWrite, Fetched, MovedCaller, WriteOutcome

__all__ = ["StoreFull", "StorePrimitives", "from_ms", "to_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class StoreFull(RuntimeError):
    """The store refused a write for want of memory (Redis at ``maxmemory`` with
    ``noeviction``); deletes still go through, and free room.

    Attributes:
        deleted: Keys the operation had deleted before it was refused (an erasure's earlier
            slots on a cluster).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.deleted: list[str] = []


def from_ms(unix_ms: int) -> datetime:
    """A time from Unix milliseconds, exactly (UTC)."""
    return datetime.fromtimestamp(unix_ms // 1000, timezone.utc).replace(
        microsecond=unix_ms % 1000 * 1000
    )


def to_ms(when: datetime) -> int:
    """Unix milliseconds of a time (a naive one is taken as UTC), exactly."""
    # Exact: timestamp() * 1000 is a float, and .439 s can come out as 438.99... ms.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    return (aware - _EPOCH) // timedelta(milliseconds=1)


class StorePrimitives(abc.ABC):
    """What every store has (settings, key names, the phone hasher, the store's clock) and the
    atomic operations a backend provides.

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
        self._clock_offset_ms = 0.0
        """The store's clock minus this process's, as last measured (see :meth:`clock_ms`)."""
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
        return from_ms(self.clock_ms() if at_ms is None else at_ms)

    def _clock_seen(self, store_ms: float, received_s: float) -> None:
        """The store said its time was ``store_ms`` in a reply received at ``received_s`` on
        this process's clock: remember the offset."""
        self._clock_offset_ms = store_ms - received_s * 1000

    # -- the backend: where it is, and its connection ----------------------------------------

    @property
    @abc.abstractmethod
    def server(self) -> str:
        """Where the memory is, for messages: ``host:port``, never credentials."""

    @abc.abstractmethod
    async def connect(self) -> bool:
        """Open the connection and check it. Returns False, with :attr:`last_error` set and
        logged, when it fails."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close what this store opened. Safe to call twice."""

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

    # -- a caller: the lookup and the save ---------------------------------------------------

    @abc.abstractmethod
    async def fetch_caller(
        self,
        phone_key: str,
        profile_key: str,
        sessions_key: str,
        aside_key: str,
        *,
        mint: str | None,
        ttl: int,
    ) -> Fetched:
        """Read a caller's phone key and profile, renew the TTLs of those and of their session
        list (``has_sessions``: it exists; its ids are not read); with ``mint``, set the phone
        key to it if absent (``user_id`` is then None when this call minted it).

        Keys: :meth:`Keys.phone`, :meth:`Keys.profile`, :meth:`Keys.sessions` (one ``{hash}``
        tag) and :meth:`Keys.unreadable_phone`, where a phone key of the wrong type is set
        aside. Atomic, one round trip (``lookup.lua``); ``at_ms`` is the store's clock."""

    @abc.abstractmethod
    async def fetch_profile(self, profile_key: str, sessions_key: str, ttl: int) -> Fetched:
        """Read a profile, renewing its TTL and its session list's (``user_id`` is None).

        Keys: :meth:`Keys.profile`, :meth:`Keys.sessions` of a user keyed elsewhere than the
        phone hash. One round trip, not atomic (reads, and TTLs that only move forward)."""

    @abc.abstractmethod
    async def adopt_previous(
        self, phone_key: str, old_phone_keys: Sequence[str], *, ttl: int
    ) -> str | None:
        """Find a user id under an old phone key, map ``phone_key`` to it, drop the old keys.

        Keys: :meth:`Keys.phone` under the current and previous secrets (other slots). Two
        round trips; the mapping is set only if absent, so two callers racing agree."""

    @abc.abstractmethod
    async def write_call(self, write: CallWrite) -> tuple[WriteOutcome, bytes | None]:
        """The end-of-call write (see :class:`CallWrite`), all or nothing; the call leaves the
        calls in progress. Returns ``("written", None)``; ``("changed", current profile)``
        when the profile is no longer ``expected_profile``; ``("erased", None)`` when the
        caller was erased after the call began (nothing is written).

        Keys: the user's profile, sessions, unreadable profile, calls and erased mark,
        atomically in one round trip (``save_call.lua``); then :meth:`Keys.session`,
        :meth:`Keys.open_calls`, :meth:`Keys.versions` and the phone mapping, in the same
        script on one server, next to it on a cluster (other slots)."""

    @abc.abstractmethod
    async def write_moved(self, moved: MovedCaller) -> bool:
        """Write a re-keyed caller under their new id, all at once (``move_caller.lua``);
        False when another call moved them first.

        Keys: the new id's phone, profile, sessions, calls and unreadable profile (one tag),
        atomically; the old keys are deleted afterwards by the caller of this."""

    @abc.abstractmethod
    async def replace_value(self, key: str, expected: bytes, value: bytes) -> bool:
        """Set ``key`` to ``value``, keeping its TTL, if it still holds ``expected``.

        A compare-and-set of one key (a profile changed outside a save), atomic, one round
        trip (``replace_value.lua``)."""

    @abc.abstractmethod
    async def drop_identity(
        self, phone_key: str, profile_key: str, sessions_key: str, user_id: str
    ) -> bool:
        """Delete ``phone_key`` if it names ``user_id`` and the two others do not exist.

        Keys: a caller's phone, profile and sessions (one tag), atomic, one round trip
        (``drop_identity.lua``)."""

    # -- calls in progress: the journal, heartbeats and orphans ------------------------------

    @abc.abstractmethod
    async def write_journal_header(self, session_id: str, header: str) -> None:
        """Start a call's journal (session TTL) and list the call as in progress.

        Keys: :meth:`Keys.session` and :meth:`Keys.open_calls` (scored with the store's
        clock): one round trip, atomic on one server (``add_now.lua``); two on a cluster,
        the journal first."""

    @abc.abstractmethod
    async def append_journal_lines(self, session_id: str, lines: str, limit: int) -> int:
        """Append to a call's journal unless that makes it larger than ``limit`` bytes.
        Returns its size; -1 when it is gone (it is not made again), -2 when it is full.

        Keys: :meth:`Keys.session`, atomic, one round trip (``append_journal.lua``)."""

    @abc.abstractmethod
    async def lease_orphans(
        self, idle_s: float, *, lease_s: float
    ) -> list[tuple[str, bytes | None]]:
        """Lease a batch of calls in progress whose last heartbeat (their score in the calls in
        progress) is ``idle_s`` old or more, for ``lease_s`` (see
        :meth:`~.open_calls.OpenCalls.claim_orphans`): both measured on the store's clock.

        Keys: :meth:`Keys.open_calls`, leased atomically (``claim_orphan.lua``: of two
        claimers, one gets each call); then each :meth:`Keys.session` read."""

    @abc.abstractmethod
    async def beat(self, session_ids: Sequence[str]) -> None:
        """Move the calls' heartbeat forward to now on the store's clock: only calls still
        listed, and never back (a lease in the future stays).

        Keys: :meth:`Keys.open_calls`, atomic per batch (``beat.lua``)."""

    @abc.abstractmethod
    async def count_open_calls(self, idle_s: float) -> int:
        """How many calls in progress last beat ``idle_s`` ago or longer (the store's clock).
        Keys: :meth:`Keys.open_calls`, read only."""

    @abc.abstractmethod
    async def release_orphan(self, session_id: str) -> None:
        """Put a leased orphan back among the calls in progress, for a later recovery.
        Keys: :meth:`Keys.open_calls`, scored now on the store's clock (``add_now.lua``)."""

    @abc.abstractmethod
    async def open_call_ids(self) -> list[str]:
        """The calls in progress (:meth:`Keys.open_calls`), read only."""

    @abc.abstractmethod
    async def drop_open_calls(self, session_ids: Sequence[str]) -> None:
        """Remove calls from the calls in progress (:meth:`Keys.open_calls`), one command."""

    @abc.abstractmethod
    async def acquire_maintenance(self, seconds: float) -> bool:
        """Take the fleet-wide maintenance turn for ``seconds``; False when another has it.
        Keys: :meth:`Keys.maintenance`, set only if absent, with its TTL (one command)."""

    # -- plain reads, deletes and sorted sets (erasure, export, operators) -------------------

    @abc.abstractmethod
    async def read(self, key: str) -> bytes | None:
        """A string key's value as stored."""

    @abc.abstractmethod
    async def read_list(self, key: str) -> list[str]:
        """A list key's items."""

    @abc.abstractmethod
    async def read_members(self, key: str) -> list[str]:
        """A sorted set's members, lowest score first."""

    @abc.abstractmethod
    async def read_scores(self, key: str) -> list[tuple[str, float]]:
        """A sorted set's members and scores, lowest score first."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> list[str]:
        """Delete ``keys`` atomically (per slot on a cluster); return those that existed."""

    @abc.abstractmethod
    async def erase(self, keys: Sequence[str], user_ids: Sequence[str], *, ttl: int) -> list[str]:
        """Mark each user erased (as :meth:`mark_erased`) and delete ``keys``, atomically (per
        slot on a cluster: a caller's own keys and mark share one); return the keys that
        existed. No read sees the mark without the deletion.

        Raises:
            StoreFull: The store refused the marks for want of memory; nothing was deleted.
        """

    @abc.abstractmethod
    async def remove_members(self, key: str, members: Sequence[str]) -> None:
        """Remove members from a sorted set (one command)."""

    @abc.abstractmethod
    async def mark_erased(self, user_ids: Sequence[str], *, ttl: int) -> None:
        """Set each user's :meth:`Keys.erased` to now on the store's clock (Unix ms; Redis's
        ``TIME``, never the eraser's own clock), with ``ttl``: one round trip per user
        (``mark_erased.lua``), each atomic.

        Raises:
            StoreFull: The store refused the write for want of memory.
        """

    @abc.abstractmethod
    async def add_request(
        self, key: str, member: str, *, ttl: int, at: float | None = None
    ) -> None:
        """Add ``member`` to a sorted set, scored ``at`` (Unix seconds; default now on the
        store's clock), the set's TTL renewed: atomic, one round trip (``add_now.lua``, or a
        transaction with ``at``). Keys: :meth:`Keys.erasure_requests`,
        :meth:`Keys.trunk_regions`."""

    async def purge_history(self) -> bool:
        """Make deleted data leave the server's disk too; True when it did.

        A store without a log on disk has nothing to do. See the Redis store's override.
        """
        return False
