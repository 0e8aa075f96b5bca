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

__all__ = ["export_caller", "forget_caller"]


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
    users = set(held.user_ids)
    removed = outbox.remove(lambda e: e.phone_hash in hashes or e.record.user_id in users)
    if recovery is not None:
        recovery.forget_held(lambda record, h: h in hashes or record.user_id in users)
    logger.info("caller forgotten", extra={"keys": len(deleted), "outbox_entries": len(removed)})
    return deleted + [f"outbox:{name}" for name in removed]


async def export_caller(
    store: MemoryStore, outbox: Outbox, phone_hash: str, previous: Sequence[str] = ()
) -> dict[str, Any]:
    """Everything held about the caller of a phone hash (a subject-access request), as
    JSON-ready data: ``user_ids``, ``keys`` (each store key and its value) and ``outbox``."""
    data = await store.export(phone_hash, previous=previous)
    hashes = {phone_hash, *previous}
    users = set(data["user_ids"])
    data["outbox"] = [
        e.model_dump(mode="json")
        for e in outbox.entries()
        if e.phone_hash in hashes or e.record.user_id in users
    ]
    return data
