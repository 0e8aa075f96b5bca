"""Memory without an LLM: the caller's own salient lines, and the name they gave.

Used when there is no LLM, when it fails or times out, and when nothing it said passed the
checks: memory with an LLM is never worse than without one.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import MAX_SUMMARY, NAME_LABEL, CallerProfile, CallSummary, FactOp, Turn
from . import text
from .changes import change_ops
from .checks import check_name
from .summaries import SAID, states, subject, withdrawals, withdrawn_in

__all__ = [
    "NOTHING_TO_KEEP",
    "NO_WORDS",
    "fallback_summary",
    "name_op",
    "salient_lines",
    "withdrawal_ops",
]

NO_WORDS = "Call with no words from the caller."
NOTHING_TO_KEEP = "The caller said nothing to remember."


def fallback_summary(turns: Sequence[Turn], profile: CallerProfile | None = None) -> CallSummary:
    """A summary built from the transcript alone: the caller's salient lines, an ``add`` of
    their name when they gave it plainly ("I'm Marcus Bell", "Dan Okafor here"), and a
    ``withdraw`` of each remembered fact they plainly withdrew or called off
    (:func:`withdrawal_ops`)."""
    lines = salient_lines(turns)
    if lines:
        summary = SAID + " / ".join(lines)
    elif any(turn.role == "user" and turn.text.strip() for turn in turns):
        summary = NOTHING_TO_KEEP  # greetings, thanks, or only what they withdrew
    else:
        summary = NO_WORDS
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    name = name_op(turns, profile)
    ops = [name] if name else []
    return CallSummary(summary=summary, ops=ops + withdrawal_ops(turns, profile), source="fallback")


def salient_lines(turns: Sequence[Turn]) -> list[str]:
    """The caller's lines that say something: not a bare "Yes, thanks", "OK bye" or "Hi",
    and without what they withdrew in the call (:func:`.summaries.withdrawn_in`): memory
    keeps what holds."""
    stale = [n for n in withdrawn_in(turns) if len(text.normalize(n)) >= 3]
    lines = []
    for turn in turns:
        if turn.role != "user":
            continue
        kept = (s for s in text.sentences(turn.text) if not any(states(s, n) for n in stale))
        line = " ".join(" ".join(kept).split())
        if set(text.words(line)) - text.FILLER:
            lines.append(line)
    return lines


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


def withdrawal_ops(turns: Sequence[Turn], profile: CallerProfile | None) -> list[FactOp]:
    """A ``withdraw`` for each thing the caller plainly withdrew in their own words.

    A caller's sentence that withdraws ("forget the parking thing", "cancel the Friday
    booking", "I don't need the reminder texts anymore"; not "don't cancel it") withdraws
    the one current fact whose label and value share the most words with it. One that names
    nothing ("Actually, no, forget that") withdraws what the caller said just before. When
    no fact is found (a tie, no shared word, or a caller remembered without an LLM, who has
    no facts), the withdrawal names no fact (id 0) but carries what it withdraws as its value:
    the merge then cuts those words from the calls' summaries.

    Then a ``withdraw`` of each old value the caller called off without saying "forget"
    ("Thursday isn't going to work", "now, not Bluecrest": :func:`.changes.change_ops`).
    """
    current = [f for f in profile.current_facts if f.label != NAME_LABEL] if profile else []
    ops: list[FactOp] = []
    for sentence, before in withdrawals(turns):
        part = text.withdrawing_part(sentence)
        said = subject(part) or subject(before)
        scored = sorted(
            ((len(said & text.stems(f"{f.label} {f.value}")), f) for f in current),
            key=lambda pair: pair[0],
            reverse=True,
        )
        best, fact = scored[0] if scored else (0, None)
        if fact is not None and best and (len(scored) == 1 or scored[1][0] < best):
            if not any(op.id == fact.id for op in ops):
                ops.append(FactOp(op="withdraw", id=fact.id, label=fact.label, evidence=part))
        elif said:
            what = part if subject(part) else before
            ops.append(FactOp(op="withdraw", value=what, evidence=part))
    return ops + change_ops(turns)
