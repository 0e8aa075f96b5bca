"""End-of-call memory: the agent's own LLM says what a call changed, code checks it.

Any ``livekit.agents.llm.LLM`` works: the summarizer shows it the caller's current facts with
their ids and the transcript, asks for operations (add, update, withdraw, each with the
caller's own words as evidence) and a short summary, and keeps only what
:mod:`.memory.checks` finds backed by the call. When there is no LLM, or it fails, times out,
answers with something unusable, or nothing it said passes the checks, the caller's own
salient lines are kept instead (:func:`.memory.fallback_summary`, ``source="fallback"``): a
call is never dropped for want of a summary, and memory with an LLM is never worse than
without one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from . import prompts
from .log import logger
from .memory import check_answer, fallback_summary, text
from .memory.fallback import name_op, salient_lines, withdrawal_ops
from .memory.summaries import SAID, retracted, scrub, withdrawn_in
from .models import MAX_SUMMARY, NAME_LABEL, CallerProfile, CallSummary, FactOp, Turn
from .redaction import Redactor
from .telemetry import record_dropped

if TYPE_CHECKING:  # LiveKit Agents is imported when a model is first asked: the
    # command-line tools, which never ask one, start without it
    from livekit.agents import llm

__all__ = ["Summarizer", "fallback_summary"]

MAX_ANSWER_CHARS = 20_000
"""An answer longer than this is not a summary of the requested shape."""
_OPS = TypeAdapter(list[FactOp])


def _parse(answer: str) -> tuple[list[FactOp], str]:
    # Models wrap JSON in code fences or add a sentence around it: take the outermost object
    # (found in linear time: the answer can be anything, and this runs on the event loop).
    answer = answer[:MAX_ANSWER_CHARS]
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the LLM answer")
    data = json.loads(answer[start : end + 1])
    if not isinstance(data, dict):
        raise ValueError("the LLM answer is not a JSON object")
    raw_ops = data.get("ops") or []
    if not isinstance(raw_ops, list):
        raise ValueError("the LLM answer's ops are not a list")
    ops = []
    for item in raw_ops:  # one malformed operation costs itself, not the others
        try:
            ops += _OPS.validate_python([item])
        except ValidationError:
            continue
    summary = data.get("summary")
    return ops, summary if isinstance(summary, str) else ""


class Summarizer:
    """Summarizes calls with a LiveKit LLM, within a time limit.

    Args:
        llm: Any ``livekit.agents.llm.LLM``; None always uses :func:`fallback_summary`.
        timeout: Seconds the LLM gets; the save must still fit in LiveKit's shutdown window.
        redact: Applied to what the summary says: the LLM may have copied a card number or
            an e-mail into it.
    """

    def __init__(
        self, llm: llm.LLM[Any] | None, *, timeout: float, redact: Redactor | None = None
    ) -> None:
        self._llm = llm
        self._timeout = timeout
        self._redact = redact

    def using(self, other: llm.LLM[Any] | None) -> Summarizer:
        """This summarizer with another LLM (None keeps this one's)."""
        if other is None or other is self._llm:
            return self
        return Summarizer(other, timeout=self._timeout, redact=self._redact)

    @property
    def llm(self) -> llm.LLM[Any] | None:
        """The LLM used, if any."""
        return self._llm

    async def summarize(
        self, turns: Sequence[Turn], *, profile: CallerProfile | None = None
    ) -> CallSummary:
        """Summarize one call. Never raises: failures give the fallback summary."""
        return self._redacted(await self._summarize(turns, profile))

    def _redacted(self, summary: CallSummary) -> CallSummary:
        r = self._redact
        if r is None or not r.enabled:
            return summary
        # Personal data is never a fact: an operation whose value held some is dropped, not
        # kept as a tag. Validated again, not copied: a tag can be longer than what it
        # replaced ("[number]" for "100"), and the limits must hold after redaction too.
        return CallSummary.model_validate(
            {
                **summary.model_dump(),
                "summary": r(summary.summary),
                "ops": [
                    op.model_copy(update={"evidence": r(op.evidence)}).model_dump()
                    for op in summary.ops
                    if r(op.value) == op.value and r(op.label) == op.label
                ],
            }
        )

    async def _summarize(self, turns: Sequence[Turn], profile: CallerProfile | None) -> CallSummary:
        if self._llm is None or not any(t.role == "user" for t in turns):
            return fallback_summary(turns, profile)
        started = time.perf_counter()
        try:
            summary = await asyncio.wait_for(self._ask(turns, profile), self._timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "call summary timed out, storing the fallback summary",
                extra={"timeout_s": self._timeout},
            )
        except (ValueError, ValidationError) as e:
            logger.warning(
                "call summary unusable, storing the fallback summary",
                extra={"error": type(e).__name__},
            )
        except Exception as e:  # any LLM provider error: the call must still be saved
            logger.warning(
                "call summary failed, storing the fallback summary",
                extra={"error": type(e).__name__},
            )
        else:
            duration_ms = round((time.perf_counter() - started) * 1000)
            logger.debug("call summarized", extra={"duration_ms": duration_ms})
            return summary
        return fallback_summary(turns, profile)

    async def _ask(self, turns: Sequence[Turn], profile: CallerProfile | None) -> CallSummary:
        assert self._llm is not None
        from livekit.agents import APIConnectOptions, llm

        chat_ctx = llm.ChatContext.empty()
        chat_ctx.add_message(role="system", content=prompts.SUMMARY_INSTRUCTIONS)
        chat_ctx.add_message(role="user", content=prompts.summary_request(turns, profile))
        # No retries: a second attempt would not fit in the shutdown window anyway.
        options = APIConnectOptions(max_retry=0, timeout=self._timeout)
        response = await self._llm.chat(chat_ctx=chat_ctx, conn_options=options).collect()
        ops, summary = _parse(response.text)
        return checked_summary(ops, summary, turns, profile)


def checked_summary(
    ops: Sequence[FactOp], summary: str, turns: Sequence[Turn], profile: CallerProfile | None
) -> CallSummary:
    """A model's answer as it may be stored: what passes :func:`.memory.check_answer`, or the
    fallback when no operation does."""
    checked = check_answer(ops, summary, turns, profile)
    if checked.dropped:
        record_dropped(checked.dropped)
        logger.debug(
            "model output dropped by the evidence checks",
            extra={"dropped": dict(checked.dropped), "kept_ops": len(checked.ops)},
        )
    # What the caller took back later in the call is no fact of it, whatever the model made
    # of it (the fallback keeps none of it either).
    kept = [op for op in checked.ops if op.op == "withdraw" or not retracted(op.evidence, turns)]
    if not kept:
        # Nothing the model said about the caller holds: its summary alone would remember
        # less than the caller's own lines (and small models summarize what the agent said).
        return fallback_summary(turns, profile)
    # What the caller said plainly is never missed: their name, and a withdrawal (of a fact,
    # or of words the merge cuts from earlier summaries).
    if not any(op.label == NAME_LABEL for op in kept):
        name = name_op(turns, profile)
        kept = [*kept, name] if name else kept
    # A withdrawal that names no fact goes first: it is about what earlier calls hold, never
    # about a fact this call adds (a sentence can withdraw and state at once).
    code = [op for op in withdrawal_ops(turns, profile) if not _withdrawn(op, kept)]
    kept = [op for op in code if not op.id] + kept + [op for op in code if op.id]
    # Memory keeps what holds: the summary's sentences about what the caller withdrew go. And
    # what the model did not make a fact of stays in the caller's own words, first: memory
    # with an LLM never holds less than without one.
    said = "" if _degenerate(checked.summary) else scrub(checked.summary, withdrawn_in(turns))
    rest = [line for line in salient_lines(turns) if not _covered(line, kept)]
    lines = SAID + " / ".join(rest) if rest else ""
    summary = " ".join(part for part in (lines, said) if part)[:MAX_SUMMARY]
    return CallSummary(summary=summary or fallback_summary(turns).summary, ops=kept)


def _covered(line: str, ops: Sequence[FactOp]) -> bool:
    # Every sentence of the line holds the evidence of a fact kept whose label and value say
    # what the sentence says: one word of a long sentence ("Mochi's" for "my cat Mochi's on
    # the prescription kidney food") would lose the rest, so the caller's line stays.
    return all(
        any(
            op.evidence
            and text.contains(sentence, op.evidence)
            and _says(f"{op.label} {op.value}", sentence)
            for op in ops
        )
        for sentence in text.sentences(line)
    )


def _says(fact: str, sentence: str) -> bool:
    # A third of the sentence's content words, at least, are in the fact (any form of them).
    said = text.stems(sentence) - {w[:5] for w in text.STOPWORDS | text.FILLER}
    written = text.normalize(fact)  # "callback" holds "call" and "back"
    return not said or 3 * sum(stem in written for stem in said) >= len(said)


def _degenerate(summary: str) -> bool:
    # A small model's loop ("no white, no black, no white, no black, ..."): few distinct words.
    words = text.words(summary)
    return len(words) > 20 and 4 * len(set(words)) < len(words)


def _withdrawn(found: FactOp, ops: Sequence[FactOp]) -> bool:
    return any(
        op.op == "withdraw"
        and ((found.id and op.id == found.id) or text.contains(found.evidence, op.evidence))
        for op in ops
    )
