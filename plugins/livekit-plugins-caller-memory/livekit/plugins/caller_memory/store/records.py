"""What the store's operations take and give back: plain records, no I/O.

:class:`CallerLookup` is what the call-start lookup found; :class:`Fetched`, :class:`CallWrite`
and :class:`MovedCaller` cross the contract of :mod:`.primitives` between the store's policy and
a backend; :class:`VersionSaves` and :class:`HeldData` are what operators and erasure read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..models import CallerProfile

__all__ = [
    "CallWrite",
    "CallerLookup",
    "Fetched",
    "HeldData",
    "JournalWrite",
    "MovedCaller",
    "VersionSaves",
    "WriteOutcome",
]


@dataclass(frozen=True)
class CallerLookup:
    """What the call-start lookup found for one phone hash."""

    user_id: str | None
    """``None`` only when the lookup was asked not to create an identity and found none."""
    is_new: bool
    """True when this lookup created the identity: the caller has never called before."""
    profile: CallerProfile | None = None
    profile_raw: bytes | None = field(default=None, repr=False)
    """The profile exactly as stored: the starting point of the compare-and-set at hang-up."""
    at_ms: int | None = None
    """When the store answered, on its clock (Unix ms; Redis's ``TIME``): the call's
    beginning, which an erasure is compared with. None when it could not say."""

    @property
    def is_returning(self) -> bool:
        """True when the caller has a remembered profile."""
        return self.profile is not None

    @property
    def session_ids(self) -> list[str]:
        """The session ids of the calls the profile remembers, oldest first (the caller's
        session list, up to ``MEMORY_MAX_SESSIONS`` of them: ``get_session_ids``)."""
        return [call.session_id for call in self.profile.calls] if self.profile else []


@dataclass(frozen=True)
class Fetched:
    """What one read of a caller's keys returned, as stored."""

    user_id: str | None
    profile: bytes | None = None
    profile_wrong_type: bool = False
    """The profile key holds something else than a string (another program's key), or a
    value larger than any profile."""
    has_sessions: bool = False
    """The caller's session list exists (it is not read at call start)."""
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

    @staticmethod
    def from_scores(scores: Iterable[tuple[str, float]]) -> list[VersionSaves]:
        """Read the members of :meth:`Keys.versions` (``saves:{version}`` scored by the count,
        ``last:{version}`` by the time), the latest saver first; other members are ignored.

        Example:
            >>> VersionSaves.from_scores([("saves:0.2.0", 3.0), ("last:0.2.0", 1700.0)])
            [VersionSaves(version='0.2.0', saves=3, last=1700.0)]
        """
        found: dict[str, dict[str, float]] = {}
        for member, score in scores:
            what, _, version = member.partition(":")
            if what in ("saves", "last") and version:
                found.setdefault(version, {})[what] = score
        saves = [
            VersionSaves(version, int(v.get("saves", 0)), v.get("last"))
            for version, v in found.items()
        ]
        return sorted(saves, key=lambda s: s.last or 0.0, reverse=True)


@dataclass(frozen=True)
class HeldData:
    """Everything a store holds about one caller: what erasure deletes and export returns."""

    user_ids: list[str]
    keys: list[str]
    session_ids: list[str]
