"""Reading a caller's words the way the checks need them: normalized, split, searched.

Everything here is pure and linear-time (the input is whatever a caller said, and this runs on
the event loop at hang-up). English only: the cues for negation, withdrawal and questions are
English words, and a call in another language gets fewer facts past the checks, never wrong ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

__all__ = [
    "DATE_WORDS",
    "FILLER",
    "STOPWORDS",
    "bare",
    "contains",
    "dates",
    "has_negation",
    "is_question",
    "negated",
    "normalize",
    "numbers",
    "self_names",
    "sentence_around",
    "sentences",
    "stems",
    "sweeping",
    "withdrawing_part",
    "withdraws",
    "words",
    "written_as_name",
]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
_STEM = 5

_NUMBER_WORDS = {
    w: str(n)
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
     "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000"}  # fmt: skip
DATE_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december today tomorrow tonight "
    "yesterday weekend".split()
)
"""The words that name a day or a month."""
_NEGATIONS = frozenset(
    "no not never nothing none nobody neither nor without cannot can't don't doesn't didn't "
    "isn't aren't wasn't weren't won't wouldn't shouldn't haven't hasn't hadn't ain't".split()
)
_WITHDRAWALS = re.compile(
    r"\b(?:forget|cancel\w*|never ?mind|no longer|no more|not any ?more|anymore|scratch|remove|"
    r"delete|withdraw\w*|ignore|stop|don'?t need|doesn'?t need|not needed|no need|"
    r"take (?:that|it) off|not (?:relevant|true|correct))\b"
)
FILLER = frozenset(
    "yes yeah yep yup no nope ok okay sure fine good great thanks thank you please that's "
    "that sounds works work right alright i'm im um uh hmm well oh ah perfect lovely cool "
    "cheers bye goodbye hi hello hey sorry the a it is".split()
)
"""Words that say nothing about the caller by themselves ("Yes, that's fine, thanks")."""
STOPWORDS = frozenset(
    "a about above after again all also am an and any are as at be been before being below "
    "between both but by can can't could did do does doing don't down during each few for from "
    "further had has have having he her here hers him his how i i'd i'll i'm i've if in into is "
    "isn't it it's its just me more most my no nor not now of off on once only or other our "
    "ours out over own same she should so some such than that that's the their theirs them then "
    "there these they this those through to too under until up very was we were what when where "
    "which while who whom why will with would you your yours um uh yeah yes okay ok oh well "
    "like really actually please thanks thank sorry hi hello hey bye gonna wanna got get".split()
)
"""English words that carry no subject of their own ("the", "and", "could", "um")."""
_QUESTION_START = frozenset(
    "is are am was were do does did what when where which who whom whose why how have has "
    "any anyone anybody".split()
)
_SENTENCE_END = re.compile(r"(?<!\s)\s+/\s+|(?<=[.!?…])\s+|\n+")


def normalize(text: str) -> str:
    """``text`` for comparison: case folded, apostrophes and dashes unified, punctuation
    dropped, spaces collapsed. "Okay — it's the 2014 Transit!" becomes
    "okay it's the 2014 transit"."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")
    return " ".join(_WORD.findall(text))


def words(text: str) -> list[str]:
    """The words of a normalized text."""
    return normalize(text).split()


def contains(haystack: str, needle: str) -> bool:
    """True when ``needle`` occurs in ``haystack`` as whole words, both normalized first."""
    n = normalize(needle)
    return bool(n) and f" {n} " in f" {normalize(haystack)} "


def bare(word: str) -> str:
    """A normalized word without its possessive or contracted "'s": "Tuesday's" is Tuesday,
    "Mochi's" Mochi."""
    return word.removesuffix("'s")


def stems(text: str) -> set[str]:
    """A word's first letters, for words of three letters or more: "mornings" and "morning"
    are one here, numbers excepted."""
    return {w[:_STEM] for w in words(text) if len(w) >= 3 and not w.isdigit()}


def numbers(text: str) -> set[str]:
    """The numbers in a text, written as digits ("six" and "6" are both "6"; "1,200" is
    "1200")."""
    found = set()
    for w in words(re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", text)):
        w = bare(w)  # "eleven's great"
        if w.isdigit():
            found.add(w.lstrip("0") or "0")
        elif w in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[w])
        else:
            found.update(d.lstrip("0") or "0" for d in re.findall(r"\d+", w))
    return found


def dates(text: str) -> set[str]:
    """The day and month names in a text ("Fridays" and "Friday's" are "friday")."""
    found = (bare(w).removesuffix("s") for w in words(text))
    return {w for w in found if w in DATE_WORDS}


def sentences(text: str) -> list[str]:
    """A text cut into sentences (also at " / ", which joins a fallback summary's lines)."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def sentence_around(text: str, needle: str) -> str | None:
    """The sentence of ``text`` that contains ``needle`` (whole words, normalized), else None.
    A needle that spans sentences is found in the whole text, which is then returned."""
    for sentence in sentences(text):
        if contains(sentence, needle):
            return sentence
    return text if contains(text, needle) else None


def is_question(sentence: str) -> bool:
    """True for a question that asks something ("Do you open on Saturdays?", "is Anna in on
    Tuesday?"), not a request put as one ("Can you book me in on Friday?")."""
    stripped = sentence.strip()
    if not stripped.endswith("?"):
        return False
    first = words(stripped)
    return bool(first) and (first[0] in _QUESTION_START or stripped.lower().endswith("right?"))


def negated(text: str) -> tuple[set[str], set[str]]:
    """The stems of ``text`` under a negation, and those free of one.

    A negation covers its clause from the cue on, at most four words: "I'm not vegetarian"
    has "vegetarian" negated; "No, make it Friday" has nothing negated (the lone "no" ends at
    its comma); "Text me, don't call" has "call" negated and "text" free.
    """
    under: set[str] = set()
    free: set[str] = set()
    for clause in _clauses(text):
        ws = clause.split()
        scope = 0
        for w in ws:
            if w in _NEGATIONS or w.endswith("n't"):
                scope = 5
                continue
            if len(w) >= 3 and not w.isdigit():
                (under if scope else free).add(w[:_STEM])
            scope = max(0, scope - 1)
    return under, free


def has_negation(text: str) -> bool:
    """True when some clause of ``text`` negates what follows its cue (a lone "No," does
    not)."""
    return bool(negated(text)[0]) or any(
        (w in _NEGATIONS or w.endswith("n't")) and len(clause.split()) > 1
        for clause in _clauses(text)
        for w in clause.split()
    )


def _clauses(text: str) -> list[str]:
    parts = re.split(r"[,;:.!?…—–]+|\s-\s|\bbut\b", unicodedata.normalize("NFKC", text))
    return [c for c in (normalize(p) for p in parts) if c]


_KEPT = re.compile(
    r"\b(?:don't|do not|never|not|no need to)\s+(?:\w+\s+)?(?:cancel|forget|remove|delete|drop|"
    r"scratch|stop)"
)


def withdrawing_part(sentence: str) -> str:
    """The clauses of a sentence that withdraw ("forget what I said about Dev" of "I'm
    dropping the Outback off myself, forget what I said about Dev"), "" when none does."""
    clauses = re.split(r"[,;:—–]\s*|(?<!\s)\s+(?:and|so|but|because)\s+", sentence)
    return ", ".join(c.strip() for c in clauses if c.strip() and withdraws(c))


_WHOLE = re.compile(r"\b(?:whole|entire|everything|all (?:of )?(?:the|my|that|it))\b")


def sweeping(text: str) -> bool:
    """True when a withdrawal takes everything about its subject ("forget the whole December
    booking", "cancel all of it")."""
    return bool(_WHOLE.search(normalize(text)))


def withdraws(text: str) -> bool:
    """True when the words withdraw something ("forget the parking thing", "cancel it",
    "I don't need the reminders anymore"), not when they keep it ("don't cancel it")."""
    said = normalize(text)
    return bool(_WITHDRAWALS.search(said)) and not _KEPT.search(said)


# -- names -----------------------------------------------------------------------------------

_INTRO = re.compile(
    r"(?:\bmy name is|\bmy name's|\bname's|\bthe name is|\bi am|\bi'm|\bim|\bthis is|\bit's|"
    r"\bits|\bcall me)\s+(?P<after>.*)$|^(?P<before>.*?\S)\s+here$",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[A-Z][a-z'’\-]+(?:[A-Z][a-z]+)?\Z")
_NOT_NAMES = (
    frozenset(
        "hi hello hey yes yeah no not just calling looking sorry fine good great okay ok well so "
        "here there back still also only really the a an calling wondering trying going about "
        "afraid happy glad sure new ready available free done interested running late again "
        "thanks thank please mister mr mrs ms miss dr doctor".split()
    )
    | DATE_WORDS
)


def self_names(turn: str) -> Iterator[tuple[str, str]]:
    """The names a caller gives for themself in one turn, with the words that give each.

    "I'm Marcus Bell", "Dan Okafor here", "it's Priya", "my name is Ana Ruiz" give a name;
    "this is Harbor Auto, right?" (a question) and "is Anna in on Tuesday?" (not an
    introduction) do not. A name is one to three capitalized words that are not common
    words or days. Names the agent said are not told apart here: see
    :func:`.checks.check_name`.
    """
    for sentence in re.split(r"(?<=[.!?…])\s+", turn):
        sentence = sentence.strip()
        if not sentence or sentence.endswith("?"):
            continue
        for piece in re.split(
            r"[,;:]\s*|(?<!\s)\s+(?:and|but|so|because)\s+", sentence.rstrip(".!…")
        ):
            m = _INTRO.search(piece.strip())
            if m is None:
                continue
            if m.group("after") is not None:
                name = _leading_name(m.group("after").split())
            else:
                name = _trailing_name(m.group("before").split())
            if name:
                yield name, piece.strip()


def written_as_name(turn: str, name: str) -> bool:
    """True when ``turn`` says ``name`` as a name: one to three capitalized words, none of
    them a common word ("Dan Okafor" in "it's Dan again, Dan Okafor"; not "Dan again")."""
    said = re.search(r"(?<!\w)" + re.escape(name.strip()) + r"(?!\w)", turn, re.IGNORECASE)
    if said is None:
        return False
    tokens = said.group(0).split()
    return 1 <= len(tokens) <= 3 and all(_is_name_word(w.strip(",.;:!")) for w in tokens)


def _is_name_word(w: str) -> bool:
    return bool(_NAME_WORD.match(w)) and w.casefold().replace("’", "'") not in _NOT_NAMES


def _leading_name(tokens: list[str]) -> str | None:
    # "I'm Marcus Bell from upstairs": the name stops at the first word that is not one.
    taken = []
    for w in tokens[:3]:
        if not _is_name_word(w):
            break
        taken.append(w)
    return " ".join(taken) or None


def _trailing_name(tokens: list[str]) -> str | None:
    # "Dan Okafor here": the whole piece before "here" must be the name (one to three words).
    if not 1 <= len(tokens) <= 3 or not all(_is_name_word(w) for w in tokens):
        return None
    return " ".join(tokens)
