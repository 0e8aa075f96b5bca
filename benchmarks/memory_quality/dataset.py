"""The benchmark's callers and their ground truth (``dataset.json`` beside this file).

See this folder's README for the format and the scoring rules; :class:`Truth` replays them:
what must be current after each call, which values were superseded, what was withdrawn, and the
traps laid so far.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DATASET", "Call", "Caller", "Fact", "Trap", "Truth", "load"]

DATASET = Path(__file__).with_name("dataset.json")


@dataclass(frozen=True)
class Fact:
    """One ground-truth value: ``match`` are regexes that must all be found."""

    key: str
    value: str
    match: tuple[str, ...]
    agreed: bool = False
    """The value is the agent's words the caller agreed to ("yes, that works")."""
    evidence: str = ""
    """The caller's words that state it, verbatim from one of their turns of the call."""
    oracle_value: str = ""
    """The value as the caller's words back it (what the oracle proposes)."""

    def found_in(self, text: str) -> bool:
        """True when every matcher is found in ``text`` (case-insensitive)."""
        return all(re.search(m, text, re.IGNORECASE) for m in self.match)


@dataclass(frozen=True)
class Trap:
    """Something a careless memory would store: never among the stored facts."""

    kind: str
    match: tuple[str, ...]
    note: str = ""

    def found_in(self, text: str) -> bool:
        """True when every matcher is found in ``text`` (case-insensitive)."""
        return all(re.search(m, text, re.IGNORECASE) for m in self.match)


@dataclass(frozen=True)
class Call:
    """One call: its turns (``agent`` / ``caller``) and what it changes."""

    turns: tuple[tuple[str, str], ...]
    remember: tuple[Fact, ...]
    withdraw: tuple[str, ...]
    traps: tuple[Trap, ...]
    withdraw_evidence: dict[str, str] = field(default_factory=dict)
    """The caller's words withdrawing each withdrawn key."""

    @property
    def caller_lines(self) -> list[str]:
        """What the caller said."""
        return [text for role, text in self.turns if role == "caller"]


@dataclass(frozen=True)
class Caller:
    """One caller of one business, and their calls in order."""

    id: str
    business: str
    business_name: str
    agent_name: str
    calls: tuple[Call, ...]


@dataclass
class Truth:
    """The ground truth after the calls replayed so far (:meth:`after`)."""

    current: dict[str, Fact] = field(default_factory=dict)
    superseded: dict[str, list[tuple[Fact, int]]] = field(default_factory=dict)
    """Earlier values of keys that changed, oldest first, each with the call (1-based) that
    changed it."""
    calls: int = 0
    """Calls applied so far."""
    withdrawn: dict[str, Fact] = field(default_factory=dict)
    traps: list[Trap] = field(default_factory=list)

    def after(self, call: Call) -> None:
        """Apply one call."""
        self.calls += 1
        for fact in call.remember:
            old = self.current.get(fact.key)
            if old is not None and old.match != fact.match:
                self.superseded.setdefault(fact.key, []).append((old, self.calls))
            self.current[fact.key] = fact
        for key in call.withdraw:
            if key in self.current:
                self.withdrawn[key] = self.current.pop(key)
        self.traps.extend(call.traps)


def _fact(key: str, raw: dict[str, Any]) -> Fact:
    return Fact(
        key,
        str(raw["value"]),
        tuple(raw["match"]),
        bool(raw.get("agreed", False)),
        str(raw.get("evidence", "")),
        str(raw.get("oracle_value", "")),
    )


def load(path: Path = DATASET) -> list[Caller]:
    """The dataset's callers.

    Raises:
        ValueError: The file is not of the dataset's shape (the message says where).
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    callers = []
    for c in data["callers"]:
        calls = []
        for i, call in enumerate(c["calls"]):
            roles = {role for role, _ in call["turns"]}
            if not roles <= {"agent", "caller"}:
                raise ValueError(f"{c['id']} call {i + 1}: roles must be agent or caller")
            calls.append(
                Call(
                    turns=tuple((role, text) for role, text in call["turns"]),
                    remember=tuple(_fact(k, v) for k, v in call.get("remember", {}).items()),
                    withdraw=tuple(call.get("withdraw", [])),
                    traps=tuple(
                        Trap(t["kind"], tuple(t["match"]), t.get("note", ""))
                        for t in call.get("traps", [])
                    ),
                    withdraw_evidence=dict(call.get("withdraw_evidence", {})),
                )
            )
        callers.append(
            Caller(c["id"], c["business"], c["business_name"], c["agent_name"], tuple(calls))
        )
    return callers
