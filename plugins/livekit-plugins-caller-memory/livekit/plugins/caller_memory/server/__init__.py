"""The Redis a process uses when none is named, and the private server behind it.

- :mod:`.connect`: which Redis to use when none is named (:func:`resolve_default_redis`),
  and this machine's private server shared by its processes;
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
from .connect import resolve_default_redis
from .embedded import EmbeddedRedis

__all__ = [
    "ENV_SERVER_BIN",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "bundled_binary",
    "find_server_binary",
    "resolve_default_redis",
    "server_version",
]
