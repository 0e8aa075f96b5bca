"""What a model says about a call, checked by code against the call's own words.

A model proposes; these rules decide. Each operation must be backed by the caller's own words
(its evidence, found in one of the caller's turns: the agent's lines never count), and a
summary may not carry a name, number or date the call does not contain. What fails is dropped
and counted by reason (:data:`REASONS`); nothing of what it said is logged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..models import MAX_NAME, NAME_LABEL, CallerProfile, FactOp, Turn
from . import text

__all__ = ["REASONS", "Checked", "check_name", "check_op", "check_summary", "check_answer"]

REASONS = (
    "no_evidence",
    "evidence_not_said",
    "evidence_in_question",
    "no_content",
    "negated",
    "number_not_in_evidence",
    "date_not_in_evidence",
    "name_not_in_evidence",
    "not_a_withdrawal",
    "empty_value",
    "not_self_named",
    "agents_name",
    "summary_invented",
)
"""Why an operation or a summary is dropped (the ``reason`` of the dropped-items metric)."""


@dataclass
class Checked:
    """The operations and summary that passed, and what was dropped, by reason."""

    ops: list[FactOp] = field(default_factory=list)
    summary: str = ""
    dropped: Counter[str] = field(default_factory=Counter)


def check_answer(
    ops: Sequence[FactOp],
    summary: str,
    turns: Sequence[Turn],
    profile: CallerProfile | None = None,
) -> Checked:
    """Keep the operations and the summary that the call's words back."""
    caller = [t.text for t in turns if t.role == "user"]
    checked = Checked()
    for op in ops:
        reason = check_op(op, caller, turns, profile)
        if reason is None:
            checked.ops.append(op)
        else:
            checked.dropped[reason] += 1
    if summary.strip():
        if check_summary(summary, turns, profile):
            checked.summary = summary
        else:
            checked.dropped["summary_invented"] += 1
    return checked


def check_op(
    op: FactOp,
    caller: Sequence[str],
    turns: Sequence[Turn],
    profile: CallerProfile | None = None,
) -> str | None:
    """Why ``op`` cannot be stored (one of :data:`REASONS`), or None when it can.

    Args:
        op: The operation a model proposed.
        caller: The caller's turns of this call.
        turns: The whole call (the agent's turns tell the agent's own name).
        profile: The caller's memory before the call (a known name may be said again).
    """
    evidence = op.evidence.strip()
    if not evidence:
        return "no_evidence"
    turn = next((t for t in caller if text.contains(t, evidence)), None)
    if turn is None:
        return "evidence_not_said"
    sentence = text.sentence_around(turn, evidence) or evidence
    if text.is_question(sentence):
        return "evidence_in_question"
    if op.op == "withdraw":
        return None if text.withdraws(evidence) else "not_a_withdrawal"
    if not op.value.strip():
        return "empty_value"
    if op.label == NAME_LABEL:
        return check_name(op.value, turn, turns, profile)
    if not set(text.words(evidence)) - text.FILLER:
        return "no_content"
    if not text.numbers(op.value) <= text.numbers(evidence):
        return "number_not_in_evidence"
    if not text.dates(op.value) <= text.dates(evidence):
        return "date_not_in_evidence"
    if not _names_backed(op.value, evidence, turns):
        return "name_not_in_evidence"
    return _negation(op.value, evidence)


def _names_backed(value: str, evidence: str, turns: Sequence[Turn]) -> bool:
    # A name in a value ("Dr. Chen", "Ford", "Sarah") must be in its evidence too: it is what
    # small models invent or take from elsewhere in the call (the agent's name, the business).
    # A capital that starts the value and is nowhere in the call is not a name ("Evenings").
    said = _bare(evidence)
    heard: set[str] | None = None
    for i, token in enumerate(value.split()):
        if not token[:1].isupper() or token.rstrip(".,;:!?") in ("I", "I'm", "I'd", "I'll"):
            continue
        name = _bare(token) - text.dates(token)  # days: the date rule's
        if not name or name <= said:
            continue
        if heard is None:
            heard = {w for t in turns for w in _bare(t.text)}
        if i == 0 and not name & heard:
            continue
        return False
    return True


def _bare(words: str) -> set[str]:
    return {text.bare(w) for w in text.words(words)}


def _negation(value: str, evidence: str) -> str | None:
    # A negation is never turned into its opposite: "I'm not vegetarian" backs "not
    # vegetarian", never "vegetarian"; "No thanks" to an offer backs nothing. Without a
    # negation, a value may paraphrase its evidence ("evenings" for "after work").
    value_negated = text.has_negation(value)
    evidence_negated = text.has_negation(evidence)
    if value_negated and not evidence_negated:
        return "negated"
    if evidence_negated and not value_negated:
        _, free = text.negated(evidence)
        if not text.stems(value) & free:
            return "negated"
    return None


def check_name(
    name: str, turn: str, turns: Sequence[Turn], profile: CallerProfile | None = None
) -> str | None:
    """Why ``name`` is not the caller's own name, or None when it is.

    A name is the caller's only when they give it for themself in ``turn`` ("I'm Marcus
    Bell", "Dan Okafor here"), and never one the agent said before the caller did (the
    agent's own name, the business's, unless it is the name already remembered).
    """
    if len(name) > MAX_NAME:
        return "not_self_named"
    wanted = text.normalize(name)
    given = [text.normalize(n) for n, _ in text.self_names(turn)]
    # "Priya here, Priya Raman": the full name said in the turn that gives its first word,
    # written as a name there ("it's Dan again" gives "Dan", never "Dan again").
    if wanted not in given and not (
        any(set(g.split()) & set(wanted.split()) for g in given)
        and text.written_as_name(turn, name)
    ):
        return "not_self_named"
    known = profile.name if profile is not None else None
    if known and text.normalize(known) == wanted:
        return None
    name_words = set(wanted.split())
    for t in turns:
        if t.text == turn and t.role == "user":
            break
        if t.role == "assistant" and name_words & set(text.words(t.text)):
            return "agents_name"
    return None


def check_summary(summary: str, turns: Sequence[Turn], profile: CallerProfile | None) -> bool:
    """True when ``summary`` carries no name, number or date that the call does not contain.

    A name here is a capitalized word that is not the first of its sentence (or the first
    of two capitalized words), and that the call never says; names remembered before the
    call count as said.
    """
    heard = " ".join(t.text for t in turns)
    if profile is not None:
        heard += " " + " ".join(f.value for f in profile.current_facts)
    if not text.numbers(summary) <= text.numbers(heard):
        return False
    if not text.dates(summary) <= text.dates(heard):
        return False
    said = set(text.words(heard))
    return all(w.casefold() in said for w in _capitalized(summary))


def _capitalized(summary: str) -> list[str]:
    found = []
    for sentence in text.sentences(summary):
        tokens = sentence.split()
        for i, token in enumerate(tokens):
            word = token.strip(".,;:!?\"'()[]")
            if not word[:1].isupper() or word in ("I", "I'm", "I've", "I'll", "I'd"):
                continue
            nxt = tokens[i + 1].strip(".,;:!?\"'()") if i + 1 < len(tokens) else ""
            if i > 0 or nxt[:1].isupper():
                found.extend(text.words(word))
    return found
