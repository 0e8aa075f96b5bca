"""The patterns redaction looks for, as data: tags, regular expressions, word lists and limits.

Read by :mod:`.engine`; see the package's docstring for what each kind covers. Every
pattern is linear: no nested quantifiers over overlapping classes, and every repetition that
could meet another is bounded.
"""

from __future__ import annotations

import re

KINDS = ("card", "national_id", "otp", "email", "phone")
"""Every kind of data the redactor knows; ``MEMORY_REDACT`` picks among them."""

TAG_OF = {
    "card": "[card number]",
    "national_id": "[id number]",
    "otp": "[code]",
    "email": "[email]",
    "phone": "[phone number]",
}
CODE = "[code]"
RANK = {"[card number]": 0, "[id number]": 1, "[code]": 2, "[phone number]": 3, "[email]": 4}
"""When found spans overlap they are merged, under the tag ranked first."""

EXPIRY = re.compile(r"(?<![\d/.-])(?:0?[1-9]|1[0-2]) ?[/.-] ?(?:\d\d|20\d\d)(?![\d/.-])")
"""A card's expiry date as STT writes it: 09/28, 9/2028, 12-27."""
EXPIRY_TAG = "[expiry]"

FLOOD_RUNS = 40
"""More separate numbers than this in one turn is no conversation (a turn of a few thousand
characters holds a handful): every number of 3+ digits is tagged ``[number]`` at once, at the
speed of one regular expression, before the turn is read number by number."""
FLOOD_COUNT = re.compile(r"\d+")
FLOOD_NUMBER = re.compile(r"\d(?:[ \t.,-]{0,2}\d){2,}")
FLOOD_TAG = "[number]"

TAGS = (*TAG_OF.values(), EXPIRY_TAG, FLOOD_TAG)
"""Every tag redaction leaves in place of what it removed."""

MAX_PASSES = 4
"""A redacted text is redacted again until nothing changes (at most this many passes)."""
MAX_LIBRARY_CALLS = 24
"""Calls to ``phonenumbers`` for one text (numbers not met before); past them a run of 7 or
more digits is taken for a phone number: a flood of numbers errs towards privacy."""
LIBRARY_CACHE_SIZE = 4096
LONG_RUN_DIGITS = 40
"""More digits than any card with expiry and code: the whole run is redacted."""
LONG_RUN_CHARS = 400
EXTRA_REGIONS = ("GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "IE")
"""Regions tried for a national number (starting with 0) that the default region rejects."""
NANP = frozenset({"US", "CA", "PR", "GU", "VI", "AS", "MP"})

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
RUN = re.compile(rf"(?P<plus>(?<![\w+])(?:\+[ \t]?|plus[ \t]{{1,2}}))?{_TOKEN}(?:{_SEP}{_TOKEN})*")
PIECE = re.compile(
    rf"\((?P<paren>[0-9]{{1,5}})\)|(?P<num>[0-9]+)"
    rf"|(?P<tens>{_TENS})(?:[ -](?P<unit>{_UNITS}))?|(?P<word>[^\W\d_]+)"
)
WORD_DIGITS = {
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
"""Numbers as speech-to-text writes them in words ("oh", "niner", "twelve"), as digits."""
TENS_DIGIT = {w: str(i + 2) for i, w in enumerate(_TENS.split("|"))}
REPEAT = {"double": 2, "triple": 3}
DIGIT = re.compile(r"[0-9]")
MAYBE_NUMBER = re.compile("(?:" + "|".join([*"0123456789", *WORD_DIGITS, *TENS_DIGIT]) + ")")
"""A quick look for anything a run could start with (alternatives of plain letters let the
engine skip to the letters they start with): texts without any skip the run pattern."""
DATE = re.compile(
    r"(?:[0-9]{1,2}[./-][0-9]{1,2}[./-](?:[0-9]{2}|[0-9]{4})|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2})"
)
AMOUNT = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+\.[0-9]{2}")
CURRENCY_BEFORE = frozenset("$£€¥")
UNIT_AFTER = re.compile(
    r"[ \t]*(?:%|percent|dollars?|bucks|euros?|pounds?|cents?|kg|kilos?|grams?|miles?|km|"
    r"meters?|metres?|feet|foot|inch(?:es)?|degrees?|people|units|pieces|items|boxes|times)\b"
)

# -- the words said next to a number --------------------------------------------------------

KEYWORDS = re.compile(
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
CONTEXT_WINDOW = 50
"""How far before a number (in characters) a word still says what it is."""
LINK_AFTER = re.compile(
    r"[ \t,]{0,3}(?P<verb>(?:is|was|as|are|that'?s|that[ \t]+is|it'?s)[ \t]{1,3})?"
    r"(?:(?:my|the|your|our|a|an|his|her|their)[ \t]{1,3})?"
)
"""What may stand between a number and the word after it: "1234 *is my* code", "1234 *the*
code". Without a verb only a code or an id word counts ("... 1234 my order" is not said of it)."""

# -- ids with letters -----------------------------------------------------------------------

# Patterns that start with a character class (the lookbehind comes after it) let the regex
# engine skip ahead to where that class matches instead of trying every position.
NINO = re.compile(
    r"([A-Za-z])(?<![A-Za-z0-9].)[ \t]?([A-Za-z])[ \t]?((?:[0-9][ \t]?){5}[0-9])"
    r"(?:[ \t]?([A-Da-d]))?(?![A-Za-z0-9])"
)
NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")
NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")
NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
DNI = re.compile(r"([0-9])(?<![A-Za-z0-9].)([0-9]{7})[ \t-]?([A-Za-z])(?![A-Za-z0-9])")
NIE = re.compile(r"([XYZxyz])(?<![A-Za-z0-9].)[ \t-]?([0-9]{7})[ \t-]?([A-Za-z])(?![A-Za-z0-9])")
DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_OMOCODE = "0-9LMNPQRSTUVlmnpqrstuv"
CODICE_FISCALE = re.compile(
    rf"[A-Za-z](?<![A-Za-z0-9].)[A-Za-z]{{5}}[{_OMOCODE}]{{2}}[A-Za-z][{_OMOCODE}]{{2}}[A-Za-z]"
    rf"[{_OMOCODE}]{{3}}[A-Za-z](?![A-Za-z0-9])"
)
CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21]
        + [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20]
        + [11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23],
        strict=True,
    )
)
ID_VALUE = re.compile(
    r"[ \t:,#]{0,3}(?:(?:is|was|number|no|it'?s)[ \t:,]{1,3}){0,3}"
    r"([a-z0-9]{1,20}(?:-[a-z0-9]{1,20}){0,4})(?![\w-])"
)
"""The value said after a national-id word: "passport number is C01X00T47"."""

# -- e-mail addresses, written and spoken ---------------------------------------------------

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|uk|us|ca|de|fr|es|it|nl|be|ch|at|ie|eu|au|nz|"
    "se|no|dk|fi|pl|pt|mx|br|ar|in|jp|cn|ru|me|tv|ai|app|dev|email|online|xyz|example|test"
)
SPOKEN_EMAIL = re.compile(
    r"(?<![\w.@+-])(?P<local>[a-z0-9](?:[ \t][a-z0-9]){1,30}(?![\w'])"
    r"|[a-z0-9][\w'-]{0,40}(?:(?:[ \t]?[._+][ \t]?|[ \t]{1,2}(?:dot|period|underscore|dash|"
    r"hyphen|plus)[ \t]{1,2})[a-z0-9][\w'-]{0,40}){0,5})"
    r"(?:[ \t]{0,2}@[ \t]{0,2}|[ \t]{1,2}at(?:[ \t]{1,2}sign)?[ \t]{1,2})"
    r"(?P<domain>[a-z0-9][a-z0-9-]{0,62}(?:(?:[ \t]?\.[ \t]?|[ \t]{1,2}(?:dot|period)[ \t]{1,2})"
    rf"[a-z0-9][a-z0-9-]{{0,62}}){{0,4}}(?:[ \t]?\.[ \t]?|[ \t]{{1,2}}(?:dot|period)[ \t]{{1,2}})"
    rf"(?:{_TLDS}))(?![\w'])"
)
EMAIL_END = re.compile(
    rf"(?:[ \t]?\.[ \t]?|[ \t]{{1,2}}(?:dot|period)[ \t]{{1,2}})(?:{_TLDS})(?![\w'])"
)
"""How every spoken address ends (the last separator and the top-level domain): found in one
cheap scan, it bounds where the costly pattern above is tried."""
EMAIL_SPAN = 1024
"""More than the longest text :data:`SPOKEN_EMAIL` can match (every part of it is bounded)."""
NOT_A_MAILBOX = frozenset(
    "look it its me us him her them you online there here site website page found available "
    "find visit check is are was be been stay staying arrive arrived home work back later "
    "least all once that this what where which up out now go going get meet email mail "
    "address reach write send contact we i they she he works worked working shop shopping "
    "bought ordered registered signed logged".split()
)
"""Words before "at ... dot com" that say where to look, not whose mailbox it is."""
