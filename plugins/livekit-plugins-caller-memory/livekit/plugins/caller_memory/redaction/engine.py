"""The redaction engine: reads a text for the patterns of :mod:`.patterns` and replaces what
it finds by tags."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import NamedTuple

import phonenumbers

from .checks import card_shaped, codice_fiscale_ok, nir_ok, ssn_or_itin
from .edits import Edits
from .patterns import (
    AMOUNT,
    CODE,
    CODICE_FISCALE,
    CONTEXT_WINDOW,
    CURRENCY_BEFORE,
    DATE,
    DIGIT,
    DNI,
    DNI_LETTERS,
    EMAIL,
    EMAIL_END,
    EMAIL_SPAN,
    EXPIRY,
    EXPIRY_TAG,
    EXTRA_REGIONS,
    FLOOD_COUNT,
    FLOOD_NUMBER,
    FLOOD_RUNS,
    FLOOD_TAG,
    ID_VALUE,
    KEYWORDS,
    KINDS,
    LIBRARY_CACHE_SIZE,
    LINK_AFTER,
    LONG_RUN_CHARS,
    LONG_RUN_DIGITS,
    MAX_LIBRARY_CALLS,
    MAX_PASSES,
    MAYBE_NUMBER,
    NANP,
    NIE,
    NINO,
    NINO_BAD_PREFIX,
    NINO_FIRST,
    NINO_SECOND,
    NOT_A_MAILBOX,
    PIECE,
    RANK,
    REPEAT,
    RUN,
    SPOKEN_EMAIL,
    TAG_OF,
    TENS_DIGIT,
    UNIT_AFTER,
    WORD_DIGITS,
)

__all__ = ["Redactor"]

_LIBRARY_CACHE: dict[tuple[str, str], tuple[tuple[int, int, bool], ...]] = {}
"""What ``phonenumbers`` found in a number already read (its calls are the costly part)."""


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
    for piece in PIECE.finditer(text, start, end):
        kind = piece.lastgroup
        if kind == "num":
            tokens.append(_Token(piece.start(), piece.end(), piece.group(), False))
        elif kind == "paren":
            tokens.append(_Token(piece.start(), piece.end(), piece.group("paren"), False))
        elif kind in ("tens", "unit"):
            tens = TENS_DIGIT[piece.group("tens").lower()]
            unit = piece.group("unit")
            digits = tens + (WORD_DIGITS[unit.lower()] if unit else "0")
            tokens.append(_Token(piece.start(), piece.end(), digits, True))
        else:
            word = piece.group().lower()
            if word in REPEAT:
                repeat, repeat_start = REPEAT[word], piece.start()
                continue
            if word in WORD_DIGITS:
                begin = repeat_start if repeat > 1 else piece.start()
                tokens.append(_Token(begin, piece.end(), WORD_DIGITS[word] * repeat, True))
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
            (TAG_OF[k] for k in ("card", "phone", "national_id", "otp") if k in chosen), None
        )

    @property
    def enabled(self) -> bool:
        """False when nothing is redacted."""
        return bool(self._kinds)

    def __call__(self, text: str) -> str:
        """``text`` with the chosen kinds of personal data replaced by tags."""
        return self.redact_mapped(text)[0]

    def redact_mapped(self, text: str) -> tuple[str, Edits]:
        """``text`` redacted, and the edits that made it: where each offset of ``text`` went.

        Slices of a long text are redacted apart (:mod:`.slices`); the edits tell where a slice
        may be cut (at an offset no replaced span covers) and where it lands in the result.
        """
        edits = Edits()
        if not self._kinds:
            return text, edits
        if len(FLOOD_COUNT.findall(text)) > FLOOD_RUNS and self._kinds - {"email"}:
            flood = [(*m.span(), len(FLOOD_TAG)) for m in FLOOD_NUMBER.finditer(text)]
            text = FLOOD_NUMBER.sub(FLOOD_TAG, text)
            edits.add(flood)
        for _ in range(MAX_PASSES):
            one = _Pass(self, text)
            redacted = one.run()
            if redacted == text:
                break
            edits.add(one.edits)
            text = redacted
        if "card" in self._kinds and TAG_OF["card"] in text:
            # Next to a card, an expiry goes too.
            expiry = [(*m.span(), len(EXPIRY_TAG)) for m in EXPIRY.finditer(text)]
            text = EXPIRY.sub(EXPIRY_TAG, text)
            edits.add(expiry)
        return text, edits


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
        self.edits: list[tuple[int, int, int]] = []
        """What :meth:`_replace` replaced: (start, end, length of the tag)."""

    def run(self) -> str:
        if "email" in self.kinds and ("@" in self.text or "at" in self.lower):
            self._emails()
        if self.kinds - {"email"} and MAYBE_NUMBER.search(self.lower):
            for run in RUN.finditer(self.lower):
                if run.end() - run.start() >= 3:
                    self._run(run)
        if "national_id" in self.kinds and DIGIT.search(self.text):
            self._lettered_ids()
        if not self.spans:
            return self.text
        return self._replace()

    def _add(self, start: int, end: int, kind: str, tag: str | None = None) -> None:
        if kind in self.kinds and start < end:
            self.spans.append((start, end, tag or TAG_OF[kind]))

    def _replace(self) -> str:
        """The text with every span replaced by its tag; overlapping spans are merged."""
        self.spans.sort()
        out: list[str] = []
        position = 0
        start, end, tag = self.spans[0]
        for next_start, next_end, next_tag in self.spans[1:]:
            if next_start < end:
                end = max(end, next_end)
                tag = tag if RANK[tag] <= RANK[next_tag] else next_tag
                continue
            out += (self.text[position:start], tag)
            self.edits.append((start, end, len(tag)))
            position, start, end, tag = end, next_start, next_end, next_tag
        out += (self.text[position:start], tag, self.text[end:])
        self.edits.append((start, end, len(tag)))
        return "".join(out)

    # -- context ----------------------------------------------------------------------------

    def _found_keywords(self) -> tuple[list[int], list[tuple[int, str]]]:
        """Where each keyword of the text ends, and (where it starts, its group); read once."""
        if self._keywords is None:
            ends: list[int] = []
            found: list[tuple[int, str]] = []
            for keyword in KEYWORDS.finditer(self.lower):
                ends.append(keyword.end())
                found.append((keyword.start(), keyword.lastgroup or ""))
            self._keywords = (ends, found)
        return self._keywords

    def _context(self, start: int, end: int) -> str | None:
        """What the words next to ``text[start:end]`` say it is: benign, cvv, id, otp, card..."""
        ends, found = self._found_keywords()
        link = LINK_AFTER.match(self.lower, end)
        if link and link.end() > end:
            after = KEYWORDS.match(self.lower, link.end())
            if after and (link.group("verb") or after.lastgroup in ("otp", "id", "cvv")):
                return after.lastgroup
        i = bisect.bisect_right(ends, start) - 1
        if i >= 0 and ends[i] >= start - CONTEXT_WINDOW:
            return found[i][1]
        return None

    # -- numbers ----------------------------------------------------------------------------

    def _run(self, run: re.Match[str]) -> None:
        start, end = run.span()
        if end - start > LONG_RUN_CHARS:
            if self.long_tag:
                self.spans.append((start, end, self.long_tag))
            return
        tokens, plus = _tokens(self.lower, start, end)
        self.run_start = start  # where a "+" or "plus" said before the digits begins
        digits = "".join(t.digits for t in tokens)
        if len(digits) < 3:
            return
        if len(digits) > LONG_RUN_DIGITS:
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
            return self._add(start, end, "card", CODE)
        if context == "otp" and 4 <= n <= 8:
            return self._add(start, end, "otp")
        if n >= 13 and self._card(tokens, plus, context):
            return
        if context == "card" and 13 <= n <= 19:
            return self._add(start, end, "card")
        if n < 6 or context == "benign":
            return
        if DATE.fullmatch(raw) or (context != "phone" and self._amount(raw, start, end)):
            return
        if self._national_id(tokens, digits):
            return
        if n >= 7:
            self._phone(tokens, plus, context)

    def _amount(self, raw: str, start: int, end: int) -> bool:
        """A price, a quantity or a measure rather than an identifier."""
        if start and self.text[start - 1] in CURRENCY_BEFORE:
            return True
        return bool(AMOUNT.fullmatch(raw) or UNIT_AFTER.match(self.lower, end))

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
                if (sums[b] - sums[a]) % 10 == 0 and card_shaped(digits[a:b]):
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
            if gaps <= {"-", " "} and ssn_or_itin(*(t.digits for t in tokens)):
                self._add(tokens[0].start, tokens[-1].end, "national_id")
                return True
        if len(digits) == 15 and nir_ok(digits):
            self._add(tokens[0].start, tokens[-1].end, "national_id")
            return True
        return False

    def _phone(self, tokens: list[_Token], plus: bool, context: str | None) -> None:
        """Phone numbers among ``tokens``, found by ``phonenumbers``."""
        if "phone" not in self.kinds:
            return
        digits = "".join(t.digits for t in tokens)
        if self.library_calls >= MAX_LIBRARY_CALLS:  # a flood of numbers: err towards privacy
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
        elif not plus and digits.startswith("011") and self.region in NANP:
            number, international = "+" + _drop_digits(number, 3), True
        shift = len(number) - length
        regions = [self.region]
        if not international and digits[0] == "0":
            regions += [r for r in EXTRA_REGIONS if r != self.region]
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
            if self.library_calls >= MAX_LIBRARY_CALLS:
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
            if len(_LIBRARY_CACHE) >= LIBRARY_CACHE_SIZE:
                _LIBRARY_CACHE.clear()
            _LIBRARY_CACHE[key] = found
        return found

    # -- ids with letters -------------------------------------------------------------------

    def _lettered_ids(self) -> None:
        text = self.text
        for match in NINO.finditer(text):
            first, second, _, suffix = match.groups()
            prefix = (first + second).upper()
            strict = (
                (first + second + (suffix or "")).isupper()
                and suffix is not None
                and first.upper() in NINO_FIRST
                and second.upper() in NINO_SECOND
                and prefix not in NINO_BAD_PREFIX
            )
            if strict or self._context(match.start(), match.end()) == "id":
                self._add(match.start(), match.end(), "national_id")
        for match in [*DNI.finditer(text), *NIE.finditer(text)]:
            first, seven, check = match.groups()
            number = int(first if first.isdigit() else "XYZ".index(first.upper())) * 10**7
            if DNI_LETTERS[(number + int(seven)) % 23] == check.upper() and (
                check.isupper() or self._context(match.start(), match.end()) == "id"
            ):
                self._add(match.start(), match.end(), "national_id")
        for match in CODICE_FISCALE.finditer(text):
            if codice_fiscale_ok(match.group()):
                self._add(match.start(), match.end(), "national_id")
        ends, found = self._found_keywords()
        for end, (_, group) in zip(ends, found, strict=True):
            if group != "id":
                continue
            value = ID_VALUE.match(self.lower, end)
            if value and sum(ch.isdigit() for ch in value.group(1)) >= 2:
                self._add(value.start(1), value.end(1), "national_id")

    # -- e-mail -----------------------------------------------------------------------------

    def _emails(self) -> None:
        if "@" in self.text:
            self.spans += [(*m.span(), TAG_OF["email"]) for m in EMAIL.finditer(self.text)]
        # The spoken pattern is tried only in the stretches that end where an address can end
        # (most texts have none), each as long as the longest address: the same matches as a
        # scan of the whole text, at a fraction of its cost on long turns.
        for start, end in _stretches(EMAIL_END.finditer(self.lower), EMAIL_SPAN):
            for match in SPOKEN_EMAIL.finditer(self.lower, start, end):
                local = match.group("local").lower()
                if local in NOT_A_MAILBOX:
                    continue
                self._add(match.start(), match.end(), "email")
