"""Long turns redacted in slices: what straddles a slice's end is still caught, and nothing
unredacted reaches Redis, the outbox or the saved call."""

from __future__ import annotations

import re

import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.redaction import Redactor
from livekit.plugins.caller_memory.redaction.slices import SLICE_CHARS, SlicedRedaction

from .conftest import dump_keys
from .support.waiting import eventually

NUMBER = "+14155550134"
SECRETS = {
    "card": ("my card number is 4111 1111 1111 1111", "4111"),
    "ssn": ("my social security number is 219 09 9999", "9999"),
    "email": ("write to ana dot lopez at example dot com", "lopez"),
    "phone": ("call me at 415 555 0199", "0199"),
    "code": ("the verification code is 482913", "482913"),
}
FILLER = "and then we talked about the weather for a while "


def sliced(text: str) -> str:
    redaction = SlicedRedaction(Redactor(), text)
    while not redaction.done:
        redaction.step()
    return redaction.result


def turn_with(secret: str, at: int, length: int = 3_000) -> str:
    """Filler words, ``secret`` starting near character ``at``, filler again to ``length``."""
    before = (FILLER * (at // len(FILLER) + 1))[:at]
    return (before + " " + secret + " " + FILLER * (length // len(FILLER)))[:length]


def naive_chunks(text: str) -> str:
    """Redaction of fixed, non-overlapping chunks: what slicing must not degrade to."""
    redactor = Redactor()
    return "".join(redactor(text[i : i + SLICE_CHARS]) for i in range(0, len(text), SLICE_CHARS))


def test_data_said_across_a_slice_boundary_is_redacted_whole() -> None:
    # Each secret is placed at every offset around the first slice's end, so that the cut
    # falls before, inside and after it.
    for name, (secret, giveaway) in SECRETS.items():
        leaked_by_chunks = 0
        for at in range(SLICE_CHARS - len(secret) - 5, SLICE_CHARS + 5):
            text = turn_with(secret, at)
            assert giveaway not in sliced(text), (name, at)
            leaked_by_chunks += giveaway in naive_chunks(text)
        # The offsets did straddle the boundary: fixed chunks let the secret through there.
        assert leaked_by_chunks, name


def test_an_address_in_one_long_word_is_redacted_across_slices() -> None:
    for at in range(SLICE_CHARS - 30, SLICE_CHARS + 5):
        text = ("x" * at + " ana.lopez@example.com " + "y" * 4_000)[:4_000]
        out = sliced(text)
        assert "ana.lopez" not in out and "[email]" in out, at


def test_a_long_turn_is_redacted_as_the_whole_text_would_be() -> None:
    # Under 40 numbers: the whole text is read number by number too (no flood rule).
    text = " ".join(f"{FILLER * 3} {secret}" for secret, _ in SECRETS.values()) * 3
    assert len(text) > 3 * SLICE_CHARS and len(re.findall(r"[0-9]+", text)) < 40
    assert sliced(text) == Redactor()(text)


def test_a_long_run_of_digits_is_redacted_to_its_end() -> None:
    for text in ("1" * 4_000, "1 " * 2_000, "4" * 2_500 + " and my pin is 1234"):
        out = sliced(text)
        assert not re.search(r"[0-9]", out), out[-80:]


async def test_the_journal_and_the_saved_call_hold_only_redacted_text_of_a_long_turn(
    config: RedisConfig, redis_client: aioredis.Redis
) -> None:
    # Every secret straddles a slice boundary: at 600, 1200, ... characters.
    parts = [FILLER * 12]
    for secret, _ in SECRETS.values():
        while len(" ".join(parts)) < SLICE_CHARS * len(parts) - len(secret) // 2:
            parts[-1] += "x "
        parts.append(secret + " " + FILLER * 12)
    long_turn = " ".join(parts)[:3_990]
    giveaways = [giveaway for _, giveaway in SECRETS.values()]
    assert all(g in long_turn for g in giveaways)

    manager = SessionManager(RedisMemoryStore(config), owns_store=True)
    try:
        await manager.start_session(session_id="long", phone_number=NUMBER)
        manager.add_turn("long", "user", "Hello, it's Ana.")
        manager.add_turn("long", "user", long_turn)
        manager.add_turn("long", "assistant", "Thank you, noted.")
        journal_key = f"{config.key_prefix}:session:{{long}}"

        async def journaled() -> bool:
            return b"Thank you, noted." in (await redis_client.get(journal_key) or b"")

        await eventually(journaled, what="the three turns in the journal")
        raw = await redis_client.get(journal_key)
        journal = raw.decode() if isinstance(raw, bytes) else str(raw)
        assert "[card number]" in journal
        assert not [g for g in giveaways if g in journal]
        kept = manager.turns("long")
        assert [t.text for t in kept][0] == "Hello, it's Ana."
        assert [t.role for t in kept] == ["user", "user", "assistant"]
        assert await manager.end_session("long") is not None
    finally:
        await manager.aclose()
    stored = "\n".join(
        v if isinstance(v, str) else "\n".join(v)
        for v in (await dump_keys(redis_client, config.key_prefix)).values()
    )
    assert "[id number]" in stored and "[email]" in stored
    assert not [g for g in giveaways if g in stored]
    outbox = "".join(p.read_text() for p in config.data_dir.rglob("*") if p.is_file())
    assert not [g for g in giveaways if g in outbox]


async def test_turns_after_a_long_one_keep_their_order(config: RedisConfig) -> None:
    manager = SessionManager(RedisMemoryStore(config), owns_store=True)
    try:
        await manager.start_session(session_id="order", phone_number=NUMBER)
        manager.add_turn("order", "user", turn_with(SECRETS["card"][0], SLICE_CHARS - 10))
        manager.add_turn("order", "assistant", "Got it.")
        manager.add_turn("order", "user", "My code is 123456")
        texts = [t.text for t in manager.turns("order")]
        assert texts[1:] == ["Got it.", "My code is [code]"]
        assert "[card number]" in texts[0] and "4111" not in texts[0]
    finally:
        await manager.aclose()
