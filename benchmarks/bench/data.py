"""Realistic synthetic data: callers of a dental practice with five past calls each, their
LLM-shaped summaries, 10-turn transcripts and session records, and :func:`seed_returning`,
which makes returning callers through the store's real lookup and save."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import string
from dataclasses import dataclass

from livekit.plugins.caller_memory import CallerProfile, CallSummary
from livekit.plugins.caller_memory.memory import merge_call
from livekit.plugins.caller_memory.models import NAME_LABEL, FactOp, SessionRecord, Turn
from livekit.plugins.caller_memory.store import CallerLookup, new_user_id

from .env import Env

FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Inés", "Jon"]
PREFERENCES = [
    ("appointment time", ["mornings", "late afternoons", "Saturdays", "after 5pm"]),
    ("language", ["Spanish", "English", "French", "Portuguese"]),
    ("contact method", ["text message", "email", "phone call"]),
    ("hygienist", ["Maria", "Tom", "no preference"]),
    ("reminders", ["two days before", "the day before"]),
]
"""Facts a caller states as a preference ("I prefer mornings"): (label, values)."""
OPEN_REQUESTS = [
    (
        "crown estimate",
        "call back with the estimate for the crown",
        "Can you call me back with the estimate for the crown on the lower left molar",
    ),
    (
        "forms",
        "email the new-patient forms and the parking instructions",
        "Please email me the new-patient forms and the parking instructions",
    ),
    (
        "insurance question",
        "whether the insurance covers a second cleaning this year",
        "I need to know whether the insurance covers the second cleaning this year",
    ),
    (
        "follow-up visit",
        "a follow-up with Dr. Patel in three weeks",
        "I'd like a follow-up appointment with Dr. Patel in three weeks",
    ),
    (
        "payment plan",
        "a reminder about the payment plan",
        "Send me a reminder about the payment plan for the orthodontic work",
    ),
]
"""Things still open after a call, as facts: (label, value, the caller's words)."""
# Summaries are built from templates with slots, so that the five calls of one profile are
# five different texts (as an LLM's would be): repeated sentences would compress to nothing
# and flatter the memory figures.
TOPICS = [
    "asked about the opening hours on {day} and wanted a {treatment} appointment",
    "called to move the {day} appointment because of {reason}",
    "asked whether the practice takes {insurer} and what it covers for a {treatment}",
    "reported a sensitive {tooth} after the last {treatment} and asked for an earlier slot",
    "wanted to know the price of a {treatment} and whether it can be paid in {parts} parts",
    "asked for a copy of the last invoice and the x-rays to send to {doctor}",
    "said the {tooth} still hurts with cold drinks and asked if {doctor} could see them",
    "wanted to book a {treatment} for their {relative} and asked about a slot on {day}",
    "called about a letter from {insurer} rejecting the claim for the {treatment}",
    "asked whether {doctor} does a {treatment} under sedation, being nervous about it",
    "cancelled the {treatment} on {day} because of {reason} and asked to rebook",
    "asked how long to wait before eating after a {treatment} on the {tooth}",
]
OUTCOMES = [
    "An appointment was booked for {day} at {time} and a confirmation text was promised.",
    "The receptionist explained the options and said {doctor} would call them back.",
    "They agreed to call again after checking with {insurer} about the coverage.",
    "The booking was moved to {day} at {time} and the new time was read back to them.",
    "A quote of {price} dollars was given and they will think about the payment plan.",
    "They were put on the waiting list for {day} and will be called if a slot opens.",
    "The forms were sent by email and they will bring the {insurer} card on {day}.",
    "{doctor} will review the x-rays first; a nurse will call them by {day}.",
]
SLOTS = {
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "next week"],
    "time": ["8:00", "8:30", "9:15", "10:40", "noon", "2:20", "4:45", "5:30"],
    "treatment": [
        "cleaning",
        "filling",
        "crown",
        "root canal",
        "whitening",
        "check-up",
        "extraction",
        "implant consultation",
        "night guard fitting",
        "deep cleaning",
    ],
    "reason": [
        "a work trip abroad",
        "a sick child",
        "a job interview",
        "a flight delay",
        "a family wedding",
        "car trouble",
    ],
    "insurer": ["Delta Dental", "Cigna", "MetLife", "Aetna", "Guardian", "their employer's plan"],
    "tooth": [
        "lower left molar",
        "upper right molar",
        "front tooth",
        "wisdom tooth",
        "lower right premolar",
        "upper left canine",
    ],
    "doctor": ["Dr. Patel", "Dr. Nguyen", "Dr. Okafor", "Dr. Lindqvist", "the hygienist"],
    "relative": ["daughter", "son", "husband", "wife", "mother", "father"],
    "parts": ["two", "three", "four", "six"],
    "price": ["180", "240", "450", "780", "1,150", "1,400"],
}
USER_LINES = [
    "Hi, this is {name}, I'd like to book a cleaning if you have anything next week.",
    "Mornings are best for me, ideally before nine because of work.",
    "Do you take Delta Dental? I changed jobs and my insurance changed too.",
    "Great, and can you send me a reminder the day before?",
    "No, that's everything, thank you so much.",
]
AGENT_LINES = [
    "Hello {name}, Sarah here. I can help with that: let me check next week's openings.",
    "I have Tuesday at eight or Thursday at eight thirty. Which one suits you better?",
    "Yes, we accept Delta Dental. Please bring the new card to the appointment.",
    "Of course. You'll get a text the day before. Is this the best number to reach you?",
    "You're welcome, {name}. See you on Tuesday at eight. Have a lovely day!",
]


def job_id(rng: random.Random) -> str:
    """An id shaped like a LiveKit job id (``AJ_`` and 12 characters)."""
    return "AJ_" + "".join(rng.choices(string.ascii_letters + string.digits, k=12))


def _fill(rng: random.Random, template: str) -> str:
    return template.format(**{slot: rng.choice(values) for slot, values in SLOTS.items()})


def summary_text(rng: random.Random, name: str) -> str:
    """A call summary of two sentences, 130 to 220 characters (about 170 on average)."""
    return f"{name} {_fill(rng, rng.choice(TOPICS))}. {_fill(rng, rng.choice(OUTCOMES))}"


def make_summary(rng: random.Random, name: str) -> CallSummary:
    """What the summarizer keeps of an LLM's answer: a summary, and operations that add the
    name, 3 preferences and 2 open requests, each with the caller's words.

    The preference labels are the same three on every call, so that a profile that merged
    five calls holds three current preferences (and the values they replaced, as past facts).
    """
    ops = [FactOp(op="add", label=NAME_LABEL, value=name, evidence=f"this is {name}")]
    for label, values in PREFERENCES[:3]:
        value = rng.choice(values)
        ops.append(FactOp(op="add", label=label, value=value, evidence=f"I prefer {value}"))
    for label, value, evidence in rng.sample(OPEN_REQUESTS, 2):
        ops.append(FactOp(op="add", label=label, value=value, evidence=evidence))
    return CallSummary(summary=summary_text(rng, name), ops=ops)


def make_turns(name: str) -> list[Turn]:
    turns: list[Turn] = []
    for user, agent in zip(USER_LINES, AGENT_LINES, strict=True):
        turns.append(Turn(role="user", text=user.format(name=name)))
        turns.append(Turn(role="assistant", text=agent.format(name=name)))
    return turns


def make_record(
    session_id: str, user_id: str | None, name: str, ended_at: dt.datetime
) -> SessionRecord:
    """A finished 10-turn call of a verified caller (the network's attestation, or the app's
    check): its summary updates the profile, as :func:`merge_call` does by default."""
    return SessionRecord(
        session_id=session_id,
        user_id=user_id,
        started_at=ended_at - dt.timedelta(minutes=4),
        ended_at=ended_at,
        turns=make_turns(name),
        verified=True,
    )


@dataclass
class Caller:
    """One synthetic caller with five past calls, as the store would hold it."""

    phone_hash: str
    user_id: str
    name: str
    session_ids: list[str]
    summaries: list[CallSummary]
    ended: list[dt.datetime]

    def profile(self, max_summaries: int) -> CallerProfile:
        """The profile the store's save path builds from these calls (``merge_call`` in
        turn)."""
        profile = CallerProfile(user_id=self.user_id)
        for sid, summary, ended in zip(self.session_ids, self.summaries, self.ended, strict=True):
            profile = merge_call(
                profile, summary, session_id=sid, ended_at=ended, max_summaries=max_summaries
            )
        return profile


class SummaryPool:
    """Pre-built summaries per first name: building 500,000 of them would dominate the run."""

    def __init__(self, rng: random.Random, per_name: int = 200) -> None:
        self._rng = rng
        self._by_name = {
            name: [make_summary(rng, name) for _ in range(per_name)] for name in FIRST_NAMES
        }

    def pick(self, name: str, k: int) -> list[CallSummary]:
        return self._rng.sample(self._by_name[name], k)


def make_caller(
    rng: random.Random, phone_hash: str, now: dt.datetime, pool: SummaryPool, calls: int = 5
) -> Caller:
    """A caller with ``calls`` past calls over the last 85 days."""
    name = rng.choice(FIRST_NAMES)
    days = sorted(rng.sample(range(1, 85), calls), reverse=True)
    return Caller(
        phone_hash=phone_hash,
        user_id=new_user_id(phone_hash),
        name=name,
        session_ids=[job_id(rng) for _ in range(calls)],
        summaries=pool.pick(name, calls),
        ended=[now - dt.timedelta(days=d, minutes=rng.randrange(600)) for d in days],
    )


def keyspace_number(i: int, *, small: bool = False) -> str:
    """The E.164 number of caller ``i`` of the benchmark's keyspace (valid US numbers, as a
    SIP trunk sends them): 415-2xx for callers with five calls kept, 628-2xx for one."""
    return f"+1{628 if small else 415}{2_000_000 + i:07d}"


@dataclass
class Population:
    """The callers written by the memory section, which the call-start section looks up."""

    numbers: list[str]
    """Callers with five calls kept."""
    small_numbers: list[str]
    """Callers with one call kept."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


async def seed_returning(env: Env, count: int, *, tag: str) -> list[tuple[str, CallerLookup]]:
    """``count`` callers with one saved call each, through the store's real path."""
    store, rng = env.store, env.rng
    out: list[tuple[str, CallerLookup]] = []

    async def one(i: int) -> tuple[str, CallerLookup]:
        phone_hash = store.hasher.hash(env.phone_number())
        first = await store.lookup(phone_hash)
        name = rng.choice(FIRST_NAMES)
        record = make_record(f"AJ_{tag}{i:07d}", first.user_id, name, now_utc())
        await store.save_call(record, make_summary(rng, name), phone_hash=phone_hash, base=first)
        return phone_hash, await store.lookup(phone_hash)

    for start in range(0, count, 25):
        out += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 25))))
    return out
