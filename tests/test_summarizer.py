"""End-of-call summaries with any LiveKit LLM, and the fallback when there is none."""

from __future__ import annotations

from livekit.agents import APIConnectionError

from livekit.plugins.caller_memory.models import MAX_SUMMARY, Turn
from livekit.plugins.caller_memory.prompts import render_transcript
from livekit.plugins.caller_memory.redaction import Redactor
from livekit.plugins.caller_memory.summarizer import Summarizer

from .support.livekit import ScriptedLLM, texts

TURNS = [
    Turn(role="assistant", text="Hello, Sarah speaking."),
    Turn(role="user", text="Hi, my name is Maria, I'd like to move my appointment to Friday."),
    Turn(role="assistant", text="Done, Friday at 3."),
]


async def test_llm_answer_in_a_code_fence_is_validated() -> None:
    fake = ScriptedLLM(
        summary='Sure!\n```json\n{"summary": "Moved the appointment to Friday.", '
        '"caller_name": "Maria", "preferences": {"Day": "Friday"}, "follow_ups": []}\n```'
    )
    summary = await Summarizer(fake, timeout=5).summarize(TURNS)
    assert summary.source == "llm"
    assert summary.caller_name == "Maria"
    assert summary.preferences == {"day": "Friday"}
    request = texts(fake.summary_requests[0])
    assert "Caller: Hi, my name is Maria" in request[-1][1]


async def test_no_llm_gives_the_fallback_with_the_callers_words() -> None:
    summary = await Summarizer(None, timeout=5).summarize(TURNS)
    assert summary.source == "fallback"
    assert "move my appointment to Friday" in summary.summary
    assert summary.caller_name == "Maria"


async def test_unusable_failing_or_slow_llm_gives_the_fallback() -> None:
    for fake, timeout in [
        (ScriptedLLM(summary="I could not do that."), 5.0),
        (ScriptedLLM(summary='{"summary": 42, "follow_ups": "not a list"}'), 5.0),
        (ScriptedLLM(summary=APIConnectionError("down")), 5.0),
        (ScriptedLLM(summary=RuntimeError("bug in a plugin")), 5.0),
        (ScriptedLLM(summary={"summary": "Too late."}, summary_delay=3.0), 0.2),
    ]:
        summary = await Summarizer(fake, timeout=timeout).summarize(TURNS)
        assert summary.source == "fallback", fake


async def test_a_huge_transcript_is_cut_in_the_middle() -> None:
    turns = [Turn(role="user", text=f"line {i} " + "x" * 200) for i in range(2000)]
    text = render_transcript(turns)
    assert len(text) < 25_000
    assert text.startswith("Caller: line 0 ") and "line 1999" in text
    assert "characters left out" in text
    summary = await Summarizer(None, timeout=1).summarize(turns)
    assert summary.source == "fallback" and len(summary.summary) <= 600


async def test_only_what_the_call_contained_becomes_a_fact() -> None:
    turns = [
        Turn(role="user", text="Hi, this is Ana. Can you call me back at 5?"),
        Turn(role="assistant", text="Sure. Would mornings suit you for the cleaning?"),
        Turn(role="user", text="Yes."),
    ]
    invented = {
        "summary": "Ana asked for a call back.",
        "caller_name": "Jonathan Whitaker",  # nobody said it
        "preferences": {
            "contact_time": "morning",  # Sarah offered mornings, the caller said yes
            "callback": "at 5",  # said
            "language": "Spanish",  # the prompt's own example, never said
            "date_of_birth": "1984-03-02",  # numbers nobody said
            "pharmacy": "",  # a withdrawal is kept
        },
        "follow_ups": [],
    }
    summary = await Summarizer(ScriptedLLM(summary=invented), timeout=5).summarize(turns)
    assert summary.source == "llm"
    assert summary.caller_name is None
    assert summary.preferences == {"contact_time": "morning", "callback": "at 5", "pharmacy": ""}


async def test_a_summary_stays_within_its_limit_after_redaction() -> None:
    # "[number]" is longer than the "100" it replaces: a summary clipped to its limit and then
    # redacted grew past it, failed validation at the save and sat in the outbox for good.
    turns = [Turn(role="user", text=f"#{i}: ") for i in range(100, 500)]
    for llm in (None, ScriptedLLM(summary={"summary": " ".join(f"#{i}" for i in range(100, 300))})):
        summary = await Summarizer(llm, timeout=5, redact=Redactor()).summarize(turns)
        assert "[number]" in summary.summary
        assert len(summary.summary) <= MAX_SUMMARY
