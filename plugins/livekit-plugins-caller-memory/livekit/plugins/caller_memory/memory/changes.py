"""What a caller changes without saying "forget": the old value they call off.

"Thursday isn't going to work", "we're six now, not five", "push it to eight instead of
7:15", "I'm not allergic to penicillin after all", "I sold the Transit": each says that
something an earlier call holds no longer does, and names it. What is named goes from memory
as a withdrawal does (:func:`change_ops`), with an LLM or without one: the new value is the
call's own (a fact of the model's, or the caller's line), and no earlier summary keeps
repeating the old.

A false change makes the agent forget something true, so only plain forms count, each with
the old value where the form puts it: a day or a time as the subject of "isn't going to work",
"is out", "has gotten busy", or right after "can't make", "move my", "change my" (never one
something is moved *to*, one a symptom started on, a plural "Fridays are busy", or "today");
a value right after "instead of", "rather than", "now, not"; what "not ... after all" negates;
what the caller ("I", "we") sold, got rid of or gave away. A change that names no old value
("it's three of us now") is left to the LLM.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from ..models import MAX_OPS, FactOp, Turn
from . import text

__all__ = ["called_off", "change_ops"]

_DAY = "|".join(
    sorted(text.DATE_WORDS - {"may", "today", "tomorrow", "tonight", "yesterday", "weekend"})
)
_WHEN = rf"(?:{_DAY})(?:['’]s)?\b|\d{{1,2}}[:.]\d{{2}}(?!\d)|\d{{1,2}}\s?(?:am|pm|o'clock)\b|noon\b"
"""A day (not a plural one, not a relative one) or a clock time, as a caller says one."""
_CALLED_OFF_DAY = re.compile(
    # "Thursday isn't going to work", "Tuesday's not gonna work", "Friday won't work",
    # "Friday's out", "Thursday's gotten busy", "Thursday, I'm stuck at work"
    rf"\b(?P<subject>{_WHEN})(?:\s+(?:morning|afternoon|evening|night))?"
    r"(?:\s*(?:'s|’s|\s+is|\s+isn't|\s+is not)?\s+(?:not\s+)?(?:going to|gonna)\s+(?:work|happen)"
    r"|\s+(?:won't|doesn't|does not|will not)\s+(?:work|happen|do)"
    r"|(?:'s|’s|\s+is)\s+out\b(?!\s+(?:of|for))|(?:'s|’s|\s+is|\s+has)?\s+(?:gotten|got)\s+busy"
    r"|,?\s+I'?m\s+(?:stuck|busy|away|working))"
    # "I can't make Tuesday", "I can't get there Thursday", "can't do 5 pm"
    r"|\b(?:can't|can not|cannot|won't be able to)\s+(?:make|do|manage|get there|get in|come)"
    rf"(?:\s+(?:on|it on|in on|at))?\s+(?:my\s+|the\s+|this\s+)?(?P<object>{_WHEN})"
    # "move Thursday", "move my 10:30", "change my Wednesday", "push Saturday's check"
    r"|(?<!oil )(?<!tire )(?<!tyre )\b(?:move|change|switch|push|postpone|reschedule|rebook)"
    rf"(?:\s+(?:back|up))?\s+(?:my\s+|our\s+|the\s+|from\s+)?(?P<moved>{_WHEN})",
    re.IGNORECASE,
)
_KEPT = re.compile(
    r"\b(?:don'?t|do not|never|not|no need to)\s+(?:\w+\s+)?"
    r"(?:move|change|switch|push|postpone|reschedule|rebook)\b",
    re.IGNORECASE,
)
"""A clause that keeps what it names: "don't move my Tuesday"."""
_UPTO = r"(?:\d[:.]\d|[^\s,;:.!?])(?:\d[:.]\d|[^,;:.!?])*"
"""Words up to the end of their clause ("7:15" is one word)."""
_REPLACED = re.compile(
    rf"\b(?:instead of|rather than)\s+(?P<old>{_UPTO})"  # "eight instead of 7:15"
    rf"|\bnow,?\s+not\s+(?P<was>{_UPTO})"  # "Northfield now, not Bluecrest"
    r"|\b(?:I|we)(?:'ve| have)?\s+(?:just\s+|finally\s+|already\s+)?"
    rf"(?:sold|got rid of|gave away)\s+(?:the|my|our|that)\s+(?P<gone>{_UPTO})",
    re.IGNORECASE,
)
_AFTER_ALL = re.compile(r"\bafter all\b", re.IGNORECASE)
_NOT = re.compile(r"\bnot\s+", re.IGNORECASE)
_CLAUSES = re.compile(r"[,;—–]\s*|(?<!\d):\s*|(?<!\s)\s+(?:and|so|but|because)\s+")
_JOINED = re.compile(
    r"(?<!\s)\s+(?:and|or|so|but|because|which|who|that|as|since|when|if|like|this|could|can|"
    r"would|will|said|though)\b",
    re.IGNORECASE,
)
_ONCE = re.compile(r"\b(?:this time|just this once|for now|today)\b", re.IGNORECASE)
_TO = re.compile(r"(?<!\s)\s+(?:to|for)\s+", re.IGNORECASE)
_TIME = re.compile(r"\d[:.]\d|\b(?:am|pm|o'clock|past|quarter|half)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:the|a|an|my|our|your)\s+", re.IGNORECASE)
_NOT_VALUES = text.STOPWORDS | frozenset(
    "later sooner wait usual next every much right whole same other one old new sure bad big "
    "problem end deal today tomorrow tonight yesterday weekend".split()
)
"""First words of what follows "instead of" or "not" that make it no value ("sooner rather
than later", "now, not next week", "not that bad after all")."""
_MAX_WORDS = 4
_CUES = re.compile(
    rf"\b(?:instead of|rather than|after all|now,?\s+not|sold|got rid of|gave away|{_WHEN})",
    re.IGNORECASE,
)
"""What every form above holds: a turn without any calls nothing off."""


def called_off(sentence: str) -> Iterator[str]:
    """The old values a caller's sentence calls off, as they said them (see the module's
    docstring for the forms)."""
    replaced = list(_REPLACED.finditer(sentence))
    for match in replaced:
        old = _value(next(g for g in match.groups() if g))
        if match["gone"]:  # "sold the Transit to my son": the Transit
            old = _TO.split(old, maxsplit=1)[0]
        elif match["old"] and (
            (text.numbers(old) and not _TIME.search(old)) or _ONCE.search(sentence)
        ):
            # "one visit rather than two": a count the caller may still have; "instead of my
            # wife this time": once, not a change
            old = ""
        if old:
            yield old
    for start, end in _clauses(sentence):
        # "not allergic to penicillin after all": what the last "not" of the clause negates
        if (after := _AFTER_ALL.search(sentence, start, end)) is not None:
            nots = list(_NOT.finditer(sentence, start, after.start()))
            if nots and (old := _value(sentence[nots[-1].end() : after.start()])):
                yield old
        clause = sentence[start:end]
        # Where the sentence names what it replaces, its days are not what changes ("push
        # Saturday's table to eight instead of 7:15").
        if not replaced and not _KEPT.search(clause):
            for match in _CALLED_OFF_DAY.finditer(clause):
                yield next(g for g in match.groups() if g)


def _clauses(sentence: str) -> Iterator[tuple[int, int]]:
    start = 0
    for cut in _CLAUSES.finditer(sentence):
        yield start, cut.start()
        start = cut.end()
    yield start, len(sentence)


def _value(said: str) -> str:
    # The old value of "instead of the steak and the wine" is "the steak": a few words, up to
    # a joining word. Not a value: an action ("changing my appointment"), words that only
    # qualify ("only with cold drinks"), a time to come ("next week").
    said = _JOINED.split(said.strip(), maxsplit=1)[0].strip()
    first = text.words(_ARTICLE.sub("", said))[:1]
    if not first or first[0] in _NOT_VALUES or first[0].endswith("ing"):
        return ""
    if len(said.split()) > _MAX_WORDS:
        return ""
    return said


def change_ops(turns: Sequence[Turn]) -> list[FactOp]:
    """A ``withdraw`` of each old value the caller called off (:func:`called_off`), naming no
    fact: its value and evidence are the caller's words for the old value. The merge withdraws
    the one current fact that holds it, if exactly one does (never the caller's name), and cuts
    the sentences that say it from earlier calls' summaries (never from this call's)."""
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
