"""The pure parts of the store, on real data and no server: what is held about a caller (its
keys, its journals, how export shows a value), the saves by version, the store's times, and a
withdrawn consent."""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

from livekit.plugins.caller_memory.memory.merge import withdraw_consent
from livekit.plugins.caller_memory.models import (
    CallerProfile,
    Fact,
    JournalHeader,
    SessionRecord,
    to_json,
)
from livekit.plugins.caller_memory.store import Keys, VersionSaves, codec
from livekit.plugins.caller_memory.store.held import (
    caller_keys,
    erased_users,
    exported,
    is_journal_of,
    phone_keys,
)
from livekit.plugins.caller_memory.store.primitives import from_ms, to_ms

KEYS = Keys("sarah")
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def _profile(user_id: str = "h1", *, consented: bool = True) -> CallerProfile:
    fact = Fact(id=1, label="vehicle", value="blue Civic", evidence="I drive a blue Civic",
                said_at=AT)  # fmt: skip
    return CallerProfile(user_id=user_id, facts=[fact], call_count=2, last_call_at=AT,
                         consented_at=AT if consented else None)  # fmt: skip


def _journal(**header: str | None) -> bytes:
    raw = codec.journal_header(JournalHeader(session_id="s1", started_at=AT, **header))
    return raw.encode()


def test_a_numbers_phone_keys_come_first_then_each_set_aside_copy() -> None:
    assert phone_keys(KEYS, ["h1", "h0"]) == [
        "sarah:phone:{h1}",
        "sarah:phone:{h0}",
        "sarah:phone:{h1}:unreadable",
        "sarah:phone:{h0}:unreadable",
    ]
    assert phone_keys(KEYS, iter(["h1"]))[1] == KEYS.unreadable_phone("h1")


def test_a_users_memory_is_four_keys_of_one_slot() -> None:
    held = caller_keys(KEYS, "h1")
    assert held == [KEYS.profile("h1"), KEYS.unreadable_profile("h1"), KEYS.sessions("h1"),
                    KEYS.calls("h1")]  # fmt: skip
    assert {KEYS.user_of(key) for key in held} == {"h1"}


def test_the_user_of_a_key_is_read_from_its_name() -> None:
    assert KEYS.user_of("sarah:user:{h1}:profile:unreadable") == "h1"
    assert KEYS.user_of("sarah:user:{h1}:erased") == "h1"
    assert KEYS.user_of("sarah:phone:{h1}") is None
    assert KEYS.user_of("other:user:{h1}:profile") is None
    assert KEYS.user_of("sarah:session:{s1}") is None


def test_a_journal_is_the_callers_by_phone_hash_or_user_id() -> None:
    by_hash = _journal(phone_hash="h1")
    by_user = _journal(user_id="u7")
    assert is_journal_of(by_hash, {"h1", "h0"}, ["u7"])
    assert is_journal_of(by_user, {"h1"}, ["u7"])
    assert not is_journal_of(_journal(phone_hash="h9", user_id="u9"), {"h1"}, ["u7"])


def test_a_saved_call_or_an_unreadable_journal_is_not_a_journal_of_anyone() -> None:
    record = SessionRecord(session_id="s1", user_id="u7", started_at=AT, ended_at=AT)
    assert not is_journal_of(to_json(record).encode(), {"h1"}, ["u7"])
    assert not is_journal_of(b'{"journal":1,"session_id":', {"h1"}, ["u7"])
    assert not is_journal_of(None, {"h1"}, ["u7"])


def test_an_erasure_marks_the_users_found_and_those_their_profile_keys_name() -> None:
    held = [KEYS.phone("h1"), KEYS.profile("h1"), KEYS.sessions("h1"), KEYS.profile("u7"),
            KEYS.unreadable_profile("u8"), KEYS.session("s1")]  # fmt: skip
    assert erased_users(KEYS, ["h1"], held) == ["h1", "u7"]
    assert erased_users(KEYS, [], []) == []


def test_export_shows_a_profile_whole_even_compressed() -> None:
    profile = _profile()
    raw = codec.encode_profile(profile.model_copy(update={"calls": []}))
    assert raw[:1] == b"x"  # compressed: over 200 bytes of JSON
    shown = exported("profile", raw)
    assert shown["user_id"] == "h1"
    assert shown["facts"][0]["evidence"] == "I drive a blue Civic"
    assert shown["facts"][0]["status"] == "current"
    assert shown["consented_at"] == "2026-03-04T05:06:07Z"


def test_export_shows_other_values_as_json_or_text() -> None:
    assert exported("session", b'{"session_id": "s1"}') == {"session_id": "s1"}
    assert exported("phone", b"h1") == "h1"
    # A profile set aside is inflated when it can be, and shown as stored otherwise.
    aside = zlib.compress(json.dumps({"odd": True}).encode())
    assert exported("unreadable", aside) == {"odd": True}
    assert exported("profile", b"not a profile") == "not a profile"


def test_saves_by_version_are_read_latest_saver_first() -> None:
    scores = [("saves:0.2.0", 5.0), ("last:0.2.0", 1_700_000_000.0), ("saves:0.2.1", 1.0),
              ("last:0.2.1", 1_700_000_500.0), ("saves:", 3.0), ("other:0.1", 2.0)]  # fmt: skip
    assert VersionSaves.from_scores(scores) == [
        VersionSaves("0.2.1", 1, 1_700_000_500.0),
        VersionSaves("0.2.0", 5, 1_700_000_000.0),
    ]
    assert VersionSaves.from_scores([("saves:0.3.0", 2.0)]) == [VersionSaves("0.3.0", 2, None)]


def test_store_times_go_to_milliseconds_and_back_exactly() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, 439000, tzinfo=timezone.utc)
    assert to_ms(when) == 1772600767439
    assert from_ms(1772600767439) == when
    assert to_ms(when.replace(tzinfo=None)) == 1772600767439  # naive: taken as UTC


def test_withdrawing_consent_keeps_everything_else() -> None:
    profile = _profile()
    withdrawn = withdraw_consent(profile)
    assert withdrawn is not None and withdrawn.consented_at is None
    assert withdrawn.model_copy(update={"consented_at": AT}) == profile
    assert withdraw_consent(withdrawn) is None
