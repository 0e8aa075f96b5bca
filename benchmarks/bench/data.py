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
from livekit.plugins.caller_memory.models import SessionRecord, Turn
from livekit.plugins.caller_memory.store import CallerLookup, new_user_id

from .env import Env

FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Esther", "Farid", "Grace", "Hiro", "Inés", "Jon"]
PREFERENCES = [
    ("appointment_time", ["mornings", "late afternoons", "Saturdays", "after 5pm"]),
    ("language", ["Spanish", "English", "French", "Portuguese"]),
    ("contact_method", ["text message", "email", "phone call"]),
    ("hygienist", ["Maria", "Tom", "no preference"]),
    ("reminders", ["two days before", "the day before"]),
]
FOLLOW_UPS = [
    "Call back with the estimate for the crown on the lower left molar",
    "Email the new-patient forms and the parking instructions",
    "Confirm whether the insurance covers the second cleaning this year",
    "Book a follow-up appointment with Dr. Patel in three weeks",
    "Send a reminder about the payment plan for the orthodontic work",
]
TOPICS = [
    "asked about the opening hours on Saturday and wanted a cleaning appointment",
    "called to move next Tuesday's appointment because of a work trip abroad",
    "asked whether the practice takes their dental insurance and what is covered",
    "reported a sensitive tooth after the last filling and asked for an earlier slot",
    "wanted to know the price of teeth whitening and whether it can be paid in parts",
    "asked for a copy of the last invoice and the x-rays to send to a specialist",
]
OUTCOMES = [
    "An appointment was booked for a weekday morning and a confirmation text was promised.",
    "The receptionist explained the options and said the dentist would call them back.",
    "They agreed to call again after checking with their employer about the coverage.",
    "The booking was moved and the new time was read back to them to confirm it.",
]
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


def summary_text(rng: random.Random, name: str) -> str:
    """A call summary of about 150 characters, cut at a word."""
    text = f"{name} {rng.choice(TOPICS)}. {rng.choice(OUTCOMES)}"
    if len(text) > 155:
        text = text[:155].rsplit(" ", 1)[0] + "."
    return text


def make_summary(rng: random.Random, name: str) -> CallSummary:
    """What an LLM would return: a summary, the name, 3 preferences, 2 open follow-ups.

    The preference names are the same three on every call, so that a profile that merged
    five calls holds three preferences.
    """
    return CallSummary(
        summary=summary_text(rng, name),
        caller_name=name,
        preferences={key: rng.choice(values) for key, values in PREFERENCES[:3]},
        follow_ups=rng.sample(FOLLOW_UPS, 2),
    )


def make_turns(name: str) -> list[Turn]:
    turns: list[Turn] = []
    for user, agent in zip(USER_LINES, AGENT_LINES, strict=True):
        turns.append(Turn(role="user", text=user.format(name=name)))
        turns.append(Turn(role="assistant", text=agent.format(name=name)))
    return turns


def make_record(
    session_id: str, user_id: str | None, name: str, ended_at: dt.datetime
) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        user_id=user_id,
        started_at=ended_at - dt.timedelta(minutes=4),
        ended_at=ended_at,
        turns=make_turns(name),
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
        """The profile the store's save path builds from these calls (``merged`` in turn)."""
        profile = CallerProfile(user_id=self.user_id)
        for sid, summary, ended in zip(self.session_ids, self.summaries, self.ended, strict=True):
            profile = profile.merged(
                summary, session_id=sid, ended_at=ended, max_summaries=max_summaries
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


def make_caller(rng: random.Random, phone_hash: str, now: dt.datetime, pool: SummaryPool) -> Caller:
    name = rng.choice(FIRST_NAMES)
    days = sorted(rng.sample(range(1, 85), 5), reverse=True)
    return Caller(
        phone_hash=phone_hash,
        user_id=new_user_id(phone_hash),
        name=name,
        session_ids=[job_id(rng) for _ in range(5)],
        summaries=pool.pick(name, 5),
        ended=[now - dt.timedelta(days=d, minutes=rng.randrange(600)) for d in days],
    )


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
