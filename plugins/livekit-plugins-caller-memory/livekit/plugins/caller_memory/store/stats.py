"""The counts ``caller-memory stats`` prints, in the one shape both stores answer."""

from __future__ import annotations

from typing import Any

__all__ = ["stats_report"]


def stats_report(
    *,
    server: str,
    cluster: bool,
    kinds: dict[str, int],
    journals: int,
    no_ttl: list[str],
    too_long: list[str],
    used_memory: int,
) -> dict[str, Any]:
    """What :meth:`~.primitives.StorePrimitives.stats` answers, from the keys counted by kind (a
    journal is a ``session`` key of a call not saved yet)."""
    return {
        "server": server,
        "cluster": cluster,
        "callers": kinds.get("phone", 0),
        "profiles": kinds.get("profile", 0),
        "sessions_kept": kinds.get("session", 0) - journals,
        "calls_in_progress": journals,
        "keys_by_kind": kinds,
        "keys_set_aside": kinds.get("unreadable", 0),
        "keys_without_ttl": len(no_ttl),
        "keys_without_ttl_sample": no_ttl[:5],
        "keys_past_longest_ttl": len(too_long),
        "keys_past_longest_ttl_sample": too_long[:5],
        "used_memory_bytes": used_memory,
    }
