"""Redis key names of one deployment (one key prefix)."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import OPEN_SESSIONS_KEY, PHONE_KEY, PROFILE_KEY, SESSION_KEY, SESSIONS_KEY

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    """Builds the key names of the guide's table under one prefix.

    Example:
        >>> Keys("sarah").profile("u1")
        'sarah:user:{u1}:profile'
    """

    prefix: str

    def phone(self, phone_hash: str) -> str:
        """Key holding the user id of a phone number's keyed hash."""
        return PHONE_KEY.format(prefix=self.prefix, phone_hash=phone_hash)

    def profile(self, user_id: str) -> str:
        """Key holding a caller's profile (JSON)."""
        return PROFILE_KEY.format(prefix=self.prefix, user_id=user_id)

    def sessions(self, user_id: str) -> str:
        """Key holding a caller's recent session ids (a list, oldest first)."""
        return SESSIONS_KEY.format(prefix=self.prefix, user_id=user_id)

    def session(self, session_id: str) -> str:
        """Key holding one session's full data (JSON)."""
        return SESSION_KEY.format(prefix=self.prefix, session_id=session_id)

    def open_sessions(self) -> str:
        """Key of the sorted set of calls in progress (crash recovery)."""
        return OPEN_SESSIONS_KEY.format(prefix=self.prefix)

    def maintenance(self) -> str:
        """Key of the lock that gives one worker at a time the recovery pass (with a TTL)."""
        return f"{self.prefix}:maintenance"

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}:*"
