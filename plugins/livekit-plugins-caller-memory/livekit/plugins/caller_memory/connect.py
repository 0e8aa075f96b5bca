"""Deprecated: moved to :mod:`livekit.plugins.caller_memory.server` (kept for one release)."""

from __future__ import annotations

import warnings

from .server.connect import ensure_local_redis, open_store, resolve_default_redis, server_answers

__all__ = ["ensure_local_redis", "open_store", "resolve_default_redis", "server_answers"]

warnings.warn(
    "livekit.plugins.caller_memory.connect is deprecated; import from "
    "livekit.plugins.caller_memory.server",
    DeprecationWarning,
    stacklevel=2,
)
