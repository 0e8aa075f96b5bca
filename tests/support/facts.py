"""Facts for the tests: a model's answer as the summarizer asks for it, and what a profile holds.

A scripted summary is ``answer("Summary.", op("add", "drink", "tea", "I drink tea"))``: the
evidence must be the caller's own words in the call's transcript, or the checks drop it.
"""

from __future__ import annotations

from typing import Any

from livekit.plugins.caller_memory.models import CallerProfile, CallSummary, FactOp

__all__ = ["answer", "call_summary", "fact_op", "facts", "op"]


def op(kind: str, label: str, value: str, evidence: str, id: int = 0) -> dict[str, Any]:
    """One operation as a model writes it in its JSON answer."""
    return {"op": kind, "id": id, "label": label, "value": value, "evidence": evidence}


def answer(summary: str, *ops: dict[str, Any]) -> dict[str, Any]:
    """A model's whole answer to the summary request (a dict: ``ScriptedLLM`` sends it as
    JSON)."""
    return {"ops": list(ops), "summary": summary}


def fact_op(kind: str, label: str, value: str, evidence: str, id: int = 0) -> FactOp:
    """One checked operation, as a :class:`CallSummary` holds it."""
    return FactOp.model_validate(op(kind, label, value, evidence, id))


def call_summary(summary: str, *ops: FactOp, source: str = "llm") -> CallSummary:
    """A checked summary with these operations (what ``store.save_call`` is given), validated
    as the summarizer's are (text cleaned, sizes clipped)."""
    data = {"summary": summary, "ops": [o.model_dump() for o in ops], "source": source}
    return CallSummary.model_validate(data)


def facts(profile: CallerProfile | None) -> dict[str, str]:
    """The caller's current facts, label to value (the name included)."""
    if profile is None:
        return {}
    return {f.label: f.value for f in reversed(profile.current_facts)}
