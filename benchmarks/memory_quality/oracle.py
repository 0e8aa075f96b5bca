"""The scripted oracle: a model that answers every summary request with the right operations.

It knows the ground truth of the call it summarizes (the dataset's ``evidence``,
``oracle_value`` and ``withdraw_evidence``: the caller's own words for each change) and reads the
remembered facts, with their ids, from the request itself, as a model would. Facts the caller
only agreed to (the agent's words, ``agreed``) are proposed all the same, with the caller's
agreeing words: the checks drop those whose number or date the caller never said, by design,
and the benchmark scores that as it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from livekit.agents.llm import ChatContext

from livekit.plugins.caller_memory.testing import ScriptedLLM

from .dataset import Call, Fact, Truth

__all__ = ["oracle_llm"]

_FACTS = re.compile(r"Remembered facts:\n(.*?)\n\nTranscript:", re.S)


def oracle_llm(call: Call, before: Truth) -> ScriptedLLM:
    """A model that summarizes ``call`` right, given the truth ``before`` it."""

    def answer(chat_ctx: ChatContext) -> str:
        request = chat_ctx.messages()[-1].text_content or ""
        found = _FACTS.search(request)
        listed = found.group(1) if found else "none"
        remembered: list[dict[str, Any]] = [] if listed == "none" else json.loads(listed)
        return json.dumps(_answer(call, before, remembered))

    return ScriptedLLM(answer, summary=None)


def _answer(call: Call, before: Truth, remembered: list[dict[str, Any]]) -> dict[str, Any]:
    ops: list[dict[str, Any]] = []
    for fact in call.remember:
        old = before.current.get(fact.key)
        fact_id = _id_of(old, remembered) if old is not None else 0
        ops.append(
            {
                "op": "update" if fact_id else "add",
                "id": fact_id,
                "label": _label(fact.key),
                "value": fact.oracle_value or fact.value,
                "evidence": fact.evidence,
            }
        )
    for key in call.withdraw:
        gone = before.current.get(key) or next(f for f in call.remember if f.key == key)
        ops.append(
            {
                "op": "withdraw",
                "id": _id_of(gone, remembered),
                "label": _label(key),
                "value": "",
                "evidence": call.withdraw_evidence.get(key, ""),
            }
        )
    summary = " ".join(f.evidence.rstrip(".") + "." for f in call.remember if f.evidence)
    return {"ops": ops, "summary": summary or "The caller called."}


def _label(key: str) -> str:
    return "name" if key == "name" else key.replace("_", " ")


def _id_of(fact: Fact, remembered: list[dict[str, Any]]) -> int:
    for item in remembered:
        if fact.found_in(str(item.get("value", ""))):
            return int(item["id"])
    return 0
