"""The memory model as plain code: what a call may add to a caller's facts, and how.

No I/O here. :mod:`.checks` decides what a model's answer may store (evidence in the caller's
own words), :mod:`.merge` folds a checked call into a profile, :mod:`.fallback` makes memory
without an LLM, and :mod:`.text` reads the words they all compare.
"""

from __future__ import annotations

from .checks import REASONS, Checked, check_answer
from .fallback import fallback_summary
from .merge import merge_call

__all__ = ["REASONS", "Checked", "check_answer", "fallback_summary", "merge_call"]
