"""Memory without an LLM: the caller's own salient lines, and the name they gave.

Used when there is no LLM, when it fails or times out, and when nothing it said passed the
checks: memory with an LLM is never worse than without one.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import MAX_SUMMARY, NAME_LABEL, CallerProfile, CallSummary, FactOp, Turn
from . import text
from .checks import check_name

__all__ = ["CUES", "SAID", "fallback_summary", "name_op", "salient_lines", "withdrawal_ops"]

SAID = "Caller said: "
"""How a summary of the caller's own lines begins."""


def fallback_summary(turns: Sequence[Turn], profile: CallerProfile | None = None) -> CallSummary:
    """A summary built from the transcript alone: the caller's salient lines, an ``add`` of
    their name when they gave it plainly ("I'm Marcus Bell", "Dan Okafor here"), and a
    ``withdraw`` of each remembered fact they plainly withdrew (:func:`withdrawal_ops`)."""
    lines = salient_lines(turns)
    if not lines:
        return CallSummary(summary="Call with no words from the caller.", source="fallback")
    summary = SAID + " / ".join(lines)
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    name = name_op(turns, profile)
    ops = [name] if name else []
    return CallSummary(summary=summary, ops=ops + withdrawal_ops(turns, profile), source="fallback")


def salient_lines(turns: Sequence[Turn]) -> list[str]:
    """The caller's lines that say something: not a bare "Yes, thanks", "OK bye" or "Hi",
    and without the sentences that withdraw something (memory keeps what holds)."""
    withdrawn = set()  # a withdrawing sentence, and what it withdrew when it names nothing
    for sentence, before in _withdrawals(turns):
        withdrawn |= {sentence} if _subject(text.withdrawing_part(sentence)) else {sentence, before}
    lines = []
    for turn in turns:
        if turn.role != "user":
            continue
        line = " ".join(turn.text.split())
        line = " ".join(s for s in text.sentences(line) if s not in withdrawn)
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


CUES = text.stems(
    "forget cancel cancelled never mind longer more anymore scratch remove delete drop withdraw "
    "ignore stop need needed note thing"
)
"""The stems of the words that withdraw, not of what is withdrawn."""


def withdrawal_ops(turns: Sequence[Turn], profile: CallerProfile | None) -> list[FactOp]:
    """A ``withdraw`` for each thing the caller plainly withdrew in their own words.

    A caller's sentence that withdraws ("forget the parking thing", "cancel the Friday
    booking", "I don't need the reminder texts anymore"; not "don't cancel it") withdraws
    the one current fact whose label and value share the most words with it. One that names
    nothing ("Actually, no, forget that") withdraws what the caller said just before. When
    no fact is found (a tie, no shared word, or a caller remembered without an LLM, who has
    no facts), the withdrawal names no fact (id 0) but carries what it withdraws as its value:
    the merge then cuts those words from the calls' summaries.
    """
    current = [f for f in profile.current_facts if f.label != NAME_LABEL] if profile else []
    ops: list[FactOp] = []
    for sentence, before in _withdrawals(turns):
        part = text.withdrawing_part(sentence)
        said = _subject(part) or _subject(before)
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
            what = part if _subject(part) else before
            ops.append(FactOp(op="withdraw", value=what, evidence=part))
    return ops


def _subject(words: str) -> set[str]:
    # What a withdrawal is about: its words less the withdrawing ones and the small ones.
    return text.stems(words) - CUES - {w[:5] for w in text.STOPWORDS}


def _withdrawals(turns: Sequence[Turn]) -> list[tuple[str, str]]:
    # Each withdrawing sentence of the caller's, with the caller's sentence before it.
    found = []
    before = ""
    for turn in turns:
        if turn.role != "user":
            continue
        for sentence in text.sentences(turn.text):
            if text.withdrawing_part(sentence) and not text.is_question(sentence):
                found.append((sentence, before))
            before = sentence
    return found
