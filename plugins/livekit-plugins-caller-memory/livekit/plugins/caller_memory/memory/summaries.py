"""Summaries as sentences: cutting out what no longer holds.

A replaced or withdrawn fact must not live on in the words of a summary: an earlier call's, or
the call's own ("Caller said: I need wipers. / Actually, forget the wipers.").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..models import Turn
from . import text

__all__ = [
    "CUES",
    "SAID",
    "distinct_words",
    "scrub",
    "states",
    "subject",
    "withdrawals",
    "withdrawn_in",
]

SAID = "Caller said: "
"""How a summary of the caller's own lines begins."""

CUES = text.stems(
    "forget cancel cancelled never mind longer more anymore scratch remove delete drop withdraw "
    "ignore stop need needed note thing"
)
"""The stems of the words that withdraw, not of what is withdrawn."""


_COMMON = text.STOPWORDS | frozenset(
    "prefers prefer wants want needs need said says booked booking thing things note let".split()
)


def distinct_words(
    old: str, new: str, ignore: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """The words that made ``old`` what it was and ``new`` is not ("bluecrest" of "insured
    with Bluecrest" replaced by "insured with Northfield"): a sentence holding one repeats it.
    Small words, and stems in ``ignore``, are never such words."""
    now = {text.bare(w) for w in text.words(new)}
    said = (text.bare(w) for w in text.words(old))  # "Tuesday's" says Tuesday
    return [
        w for w in said if w not in now and w not in _COMMON and len(w) >= 3 and w[:5] not in ignore
    ]


def withdrawals(turns: Sequence[Turn]) -> list[tuple[str, str]]:
    """Each withdrawing sentence of the caller's ("forget the parking thing"), with the
    caller's sentence before it (what a bare "forget that" withdraws)."""
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


def subject(words: str) -> set[str]:
    """What a withdrawal is about: the stems of its words less the withdrawing ones and the
    small ones."""
    return text.stems(words) - CUES - {w[:5] for w in text.STOPWORDS}


def withdrawn_in(turns: Sequence[Turn]) -> list[str]:
    """What the caller withdrew in a call, as texts to cut from its summary: each withdrawing
    sentence, what it is about, and for a bare "forget that" the sentence before it."""
    stale: list[str] = []
    for sentence, before in withdrawals(turns):
        part = text.withdrawing_part(sentence)
        stale.append(sentence)
        if subject(part):
            stale += distinct_words(part, "", ignore=CUES)
        elif before:
            stale.append(before)
    return stale


def retracted(evidence: str, turns: Sequence[Turn]) -> bool:
    """True when the caller withdrew ``evidence`` later in the same call: a withdrawing
    sentence after it is about its words ("the spot by the back door ... forget the parking
    spot"), or a bare "forget that" comes right after it. What is said in or after the
    withdrawing sentence ("can't make Tuesday, move me to Thursday") stands."""
    said, before = False, ""
    for turn in turns:
        if turn.role != "user":
            continue
        for sentence in text.sentences(turn.text):
            part = text.withdrawing_part(sentence)
            if said and part and not text.is_question(sentence):
                about = distinct_words(part, "", ignore=CUES) if subject(part) else []
                if any(states(evidence, word) for word in about) or (
                    not about and states(before, evidence)
                ):
                    return True
            said = said or states(sentence, evidence)
            before = sentence
    return False


def states(sentence: str, stale: str) -> bool:
    """True when ``sentence`` holds the ``stale`` text, or is a part of it (evidence of two
    sentences); whole words, normalized."""
    word = text.normalize(stale)
    if word.isalpha() and len(word) >= 3:  # one word: in any form ("events" for "event")
        return word[:5] in text.stems(sentence)
    return text.contains(sentence, stale) or (
        len(text.normalize(sentence)) >= 3 and text.contains(stale, sentence)
    )


_PIECES = re.compile(r"((?<!\s)\s+/\s+|(?<=[.!?…])\s+|\n+)")


def scrub(summary: str, stale: Iterable[str]) -> str:
    """``summary`` without the sentences that contain one of the ``stale`` texts (whole words,
    normalized; texts under three letters are ignored). A fallback summary's lead ("Caller
    said: ") and the separators between the sentences kept stay as they were."""
    needles = [n for n in stale if len(text.normalize(n)) >= 3]
    lead = SAID if summary.startswith(SAID) else ""
    parts = _PIECES.split(summary[len(lead) :])
    pieces = list(zip(parts[0::2], [*parts[1::2], ""], strict=True))
    kept = [(s, sep) for s, sep in pieces if not any(states(s, n) for n in needles)]
    if len(kept) == len(pieces):
        return summary
    return (lead + "".join(s + sep for s, sep in kept)).rstrip(" /\n") if kept else ""
