"""Redaction: what a caller says that must never be stored, removed before anything is kept.

Card numbers, national id numbers, one-time codes, e-mail addresses and phone numbers are
replaced by a tag such as ``[card number]``. Applied to every turn as it is recorded, so neither
the journal, the session data, the summary nor the outbox ever holds them.

Transcripts come from speech-to-text, so numbers arrive as numerals ("4111 1111 ...", with
spaces, dashes or dots) or as words ("four one one one", "oh" for zero, "double five"). Both
are read into one *run* of digits, and each run is judged by its digits and by the words said
next to it:

* **card**: 13 to 19 digits that pass the Luhn check and start like a card (Visa, Mastercard,
  Amex, Discover, JCB, Diners, UnionPay, Maestro), or any 13 to 19 digits right after "card
  number"; digits read on in the same breath (expiry, security code) go with it, and a security
  code said after "CVV", "CVC", "security code"... is tagged ``[code]``. An expiry date written
  as a date ("expiring 09/28") in a turn that gave a card number is tagged ``[expiry]``; said on
  its own ("the card expires 09/27") it is kept: without the number it identifies nothing.
* **national_id**: 6 to 15 digits or a letters-and-digits id said after a national-id word
  ("social security", "SSN", "ITIN", "national insurance", "SIN", "DNI", "BSN", "codice
  fiscale", "passport"...); without one, only shapes that carry their own check: US SSN and
  ITIN written 3-2-4 (SSA and IRS ranges), UK National Insurance, Spanish DNI and NIE (check
  letter), Italian codice fiscale (check letter), French NIR (key).
* **otp**: 4 to 8 digits said after "code", "PIN", "OTP", "passcode", "verification"... or
  before them ("1234 is my code"); not after "zip code", "area code", "promo code"...
* **email**: written addresses and spoken ones ("ana dot lopez at example dot com").
* **phone**: what ``phonenumbers``' ``PhoneNumberMatcher`` finds in the run (international
  prefixes "+", "plus", "00" and "011" included; national numbers starting with 0 tried for a
  few European regions too), kept when the library finds it valid, or possible and said after
  "phone", "call me at", "my number is"...

Numbers said after "order", "confirmation", "zip", "employee", "room", "invoice"... are kept,
and so are prices, amounts, dates and times. Every pattern is linear: no nested quantifiers
over overlapping classes, and every repetition that could meet another is bounded.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import NamedTuple

import phonenumbers

__all__ = ["KINDS", "TAGS", "WORD_DIGITS", "Redactor"]

KINDS = ("card", "national_id", "otp", "email", "phone")
"""Every kind of data the redactor knows; ``MEMORY_REDACT`` picks among them."""

_TAGS = {
    "card": "[card number]",
    "national_id": "[id number]",
    "otp": "[code]",
    "email": "[email]",
    "phone": "[phone number]",
}
_CODE = "[code]"
_RANK = {"[card number]": 0, "[id number]": 1, "[code]": 2, "[phone number]": 3, "[email]": 4}
"""When found spans overlap they are merged, under the tag ranked first."""

_EXPIRY = re.compile(r"(?<![\d/.-])(?:0?[1-9]|1[0-2]) ?[/.-] ?(?:\d\d|20\d\d)(?![\d/.-])")
"""A card's expiry date as STT writes it: 09/28, 9/2028, 12-27."""
_EXPIRY_TAG = "[expiry]"

_FLOOD_RUNS = 40
"""More separate numbers than this in one turn is no conversation (a turn of a few thousand
characters holds a handful): every number of 3+ digits is tagged ``[number]`` at once, at the
speed of one regular expression, before the turn is read number by number."""
_FLOOD_COUNT = re.compile(r"\d+")
_FLOOD_NUMBER = re.compile(r"\d(?:[ \t.,-]{0,2}\d){2,}")
_FLOOD_TAG = "[number]"

TAGS = (*_TAGS.values(), _EXPIRY_TAG, _FLOOD_TAG)
"""Every tag redaction leaves in place of what it removed."""

_MAX_PASSES = 4
"""A redacted text is redacted again until nothing changes (at most this many passes)."""
_MAX_LIBRARY_CALLS = 24
"""Calls to ``phonenumbers`` for one text (numbers not met before); past them a run of 7 or
more digits is taken for a phone number: a flood of numbers errs towards privacy."""
_LIBRARY_CACHE: dict[tuple[str, str], tuple[tuple[int, int, bool], ...]] = {}
_LIBRARY_CACHE_SIZE = 4096
_LONG_RUN_DIGITS = 40
"""More digits than any card with expiry and code: the whole run is redacted."""
_LONG_RUN_CHARS = 400
_EXTRA_REGIONS = ("GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "IE")
"""Regions tried for a national number (starting with 0) that the default region rejects."""
_NANP = frozenset({"US", "CA", "PR", "GU", "VI", "AS", "MP"})

# -- runs of digits, said as numerals or words ----------------------------------------------

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_DIGIT_WORD = rf"(?:zero|oh|o|niner|{_UNITS})"
_WORD_TOKEN = (
    rf"(?:(?:double|triple)[ \t]{{1,2}}{_DIGIT_WORD}"
    rf"|(?:{_TENS})(?:[ -](?:{_UNITS}))?|{_TEENS}|{_DIGIT_WORD})"
)
# A token: a numeral not touching letters (nor a letter and a dash: "C-204"), "(415)", or a
# digit said as a word. A separator: up to two spaces around one of - . , or 1-3 spaces with
# an optional spoken "dash"; after ")" nothing at all.
_TOKEN = (
    r"(?<![\w(])(?<![^\W\d_]-)"
    rf"(?:\([0-9]{{1,5}}\)|[0-9]+(?!\w)|(?=[zotfsend]){_WORD_TOKEN}(?!\w))"
)
_SEP = r"(?:[ \t]{0,2}[-.,][ \t]{0,2}|[ \t]{1,3}(?:(?:dash|hyphen)[ \t]{1,3})?|(?<=\)))"
_RUN = re.compile(rf"(?P<plus>(?<![\w+])(?:\+[ \t]?|plus[ \t]{{1,2}}))?{_TOKEN}(?:{_SEP}{_TOKEN})*")
_PIECE = re.compile(
    rf"\((?P<paren>[0-9]{{1,5}})\)|(?P<num>[0-9]+)"
    rf"|(?P<tens>{_TENS})(?:[ -](?P<unit>{_UNITS}))?|(?P<word>[^\W\d_]+)"
)
_WORD_DIGITS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
WORD_DIGITS = _WORD_DIGITS
"""Numbers as speech-to-text writes them in words ("oh", "niner", "twelve"), as digits."""
_TENS_DIGIT = {w: str(i + 2) for i, w in enumerate(_TENS.split("|"))}
_REPEAT = {"double": 2, "triple": 3}
_DIGIT = re.compile(r"[0-9]")
_MAYBE_NUMBER = re.compile("(?:" + "|".join([*"0123456789", *_WORD_DIGITS, *_TENS_DIGIT]) + ")")
"""A quick look for anything a run could start with (alternatives of plain letters let the
engine skip to the letters they start with): texts without any skip the run pattern."""
_DATE = re.compile(
    r"(?:[0-9]{1,2}[./-][0-9]{1,2}[./-](?:[0-9]{2}|[0-9]{4})|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2})"
)
_AMOUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+\.[0-9]{2}")
_CURRENCY_BEFORE = frozenset("$£€¥")
_UNIT_AFTER = re.compile(
    r"[ \t]*(?:%|percent|dollars?|bucks|euros?|pounds?|cents?|kg|kilos?|grams?|miles?|km|"
    r"meters?|metres?|feet|foot|inch(?:es)?|degrees?|people|units|pieces|items|boxes|times)\b"
)

# -- the words said next to a number --------------------------------------------------------

_KEYWORDS = re.compile(
    r"\b(?=[a-gil-wz234])(?:"
    # Numbers of things that are not the caller's secrets.
    r"(?P<benign>(?:order|confirmation|reference|ref|booking|reservation|ticket|invoice|"
    r"tracking|employee|staff|member(?:ship)?|customer|client|policy|claim|serial|model|"
    r"item|product|sku|lot|batch|store|branch|room|suite|apartment|apt|"
    r"unit|floor|flight|gate|seat|locker|bus|route|exit|channel|page|version|extension|ext|"
    r"isbn|license plate|plate)(?:[ \t]+(?:number|no|id|code|reference|#))?"
    r"|(?:account|case|part)[ \t]+(?:number|no|id)"
    r"|zip(?:[ \t]+code)?|post[ \t]?code|postal[ \t]+code|area[ \t]+code|country[ \t]+code|"
    r"(?:promo|promotional|discount|coupon|voucher|gift|error|dress|status|source|bar|qr|"
    r"room|door|access[ \t]+point|tax)[ \t]+code)"
    # A card's security code.
    r"|(?P<cvv>cvv2?|cvc2?|cv2|csc|cid|security[ \t]+(?:code|number)|card[ \t]+code|"
    r"(?:three|four|3|4)[ \t-]+digit[ \t]+code|code[ \t]+on[ \t]+the[ \t]+(?:back|front)|"
    r"back[ \t]+of[ \t]+the[ \t]+card)"
    # A national id.
    r"|(?P<id>social[ \t]+security(?:[ \t]+number)?|social(?![ \t]+(?:media|worker|club))|"
    r"s[ \t.]?s[ \t.]?n|itin|taxpayer(?:[ \t]+id(?:entification)?(?:[ \t]+number)?)?|"
    r"tax[ \t]+id(?:entification)?(?:[ \t]+number)?|national[ \t]+insurance(?:[ \t]+number)?|"
    r"n[ \t.]?i[ \t]+number|(?:social[ \t]+)?insurance[ \t]+number|s[ \t.]?i[ \t.]?n"
    r"(?:[ \t]+number)?|dni|nie|nif|codice[ \t]+fiscale|fiscal[ \t]+code|bsn|"
    r"burgerservicenummer|steuer[ \t-]?id|steuernummer|identifikationsnummer|"
    r"passport(?:[ \t]+number)?|national[ \t]+id(?:entity)?(?:[ \t]+number)?|"
    r"id(?:entity)?[ \t]+card(?:[ \t]+number)?|personalausweis|s[ée]curit[ée][ \t]+sociale|nir|"
    r"driver'?s?[ \t]+licen[cs]e(?:[ \t]+number)?)"
    # A one-time code.
    r"|(?P<otp>one[ \t-]time[ \t]+(?:pass)?(?:code|password)|otp|verification(?:[ \t]+"
    r"(?:code|number))?|verify|authentication[ \t]+code|auth[ \t]+code|2fa|two[ \t-]factor"
    r"(?:[ \t]+code)?|login[ \t]+code|access[ \t]+code|pass[ \t]?code|password|"
    r"pin(?:[ \t]+(?:number|code))?|code)"
    # A card.
    r"|(?P<card>(?:credit|debit)[ \t]+card(?:[ \t]+number)?|card[ \t]+(?:number|no)|visa|"
    r"master[ \t]?card|amex|american[ \t]+express|long[ \t]+number)"
    # A phone number.
    r"|(?P<phone>(?:tele)?phone(?:[ \t]+number)?|cell(?:[ \t]+phone)?(?:[ \t]+number)?|"
    r"mobile(?:[ \t]+number)?|landline|callback(?:[ \t]+number)?|call(?:[ \t]+me)?"
    r"(?:[ \t]+back)?(?:[ \t]+(?:at|on))?|reach(?:[ \t]+me)?(?:[ \t]+(?:at|on))?|"
    r"text(?:[ \t]+me)?(?:[ \t]+(?:at|on))?|dial|whatsapp|fax|number)"
    r")\b"
)
_CONTEXT_WINDOW = 50
"""How far before a number (in characters) a word still says what it is."""
_LINK_AFTER = re.compile(
    r"[ \t,]{0,3}(?P<verb>(?:is|was|as|are|that'?s|that[ \t]+is|it'?s)[ \t]{1,3})?"
    r"(?:(?:my|the|your|our|a|an|his|her|their)[ \t]{1,3})?"
)
"""What may stand between a number and the word after it: "1234 *is my* code", "1234 *the*
code". Without a verb only a code or an id word counts ("... 1234 my order" is not said of it)."""

# -- ids with letters -----------------------------------------------------------------------

# Patterns that start with a character class (the lookbehind comes after it) let the regex
# engine skip ahead to where that class matches instead of trying every position.
_NINO = re.compile(
    r"([A-Za-z])(?<![A-Za-z0-9].)[ \t]?([A-Za-z])[ \t]?((?:[0-9][ \t]?){5}[0-9])"
    r"(?:[ \t]?([A-Da-d]))?(?![A-Za-z0-9])"
)
_NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")
_NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_DNI = re.compile(r"([0-9])(?<![A-Za-z0-9].)([0-9]{7})[ \t-]?([A-Za-z])(?![A-Za-z0-9])")
_NIE = re.compile(r"([XYZxyz])(?<![A-Za-z0-9].)[ \t-]?([0-9]{7})[ \t-]?([A-Za-z])(?![A-Za-z0-9])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_OMOCODE = "0-9LMNPQRSTUVlmnpqrstuv"
_CODICE_FISCALE = re.compile(
    rf"[A-Za-z](?<![A-Za-z0-9].)[A-Za-z]{{5}}[{_OMOCODE}]{{2}}[A-Za-z][{_OMOCODE}]{{2}}[A-Za-z]"
    rf"[{_OMOCODE}]{{3}}[A-Za-z](?![A-Za-z0-9])"
)
_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21]
        + [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20]
        + [11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23],
        strict=True,
    )
)
_ID_VALUE = re.compile(
    r"[ \t:,#]{0,3}(?:(?:is|was|number|no|it'?s)[ \t:,]{1,3}){0,3}"
    r"([a-z0-9]{1,20}(?:-[a-z0-9]{1,20}){0,4})(?![\w-])"
)
"""The value said after a national-id word: "passport number is C01X00T47"."""

# -- e-mail addresses, written and spoken ---------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|uk|us|ca|de|fr|es|it|nl|be|ch|at|ie|eu|au|nz|"
    "se|no|dk|fi|pl|pt|mx|br|ar|in|jp|cn|ru|me|tv|ai|app|dev|email|online|xyz|example|test"
)
_SPOKEN_EMAIL = re.compile(
    r"(?<![\w.@+-])(?P<local>[a-z0-9](?:[ \t][a-z0-9]){1,30}(?![\w'])"
    r"|[a-z0-9][\w'-]{0,40}(?:(?:[ \t]?[._+][ \t]?|[ \t]{1,2}(?:dot|period|underscore|dash|"
    r"hyphen|plus)[ \t]{1,2})[a-z0-9][\w'-]{0,40}){0,5})"
    r"(?:[ \t]{0,2}@[ \t]{0,2}|[ \t]{1,2}at(?:[ \t]{1,2}sign)?[ \t]{1,2})"
    r"(?P<domain>[a-z0-9][a-z0-9-]{0,62}(?:(?:[ \t]?\.[ \t]?|[ \t]{1,2}(?:dot|period)[ \t]{1,2})"
    rf"[a-z0-9][a-z0-9-]{{0,62}}){{0,4}}(?:[ \t]?\.[ \t]?|[ \t]{{1,2}}(?:dot|period)[ \t]{{1,2}})"
    rf"(?:{_TLDS}))(?![\w'])"
)
_EMAIL_END = re.compile(
    rf"(?:[ \t]?\.[ \t]?|[ \t]{{1,2}}(?:dot|period)[ \t]{{1,2}})(?:{_TLDS})(?![\w'])"
)
"""How every spoken address ends (the last separator and the top-level domain): found in one
cheap scan, it bounds where the costly pattern above is tried."""
_EMAIL_SPAN = 1024
"""More than the longest text :data:`_SPOKEN_EMAIL` can match (every part of it is bounded)."""
_NOT_A_MAILBOX = frozenset(
    "look it its me us him her them you online there here site website page found available "
    "find visit check is are was be been stay staying arrive arrived home work back later "
    "least all once that this what where which up out now go going get meet email mail "
    "address reach write send contact we i they she he works worked working shop shopping "
    "bought ordered registered signed logged".split()
)
"""Words before "at ... dot com" that say where to look, not whose mailbox it is."""


def _stretches(ends: Iterable[re.Match[str]], span: int) -> list[tuple[int, int]]:
    """The stretches of text of at most ``span`` characters before each match's end, merged
    where they overlap. Each stretch ends at a match's end, so a pattern run up to it (as
    ``endpos``) sees the real end of a match there."""
    stretches: list[tuple[int, int]] = []
    for match in ends:
        end = match.end()
        start = max(0, end - span)
        if stretches and start <= stretches[-1][1]:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((start, end))
    return stretches


class _Token(NamedTuple):
    start: int
    end: int
    digits: str
    spoken: bool


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_shaped(digits: str) -> bool:
    """Whether ``digits`` starts like a card of its length (IIN ranges of the major networks)."""
    n = len(digits)
    two = int(digits[:2])
    four = int(digits[:4])
    first = digits[0]
    if first == "4":
        return n in (13, 16, 19)
    if first == "5":
        return n == 16 if 51 <= two <= 55 else 12 <= n <= 19  # Mastercard, else Maestro
    if first == "2":
        return (n == 16 and 2221 <= four <= 2720) or (2200 <= four <= 2204 and 16 <= n <= 19)
    if first == "3":
        if two in (34, 37):
            return n == 15
        if 3528 <= four <= 3589:
            return 16 <= n <= 19
        return (300 <= int(digits[:3]) <= 305 or two in (36, 38, 39)) and 14 <= n <= 19
    if first == "6":
        return 13 <= n <= 19
    return False


def _ssn_or_itin(area: str, group: str, serial: str) -> bool:
    """US SSN (not 000, 666 or 9xx; group not 00; serial not 0000) or ITIN (9xx, IRS groups)."""
    if group == "00" or serial == "0000" or area == "000" or area == "666":
        return False
    if area[0] != "9":
        return True
    g = int(group)
    return 50 <= g <= 65 or 70 <= g <= 88 or 90 <= g <= 92 or 94 <= g <= 99


def _nir_ok(digits: str) -> bool:
    """French NIR: 13 digits, sex 1 or 2 first, then a two-digit key (97 - n mod 97)."""
    return digits[0] in "12" and 97 - int(digits[:13]) % 97 == int(digits[13:])


def _codice_fiscale_ok(code: str) -> bool:
    code = code.upper()
    total = sum(
        _CF_ODD[ch] if i % 2 == 0 else (int(ch) if ch.isdigit() else ord(ch) - 65)
        for i, ch in enumerate(code[:15])
    )
    return chr(65 + total % 26) == code[15] and sum(ch.isdigit() for ch in code) >= 3


def _lower1(ch: str) -> str:
    lower = ch.lower()
    return lower if len(lower) == 1 else ch


def _short(token: _Token) -> bool:
    """A digit said on its own ("4", "four"), which the library reads joined to its neighbours."""
    return token.spoken or len(token.digits) == 1


def _drop_digits(number: str, count: int) -> str:
    """``number`` without its first ``count`` digits (an international call prefix)."""
    for i, ch in enumerate(number):
        if ch.isdigit():
            count -= 1
            if not count:
                return number[i + 1 :].lstrip(" -")
    return ""


def _tokens(text: str, start: int, end: int) -> tuple[list[_Token], bool]:
    """The digit tokens of the run ``text[start:end]``, and whether it began with "+"."""
    tokens: list[_Token] = []
    plus = False
    repeat = 1
    repeat_start = -1
    for piece in _PIECE.finditer(text, start, end):
        kind = piece.lastgroup
        if kind == "num":
            tokens.append(_Token(piece.start(), piece.end(), piece.group(), False))
        elif kind == "paren":
            tokens.append(_Token(piece.start(), piece.end(), piece.group("paren"), False))
        elif kind in ("tens", "unit"):
            tens = _TENS_DIGIT[piece.group("tens").lower()]
            unit = piece.group("unit")
            digits = tens + (_WORD_DIGITS[unit.lower()] if unit else "0")
            tokens.append(_Token(piece.start(), piece.end(), digits, True))
        else:
            word = piece.group().lower()
            if word in _REPEAT:
                repeat, repeat_start = _REPEAT[word], piece.start()
                continue
            if word in _WORD_DIGITS:
                begin = repeat_start if repeat > 1 else piece.start()
                tokens.append(_Token(begin, piece.end(), _WORD_DIGITS[word] * repeat, True))
            elif word == "plus" and not tokens:
                plus = True
        repeat = 1
    if not plus and text.startswith("+", start):
        plus = True
    return tokens, plus


class Redactor:
    """Removes the chosen kinds of personal data from text.

    Args:
        kinds: Which kinds to remove (see :data:`KINDS`); all of them by default.
        region: Region for phone numbers written without a country code.
    """

    def __init__(self, kinds: Iterable[str] = KINDS, *, region: str = "US") -> None:
        chosen = set(kinds)
        unknown = chosen - set(KINDS)
        if unknown:
            raise ValueError(
                f"MEMORY_REDACT: unknown kind(s) {sorted(unknown)}; choose from {list(KINDS)}"
            )
        self._kinds = frozenset(chosen)
        self._region = region.upper()
        self._long_tag = next(
            (_TAGS[k] for k in ("card", "phone", "national_id", "otp") if k in chosen), None
        )

    @property
    def enabled(self) -> bool:
        """False when nothing is redacted."""
        return bool(self._kinds)

    def __call__(self, text: str) -> str:
        """``text`` with the chosen kinds of personal data replaced by tags."""
        if not self._kinds:
            return text
        if len(_FLOOD_COUNT.findall(text)) > _FLOOD_RUNS and self._kinds - {"email"}:
            text = _FLOOD_NUMBER.sub(_FLOOD_TAG, text)
        for _ in range(_MAX_PASSES):
            redacted = _Pass(self, text).run()
            if redacted == text:
                break
            text = redacted
        if "card" in self._kinds and _TAGS["card"] in text:
            text = _EXPIRY.sub(_EXPIRY_TAG, text)  # next to a card, an expiry goes too
        return text


class _Pass:
    """One reading of one text: finds the spans to replace, then replaces them."""

    def __init__(self, redactor: Redactor, text: str) -> None:
        self.kinds = redactor._kinds
        self.region = redactor._region
        self.long_tag = redactor._long_tag
        self.text = text
        # Patterns read a lower-case copy (matching without IGNORECASE is several times
        # faster); it must keep every offset, which str.lower() does not for a few letters.
        lower = text.lower()
        self.lower = lower if len(lower) == len(text) else "".join(_lower1(ch) for ch in text)
        self.spans: list[tuple[int, int, str]] = []
        self.run_start = 0
        self._keywords: tuple[list[int], list[tuple[int, str]]] | None = None
        self.library_calls = 0

    def run(self) -> str:
        if "email" in self.kinds and ("@" in self.text or "at" in self.lower):
            self._emails()
        if self.kinds - {"email"} and _MAYBE_NUMBER.search(self.lower):
            for run in _RUN.finditer(self.lower):
                if run.end() - run.start() >= 3:
                    self._run(run)
        if "national_id" in self.kinds and _DIGIT.search(self.text):
            self._lettered_ids()
        if not self.spans:
            return self.text
        return self._replace()

    def _add(self, start: int, end: int, kind: str, tag: str | None = None) -> None:
        if kind in self.kinds and start < end:
            self.spans.append((start, end, tag or _TAGS[kind]))

    def _replace(self) -> str:
        """The text with every span replaced by its tag; overlapping spans are merged."""
        self.spans.sort()
        out: list[str] = []
        position = 0
        start, end, tag = self.spans[0]
        for next_start, next_end, next_tag in self.spans[1:]:
            if next_start < end:
                end = max(end, next_end)
                tag = tag if _RANK[tag] <= _RANK[next_tag] else next_tag
                continue
            out += (self.text[position:start], tag)
            position, start, end, tag = end, next_start, next_end, next_tag
        out += (self.text[position:start], tag, self.text[end:])
        return "".join(out)

    # -- context ----------------------------------------------------------------------------

    def _found_keywords(self) -> tuple[list[int], list[tuple[int, str]]]:
        """Where each keyword of the text ends, and (where it starts, its group); read once."""
        if self._keywords is None:
            ends: list[int] = []
            found: list[tuple[int, str]] = []
            for keyword in _KEYWORDS.finditer(self.lower):
                ends.append(keyword.end())
                found.append((keyword.start(), keyword.lastgroup or ""))
            self._keywords = (ends, found)
        return self._keywords

    def _context(self, start: int, end: int) -> str | None:
        """What the words next to ``text[start:end]`` say it is: benign, cvv, id, otp, card..."""
        ends, found = self._found_keywords()
        link = _LINK_AFTER.match(self.lower, end)
        if link and link.end() > end:
            after = _KEYWORDS.match(self.lower, link.end())
            if after and (link.group("verb") or after.lastgroup in ("otp", "id", "cvv")):
                return after.lastgroup
        i = bisect.bisect_right(ends, start) - 1
        if i >= 0 and ends[i] >= start - _CONTEXT_WINDOW:
            return found[i][1]
        return None

    # -- numbers ----------------------------------------------------------------------------

    def _run(self, run: re.Match[str]) -> None:
        start, end = run.span()
        if end - start > _LONG_RUN_CHARS:
            if self.long_tag:
                self.spans.append((start, end, self.long_tag))
            return
        tokens, plus = _tokens(self.lower, start, end)
        self.run_start = start  # where a "+" or "plus" said before the digits begins
        digits = "".join(t.digits for t in tokens)
        if len(digits) < 3:
            return
        if len(digits) > _LONG_RUN_DIGITS:
            if self.long_tag:
                self.spans.append((start, end, self.long_tag))
            return
        self._judge(tokens, plus, self._context(start, end))

    def _judge(self, tokens: list[_Token], plus: bool, context: str | None) -> None:
        """Decides what the digits of ``tokens`` are and records their spans."""
        if not tokens:
            return
        digits = "".join(t.digits for t in tokens)
        n = len(digits)
        start, end = tokens[0].start, tokens[-1].end
        raw = self.text[start:end]
        if context == "id" and 6 <= n <= 15:
            return self._add(start, end, "national_id")
        if context == "cvv" and 3 <= n <= 4:
            return self._add(start, end, "card", _CODE)
        if context == "otp" and 4 <= n <= 8:
            return self._add(start, end, "otp")
        if n >= 13 and self._card(tokens, plus, context):
            return
        if context == "card" and 13 <= n <= 19:
            return self._add(start, end, "card")
        if n < 6 or context == "benign":
            return
        if _DATE.fullmatch(raw) or (context != "phone" and self._amount(raw, start, end)):
            return
        if self._national_id(tokens, digits):
            return
        if n >= 7:
            self._phone(tokens, plus, context)

    def _amount(self, raw: str, start: int, end: int) -> bool:
        """A price, a quantity or a measure rather than an identifier."""
        if start and self.text[start - 1] in _CURRENCY_BEFORE:
            return True
        return bool(_AMOUNT.fullmatch(raw) or _UNIT_AFTER.match(self.lower, end))

    def _card(self, tokens: list[_Token], plus: bool, context: str | None) -> bool:
        """Finds a card number among ``tokens`` (Luhn and IIN), with what is said on with it."""
        offsets = [0]
        for token in tokens:
            offsets.append(offsets[-1] + len(token.digits))
        digits = "".join(t.digits for t in tokens)
        # Luhn sums of any window in O(1): prefix sums with even or odd positions doubled.
        doubled_even = [0]
        doubled_odd = [0]
        for p, ch in enumerate(digits):
            d = ord(ch) - 48
            dd = d * 2 - 9 if d > 4 else d * 2
            doubled_even.append(doubled_even[-1] + (dd if p % 2 == 0 else d))
            doubled_odd.append(doubled_odd[-1] + (d if p % 2 == 0 else dd))
        for i in range(len(tokens)):
            best = -1
            for j in range(i, len(tokens)):
                a, b = offsets[i], offsets[j + 1]
                if b - a > 19:
                    break
                if b - a < 13:
                    continue
                sums = doubled_even if b % 2 == 0 else doubled_odd
                if (sums[b] - sums[a]) % 10 == 0 and _card_shaped(digits[a:b]):
                    best = j
            if best < 0:
                continue
            last = best
            if offsets[-1] - offsets[best + 1] <= 7:  # expiry or code read on with the number
                last = len(tokens) - 1
            self._add(tokens[i].start, tokens[last].end, "card")
            self._judge(tokens[:i], plus, context)
            self._judge(tokens[last + 1 :], False, None)
            return True
        return False

    def _national_id(self, tokens: list[_Token], digits: str) -> bool:
        """Ids said without a word before them, recognised by shape and check digits."""
        shape = [len(t.digits) for t in tokens if not t.spoken]
        if len(shape) == len(tokens) == 3 and shape == [3, 2, 4]:
            gaps = {self.text[a.end : b.start] for a, b in zip(tokens, tokens[1:], strict=False)}
            if gaps <= {"-", " "} and _ssn_or_itin(*(t.digits for t in tokens)):
                self._add(tokens[0].start, tokens[-1].end, "national_id")
                return True
        if len(digits) == 15 and _nir_ok(digits):
            self._add(tokens[0].start, tokens[-1].end, "national_id")
            return True
        return False

    def _phone(self, tokens: list[_Token], plus: bool, context: str | None) -> None:
        """Phone numbers among ``tokens``, found by ``phonenumbers``."""
        if "phone" not in self.kinds:
            return
        digits = "".join(t.digits for t in tokens)
        if self.library_calls >= _MAX_LIBRARY_CALLS:  # a flood of numbers: err towards privacy
            return self._add(self._from(tokens, 0, plus), tokens[-1].end, "phone")
        # The run as the library reads numbers: spoken or one-digit tokens joined, the rest
        # spaced, each token's place remembered.
        parts: list[str] = ["+"] if plus else []
        places: list[int] = []
        length = len(parts)
        for k, token in enumerate(tokens):
            if k and not (_short(token) and _short(tokens[k - 1])):
                parts.append(" ")
                length += 1
            piece = self.text[token.start : token.end] if not token.spoken else token.digits
            places.append(length)
            parts.append(piece)
            length += len(piece)
        number = "".join(parts)
        international = plus
        if not plus and digits.startswith("00"):
            number, international = "+" + _drop_digits(number, 2), True
        elif not plus and digits.startswith("011") and self.region in _NANP:
            number, international = "+" + _drop_digits(number, 3), True
        shift = len(number) - length
        regions = [self.region]
        if not international and digits[0] == "0":
            regions += [r for r in _EXTRA_REGIONS if r != self.region]
        for region in regions:
            found = False
            for match_start, match_end, valid in self._library(number, region):
                if not (international or context == "phone" or valid):
                    continue
                first = max(0, bisect.bisect_right(places, match_start - shift) - 1)
                last = max(0, bisect.bisect_right(places, match_end - 1 - shift) - 1)
                self._add(self._from(tokens, first, plus), tokens[last].end, "phone")
                found = True
            if found:
                return
            if self.library_calls >= _MAX_LIBRARY_CALLS:
                break
        if context == "phone" and 7 <= len(digits) <= 15:
            self._add(self._from(tokens, 0, plus), tokens[-1].end, "phone")

    def _from(self, tokens: list[_Token], first: int, plus: bool) -> int:
        # A number said with its "+" (or "plus") loses it too: "+[phone number]" tells a
        # reader an international number was there, and its first digits may follow.
        return self.run_start if plus and first == 0 else tokens[first].start

    def _library(self, number: str, region: str) -> tuple[tuple[int, int, bool], ...]:
        """(start, end, valid) of what ``PhoneNumberMatcher`` finds in ``number``; cached."""
        key = (number, region)
        found = _LIBRARY_CACHE.get(key)
        if found is None:
            self.library_calls += 1
            found = tuple(
                (m.start, m.end, phonenumbers.is_valid_number(m.number))
                for m in phonenumbers.PhoneNumberMatcher(
                    number, region, leniency=phonenumbers.Leniency.POSSIBLE
                )
            )
            if len(_LIBRARY_CACHE) >= _LIBRARY_CACHE_SIZE:
                _LIBRARY_CACHE.clear()
            _LIBRARY_CACHE[key] = found
        return found

    # -- ids with letters -------------------------------------------------------------------

    def _lettered_ids(self) -> None:
        text = self.text
        for match in _NINO.finditer(text):
            first, second, _, suffix = match.groups()
            prefix = (first + second).upper()
            strict = (
                (first + second + (suffix or "")).isupper()
                and suffix is not None
                and first.upper() in _NINO_FIRST
                and second.upper() in _NINO_SECOND
                and prefix not in _NINO_BAD_PREFIX
            )
            if strict or self._context(match.start(), match.end()) == "id":
                self._add(match.start(), match.end(), "national_id")
        for match in [*_DNI.finditer(text), *_NIE.finditer(text)]:
            first, seven, check = match.groups()
            number = int(first if first.isdigit() else "XYZ".index(first.upper())) * 10**7
            if _DNI_LETTERS[(number + int(seven)) % 23] == check.upper() and (
                check.isupper() or self._context(match.start(), match.end()) == "id"
            ):
                self._add(match.start(), match.end(), "national_id")
        for match in _CODICE_FISCALE.finditer(text):
            if _codice_fiscale_ok(match.group()):
                self._add(match.start(), match.end(), "national_id")
        ends, found = self._found_keywords()
        for end, (_, group) in zip(ends, found, strict=True):
            if group != "id":
                continue
            value = _ID_VALUE.match(self.lower, end)
            if value and sum(ch.isdigit() for ch in value.group(1)) >= 2:
                self._add(value.start(1), value.end(1), "national_id")

    # -- e-mail -----------------------------------------------------------------------------

    def _emails(self) -> None:
        if "@" in self.text:
            self.spans += [(*m.span(), _TAGS["email"]) for m in _EMAIL.finditer(self.text)]
        # The spoken pattern is tried only in the stretches that end where an address can end
        # (most texts have none), each as long as the longest address: the same matches as a
        # scan of the whole text, at a fraction of its cost on long turns.
        for start, end in _stretches(_EMAIL_END.finditer(self.lower), _EMAIL_SPAN):
            for match in _SPOKEN_EMAIL.finditer(self.lower, start, end):
                local = match.group("local").lower()
                if local in _NOT_A_MAILBOX:
                    continue
                self._add(match.start(), match.end(), "email")
