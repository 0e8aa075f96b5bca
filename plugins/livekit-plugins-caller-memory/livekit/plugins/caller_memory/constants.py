"""Key patterns and defaults in one place, so the Redis layout can be read at a glance.

The braces in the patterns are real Redis Cluster hash tags: a user's profile and session list
share the tag ``{user_id}`` and so live in one slot, where one transaction can update both.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LOOKUP_TIMEOUT_MS",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_SUMMARIES",
    "DEFAULT_ORPHAN_AFTER_S",
    "DEFAULT_OUTBOX_FLUSH_S",
    "DEFAULT_PROFILE_TTL_DAYS",
    "DEFAULT_SESSION_TTL_HOURS",
    "DEFAULT_SUMMARY_TIMEOUT_S",
    "PHONE_KEY",
    "PROFILE_KEY",
    "SESSIONS_KEY",
    "OPEN_SESSIONS_KEY",
    "SESSION_KEY",
]

DEFAULT_KEY_PREFIX = "sarah"
DEFAULT_PROFILE_TTL_DAYS = 90.0
DEFAULT_SESSION_TTL_HOURS = 24.0
DEFAULT_MAX_SESSIONS = 5
"""Session ids kept in a caller's ``sessions`` list."""
DEFAULT_MAX_SUMMARIES = 5
"""Past call summaries kept in a caller's profile."""
DEFAULT_LOOKUP_TIMEOUT_MS = 300.0
"""The greeting never waits longer than this for Redis."""
DEFAULT_SUMMARY_TIMEOUT_S = 6.0
"""Leaves room for the save inside LiveKit's 10-second shutdown window."""
DEFAULT_ORPHAN_AFTER_S = 3600.0
"""A call whose journal has been idle this long lost its worker: recovery saves it. An hour,
so that a caller on hold is not taken for a dead call."""
DEFAULT_OUTBOX_FLUSH_S = 30.0
"""How often calls kept in the local outbox are retried."""

PHONE_KEY = "{prefix}:phone:{{{phone_hash}}}"
PROFILE_KEY = "{prefix}:user:{{{user_id}}}:profile"
SESSIONS_KEY = "{prefix}:user:{{{user_id}}}:sessions"
SESSION_KEY = "{prefix}:session:{{{session_id}}}"
OPEN_SESSIONS_KEY = "{prefix}:sessions:open"
"""Sorted set of calls in progress (score: start time), for crash recovery. TTL 24 hours."""
