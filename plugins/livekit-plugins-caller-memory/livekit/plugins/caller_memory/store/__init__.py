"""Where caller memory is kept: the store contract and its two implementations.

- :mod:`.base`: :class:`MemoryStore`, the guide's API and a call's flow (lookup, save), with
  :mod:`.profiles`, :mod:`.open_calls` (journal, orphans) and :mod:`.rights` (erasure,
  export); :mod:`.primitives`: the few atomic operations a backend provides;
  :mod:`.records`: what they take and give back; :mod:`.held`: what is held about a caller;
- :mod:`.keys`: the key layout; :mod:`.codec`: how values are written and read back;
- :mod:`.redis`: :class:`RedisMemoryStore` (the Lua scripts are in ``scripts/``);
- :mod:`.memory`: :class:`InMemoryStore`, for ``MEMORY_PERSISTENCE=false``;
- :mod:`.opener`: :func:`open_store`, the store the settings ask for.
"""

from .base import MemoryStore
from .keys import Keys, new_user_id
from .memory import InMemoryStore
from .opener import open_store
from .records import CallerLookup, HeldData, VersionSaves
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
