"""End-of-call summaries: the agent's own LLM turns a transcript into a :class:`CallSummary`.

Any ``livekit.agents.llm.LLM`` works: the summarizer asks for a JSON object in plain words and
validates what comes back, keeping no name and no preference that the call did not contain
(small models invent them). When there is no LLM, or it fails, times out or answers with
something unusable, a deterministic summary of the transcript is returned instead, marked
``source="fallback"``: a call is never dropped for want of a summary.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from typing import Any

from livekit.agents import APIConnectOptions, llm
from pydantic import ValidationError

from . import prompts
from .log import logger
from .models import MAX_SUMMARY, CallerProfile, CallSummary, Turn
from .redaction import Redactor

__all__ = ["Summarizer", "fallback_summary"]

MAX_ANSWER_CHARS = 20_000
"""An answer longer than this is not a summary of the requested shape."""
_NAME = re.compile(r"\b(?i:my name is|my name's|this is)\s+([A-Z][\w'-]{1,30})")
_WORD = re.compile(r"[^\W\d_]+")
_DIGITS = re.compile(r"\d+")
_STEM = 5


def fallback_summary(turns: Sequence[Turn]) -> CallSummary:
    """A summary built from the transcript alone, for when no LLM summary can be had.

    It keeps what the caller said, and the name they gave when they said it plainly
    ("my name is Ana", "this is Ana").
    """
    said = [t.text.strip() for t in turns if t.role == "user" and t.text.strip()]
    if not said:
        return CallSummary(summary="Call with no words from the caller.", source="fallback")
    text = "Caller said: " + " / ".join(said)
    if len(text) > MAX_SUMMARY:
        text = text[: MAX_SUMMARY - 1] + "…"
    name = next((m.group(1) for line in said if (m := _NAME.search(line))), None)
    return CallSummary(summary=text, caller_name=name, source="fallback")


def _parse(text: str) -> CallSummary:
    # Models wrap JSON in code fences or add a sentence around it: take the outermost object
    # (found in linear time: the answer can be anything, and this runs on the event loop).
    text = text[:MAX_ANSWER_CHARS]
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the LLM answer")
    data = json.loads(text[start : end + 1])
    if not isinstance(data, dict):
        raise ValueError("the LLM answer is not a JSON object")
    data.pop("source", None)
    return CallSummary.model_validate({**data, "source": "llm"})


def _stems(text: str) -> set[str]:
    # A word's first letters: "mornings" and "morning" are one word here, "Spanish" and
    # "español" are not (the price: a preference worded in another language than the call).
    return {w.casefold()[:_STEM] for w in _WORD.findall(text) if len(w) >= 3}


def _grounded(
    summary: CallSummary, turns: Sequence[Turn], profile: CallerProfile | None
) -> CallSummary:
    # Small models invent what a form asks for: a name nobody gave, a phone number, a date of
    # birth, the prompt's own example preference. A name none of whose words the caller said
    # (nor already known) is dropped, and so is a preference with a number nobody said or
    # with words of which none was said in the call (by either side: "Would mornings suit
    # you?" "Yes." is a preference). An empty value, a withdrawal, is always kept.
    known = profile.name if profile is not None else None
    name = summary.caller_name
    if name and name.casefold() != (known or "").casefold():
        said = " ".join(t.text for t in turns if t.role == "user")
        words = {w.casefold() for w in _WORD.findall(said)}
        if not any(w.casefold() in words for w in _WORD.findall(name)):
            name = None
    heard = " ".join(t.text for t in turns)
    if profile is not None:
        heard += " " + " ".join(profile.preferences.values())
    digits, stems = set(_DIGITS.findall(heard)), _stems(heard)

    def grounded(value: str) -> bool:
        if not value.strip():
            return True
        words = _stems(value)
        return set(_DIGITS.findall(value)) <= digits and (not words or bool(words & stems))

    preferences = {k: v for k, v in summary.preferences.items() if grounded(v)}
    if name == summary.caller_name and preferences == summary.preferences:
        return summary
    return summary.model_copy(update={"caller_name": name, "preferences": preferences})


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
        # Personal data is never a preference: one that held some is dropped, not kept as a tag.
        # Validated again, not copied: a tag can be longer than what it replaced ("[number]"
        # for "100"), and the limits must hold after redaction too.
        return CallSummary.model_validate(
            {
                **summary.model_dump(),
                "summary": r(summary.summary),
                "preferences": {k: v for k, v in summary.preferences.items() if r(v) == v},
                "follow_ups": [r(item) for item in summary.follow_ups],
            }
        )

    async def _summarize(self, turns: Sequence[Turn], profile: CallerProfile | None) -> CallSummary:
        if not any(t.role == "user" for t in turns):
            return fallback_summary(turns)
        if self._llm is None:
            return fallback_summary(turns)
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
        return fallback_summary(turns)

    async def _ask(self, turns: Sequence[Turn], profile: CallerProfile | None) -> CallSummary:
        assert self._llm is not None
        chat_ctx = llm.ChatContext.empty()
        chat_ctx.add_message(role="system", content=prompts.SUMMARY_INSTRUCTIONS)
        chat_ctx.add_message(role="user", content=prompts.summary_request(turns, profile))
        # No retries: a second attempt would not fit in the shutdown window anyway.
        options = APIConnectOptions(max_retry=0, timeout=self._timeout)
        response = await self._llm.chat(chat_ctx=chat_ctx, conn_options=options).collect()
        return _grounded(_parse(response.text), turns, profile)
