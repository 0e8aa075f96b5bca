"""Caller memory for LiveKit voice agents, backed by Redis.

Identify a caller by their phone number (normalized, then keyed with HMAC-SHA256), load what
earlier calls taught the agent, and at hang-up summarize the call into the caller's profile.

See https://github.com/livekit/agents for LiveKit Agents, and this package's README for the
few lines that add caller memory to an agent.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

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
from .log import hide_numbers_in_livekit_logs
from .models import CallerProfile, CallSummary
from .store import InMemoryStore, MemoryStore, RedisMemoryStore
from .version import __version__

if TYPE_CHECKING:
    from .agent import CallerMemory, on_session_end
    from .call_memory import CallMemory

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

_WITH_LIVEKIT = {"CallerMemory": "agent", "on_session_end": "agent", "CallMemory": "call_memory"}
"""The names that need LiveKit Agents, loaded when first used: the command-line tools and the
guide's store and session manager start without it (its import takes seconds)."""


def __getattr__(name: str) -> Any:
    module = _WITH_LIVEKIT.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WITH_LIVEKIT})


if "livekit.agents" in sys.modules:  # an agent's process: LiveKit is loaded, register now
    from . import agent  # noqa: F401
