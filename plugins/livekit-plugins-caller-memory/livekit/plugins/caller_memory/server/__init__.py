"""The Redis a process uses when none is named, and the private server behind it.

- :mod:`.connect`: which store the settings ask for (:func:`open_store`);
- :mod:`.embedded`: :class:`EmbeddedRedis`, a private server process;
- :mod:`.binaries`: which server binary it runs.
"""

from .binaries import (
    ENV_SERVER_BIN,
    EmbeddedServerError,
    bundled_binary,
    find_server_binary,
    server_version,
)
from .connect import open_store, resolve_default_redis
from .embedded import EmbeddedRedis

__all__ = [
    "ENV_SERVER_BIN",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "bundled_binary",
    "find_server_binary",
    "open_store",
    "resolve_default_redis",
    "server_version",
]
