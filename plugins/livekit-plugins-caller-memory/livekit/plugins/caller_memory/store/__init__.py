"""Where caller memory is kept: the store contract and its two implementations.

- :mod:`.base`: :class:`MemoryStore`, the guide's API over a few atomic operations;
- :mod:`.keys`: the key layout; :mod:`.codec`: how values are written and read back;
- :mod:`.redis`: :class:`RedisMemoryStore` (the Lua scripts are in ``scripts/``);
- :mod:`.memory`: :class:`InMemoryStore`, for ``MEMORY_PERSISTENCE=false``;
- :mod:`.opener`: :func:`open_store`, the store the settings ask for.
"""

from .base import CallerLookup, HeldData, MemoryStore, VersionSaves, new_user_id
from .keys import Keys
from .memory import InMemoryStore
from .opener import open_store
from .redis import RedisMemoryStore

__all__ = [
    "CallerLookup",
    "HeldData",
    "InMemoryStore",
    "Keys",
    "MemoryStore",
    "RedisMemoryStore",
    "VersionSaves",
    "new_user_id",
    "open_store",
]
