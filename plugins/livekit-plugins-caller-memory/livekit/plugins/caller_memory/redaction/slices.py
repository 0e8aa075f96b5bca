"""A long text redacted slice by slice, so that no single step holds the event loop for long.

Each slice is read with context on both sides: :data:`LOOKBEHIND` characters before it (the
words that say what a number is come before it: "social security number is ...") and
:data:`LOOKAHEAD` after it. A slice is cut only where nothing found in its window is replaced
across the cut (preferably at a space), so a card number, an address or a spoken e-mail that
straddles the nominal slice end is read whole in this window and replaced by one tag; the next
slice starts at the cut. Where no such cut exists (one replaced span covers the whole slice:
a run of digits thousands of characters long), the next step reads a slice twice as long, up to
the whole text.

The result can differ from :class:`~.engine.Redactor` run on the whole text only in rules that
look at the whole turn: an expiry date is tagged next to a card number said in the same window,
not anywhere in the turn, and the flood rule (over 40 numbers) counts the numbers of a window.
"""

from __future__ import annotations

import asyncio

from .edits import Edits
from .engine import Redactor

__all__ = ["LOOKAHEAD", "LOOKBEHIND", "SLICE_CHARS", "SlicedRedaction", "redact_in_slices"]

SLICE_CHARS = 400
"""How far one step moves through the text, at most (before the cut moves back to a space)."""
LOOKAHEAD = 200
"""Characters read past a slice's end: more than any realistic number, address or id said
across the cut (a card with expiry and code is under 60; a spoken address under 120)."""
LOOKBEHIND = 120
"""Characters read before a slice: the words that say what a number is reach 50 characters
back, and a keyword itself is up to ~40."""
_CUT_TRIES = 48


class SlicedRedaction:
    """One text being redacted, a bounded slice per :meth:`step`.

    Args:
        redactor: What to remove.
        text: The text (a turn, already cleaned).
    """

    def __init__(self, redactor: Redactor, text: str) -> None:
        self._redactor = redactor
        self._text = text
        self._position = 0
        self._span = SLICE_CHARS
        self._out: list[str] = []

    @property
    def done(self) -> bool:
        """The whole text is redacted: :attr:`result` holds it."""
        return self._position >= len(self._text)

    @property
    def result(self) -> str:
        """The redacted text (complete once :attr:`done`)."""
        return "".join(self._out)

    def step(self) -> None:
        """Redact the next slice (its window: at most :data:`LOOKBEHIND` + the slice +
        :data:`LOOKAHEAD` characters, unless the previous step found no place to cut)."""
        text, position = self._text, self._position
        start = max(0, position - LOOKBEHIND)
        end = position + self._span + LOOKAHEAD
        redacted, edits = self._redactor.redact_mapped(text[start:end])
        # A span found across the start was already kept as it was by the slice before (it
        # judged otherwise): its tag is given again here rather than lose any of it.
        begin = edits.forward(position - start, inside_ok=True)
        assert begin is not None
        if end >= len(text):
            self._out.append(redacted[begin:])
            self._position = len(text)
            return
        cut = _cut(text, start, position + 1, position + self._span, edits)
        if cut is None:
            self._span *= 2  # one span covers the whole slice: read a longer one next time
            return
        raw, landed = cut
        self._out.append(redacted[begin:landed])
        self._position = raw
        self._span = SLICE_CHARS


def _cut(text: str, start: int, low: int, high: int, edits: Edits) -> tuple[int, int] | None:
    """The last offset in ``[low, high]`` that no replaced span covers, a space preferred,
    with where it lands in the window's redaction (offsets of the window start at ``start``)."""
    tries = 0
    space = text.rfind(" ", low, high + 1)
    while space >= low and tries < _CUT_TRIES:
        landed = edits.forward(space - start)
        if landed is not None:
            return space, landed
        tries += 1
        space = text.rfind(" ", low, space)
    # No space to cut at (one long word): any offset outside the replaced spans.
    for offset in range(high, max(low, high - _CUT_TRIES) - 1, -1):
        landed = edits.forward(offset - start)
        if landed is not None:
            return offset, landed
    return None


async def redact_in_slices(redactor: Redactor, text: str) -> str:
    """``text`` redacted one slice per event-loop iteration (other tasks run between)."""
    sliced = SlicedRedaction(redactor, text)
    sliced.step()
    while not sliced.done:
        await asyncio.sleep(0)
        sliced.step()
    return sliced.result
