"""A caller's rights over their memory: erase everything (``forget``), see it (``export``), or
have one wrong fact withdrawn (``withdraw_fact``).

Erasure and export reach every place a caller's data can be: the store's keys (see
:meth:`~.store.MemoryStore.held_data`), the local outbox, and the calls held in memory by
:class:`~.recovery.Recovery`. What ``export`` returns is what ``forget`` deletes.

A withdrawal is an operator's (``caller-memory withdraw-fact``, or the console): one fact found,
a reason checked (it goes into the audit log, which keeps no caller data), then
:meth:`~.store.MemoryStore.withdraw_fact`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .exceptions import CallerMemoryError, InvalidPhoneNumberError
from .log import logger
from .memory import text
from .models import CallerProfile, Fact, clean_text
from .outbox import Outbox
from .recovery import Recovery
from .redaction import Redactor
from .store import MemoryStore

__all__ = [
    "MAX_REASON",
    "FactNotFoundError",
    "HeldFact",
    "InvalidReasonError",
    "caller_hashes",
    "check_reason",
    "export_caller",
    "find_fact",
    "forget_caller",
    "forget_user",
    "summaries_cut",
]

MAX_REASON = 200
"""The longest reason a withdrawal may give (characters, whitespace folded)."""
_MIN_REASON = 4
_MAX_REASON_DIGITS = 6
"""More digits than this in a reason may be a phone number: refused."""


async def caller_hashes(store: MemoryStore, phone_number: str) -> tuple[str, list[str]]:
    """The keyed hashes of a caller whose rights are exercised (erasure, export, a fact
    withdrawn), current then previous secrets.

    The number is checked as a caller's is. One that no numbering plan holds is taken as given
    only when an identity was made for it that way (the guide's ``get_or_create_user_id`` takes
    any E.164 string, such as ``+1234567890``): no identity is out of an operator's reach, and
    a mistyped number is still refused rather than found holding nothing.

    Raises:
        InvalidPhoneNumberError: ``phone_number`` is not a phone number (or is withheld).
    """
    try:
        return store.hasher.hashes(phone_number)
    except InvalidPhoneNumberError as refused:
        try:
            as_given = store.hasher.hashes(phone_number, strict=False)
        except InvalidPhoneNumberError:
            raise refused from None
        if not (await store.held_data(as_given[0], previous=as_given[1])).user_ids:
            raise refused from None
        return as_given


async def forget_caller(
    store: MemoryStore,
    outbox: Outbox,
    recovery: Recovery | None,
    phone_hash: str,
    previous: Sequence[str] = (),
) -> list[str]:
    """Erase everything held about the caller of a phone hash, at once.

    Returns:
        What was deleted: store keys, then ``outbox:<file>`` for outbox entries.
    """
    hashes = {phone_hash, *previous}
    held = await store.held_data(phone_hash, previous=previous)
    deleted = await store.forget(phone_hash, previous=previous)
    return await _forget_local(store, outbox, recovery, hashes, {*held.user_ids, *hashes}, deleted)


async def forget_user(
    store: MemoryStore, outbox: Outbox, recovery: Recovery | None, user_id: str
) -> list[str]:
    """:func:`forget_caller` by user id: an operator acting on an erasure request
    (``caller-memory requests``)."""
    deleted = await store.forget_user(user_id)
    return await _forget_local(store, outbox, recovery, {user_id}, {user_id}, deleted)


async def _forget_local(
    store: MemoryStore,
    outbox: Outbox,
    recovery: Recovery | None,
    hashes: set[str],
    users: set[str],
    deleted: list[str],
) -> list[str]:
    removed = outbox.remove(outbox.of_caller(hashes, users))
    if recovery is not None:
        recovery.forget_held(lambda record, h: h in hashes or record.user_id in users)
    # What Redis appended to its log before the deletes still holds the data: compact it.
    await store.purge_history()
    logger.info("caller forgotten", extra={"keys": len(deleted), "outbox_entries": len(removed)})
    return deleted + [f"outbox:{name}" for name in removed]


async def export_caller(
    store: MemoryStore, outbox: Outbox, phone_hash: str, previous: Sequence[str] = ()
) -> dict[str, Any]:
    """Everything held about the caller of a phone hash (a subject-access request), as
    JSON-ready data: ``user_ids``, ``keys`` (each store key and its value), the erasure they
    asked for unverified if one waits (``erasure_requested``: Unix time; an erasure answers
    it) and ``outbox``."""
    data = await store.export(phone_hash, previous=previous)
    hashes = {phone_hash, *previous}
    users = {*data["user_ids"], *hashes}
    requested = [at for user, at in await store.erasure_requests() if user in users]
    if requested:
        data["erasure_requested"] = min(requested)
    data["outbox"] = {
        item.name: item.entry.model_dump(mode="json")
        if item.entry is not None
        else item.raw.decode(errors="replace")
        for item in outbox.of_caller(hashes, users)
    }
    return data


# -- withdrawing one fact ------------------------------------------------------------------


class FactNotFoundError(CallerMemoryError):
    """The caller holds no current fact of that id. The message names the id, never a fact's
    text or the number."""


class InvalidReasonError(CallerMemoryError, ValueError):
    """A withdrawal's reason cannot go into the audit log. The message never repeats it."""


@dataclass(frozen=True)
class HeldFact:
    """A caller's current fact, and the profile it is in."""

    user_id: str
    fact: Fact
    profile: CallerProfile


async def find_fact(
    store: MemoryStore, phone_hash: str, fact_id: int, previous: Sequence[str] = ()
) -> HeldFact:
    """The current fact ``fact_id`` of the caller of a phone hash. Reads only: no TTL is
    renewed, no key moved (as :func:`export_caller`).

    Raises:
        FactNotFoundError: Nothing is held about the caller, or they have no current fact of
            that id (the message says which: none, or replaced or withdrawn already).
    """
    held = await store.held_data(phone_hash, previous=previous)
    if not held.user_ids:
        raise FactNotFoundError(
            "nothing is held about this caller (under this phone-hash secret: the workers' "
            "MEMORY_PHONE_HASH_SECRET must be set here too)"
        )
    past: Fact | None = None
    for user_id in held.user_ids:
        profile = await store.get_profile(user_id)
        for fact in profile.facts if profile is not None else []:
            if fact.id == fact_id and fact.current:
                assert profile is not None
                return HeldFact(user_id=user_id, fact=fact, profile=profile)
            if fact.id == fact_id:
                past = fact
    if past is not None:
        raise FactNotFoundError(f"fact #{fact_id} of this caller is {past.status} already")
    raise FactNotFoundError(
        f"this caller has no fact #{fact_id} (the export lists each fact with its id)"
    )


def check_reason(reason: str, fact: Fact, *, region: str | None = None) -> str:
    """A withdrawal's reason as the audit log keeps it: whitespace folded, a few words, and no
    caller data (the audit log names callers by their user id only).

    Args:
        reason: What the operator wrote.
        fact: The fact withdrawn: a reason may not repeat its value or the caller's words.
        region: Where national phone numbers are read from (``MEMORY_DEFAULT_REGION``).

    Raises:
        InvalidReasonError: It is missing or too short, too long, holds what looks like a
            number, an e-mail address or a card, or repeats the fact.
    """
    folded = " ".join(clean_text(reason).split())  # a terminal's stray bytes: U+FFFD
    if not folded:
        raise InvalidReasonError(
            "a reason is required: say in a few words why the fact is wrong (it is kept in "
            "the audit log)"
        )
    if len(folded) < _MIN_REASON:
        raise InvalidReasonError(
            f"the reason is too short ({_MIN_REASON} characters at least): say in a few words "
            "why the fact is wrong"
        )
    if len(folded) > MAX_REASON:
        raise InvalidReasonError(f"the reason is too long: {MAX_REASON} characters at most")
    digits = sum(c.isdigit() for c in folded)
    if digits > _MAX_REASON_DIGITS or Redactor(region=region or "US")(folded) != folded:
        raise InvalidReasonError(
            "the reason holds what looks like a phone number, a card, a code or an e-mail "
            "address: the audit log keeps no caller data; say why without it"
        )
    for said in (fact.value, fact.evidence):
        if len(text.normalize(said)) >= 3 and text.contains(folded, said):
            raise InvalidReasonError(
                "the reason repeats the fact: the audit log keeps no caller data; say why it "
                'is wrong instead ("the caller says they never said it")'
            )
    return folded


def summaries_cut(before: CallerProfile, after: CallerProfile) -> int:
    """How many of the earlier calls' summaries a withdrawal shortened."""
    kept = {call.session_id: call.summary for call in after.calls}
    return sum(
        1 for call in before.calls if kept.get(call.session_id, call.summary) != call.summary
    )
