"""What is held about a caller, from key names and stored values alone: no I/O.

Erasure deletes and export returns the same keys (:class:`~.records.HeldData`); the store reads
them (:mod:`.rights`) and these functions decide which keys belong to the caller, which calls
in progress are theirs, and how each value is shown to them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable
from typing import Any

from . import codec
from .keys import KeyKind, Keys

__all__ = ["caller_keys", "erased_users", "exported", "is_journal_of", "phone_keys"]


def phone_keys(keys: Keys, hashes: Iterable[str]) -> list[str]:
    """The phone mappings of a number's hashes, then each one's copy set aside
    (:meth:`Keys.unreadable_phone`: a wrong-typed mapping)."""
    hashes = list(hashes)
    return [*(keys.phone(h) for h in hashes), *(keys.unreadable_phone(h) for h in hashes)]


def caller_keys(keys: Keys, user_id: str) -> list[str]:
    """The keys of one user id that hold their memory: the profile, its unreadable copy, the
    session list and the index of every call still held."""
    return [
        keys.profile(user_id),
        keys.unreadable_profile(user_id),
        keys.sessions(user_id),
        keys.calls(user_id),
    ]


def is_journal_of(raw: bytes | None, hashes: Collection[str], user_ids: Collection[str]) -> bool:
    """True when ``raw`` is the journal of a call in progress of this caller: its header names
    one of their phone hashes or user ids. A saved call, or a journal that cannot be read, is
    not (the index of calls reaches saved ones)."""
    if raw is None or not codec.is_journal(raw):
        return False
    try:
        header = codec.read_journal_header(raw)
    except codec.UnreadableValue:
        return False
    return header.phone_hash in hashes or header.user_id in user_ids


def erased_users(keys: Keys, user_ids: Iterable[str], held: Iterable[str]) -> list[str]:
    """The user ids an erasure marks: those found, and those its profile keys name (a profile
    with no mapping left is a user too), in order, each once."""
    named = [keys.user_of(key) for key in held if keys.kind(key) == "profile"]
    return list(dict.fromkeys([*user_ids, *(u for u in named if u is not None)]))


def exported(kind: KeyKind, raw: bytes) -> Any:
    """A stored value as export shows it: what is stored, made readable.

    A profile is read as the agent reads it (inflated, an older layout migrated) and shown
    whole, each fact with its evidence, times, status and verification, absent fields
    included; one that cannot be read is shown as stored. Other values are JSON when they
    parse, else text.
    """
    if kind == "profile":
        with contextlib.suppress(codec.UnreadableValue):
            return codec.decode_profile(raw).model_dump(mode="json")
    data = raw
    if kind in ("profile", "unreadable"):
        with contextlib.suppress(codec.UnreadableValue):
            data = codec.inflate(raw)
    value = codec.text(data) or ""
    try:
        return json.loads(value)
    except ValueError:
        return value
