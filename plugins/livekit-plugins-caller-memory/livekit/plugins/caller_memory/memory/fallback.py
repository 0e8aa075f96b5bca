"""Memory without an LLM: the caller's own salient lines, and the name they gave.

Used when there is no LLM, when it fails or times out, and when nothing it said passed the
checks: memory with an LLM is never worse than without one.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import MAX_SUMMARY, NAME_LABEL, CallerProfile, CallSummary, FactOp, Turn
from . import text
from .checks import check_name

__all__ = ["SAID", "fallback_summary", "name_op", "salient_lines"]

SAID = "Caller said: "
"""How a summary of the caller's own lines begins."""


def fallback_summary(turns: Sequence[Turn], profile: CallerProfile | None = None) -> CallSummary:
    """A summary built from the transcript alone: the caller's salient lines, and an ``add``
    of their name when they gave it plainly ("I'm Marcus Bell", "Dan Okafor here")."""
    lines = salient_lines(turns)
    if not lines:
        return CallSummary(summary="Call with no words from the caller.", source="fallback")
    summary = SAID + " / ".join(lines)
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    name = name_op(turns, profile)
    return CallSummary(summary=summary, ops=[name] if name else [], source="fallback")


def salient_lines(turns: Sequence[Turn]) -> list[str]:
    """The caller's lines that say something: not a bare "Yes, thanks", "OK bye" or "Hi"."""
    said = (" ".join(t.text.split()) for t in turns if t.role == "user")
    return [line for line in said if set(text.words(line)) - text.FILLER]


def name_op(turns: Sequence[Turn], profile: CallerProfile | None = None) -> FactOp | None:
    """An ``add`` of the name the caller gave for themself, with their words, if they gave one
    that passes :func:`.checks.check_name`."""
    for turn in turns:
        if turn.role != "user":
            continue
        for name, words in text.self_names(turn.text):
            if check_name(name, turn.text, turns, profile) is None:
                return FactOp(op="add", label=NAME_LABEL, value=name, evidence=words)
    return None
