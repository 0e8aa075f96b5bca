"""End-of-call summaries with any LiveKit LLM, and the fallback when there is none."""

from __future__ import annotations

from livekit.agents import APIConnectionError

from livekit.plugins.caller_memory.models import MAX_SUMMARY, Turn
from livekit.plugins.caller_memory.prompts import render_transcript
from livekit.plugins.caller_memory.redaction import Redactor
from livekit.plugins.caller_memory.summarizer import Summarizer

from .support.facts import answer, fact_op, op
from .support.livekit import ScriptedLLM, texts

TURNS = [
    Turn(role="assistant", text="Hello, Sarah speaking."),
    Turn(role="user", text="Hi, my name is Maria, I'd like to move my appointment to Friday."),
    Turn(role="assistant", text="Done, Friday at 3."),
]


async def test_llm_answer_in_a_code_fence_is_validated() -> None:
    fake = ScriptedLLM(
        summary='Sure!\n```json\n{"ops": ['
        '{"op": "add", "id": 0, "label": "name", "value": "Maria", "evidence": "my name is Maria"},'
        ' {"op": "add", "id": "#0", "label": " Appointment  Day", "value": "Friday",'
        ' "evidence": "move my appointment to Friday"}],'
        ' "summary": "Moved the appointment to Friday."}\n```'
    )
    summary = await Summarizer(fake, timeout=5).summarize(TURNS)
    assert summary.source == "llm"
    assert summary.caller_name == "Maria"
    assert summary.ops == [
        fact_op("add", "name", "Maria", "my name is Maria"),
        fact_op("add", "appointment day", "Friday", "move my appointment to Friday"),
    ]
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
        (ScriptedLLM(summary='{"summary": 42, "ops": "not a list"}'), 5.0),
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


async def test_only_what_the_caller_said_becomes_a_fact() -> None:
    turns = [
        Turn(role="user", text="Hi, this is Ana. Can you call me back at 5?"),
        Turn(role="assistant", text="Sure. Would mornings suit you for the cleaning?"),
        Turn(role="user", text="Yes. Oh, and cancel the pharmacy delivery."),
    ]
    invented = answer(
        "Ana asked for a call back.",
        op("add", "name", "Jonathan Whitaker", "this is Ana"),  # not the name she gave
        op("add", "contact time", "morning", "Would mornings suit you"),  # Sarah's words
        op("add", "contact time", "morning", "Yes"),  # a bare yes says nothing
        op("add", "callback", "at 5", "call me back at 5"),  # said
        op("add", "language", "Spanish", "I speak Spanish"),  # the prompt's kind, never said
        op("add", "date of birth", "1984-03-02", "call me back at 5"),  # numbers nobody said
        op("withdraw", "cleaning", "", "Yes"),  # a yes withdraws nothing
        op("withdraw", "pharmacy", "", "cancel the pharmacy delivery"),  # the caller withdrew
        op("add", "name", "Ana", "this is Ana"),
    )
    summary = await Summarizer(ScriptedLLM(summary=invented), timeout=5).summarize(turns)
    assert summary.source == "llm"
    assert summary.summary == "Ana asked for a call back."
    assert summary.caller_name == "Ana"
    assert summary.ops == [
        fact_op("add", "callback", "at 5", "call me back at 5"),
        fact_op("withdraw", "pharmacy", "", "cancel the pharmacy delivery"),
        fact_op("add", "name", "Ana", "this is Ana"),
    ]


async def test_a_summary_stays_within_its_limit_after_redaction() -> None:
    # "[number]" is longer than the "100" it replaces: a summary clipped to its limit and then
    # redacted grew past it, failed validation at the save and sat in the outbox for good.
    turns = [Turn(role="user", text=f"#{i}: ") for i in range(100, 500)]
    for llm in (None, ScriptedLLM(summary={"summary": " ".join(f"#{i}" for i in range(100, 300))})):
        summary = await Summarizer(llm, timeout=5, redact=Redactor()).summarize(turns)
        assert "[number]" in summary.summary
        assert len(summary.summary) <= MAX_SUMMARY
