"""What the plugin removes from any text it keeps, written apart from its code (an oracle)."""

from __future__ import annotations

import re

UNSAID = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]")
"""What no one says and a kept text loses: control characters but tab and line breaks, and the
bidirectional overrides and isolates."""


def said(text: str) -> str:
    """``text`` without what no one says, stripped: "" when nothing is left to keep."""
    return UNSAID.sub("", text).strip()
