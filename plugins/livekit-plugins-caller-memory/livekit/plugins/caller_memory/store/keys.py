"""The Redis key layout, and the only module that knows it.

The guide's four keys, plus three that exist only when needed. The braces are real Redis
Cluster hash tags: a caller's phone mapping, profile and session list share the tag ``{hash}``
(a caller's user id is their phone hash, see :func:`new_user_id`) and so one slot, where
one script can read or write all three at once.

| key                                    | holds                                  | TTL      |
|----------------------------------------|----------------------------------------|----------|
| ``{prefix}:phone:{hash}``              | user id                                | 90 days  |
| ``{prefix}:user:{id}:profile``         | profile (JSON, zlib when large)        | 90 days  |
| ``{prefix}:user:{id}:sessions``        | recent session ids (list, oldest first)| 90 days  |
| ``{prefix}:session:{id}``              | one call in full, or its journal       | 24 hours |
| ``{prefix}:user:{id}:profile:unreadable`` | a profile that could not be read    | 90 days  |
| ``{prefix}:phone:{hash}:unreadable``   | a phone key not holding a user id      | 90 days  |
| ``{prefix}:user:{id}:calls``           | every call held (sorted set, by expiry)| 24 hours |
| ``{prefix}:user:{id}:erased``          | when the caller was erased (a time)    | 90 days  |
| ``{prefix}:sessions:open``             | calls in progress (sorted set)         | 24 hours |
| ``{prefix}:erasure:requests``          | erasures asked by unverified callers   | 30 days  |
| ``{prefix}:maintenance``               | the fleet's recovery lock (a pid)      | interval |
| ``{prefix}:versions``                  | saves by worker version (sorted set)   | 90 days  |
| ``{prefix}:trunk_regions``             | regions of the trunks calls came in on | 90 days  |

``versions`` is one key for the whole prefix, not a field of every profile (a caller's memory
stays as small as it was): for each version of the plugin that saved a call, the member
``saves:{version}`` scores the number of saves and ``last:{version}`` the time of the last one
(Unix seconds). Every save adds to it, in the save's own script, and renews its TTL (the
profiles' TTL): ``caller-memory stats`` shows which versions write, and when each last did.
Workers before 0.2.0 write none.

``trunk_regions`` is one key for the whole prefix too: the 2-letter region (ISO 3166, ``US``)
of each trunk number a worker read a caller's number with (when ``MEMORY_DEFAULT_REGION`` is
unset), scored by when it last did (the server's clock, Unix seconds). Never a number: the
operator console reads numbers typed without a country code in the one region it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["KeyKind", "Keys", "is_user_id", "new_user_id"]

KeyKind = Literal[
    "phone",
    "profile",
    "unreadable",
    "sessions",
    "calls",
    "erased",
    "session",
    "open",
    "requests",
    "maintenance",
    "versions",
    "regions",
    "other",
]


def new_user_id(phone_hash: str) -> str:
    """The user id given to a new caller: their phone hash.

    It is as opaque as a random id (an HMAC under a secret that is not in Redis), and it lets
    the call-start lookup name the profile keys before the phone key has answered, which
    saves a round trip. A caller moved from a previous secret keeps the id they had.
    """
    return phone_hash


_USER_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")


def is_user_id(value: str) -> bool:
    """``value`` has the shape of a user id: 8 to 128 letters, digits, ``_`` or ``-`` (a phone
    hash is 22; a caller moved from an old secret keeps the id they had). ``lookup.lua`` sets
    aside a phone key whose value has another."""
    return _USER_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Keys:
    """The key names of one deployment (one prefix).

    Example:
        >>> Keys("sarah").profile("u1")
        'sarah:user:{u1}:profile'
    """

    prefix: str

    def phone(self, phone_hash: str) -> str:
        """Holds the user id of a phone number's keyed hash."""
        return f"{self.prefix}:phone:{{{phone_hash}}}"

    def unreadable_phone(self, phone_hash: str) -> str:
        """Holds a phone key of the wrong type or whose value is no user id (another
        program's, or bytes written by hand), set aside by the lookup."""
        return f"{self.phone(phone_hash)}:unreadable"

    def profile(self, user_id: str) -> str:
        """Holds a caller's profile."""
        return f"{self.prefix}:user:{{{user_id}}}:profile"

    def unreadable_profile(self, user_id: str) -> str:
        """Holds a profile that could not be read, kept aside instead of overwritten."""
        return f"{self.profile(user_id)}:unreadable"

    def sessions(self, user_id: str) -> str:
        """Holds a caller's recent session ids, oldest first."""
        return f"{self.prefix}:user:{{{user_id}}}:sessions"

    def calls(self, user_id: str) -> str:
        """Holds every call of the caller whose data is still kept (the session list holds
        the last few), scored by when its data expires: what erasure and export reach."""
        return f"{self.prefix}:user:{{{user_id}}}:calls"

    def erased(self, user_id: str) -> str:
        """Holds when the caller was erased: a save of a call that began before is refused."""
        return f"{self.prefix}:user:{{{user_id}}}:erased"

    def erasure_requests(self) -> str:
        """The sorted set of erasures asked by unverified callers, for an operator."""
        return f"{self.prefix}:erasure:requests"

    def session(self, session_id: str) -> str:
        """Holds one call in full, or its journal while the call goes on."""
        return f"{self.prefix}:session:{{{session_id}}}"

    def open_calls(self) -> str:
        """The sorted set of calls in progress, for crash recovery."""
        return f"{self.prefix}:sessions:open"

    def maintenance(self) -> str:
        """The lock that gives one worker at a time the recovery pass."""
        return f"{self.prefix}:maintenance"

    def versions(self) -> str:
        """The sorted set of saves by worker version: ``saves:{version}`` scores the number of
        saves, ``last:{version}`` the time of the last one (Unix seconds)."""
        return f"{self.prefix}:versions"

    def trunk_regions(self) -> str:
        """The sorted set of the regions of the trunks calls came in on: member the region
        code (``US``), score when a worker last read a caller's number with it."""
        return f"{self.prefix}:trunk_regions"

    def user_of(self, key: str) -> str | None:
        """The user id a caller's key of this prefix names (``...:user:{id}:...``), or None.

        Example:
            >>> Keys("sarah").user_of("sarah:user:{u1}:profile")
            'u1'
        """
        rest = key.removeprefix(f"{self.prefix}:")
        if rest == key or not rest.startswith("user:{") or "}" not in rest:
            return None
        return rest[len("user:{") :].split("}", 1)[0]

    @staticmethod
    def caller_pattern() -> str:
        """A SCAN pattern matching the phone key of every caller, whatever the prefix (one key
        per caller; a phone key set aside, ``...:unreadable``, does not match)."""
        return "*:phone:{*}"

    @staticmethod
    def prefix_of_phone_key(key: str) -> str | None:
        """The prefix of a caller's phone key (:meth:`phone`), or None for another key.

        Example:
            >>> Keys.prefix_of_phone_key("sarah:phone:{abc}")
            'sarah'
        """
        prefix, found, rest = key.partition(":phone:{")
        if not found or ":" in prefix or not rest.endswith("}") or "}" in rest[:-1]:
            return None
        return prefix

    def pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

    def kind(self, key: str) -> KeyKind:
        """What a key of this prefix holds, from its name alone."""
        if not key.startswith(f"{self.prefix}:"):
            return "other"
        rest = key[len(self.prefix) + 1 :]
        if rest.startswith("phone:{"):
            return "unreadable" if rest.endswith(":unreadable") else "phone"
        if rest.startswith("session:{"):
            return "session"
        if rest == "sessions:open":
            return "open"
        if rest == "maintenance":
            return "maintenance"
        if rest == "versions":
            return "versions"
        if rest == "trunk_regions":
            return "regions"
        if rest == "erasure:requests":
            return "requests"
        if rest.startswith("user:{"):
            for suffix, kind in (
                (":profile:unreadable", "unreadable"),
                (":profile", "profile"),
                (":sessions", "sessions"),
                (":calls", "calls"),
                (":erased", "erased"),
            ):
                if rest.endswith(suffix):
                    return kind  # type: ignore[return-value]
        return "other"
