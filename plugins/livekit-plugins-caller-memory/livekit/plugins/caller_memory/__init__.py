"""Caller memory for LiveKit voice agents, backed by Redis.

Identify a caller by their phone number (normalized, then keyed with HMAC-SHA256), load what
earlier calls taught the agent, and at hang-up summarize the call into the caller's profile.

See https://github.com/livekit/agents for LiveKit Agents, and this package's README for the
few lines that add caller memory to an agent.
"""

from __future__ import annotations

import warnings
from typing import Any

from livekit.agents import Plugin

from .agent import CallerMemory, on_session_end
from .call_memory import CallMemory
from .calls import SessionContext, SessionManager, get_session_manager, init_session_manager
from .config import RedisConfig
from .exceptions import (
    CallerErasedError,
    CallerMemoryError,
    ConfigError,
    InvalidPhoneNumberError,
    StoreUnavailableError,
    WithheldNumberError,
)
from .identity import PhoneHasher, normalize_phone
from .log import hide_numbers_in_livekit_logs, logger
from .models import CallerProfile, CallSummary
from .store import InMemoryStore, MemoryStore, RedisMemoryStore
from .version import __version__

__all__ = [
    "CallMemory",
    "CallSummary",
    "CallerErasedError",
    "CallerMemory",
    "CallerMemoryError",
    "CallerProfile",
    "ConfigError",
    "InMemoryStore",
    "InvalidPhoneNumberError",
    "MemoryStore",
    "PhoneHasher",
    "RedisConfig",
    "RedisMemoryStore",
    "SessionContext",
    "SessionManager",
    "StoreUnavailableError",
    "WithheldNumberError",
    "__version__",
    "get_session_manager",
    "hide_numbers_in_livekit_logs",
    "init_session_manager",
    "normalize_phone",
    "on_session_end",
]

# Names exported by 0.1 that are internals: still importable for one release, with a warning
# that says where they live now.
_MOVED = {
    "CallerLookup": "livekit.plugins.caller_memory.store",
    "Keys": "livekit.plugins.caller_memory.store",
    "PastCall": "livekit.plugins.caller_memory.models",
    "SessionRecord": "livekit.plugins.caller_memory.models",
    "Turn": "livekit.plugins.caller_memory.models",
    "caller_phone_number": "livekit.plugins.caller_memory.participants",
    "find_caller": "livekit.plugins.caller_memory.participants",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"{__name__}.{name} is internal and will be removed; import it from {module}",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(module), name)


class CallerMemoryPlugin(Plugin):
    """Registers caller memory with LiveKit Agents (its logger and version)."""

    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(CallerMemoryPlugin())
