"""A caller's rights over their memory: erase everything (``forget``), or see it (``export``).

Both reach every place a caller's data can be: the store's keys (see
:meth:`~.store.MemoryStore.held_data`), the local outbox, and the calls held in memory by
:class:`~.recovery.Recovery`. What ``export`` returns is what ``forget`` deletes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .log import logger
from .outbox import Outbox
from .recovery import Recovery
from .store import MemoryStore

__all__ = ["export_caller", "forget_caller", "forget_user"]


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
    JSON-ready data: ``user_ids``, ``keys`` (each store key and its value) and ``outbox``."""
    data = await store.export(phone_hash, previous=previous)
    hashes = {phone_hash, *previous}
    users = {*data["user_ids"], *hashes}
    data["outbox"] = {
        item.name: item.entry.model_dump(mode="json")
        if item.entry is not None
        else item.raw.decode(errors="replace")
        for item in outbox.of_caller(hashes, users)
    }
    return data
