"""Scoring by code, on what the next call's agent receives.

After each call, the memory block the next call's agent is given is read against the ground
truth so far (:class:`~.dataset.Truth`):

- *recall*: a current fact is found (all its matchers) anywhere in the block; also counted
  apart for the facts the caller said in their own words (not ``agreed`` to the agent's);
- *updates*: a changed fact's new value is found, and none of its earlier values is found
  among the stored facts or in the summary of a call before the change (the call that changed
  it, and later ones, may say what it was: "moved from 7:15 to eight");
- *withdrawals*: a withdrawn fact's last value is not found anywhere in the block;
- *trap hits*: a trap is found among the stored facts (the block's ``name`` and ``facts``);
- *unbacked facts*: a stored current fact whose evidence is not in any of the caller's turns
  (the checks make this 0; it is counted, not assumed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from livekit.plugins.caller_memory.memory import text
from livekit.plugins.caller_memory.models import CallerProfile

from .dataset import Truth

__all__ = ["Score", "facts_part"]


def facts_part(prompt: str) -> str:
    """The stored facts of a memory block, as text: its ``name`` and ``facts``."""
    found = re.search(r"<caller_memory>\n(.*)\n</caller_memory>", prompt, re.S)
    if not found:
        return ""
    data = json.loads(found.group(1))
    facts = [f"{f.get('about', '')}: {f.get('value', '')}" for f in data.get("facts", [])]
    return "\n".join([str(data.get("name", "")), *facts])


def _before(stored: str, profile: CallerProfile | None, call: int) -> str:
    # The stored facts, and the summaries of the calls before ``call`` (session ids end in
    # "-<n>", the call's number).
    earlier = [
        c.summary
        for c in (profile.calls if profile is not None else [])
        if int(c.session_id.rsplit("-", 1)[1]) < call
    ]
    return "\n".join([stored, *earlier])


@dataclass
class Score:
    """Counts over every checkpoint (the block after each call)."""

    facts: int = 0
    recalled: int = 0
    said_facts: int = 0
    said_recalled: int = 0
    updates: int = 0
    updates_right: int = 0
    said_updates: int = 0
    said_updates_right: int = 0
    withdrawals: int = 0
    withdrawals_honoured: int = 0
    traps: int = 0
    trap_hits: int = 0
    stored: int = 0
    unbacked: int = 0
    calls: int = 0
    fallbacks: int = 0
    seconds: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    """What went wrong, for reading (ids and keys only)."""

    def checkpoint(
        self, where: str, prompt: str, truth: Truth, profile: CallerProfile | None = None
    ) -> None:
        """Score the block the next call's agent receives after a call (``profile``, the
        stored memory it was made from, tells which call each summary in it is of)."""
        stored = facts_part(prompt)
        for key, fact in truth.current.items():
            self.facts += 1
            hit = fact.found_in(prompt)
            self.recalled += hit
            if not fact.agreed:
                self.said_facts += 1
                self.said_recalled += hit
            if not hit:
                self.misses.append(f"{where}: missed {key}")
        for key, olds in truth.superseded.items():
            if key not in truth.current:
                continue
            self.updates += 1
            stale = [old for old, at in olds if old.found_in(_before(stored, profile, at))]
            right = truth.current[key].found_in(prompt) and not stale
            self.updates_right += right
            if not truth.current[key].agreed:
                self.said_updates += 1
                self.said_updates_right += right
            if not right:
                self.misses.append(f"{where}: update of {key} {'stale' if stale else 'missed'}")
        for key, fact in truth.withdrawn.items():
            self.withdrawals += 1
            honoured = not fact.found_in(prompt)
            self.withdrawals_honoured += honoured
            if not honoured:
                self.misses.append(f"{where}: withdrawal of {key} not honoured")
        for trap in truth.traps:
            self.traps += 1
            if trap.found_in(stored):
                self.trap_hits += 1
                self.misses.append(f"{where}: trap {trap.kind} ({trap.note}) stored")

    def stored_facts(self, profile: CallerProfile | None, caller_lines: list[str]) -> None:
        """Count the stored current facts, and those whose evidence the caller never said."""
        for fact in profile.current_facts if profile is not None else []:
            self.stored += 1
            if not any(text.contains(line, fact.evidence) for line in caller_lines):
                self.unbacked += 1

    def call_ended(self, source: str, seconds: float) -> None:
        """Count one call's end: where its memory came from, and how long the end took."""
        self.calls += 1
        self.fallbacks += source == "fallback"
        self.seconds.append(seconds)

    def row(self) -> dict[str, str]:
        """The table row of this run."""

        def pct(n: int, d: int) -> str:
            return f"{100 * n / d:.0f} % ({n}/{d})" if d else "–"

        s = sorted(self.seconds)

        def q(p: float) -> str:
            return f"{s[min(len(s) - 1, int(p * len(s)))]:.2f} s" if s else "–"

        return {
            "recall": pct(self.recalled, self.facts),
            "recall (caller's words)": pct(self.said_recalled, self.said_facts),
            "updates": pct(self.updates_right, self.updates),
            "updates (caller's words)": pct(self.said_updates_right, self.said_updates),
            "withdrawals": pct(self.withdrawals_honoured, self.withdrawals),
            "traps stored": f"{self.trap_hits}/{self.traps}",
            "unbacked facts": f"{self.unbacked}/{self.stored}",
            "fallback": pct(self.fallbacks, self.calls),
            "end p50": q(0.5),
            "end p95": q(0.95),
        }
