"""How stored values are written as bytes, and read back without trusting them.

A profile is JSON, zlib-compressed when that makes it smaller (JSON starts with ``{``, zlib with
``x``: the two never mix up). The compression starts from a preset dictionary of the profile's
own JSON (:data:`PROFILE_ZDICT`): the field names a short profile would otherwise spend most of
its bytes on. zlib's header names the dictionary a stream needs (its Adler-32), so profiles
compressed without one, as earlier versions wrote them, still read.

A call's session key holds its :class:`~..models.SessionRecord` as JSON once saved, and while
the call goes on its journal: JSON lines, a :class:`~..models.JournalHeader` then one
:class:`~..models.Turn` per line.

What comes back from Redis may be anything (another program's key, a corrupted value, a
decompression bomb): reading is bounded, and a value that cannot be read raises
:class:`UnreadableValue`, never something else.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable

from pydantic import ValidationError

from ..models import (
    SCHEMA_VERSION,
    CallerProfile,
    JournalHeader,
    SessionRecord,
    Turn,
    keep_ends,
    migrate_profile,
    to_json,
)

__all__ = [
    "JOURNAL_MARK",
    "MAX_JOURNAL_BYTES",
    "MAX_PROFILE_BYTES",
    "UnreadableValue",
    "decode_profile",
    "encode_profile",
    "inflate",
    "is_journal",
    "journal_header",
    "journal_lines",
    "parse_journal",
    "read_journal_header",
    "text",
]

COMPRESS_OVER = 200
"""Profiles longer than this (bytes of JSON) are compressed: about half the memory for the
summaries' prose."""
PROFILE_ZDICT_V1 = (
    b'"preferences":{},"follow_ups":[],"source":"fallback","verified":false},'
    b'{"v":1,"user_id":"","name":"","preferences":{"","follow_ups":["","calls":[{"session_id":'
    b'"AJ_","at":"2026-01-01T00:00:00Z","summary":"","source":"llm","verified":true},'
    b'{"session_id":"AJ_","at":"2026-","summary":"'
    b'"call_count":5,"first_call_at":"2026-","last_call_at":"2026-","consented_at":"2026-'
)
"""The dictionary of 0.1's profiles (schema 1), still read."""
PROFILE_ZDICT_V2 = (
    b'"status":"withdrawn","status":"replaced","verified":false},"source":"fallback",'
    b'"summary":"Caller said: ","caller said ","I\'m ","the ","my ","and ","to ",'
    b'{"v":2,"user_id":"","facts":[{"id":1,"label":"name","value":"","evidence":"'
    b'"said_at":"2026-01-01T00:00:00Z","confirmed_at":"2026-","status":"current",'
    b'"verified":true},{"id":2,"label":"","value":"","evidence":"","said_at":"2026-'
    b'"calls":[{"session_id":"AJ_","at":"2026-01-01T00:00:00Z","summary":"","source":"llm",'
    b'"verified":true},{"session_id":"AJ_","at":"2026-","summary":"'
    b'"call_count":5,"first_call_at":"2026-","last_call_at":"2026-","consented_at":"2026-'
)
"""The first dictionary of schema 2's profiles, still read."""
PHONE_LINE_WORDS = (
    b"invoice receipt refund payment card price cost deposit balance account "
    b"delivery pickup collect order parcel address postcode "
    b"booking appointment reservation consultation visit check-up service repair "
    b"cancel cancelled reschedule moved confirmed confirm available availability "
    b"reminder callback call back text message email phone "
    b"January February March April May June July August September October November December "
    b"Monday Tuesday Wednesday Thursday Friday Saturday Sunday weekend "
    b"morning afternoon evening today tomorrow next week last week month year "
    b"wants wanted needs needed would like asked whether asked about asked for called to "
    b"said says told agreed prefers preferred prefer usually always never "
    b"their husband wife son daughter mother father partner "
    b"they were he she his her them with from about after before because being "
    b"which when what where how long that this will can could should "
    b"for and the of to in on at a an is it was "
)
"""Words of any business's phone calls, the most frequent last: what the summaries, facts
and evidence are written in. Chosen for callers of every kind of business, not from the
benchmark's (about 7 % off its profiles, 4.5 % off the memory-quality dataset's calls)."""
PROFILE_ZDICT = PHONE_LINE_WORDS + PROFILE_ZDICT_V2
"""The preset dictionary profiles are compressed with: words of phone calls, then the
profile's JSON fixed parts, the most frequent last (deflate codes a near match in fewer bits).
Never edit it: stored profiles name it by its checksum. A better one is added next to it under
its own checksum (:data:`_ZDICTS`), and all stay readable."""
_ZDICTS = {zlib.adler32(d): d for d in (PROFILE_ZDICT, PROFILE_ZDICT_V2, PROFILE_ZDICT_V1)}
_FDICT = 0x20
"""The bit of a zlib header's second byte that says a preset dictionary is needed."""
MAX_PROFILE_BYTES = 1 << 20
"""A profile is a few kilobytes; anything larger once inflated is not one of ours."""
MAX_JOURNAL_BYTES = 2 << 20
"""A call's journal: 400 turns of 4,000 characters fit (a call keeps no more, see
:data:`~..models.MAX_TURNS`); past it, turns are saved at hang-up only."""
JOURNAL_MARK = '{"journal"'
"""How a journal begins (its header's first key); a saved call's record never does."""
_CURRENT_SCHEMA = f'{{"v":{SCHEMA_VERSION},'.encode()
"""How a profile of the current schema starts (``v`` is its first field)."""


class UnreadableValue(ValueError):
    """A stored value is not what caller memory writes there. Never carries the value."""


def text(value: bytes | str | None) -> str | None:
    """A value as text (the store's client answers bytes; one handed in may answer text)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def encode_profile(profile: CallerProfile) -> bytes:
    """A profile as stored."""
    data = to_json(profile, exclude_none=True).encode()
    if len(data) <= COMPRESS_OVER:
        return data
    deflater = zlib.compressobj(6, zdict=PROFILE_ZDICT)
    packed = deflater.compress(data) + deflater.flush()
    return packed if len(packed) < len(data) else data


def inflate(raw: bytes | str) -> bytes:
    """A stored profile's JSON bytes (decompressed when it was compressed), size-bounded.

    Raises:
        UnreadableValue: It is corrupt or inflates past :data:`MAX_PROFILE_BYTES`.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if data[:1] == b"x":
        if len(data) > 6 and data[1] & _FDICT:
            zdict = _ZDICTS.get(int.from_bytes(data[2:6], "big"))
            if zdict is None:
                raise UnreadableValue("compressed with a dictionary this version does not know")
            inflater = zlib.decompressobj(zdict=zdict)
        else:
            inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, MAX_PROFILE_BYTES)
        except zlib.error:
            raise UnreadableValue("compressed data is corrupt") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise UnreadableValue("inflates past the size of any profile, or is cut short")
    if len(data) > MAX_PROFILE_BYTES:
        raise UnreadableValue("larger than any profile")
    return data


def decode_profile(raw: bytes | str) -> CallerProfile:
    """A stored profile, migrated from an older layout if needed.

    Raises:
        UnreadableValue: It is not a profile (or inflates past :data:`MAX_PROFILE_BYTES`).
    """
    data = inflate(raw)
    if data.startswith(_CURRENT_SCHEMA):
        try:  # the common case, parsed and validated in one pass by pydantic-core
            return CallerProfile.model_validate_json(data)
        except ValidationError:
            pass
    try:
        return CallerProfile.model_validate(migrate_profile(json.loads(data)))
    except (ValidationError, ValueError, TypeError, AttributeError):
        raise UnreadableValue("not a caller profile") from None


def is_journal(raw: bytes | str) -> bool:
    """True when a session key holds a journal (a call not saved yet)."""
    head = raw[: len(JOURNAL_MARK)]
    return (head.decode(errors="replace") if isinstance(head, bytes) else head) == JOURNAL_MARK


def journal_header(header: JournalHeader) -> str:
    """The first line of a call's journal."""
    return to_json(header)


def journal_lines(turns: Iterable[Turn]) -> str:
    """Turns as journal lines, each starting with a newline (for APPEND)."""
    return "".join("\n" + to_json(turn) for turn in turns)


def read_journal_header(raw: bytes | str) -> JournalHeader:
    """The header of a journal.

    Raises:
        UnreadableValue: ``raw`` is not a journal.
    """
    value = text(raw) or ""
    try:
        return JournalHeader.model_validate_json(value.split("\n", 1)[0])
    except ValidationError:
        raise UnreadableValue("not a call journal") from None


def parse_journal(raw: bytes | str) -> tuple[SessionRecord, str | None]:
    """A journal as the call it records (not ended), and the caller's phone hash.

    Lines that cannot be read (a turn cut by a crash mid-write) are skipped.

    Raises:
        UnreadableValue: ``raw`` is not a journal.
    """
    value = text(raw) or ""
    header = read_journal_header(value)
    turns = []
    for line in value.split("\n")[1:]:
        try:
            turns.append(Turn.model_validate_json(line))
        except ValidationError:
            continue
    record = SessionRecord(
        session_id=header.session_id,
        user_id=header.user_id,
        started_at=header.started_at,
        turns=keep_ends(turns),  # as the worker would have kept them
    )
    return record, header.phone_hash
