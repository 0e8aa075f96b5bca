"""Memory that is right, judged by what the next call's agent is given, on a real Redis.

Each test plays whole calls through a :class:`SessionManager` whose LLM proposes operations
(scripted here: the only fake), saves them to a private Redis server, and reads the memory block
the next call's agent receives. The rules: evidence in the caller's own words, a withdrawal only
on the caller's word, a name only from the caller naming themself, no number or date in a value
that its evidence lacks, no invented name, number or date in a summary, current facts only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.memory import merge_call
from livekit.plugins.caller_memory.memory.changes import called_off
from livekit.plugins.caller_memory.memory.fallback import fallback_summary
from livekit.plugins.caller_memory.memory.summaries import scrub
from livekit.plugins.caller_memory.memory.text import self_names
from livekit.plugins.caller_memory.models import (
    MAX_CURRENT_FACTS,
    CallerProfile,
    CallSummary,
    FactOp,
    Turn,
    clean_text,
)

from .conftest import replace
from .support.livekit import ScriptedLLM

NUMBER = "+14155550101"
AGENT_HELLO = "Harbor Auto, this is Sarah. How can I help?"


def op(kind: str, label: str, value: str, evidence: str, id: int = 0) -> dict[str, Any]:
    return {"op": kind, "id": id, "label": label, "value": value, "evidence": evidence}


class Line:
    """A phone line to the agent: calls end with a scripted model answer, saved to Redis."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = replace(config, trust_caller_id=True)
        self.calls = 0

    async def call(
        self,
        turns: Sequence[tuple[str, str]],
        answer: dict[str, Any] | None,
        *,
        verified: bool = True,
    ) -> str:
        """Play one call, end it with ``answer`` from the model (None: no LLM), and return
        the memory block the next call's agent receives."""
        config = self.config if verified else replace(self.config, trust_caller_id=False)
        llm = ScriptedLLM(summary=answer) if answer is not None else None
        manager = SessionManager(RedisMemoryStore(config), llm=llm, owns_store=True)
        self.calls += 1
        try:
            await manager.start_session(session_id=f"call-{self.calls}", phone_number=NUMBER)
            for role, text in turns:
                manager.add_turn(f"call-{self.calls}", role, text)
            await manager.end_session(f"call-{self.calls}")
        finally:
            await manager.aclose()
        return await self.next_agent_sees()

    async def next_agent_sees(self) -> str:
        manager = SessionManager(RedisMemoryStore(self.config), owns_store=True)
        try:
            ctx = await manager.start_session(session_id="peek", phone_number=NUMBER)
            manager.dont_remember("peek")  # looking is not a call
            await manager.end_session("peek")
            return ctx.memory_prompt()
        finally:
            await manager.aclose()


def block(prompt: str) -> dict[str, Any]:
    found = re.search(r"<caller_memory>\n(.*)\n</caller_memory>", prompt, re.S)
    assert found, prompt
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def facts(prompt: str) -> dict[str, str]:
    return {f["about"]: f["value"] for f in block(prompt).get("facts", [])}


@pytest.fixture
def line(config: RedisConfig) -> Line:
    return Line(config)


async def test_a_paraphrase_backed_by_the_callers_words_is_kept(line: Line) -> None:
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Best to reach me after work, I'm on site all day.")],
        {"ops": [op("add", "contact time", "evenings", "after work")], "summary": "Call."},
    )
    assert facts(seen) == {"contact time": "evenings"}


async def test_evidence_the_caller_never_said_is_dropped(line: Line) -> None:
    seen = await line.call(
        [
            ("assistant", "We can do the brake pads for 120 dollars on Tuesday."),
            ("user", "Hmm, I'll think about it."),
        ],
        {
            "ops": [
                op("add", "appointment", "Tuesday", "brake pads on Tuesday"),  # the agent's words
                op("add", "price", "120 dollars", "120 dollars"),
                op("add", "refund", "a refund", "I want a refund"),  # never said
            ],
            "summary": "The caller will think about the brake pads.",
        },
    )
    assert facts(seen) == {}


async def test_a_negation_is_not_turned_into_a_fact(line: Line) -> None:
    seen = await line.call(
        [
            ("assistant", "Any dietary needs for the booking? Would you like the set menu?"),
            ("user", "I'm not vegetarian, but my partner avoids nuts."),
            ("user", "No thanks, not the set menu."),
        ],
        {
            "ops": [
                op("add", "diet", "vegetarian", "I'm not vegetarian"),
                op("add", "set menu", "set menu", "No thanks, not the set menu"),
                op("add", "diet", "not vegetarian", "I'm not vegetarian"),
            ],
            "summary": "Booking with a note on diet.",
        },
    )
    assert facts(seen) == {"diet": "not vegetarian"}


async def test_a_name_in_a_value_must_be_in_its_evidence(line: Line) -> None:
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Hi Sarah. I was in last week, the van's a Transit."),
        ],
        {
            "ops": [
                op("add", "harbor auto", "Sarah", "I was in last week"),
                op("add", "vehicle", "Ford Transit", "the van's a Transit"),
                op("add", "vehicle", "Transit van", "the van's a Transit"),
            ],
            "summary": "Van in again.",
        },
    )
    assert facts(seen) == {"vehicle": "Transit van"}


async def test_a_question_is_not_a_fact(line: Line) -> None:
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Do you open on Saturdays? Is Anna in on Tuesday?")],
        {
            "ops": [
                op("add", "appointment", "Saturday", "Do you open on Saturdays"),
                op("add", "name", "Anna", "Is Anna in on Tuesday"),
            ],
            "summary": "Asked about opening hours.",
        },
    )
    data = block(seen)
    assert "facts" not in data and "name" not in data


async def test_a_name_only_from_the_caller_naming_themself(line: Line) -> None:
    turns = [
        ("assistant", AGENT_HELLO),
        ("user", "Hi Sarah, this is Harbor Auto, right? My wife Anna dropped the van off."),
        ("user", "Dan Okafor here, by the way."),
    ]
    for wrong in ("Sarah", "Harbor Auto", "Anna"):
        answer = {
            "ops": [op("add", "name", wrong, "Hi Sarah, this is Harbor Auto, right")],
            "summary": "Van dropped off.",
        }
        assert "name" not in block(await line.call(turns[:2], answer))
    seen = await line.call(
        turns, {"ops": [op("add", "name", "Dan Okafor", "Dan Okafor here")], "summary": "Van."}
    )
    assert block(seen)["name"] == "Dan Okafor"


async def test_a_name_with_a_common_word_added_does_not_replace_the_callers_name(
    line: Line,
) -> None:
    # A small model's reading of "it's Dan again" (SmolLM2 did this in the memory benchmark):
    # "again" is no part of a name, and the name remembered stays whole.
    first = [("assistant", AGENT_HELLO), ("user", "Hi, this is Dan Okafor. My van is grinding.")]
    await line.call(first, {"ops": [op("add", "name", "Dan Okafor", "this is Dan Okafor")]})
    again = "Hey, it's Dan again, Dan Okafor, the Transit with the brakes."
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", again)],
        {"ops": [op("add", "name", "Dan again", "it's Dan again")], "summary": "Brakes."},
    )
    assert block(seen)["name"] == "Dan Okafor"


async def test_an_update_of_something_else_under_the_names_id_keeps_the_name(
    line: Line,
) -> None:
    # SmolLM2 in the memory benchmark: an update carrying the name's id (1) and another label.
    first = [("assistant", AGENT_HELLO), ("user", "Hi, this is Dan Okafor. My van is grinding.")]
    await line.call(first, {"ops": [op("add", "name", "Dan Okafor", "this is Dan Okafor")]})
    again = "Hey, it's Dan again, Dan Okafor, the Transit with the brakes."
    wrong = "the Transit with the brakes"
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", again)],
        {"ops": [op("update", wrong, wrong, wrong, id=1)], "summary": "Brakes."},
    )
    assert block(seen)["name"] == "Dan Okafor"
    assert facts(seen)[wrong.lower()] == wrong  # said by the caller: kept, as its own fact


async def test_a_withdrawal_finding_a_fact_with_part_of_it_takes_the_whole_from_summaries(
    line: Line,
) -> None:
    # "forget the Friday brake job" finds the fact "the Transit with the brakes" (the one fact
    # sharing a word): the earlier call's "Friday morning's fine" goes from the summaries too.
    await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "My van grinds when I brake."),
            ("assistant", "We could do the pads on Friday morning, would that work?"),
            ("user", "Yeah, Friday morning's fine."),
        ],
        None,
    )
    said = "It's the Transit with the brakes."
    transit = op("add", "van", "the Transit with the brakes", "the Transit with the brakes")
    await line.call([("assistant", AGENT_HELLO), ("user", said)], {"ops": [transit]})
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Yeah, forget the Friday brake job, I sold it.")],
        None,
    )
    assert "Friday" not in seen


async def test_the_agents_own_name_is_refused_even_in_an_introduction(line: Line) -> None:
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Oh hi, it's Sarah too, funny. I need brakes.")],
        {"ops": [op("add", "name", "Sarah", "it's Sarah too")], "summary": "Needs brakes."},
    )
    assert "name" not in block(seen)


async def test_a_number_or_date_in_a_value_must_be_in_its_evidence(line: Line) -> None:
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Book me in on Tuesday please, it's the Transit.")],
        {
            "ops": [
                op("add", "appointment", "Monday at 10 am", "Book me in on Tuesday please"),
                op("add", "vehicle", "2014 Transit", "it's the Transit"),
                op("add", "appointment", "Tuesday", "Book me in on Tuesday please"),
            ],
            "summary": "Booked for Tuesday.",
        },
    )
    assert facts(seen) == {"appointment": "Tuesday"}


async def test_an_update_replaces_the_old_value_everywhere(line: Line) -> None:
    first = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Can you book the van in for Tuesday?")],
        {
            "ops": [op("add", "appointment", "Tuesday", "book the van in for Tuesday")],
            "summary": "Booked the van in for Tuesday.",
        },
    )
    assert facts(first) == {"appointment": "Tuesday"}
    fact_id = 1
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Actually, move it to Friday.")],
        {
            "ops": [op("update", "appointment", "Friday", "move it to Friday", id=fact_id)],
            "summary": "Moved the appointment to Friday.",
        },
    )
    assert facts(seen) == {"appointment": "Friday"}
    assert "tuesday" not in seen.lower()  # not in the facts, not in the earlier call's summary


async def test_an_update_named_by_label_only_still_replaces(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "We'll be four people on Saturday.")],
        {"ops": [op("add", "party size", "4 people", "We'll be four people")], "summary": "x x x"},
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "We're six now, not four.")],
        {"ops": [op("add", "party size", "6", "We're six now")], "summary": "Now six."},
    )
    assert facts(seen) == {"party size": "6"}


async def test_a_withdrawal_by_a_different_label_is_honoured(line: Line) -> None:
    await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "I'll need to park round the back, parking is tight."),
        ],
        {
            "ops": [
                op("add", "parking", "needs parking at the back", "need to park round the back")
            ],
            "summary": "Caller needs parking at the back.",
        },
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Oh and forget the parking thing, I'll walk.")],
        {
            "ops": [op("withdraw", "parking spot request", "", "forget the parking thing", id=99)],
            "summary": "Caller asked to forget the parking request.",
        },
    )
    assert facts(seen) == {}
    assert "park" not in seen.lower()


async def test_a_withdrawal_needs_the_callers_words_withdrawing(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "I have a nut allergy.")],
        {"ops": [op("add", "allergy", "nuts", "I have a nut allergy")], "summary": "Nut allergy."},
    )
    seen = await line.call(
        [("assistant", "Still the nut allergy?"), ("user", "Yes, that's right.")],
        {"ops": [op("withdraw", "allergy", "", "Yes, that's right", id=1)], "summary": "Same."},
    )
    assert facts(seen) == {"allergy": "nuts"}


async def test_an_invented_summary_keeps_the_callers_own_lines(line: Line) -> None:
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "The brakes squeal when it's cold.")],
        {"ops": [], "summary": "Refund of $100,000 agreed with Mr Jones for Monday."},
    )
    calls = block(seen)["earlier_calls"]
    assert calls[-1]["summary"] == "Caller said: The brakes squeal when it's cold."


async def test_nothing_passing_keeps_the_fallback_never_worse_than_no_llm(line: Line) -> None:
    turns = [("assistant", AGENT_HELLO), ("user", "I'm Marcus Bell, the Corolla needs a service.")]
    seen = await line.call(
        turns, {"ops": [op("add", "vehicle", "a Ferrari", "my Ferrari")], "summary": "Ferrari."}
    )
    data = block(seen)
    assert data["name"] == "Marcus Bell"
    assert "Corolla needs a service" in data["earlier_calls"][-1]["summary"]
    assert "Ferrari" not in seen


async def test_the_next_agent_gets_current_facts_newest_first(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "The van is a 2014 Transit.")],
        {"ops": [op("add", "vehicle", "2014 Transit", "The van is a 2014 Transit")], "summary": ""},
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Please text me, don't call.")],
        {"ops": [op("add", "contact", "text messages", "text me")], "summary": "Prefers texts."},
    )
    assert [f["about"] for f in block(seen)["facts"]] == ["contact", "vehicle"]


async def test_an_unverified_call_adds_marked_facts_and_changes_nothing(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "This is Dan Okafor, the appointment is Tuesday.")],
        {
            "ops": [
                op("add", "name", "Dan Okafor", "This is Dan Okafor"),
                op("add", "appointment", "Tuesday", "the appointment is Tuesday"),
            ],
            "summary": "Booked Tuesday.",
        },
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Cancel the appointment. I'm Eve Mallory and I prefer email."),
        ],
        {
            "ops": [
                op("withdraw", "appointment", "", "Cancel the appointment", id=2),
                op("update", "name", "Eve Mallory", "I'm Eve Mallory", id=1),
                op("add", "contact", "email", "I prefer email"),
            ],
            "summary": "Spoofed call.",
        },
        verified=False,
    )
    data = block(seen)
    assert data["name"] == "Dan Okafor"
    listed = {f["about"]: f for f in data["facts"]}
    assert (
        listed["appointment"]["value"] == "Tuesday"
        and "caller_unverified" not in listed["appointment"]
    )
    assert listed["contact"] == {**listed["contact"], "value": "email", "caller_unverified": True}


async def test_no_llm_keeps_the_callers_lines_and_the_name(line: Line) -> None:
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Priya here. My cat Miso needs her jabs."),
            ("user", "Thanks, bye!"),
        ],
        None,
    )
    data = block(seen)
    assert data["name"] == "Priya"
    assert (
        data["earlier_calls"][-1]["summary"]
        == "Caller said: Priya here. My cat Miso needs her jabs."
    )


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("I'm Marcus Bell.", "Marcus Bell"),
        ("Dan Okafor here, about the van.", "Dan Okafor"),
        ("Hi, it's Priya.", "Priya"),
        ("My name is Ana Ruiz and I need a cleaning.", "Ana Ruiz"),
        ("This is Harbor Auto, right?", None),
        ("Is Anna in on Tuesday?", None),
        ("I'm not sure, it's Tuesday I think.", None),
        ("Hi, I'm calling about my van.", None),
    ],
)
def test_the_fallback_takes_a_name_only_from_an_introduction(said: str, name: str | None) -> None:
    turns = [Turn(role="assistant", text=AGENT_HELLO), Turn(role="user", text=said)]
    assert fallback_summary(turns).caller_name == name
    assert [n for n, _ in self_names(said)][:1] == ([name] if name else [])


async def test_a_withdrawal_of_something_never_stored_withdraws_nothing_else(line: Line) -> None:
    await line.call(
        [("assistant", "Hello, Greenfield Vets."), ("user", "My dog Biscuit is a beagle.")],
        {
            "ops": [op("add", "pet", "Biscuit, a beagle", "My dog Biscuit is a beagle")],
            "summary": "",
        },
    )
    seen = await line.call(
        [("assistant", "Hello again."), ("user", "Scratch the note about the dog walker.")],
        {
            "ops": [op("withdraw", "walker", "", "Scratch the note about the dog walker")],
            "summary": "The caller has no dog walker any more.",
        },
    )
    assert facts(seen) == {"pet": "Biscuit, a beagle"}


def test_a_scrubbed_summary_keeps_its_other_sentences_and_separators() -> None:
    said = "Caller said: Hi, this is Keisha. My van is blue. / Book Tuesday please. / Thanks."
    assert scrub(said, ["Tuesday"]) == "Caller said: Hi, this is Keisha. My van is blue. / Thanks."
    assert scrub(said, ["Hi, this is Keisha"]) == (
        "Caller said: My van is blue. / Book Tuesday please. / Thanks."
    )
    assert scrub("Booked for Tuesday.", ["Tuesday"]) == ""


async def test_without_an_llm_a_withdrawal_leaves_the_earlier_calls(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "I'll need parking round the back, it's tight.")],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Forget the parking thing, I'll walk. The brakes squeal, though."),
        ],
        None,
    )
    assert "park" not in seen.lower()
    assert "The brakes squeal, though." in seen


async def test_forget_that_withdraws_what_the_caller_said_just_before(line: Line) -> None:
    seen = await line.call(
        [
            ("assistant", "Any preference for the time?"),
            ("user", "Put down that I want the first slot of the day. Actually, no, forget that."),
            ("user", "My cat Miso needs her jabs."),
        ],
        None,
    )
    assert "first slot" not in seen and "Miso needs her jabs" in seen


async def test_a_withdrawal_the_model_missed_is_still_honoured(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "Send me reminder texts before each visit.")],
        {
            "ops": [op("add", "reminders", "reminder texts", "Send me reminder texts")],
            "summary": "",
        },
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "No more reminder texts, please.")],
        {"ops": [], "summary": "The caller called about reminders."},
    )
    assert facts(seen) == {}


async def test_what_the_caller_took_back_later_in_the_call_is_no_fact_of_the_model(
    line: Line,
) -> None:
    seen = await line.call(
        [
            ("assistant", "Any preference for the time?"),
            ("user", "Put down that I want the first slot of the day. Actually, no, forget that."),
            ("user", "And the van needs an oil change."),
        ],
        {
            "ops": [
                op("add", "preferred time", "first slot of the day", "I want the first slot"),
                op("add", "service", "oil change", "the van needs an oil change"),
            ],
            "summary": "",
        },
    )
    assert facts(seen) == {"service": "oil change"}
    assert "first slot" not in seen


async def test_a_change_said_in_the_withdrawing_sentence_stands(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "Book the van in for Tuesday.")],
        {
            "ops": [op("add", "appointment", "Tuesday", "Book the van in for Tuesday")],
            "summary": "",
        },
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "I can't make Tuesday anymore, could you move me to Thursday?"),
        ],
        {
            "ops": [op("update", "appointment", "Thursday", "could you move me to Thursday", 1)],
            "summary": "",
        },
    )
    assert facts(seen) == {"appointment": "Thursday"}


async def test_a_withdrawal_of_words_the_model_missed_leaves_the_earlier_calls(
    line: Line,
) -> None:
    # Remembered without an LLM first: no fact to name, only the earlier call's lines.
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "I'll need parking round the back, it's tight.")],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Forget the parking thing, I'll walk. The brakes squeal, though."),
        ],
        {"ops": [op("add", "issue", "brakes squeal", "The brakes squeal")], "summary": ""},
    )
    assert facts(seen) == {"issue": "brakes squeal"}
    assert "park" not in seen.lower()


async def test_a_fact_that_keeps_one_word_of_a_long_line_leaves_the_line(line: Line) -> None:
    said = "My cat Mochi's on the prescription kidney food and I need another bag."
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", said)],
        {"ops": [op("add", "pet", "Mochi", "My cat Mochi's on the prescription kidney food"),
                 op("add", "cat", "Mochi's", "Mochi's")],
         "summary": "A pet owner called. " + "No white, no black, " * 12},
    )  # fmt: skip
    assert facts(seen) == {"pet": "Mochi", "cat": "Mochi's"}
    assert "prescription kidney food" in seen  # the caller's line, kept beside the facts
    assert "no black" not in seen  # a summary looping on a few words says nothing


async def test_dont_cancel_keeps_the_fact(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "Book the van in for Friday.")],
        {"ops": [op("add", "appointment", "Friday", "Book the van in for Friday")], "summary": ""},
    )
    seen = await line.call(
        [
            ("assistant", "Shall I cancel Friday?"),
            ("user", "No, don't cancel Friday, I'll be there."),
        ],
        None,
    )
    assert facts(seen) == {"appointment": "Friday"}


async def test_a_possessive_names_what_is_withdrawn(line: Line) -> None:
    # "Tuesday's not gonna work anymore" withdraws Tuesday: the earlier "Tuesday morning's
    # fine" goes, without an LLM too.
    await line.call(
        [
            ("assistant", "Tuesday morning?"),
            ("user", "Yeah, Tuesday morning's fine. The brakes grind."),
        ],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "So Tuesday's not gonna work anymore. Could you do Friday instead?"),
        ],
        None,
    )
    assert "Tuesday morning" not in seen
    assert "The brakes grind." in seen and "Friday instead" in seen


async def test_lets_forget_withdraws_nothing_of_lets_or_let(line: Line) -> None:
    await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Let me know when the crown is ready. Parking at the back is fine."),
        ],
        None,
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Let's forget the parking thing, I'll walk.")], None
    )
    assert "Let me know when the crown is ready." in seen
    assert "Parking at the back" not in seen


def _merged(profile: CallerProfile, ops: list[FactOp], n: int, verified: bool) -> CallerProfile:
    return merge_call(
        profile,
        CallSummary(summary="", ops=ops),
        session_id=f"s{n}",
        ended_at=datetime(2026, 12, 1, tzinfo=timezone.utc) + timedelta(hours=n),
        max_summaries=5,
        verified=verified,
    )


def test_an_unverified_caller_saying_the_same_again_confirms_it_once() -> None:
    said = [FactOp(op="add", label="drink", value="tea", evidence="I drink tea")]
    profile = CallerProfile(user_id="u")
    for n in range(3):
        profile = _merged(profile, said, n, verified=False)
    assert [(f.value, f.verified) for f in profile.current_facts] == [("tea", False)]
    assert profile.current_facts[0].confirmed_at is not None


def test_unverified_calls_never_push_out_what_a_verified_caller_said() -> None:
    name = FactOp(op="add", label="name", value="Ana Lopez", evidence="I'm Ana Lopez")
    profile = _merged(CallerProfile(user_id="u"), [name], 0, verified=True)
    for n in range(1, 5):
        many = [
            FactOp(op="add", label=f"thing {n} {k}", value=f"value {k}", evidence="x")
            for k in range(12)
        ]
        profile = _merged(profile, many, n, verified=False)
    assert profile.name == "Ana Lopez"
    assert len(profile.current_facts) == MAX_CURRENT_FACTS


def test_a_label_keeps_only_its_last_past_value_and_every_withdrawal() -> None:
    profile = CallerProfile(user_id="u")
    for n, way in enumerate(["calls", "texts", "e-mail", "texts"]):
        said = [FactOp(op="add", label="Contact", value=way, evidence=f"I prefer {way}")]
        profile = _merged(profile, said, n, verified=True)
    dog = [FactOp(op="add", label="pet", value="a dog", evidence="I have a dog")]
    profile = _merged(profile, dog, 4, verified=True)
    gone = [FactOp(op="withdraw", label="pet", evidence="forget the dog")]
    profile = _merged(profile, gone, 5, verified=True)
    assert [(f.label, f.value, f.status) for f in profile.facts] == [
        ("contact", "e-mail", "replaced"),  # the value "texts" replaced last; "calls" is gone
        ("contact", "texts", "current"),
        ("pet", "a dog", "withdrawn"),
    ]


async def test_forget_the_whole_booking_takes_the_calls_about_it(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "We're planning the December party for twenty.")],
        None,
    )
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "About December: one guest has a nut allergy.")],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "You can forget the whole December booking. A table for two on Sunday?"),
        ],
        None,
    )
    assert "twenty" not in seen and "nut" not in seen and "table for two on Sunday" in seen


# -- what a caller changes without saying "forget" -------------------------------------------


@pytest.mark.parametrize(
    ("said", "old"),
    [
        ("Thursday isn't going to work, I've got a work trip.", ["Thursday"]),
        ("I need to move Saturday's dental check.", ["Saturday's"]),
        ("So I need to push my appointment, Friday's out.", ["Friday"]),
        ("Can we push Saturday's table to eight instead of 7:15?", ["7:15"]),
        ("I'm on Northfield now, not Bluecrest.", ["Bluecrest"]),
        (
            "It turns out I'm not allergic to penicillin after all, it's latex.",
            ["allergic to penicillin"],
        ),  # fmt: skip
        ("Bit of news, I sold the Transit.", ["Transit"]),
        ("I can't do 5 pm, how about 6 pm?", ["5 pm"]),
        ("Rather than Thursday, could we do Friday?", ["Thursday"]),
        ("Could I switch the 9 am to a 10 am?", ["9 am"]),
        # Where a booking goes is new, not called off.
        ("Can I move the food pickup to Saturday?", []),
        ("Could you do Friday instead?", []),
        ("Can we switch to Saturday instead?", []),
        ("Yes, Thursday at 5:30, please.", []),
        ("I may need to move it.", []),
        ("I'm not busy Monday.", []),
        # What follows "not" or "instead of" must be a value, and a kept day is kept.
        ("I'm not changing my appointment after all.", []),
        ("It hurts all the time now, not only with cold drinks.", []),
        ("Don't move my Tuesday appointment.", []),
        ("We sold the house and moved closer.", ["house"]),
        # What a review found called off by a looser rule (each cut true memory).
        ("Can we move it to next Friday?", []),
        ("My window has been stuck since Tuesday.", []),
        ("I'd like an oil change Friday morning.", []),
        ("I know Fridays are busy.", []),
        ("We're moving on Saturday.", []),
        ("Can we push it back half an hour on Saturday?", []),
        ("Friday's out of the question for my husband, but I can come.", []),
        ("I'd like to get it looked at sooner rather than later.", []),
        ("I need someone to look at it now, not next week.", []),
        ("It's not that bad after all.", []),
        ("Let's do the whole thing in one visit rather than two.", []),
        ("I'll be dropping it off instead of my wife this time.", []),
        ("The guy who sold the car to me said it had new brakes.", []),
    ],
)
def test_what_a_sentence_calls_off(said: str, old: list[str]) -> None:
    assert list(called_off(said)) == old


async def test_without_an_llm_a_day_called_off_leaves_the_earlier_calls(line: Line) -> None:
    await line.call(
        [
            ("assistant", "Dr. Chen has Thursday at 5:30."),
            ("user", "Yes, Thursday at 5:30, please. And the filling feels rough."),
        ],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "I need to move Thursday, something came up. Could I do Monday instead?"),
        ],
        None,
    )
    assert "Thursday at 5:30" not in seen
    assert "And the filling feels rough." in seen and "Could I do Monday instead?" in seen


async def test_without_an_llm_a_value_replaced_by_name_leaves_the_earlier_calls(
    line: Line,
) -> None:
    await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "I'm with Bluecrest for insurance. 7:15 is fine for the table."),
        ],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "I'm on Northfield now, not Bluecrest. Can we make it eight instead of 7:15?"),
        ],
        None,
    )
    earlier = seen.split("Caller said:")[1]  # the first call's summary
    assert "Bluecrest for insurance" not in earlier and "7:15 is fine" not in earlier
    assert "Northfield now" in seen


async def test_a_change_the_model_missed_replaces_the_old_fact(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "I'm with Bluecrest for insurance.")],
        {
            "ops": [op("add", "insurance", "Bluecrest", "I'm with Bluecrest for insurance")],
            "summary": "",
        },
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "I'm on Northfield now, not Bluecrest.")],
        {  # a new label: the model did not see that it replaces the old fact
            "ops": [op("add", "insurer", "Northfield", "I'm on Northfield now")],
            "summary": "",
        },
    )
    assert facts(seen) == {"insurer": "Northfield"}


async def test_a_day_the_caller_moves_something_to_takes_nothing_from_memory(line: Line) -> None:
    await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "Mochi's check-up on Saturday is fine. I'll get the food Thursday."),
        ],
        None,
    )
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "Can I move the food pickup to Saturday?")],
        None,
    )
    assert "Mochi's check-up on Saturday is fine." in seen


async def test_a_value_called_off_never_takes_the_callers_name(line: Line) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "Hi, this is Marcus Bell. The van needs brakes.")],
        None,
    )
    seen = await line.call(
        [
            ("assistant", AGENT_HELLO),
            ("user", "The account is under my married name now, not Bell. Same van."),
        ],
        None,
    )
    assert block(seen)["name"] == "Marcus Bell"
    assert "The van needs brakes." in seen


async def test_an_update_naming_a_replaced_facts_id_replaces_its_current_value(line: Line) -> None:
    # The model names the id it saw in an older memory (fact 1, replaced by the second call):
    # the label keeps one value, and the replaced ones leave the next agent's memory.
    hello = ("assistant", AGENT_HELLO)
    await line.call(
        [hello, ("user", "I drive a Seat Ibiza.")],
        {"ops": [op("add", "vehicle", "Seat Ibiza", "I drive a Seat Ibiza")], "summary": "x x"},
    )
    await line.call(
        [hello, ("user", "I drive a Kia Picanto now.")],
        {
            "ops": [op("update", "vehicle", "Kia Picanto", "I drive a Kia Picanto now", id=1)],
            "summary": "The caller now drives a Picanto.",
        },
    )
    seen = await line.call(
        [hello, ("user", "I drive a Mazda 2 now.")],
        {
            "ops": [op("update", "vehicle", "Mazda 2", "I drive a Mazda 2 now", id=1)],
            "summary": "The caller now drives a Mazda.",
        },
    )
    assert [f["value"] for f in block(seen)["facts"]] == ["Mazda 2"]
    assert "picanto" not in seen.lower() and "ibiza" not in seen.lower()


async def test_calls_at_once_that_each_update_one_fact_leave_one_value(line: Line) -> None:
    # Ten calls from one number end together, each model having seen fact 1: every save
    # finds the profile changed under it and applies its update again, to the value the
    # label holds by then.
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "I drive a Seat Ibiza.")],
        {"ops": [op("add", "vehicle", "Seat Ibiza", "I drive a Seat Ibiza")], "summary": "x x"},
    )
    cars = ["Kia Picanto", "Mazda 2", "Ford Fiesta", "Skoda Fabia", "Fiat Panda"] * 2

    async def one(i: int, car: str) -> None:
        answer = {
            "ops": [op("update", "vehicle", car, f"I drive a {car} now", id=1)],
            "summary": "A new car.",
        }
        manager = SessionManager(
            RedisMemoryStore(line.config), llm=ScriptedLLM(summary=answer), owns_store=True
        )
        try:
            await manager.start_session(session_id=f"at-once-{i}", phone_number=NUMBER)
            manager.add_turn(f"at-once-{i}", "user", f"I drive a {car} now.")
            await manager.end_session(f"at-once-{i}")
        finally:
            await manager.aclose()

    await asyncio.gather(*(one(i, car) for i, car in enumerate(cars)))
    seen = await line.next_agent_sees()
    values = [f["value"] for f in block(seen)["facts"] if f["about"] == "vehicle"]
    assert len(values) == 1 and values[0] in cars, values


def test_an_update_that_misses_its_fact_confirms_the_same_label_instead_of_adding_twice() -> None:
    # SmolLM2's answer in `sarah replay --llm local`: the name as a fact labelled "ben", then
    # an update of the name's id under that label. The update misses its target (only a name
    # replaces the name) and found the label's fact: one "ben", not two.
    from livekit.plugins.caller_memory.memory.merge import apply_ops
    from livekit.plugins.caller_memory.models import Fact

    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    name = Fact(id=1, label="name", value="Ben", evidence="this is Ben", said_at=at)
    ops = [
        FactOp(op="add", label="ben", value="Ben", evidence="this is Ben"),
        FactOp(op="update", id=1, label="ben", value="Ben", evidence="this is Ben"),
    ]
    for trusted in (True, False):
        facts, _ = apply_ops([name], ops, at=at, verified=trusted, trusted=trusted)
        current = [(f.label, f.value) for f in facts if f.current]
        assert current == [("name", "Ben"), ("ben", "Ben")], (trusted, current)


@pytest.mark.parametrize("redact", ["card,national_id,otp,email,phone", "none"])
async def test_control_and_bidi_override_characters_never_reach_the_next_agent(
    config: RedisConfig, redact: str
) -> None:
    # A NUL from a broken STT stream, a right-to-left override that would reorder what the
    # agent and the console show: dropped from turns, facts and summaries alike, redacted or
    # not (MEMORY_REDACT=none).
    line = Line(replace(config, redact=redact))
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", "I drive a Nissan\x00 Leaf \u202eRTL\u202c.")],
        {
            "ops": [
                op("add", "vehicle\u202e", "Nissan \u202eLeaf\x1b", "I drive a Nissan\x00 Leaf"),
            ],
            "summary": "The caller \u202edrives\u202c a Nissan Leaf\x1b.",
        },
    )
    assert facts(seen) == {"vehicle": "Nissan Leaf"}
    summary = block(seen)["earlier_calls"][0]["summary"]
    assert summary == "The caller drives a Nissan Leaf."
    assert not any(c in seen for c in "\x00\x1b\u202e\u202c")


async def test_a_withdrawal_of_the_value_an_update_replaced_keeps_the_new_value(
    line: Line,
) -> None:
    await line.call(
        [("assistant", AGENT_HELLO), ("user", "Send it to 12 Elm Street.")],
        {"ops": [op("add", "address", "12 Elm Street", "12 Elm Street")], "summary": "x x"},
    )
    said = "We moved to 40 Oak Avenue. Please forget the old Elm Street address."
    seen = await line.call(
        [("assistant", AGENT_HELLO), ("user", said)],
        {
            "ops": [
                op("update", "address", "40 Oak Avenue", "We moved to 40 Oak Avenue", id=1),
                op("withdraw", "address", "", "forget the old Elm Street address", id=1),
            ],
            "summary": "The caller moved.",
        },
    )
    assert facts(seen) == {"address": "40 Oak Avenue"}


def test_a_control_character_between_words_keeps_them_apart() -> None:
    # A vertical tab or NEL from a transcriber separates words as a space does: removing it
    # would make "at 5on Friday" of the caller's words, and of their evidence.
    assert clean_text("see you at 5\x0bon Friday") == "see you at 5 on Friday"
    assert clean_text("ok\x85thanks\x00!") == "ok thanks!"
    assert clean_text("line one\nline two\tend\r") == "line one\nline two\tend\r"


async def test_a_name_an_unverified_call_gave_after_a_verified_one_is_not_the_callers_name(
    line: Line,
) -> None:
    # The owner's verified call gave no name; a spoofer's later call says "I'm Mallory". The
    # owner is not greeted as Mallory, and no unverified caller hears it as the owner's name.
    hello = ("assistant", AGENT_HELLO)
    await line.call(
        [hello, ("user", "My Prius needs a service.")],
        {"ops": [op("add", "vehicle", "Prius", "My Prius needs a service")], "summary": "x x"},
    )
    await asyncio.sleep(1.1)  # stored times are to the second: the spoofer's call is later
    seen = await line.call(
        [hello, ("user", "Hi, I'm Mallory.")],
        {"ops": [op("add", "name", "Mallory", "I'm Mallory")], "summary": "x x"},
        verified=False,
    )
    data = block(seen)
    assert "name" not in data
    assert {"about": "name", "value": "Mallory", "said": data["facts"][0]["said"],
            "caller_unverified": True} in data["facts"]  # fmt: skip
    manager = SessionManager(
        RedisMemoryStore(replace(line.config, trust_caller_id=False)), owns_store=True
    )
    ctx = await manager.start_session(session_id="spoof", phone_number=NUMBER)
    assert ctx.caller_name is None and "Mallory" not in ctx.greeting_context
    manager.dont_remember("spoof")
    await manager.end_session("spoof")
    await manager.aclose()
