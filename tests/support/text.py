"""What the plugin removes from any text it keeps, written apart from its code (an oracle)."""

from __future__ import annotations

import re

SPACING = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
"""Control characters that separate words (``str.split`` splits on them): kept as a space."""
UNSAID = re.compile("[\\x00-\\x08\\x0e-\\x1b\\x7f-\\x84\\x86-\\x9f\\u202a-\\u202e\\u2066-\\u2069]")
"""What no one says and a kept text loses: the other control characters but tab and line
breaks, and the bidirectional overrides and isolates."""


def said(text: str) -> str:
    """``text`` as kept, stripped: "" when nothing is left to keep."""
    spaced = text.translate({ord(c): " " for c in SPACING})
    return UNSAID.sub("", spaced).strip()
