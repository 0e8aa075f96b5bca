"""Where each offset of a text went in its redaction: the replacements, step by step."""

from __future__ import annotations

import bisect

__all__ = ["Edits"]


class Edits:
    """The replacements that turned a text into its redaction, step by step (each step's
    spans are ``(start, end, length of the replacement)`` in that step's input, sorted and
    disjoint)."""

    def __init__(self) -> None:
        self._steps: list[tuple[list[int], list[int], list[int]]] = []

    def add(self, spans: list[tuple[int, int, int]]) -> None:
        """Record one step's replacements."""
        if not spans:
            return
        starts, ends, shifts = [], [], []
        shift = 0
        for start, end, length in spans:
            starts.append(start)
            ends.append(end)
            shift += length - (end - start)
            shifts.append(shift)  # the shift of every offset from this span's end on
        self._steps.append((starts, ends, shifts))

    def forward(self, offset: int, *, inside_ok: bool = False) -> int | None:
        """Where ``offset`` of the original text is in the result. None if a replaced span
        covers it (starts before it and ends after it), unless ``inside_ok``: then where
        that span's replacement starts."""
        for starts, ends, shifts in self._steps:
            i = bisect.bisect_right(starts, offset) - 1
            if i < 0:
                continue
            if offset < ends[i]:
                if offset > starts[i]:
                    if not inside_ok:
                        return None
                    offset = starts[i]
                offset += shifts[i - 1] if i else 0
            else:
                offset += shifts[i]
        return offset
