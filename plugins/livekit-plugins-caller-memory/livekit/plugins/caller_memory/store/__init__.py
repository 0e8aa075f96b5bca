"""Where caller memory is kept: the store contract and its two implementations.

- :mod:`.base`: :class:`MemoryStore`, the guide's API and a call's flow (lookup, save), with
  :mod:`.profiles`, :mod:`.open_calls` (journal, orphans) and :mod:`.rights` (erasure,
  export); :mod:`.primitives`: the few atomic operations a backend provides;
  :mod:`.records`: what they take and give back; :mod:`.held`: what is held about a caller;
  :mod:`.stats`: the counts both stores report;
- :mod:`.keys`: the key layout; :mod:`.codec`: how values are written and read back;
- :mod:`.redis`: :class:`RedisMemoryStore`, connected and closed there, and made of
  :mod:`.redis_client` (the client, each operation's slot and deadline, the Lua scripts of
  ``scripts/``), :mod:`.redis_callers` (a caller's keys: lookup, save, move),
  :mod:`.redis_open_calls` (calls in progress) and :mod:`.redis_keyspace` (reads, deletes,
  counts);
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
