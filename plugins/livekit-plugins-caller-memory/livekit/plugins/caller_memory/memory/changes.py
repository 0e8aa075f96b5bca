"""What a caller changes without saying "forget": the old value they call off.

"Thursday isn't going to work", "we're six now, not five", "push it to eight instead of
7:15", "I'm not allergic to penicillin after all", "I sold the Transit": each says that
something an earlier call holds no longer does, and names it. What is named goes from memory
as a withdrawal does (:func:`change_ops`), with an LLM or without one: the new value is the
call's own (a fact of the model's, or the caller's line), and no earlier summary keeps
repeating the old.

Only what the caller names is called off: "can I move the pickup to Saturday?" names no old
day (Saturday is the new one), and calls nothing off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from ..models import MAX_OPS, FactOp, Turn
from . import text

__all__ = ["called_off", "change_ops"]

_CLAUSES = re.compile(r"[,;—–]\s*|(?<!\d):\s*|(?<!\s)\s+(?:and|so|but|because)\s+")
_UPTO = r"(?:\d[:.]\d|[^\s,;:.!?])(?:\d[:.]\d|[^,;:.!?])*"
"""Words up to the end of their clause ("7:15" is one word)."""
_REPLACED = re.compile(
    rf"\b(?:instead of|rather than)\s+(?P<old>{_UPTO})"  # "eight instead of 7:15"
    rf"|\bnow,?\s+not\s+(?P<was>{_UPTO})"  # "Northfield now, not Bluecrest"
    rf"|\b(?:sold|got rid of|gave away)\s+(?:the|my|our|that)\s+(?P<gone>{_UPTO})",
    re.IGNORECASE,
)
_AFTER_ALL = re.compile(r"\bafter all\b", re.IGNORECASE)
_NOT = re.compile(r"\bnot\s+", re.IGNORECASE)
_CALL_OFF = re.compile(
    r"\b(?:move|moving|change|changing|switch|push|postpone|reschedule|rebook|"
    r"can'?t (?:make|do|come|get|manage)|cannot (?:make|do|come|get|manage)|"
    r"(?:not|isn'?t|aren'?t|ain'?t) (?:going to|gonna) (?:work|happen)|won'?t (?:work|happen|do)|"
    r"doesn'?t work|is out|'s out|(?<!not )busy|stuck)\b",
    re.IGNORECASE,
)
_CUES = re.compile(
    r"\b(?:instead of|rather than|after all|now,?\s+not|sold|got rid of|gave away)\b|"
    + _CALL_OFF.pattern,
    re.IGNORECASE,
)
"""Any of the words above: a turn without one calls nothing off."""
_KEPT = re.compile(
    r"\b(?:don'?t|do not|never|not|no need to)\s+(?:\w+\s+)?"
    r"(?:move|change|changing|moving|switch|push|postpone|reschedule|rebook)\b",
    re.IGNORECASE,
)
"""A clause that keeps what it names: "don't move my Tuesday", "I'm not changing Friday"."""
_JOINED = re.compile(r"\s+(?:and|or|so|but|because|which|who|that|as|since|when)\s+", re.I)
_ARTICLE = re.compile(r"^(?:the|a|an|my|our|your|that)\s+", re.IGNORECASE)
_WHEN = re.compile(
    # Not where a booking goes: "move it to Friday", "book me for 5 pm".
    r"(?<!\bto\s)(?<!\bfor\s)(?<!\buntil\s)(?<!\btill\s)(?<!\binto\s)"
    rf"(?:\b(?:{'|'.join(sorted(text.DATE_WORDS - {'may'}))})(?:['’]s|s)?\b"  # "Saturday's"
    r"|\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w))",
    re.IGNORECASE,
)
"""A day or a time, as a caller says one."""


def called_off(sentence: str) -> Iterator[str]:
    """The old values a caller's sentence calls off, as they said them.

    Named outright ("instead of 7:15", "not Bluecrest", "I sold the Transit"), or a day or time
    in a clause that calls it off ("Thursday isn't going to work", "I need to move Saturday's
    check", "Friday's out"), not one the clause moves something to ("to Friday", "Friday
    instead"), nor one it keeps ("don't move my Tuesday").

    What follows "not" or "instead of" must be a value: "I'm not changing my appointment after
    all", "it hurts now, not only with cold drinks" call nothing off.
    """
    named: list[tuple[int, int]] = []
    for match in _REPLACED.finditer(sentence):
        named.append(match.span())
        if old := _value(next(g for g in match.groups() if g)):
            yield old
    for start, end in _clauses(sentence):
        # "not allergic to penicillin after all": what the last "not" of the clause negates
        if (after := _AFTER_ALL.search(sentence, start, end)) is not None:
            nots = list(_NOT.finditer(sentence, start, after.start()))
            if nots:
                named.append((nots[-1].start(), after.end()))
                if old := _value(sentence[nots[-1].end() : after.start()]):
                    yield old
    for start, end in _clauses(sentence):
        clause = sentence[start:end]
        if (
            any(s < end and start < e for s, e in named)
            or " instead" in clause.lower()
            or not _CALL_OFF.search(clause)
            or _KEPT.search(clause)
        ):
            continue
        yield from (m.group() for m in _WHEN.finditer(clause))


def _value(said: str) -> str:
    # The old value of "instead of the steak and the wine" is "the steak": its first words,
    # up to a joining word. Not a value: an action ("changing my appointment"), nor words that
    # only qualify ("only with cold drinks").
    said = _JOINED.split(said.strip(), maxsplit=1)[0].strip()
    first = text.words(_ARTICLE.sub("", said))[:1]
    if not first or first[0] in text.STOPWORDS or first[0].endswith("ing"):
        return ""
    return said


def _clauses(sentence: str) -> Iterator[tuple[int, int]]:
    start = 0
    for cut in _CLAUSES.finditer(sentence):
        yield start, cut.start()
        start = cut.end()
    yield start, len(sentence)


def change_ops(turns: Sequence[Turn]) -> list[FactOp]:
    """A ``withdraw`` of each old value the caller called off (:func:`called_off`), naming no
    fact: its value and evidence are the caller's words for the old value. The merge withdraws
    the one current fact that holds it, if exactly one does, and cuts the sentences that say it
    from earlier calls' summaries (never from this call's)."""
    ops: list[FactOp] = []
    seen: set[str] = set()  # as said, then normalized
    values: set[str] = set()
    for turn in turns:
        if turn.role != "user" or not _CUES.search(turn.text):
            continue
        for sentence in text.sentences(turn.text):
            if text.is_question(sentence):
                continue
            for old in called_off(sentence):
                if old in seen:
                    continue
                seen.add(old)
                key = text.normalize(old)
                if len(key) >= 3 and key not in values:
                    values.add(key)
                    ops.append(FactOp(op="withdraw", value=old, evidence=old))
                    if len(ops) == MAX_OPS:
                        return ops
    return ops
