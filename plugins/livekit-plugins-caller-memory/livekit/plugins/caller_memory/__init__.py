"""Caller memory for LiveKit voice agents, backed by Redis.

Identify a caller by their phone number (normalized, then keyed with HMAC-SHA256), load what
earlier calls taught the agent, and at hang-up summarize the call into the caller's profile.

See https://github.com/livekit/agents for LiveKit Agents, and this package's README for the
few lines that add caller memory to an agent.
"""

from livekit.agents import Plugin

from .config import RedisConfig
from .exceptions import (
    CallerMemoryError,
    ConfigError,
    InvalidPhoneNumberError,
    StoreUnavailableError,
)
from .identity import PhoneHasher, normalize_phone
from .keys import Keys
from .livekit_hooks import CallerMemory, CallMemory, caller_phone_number, find_caller
from .local_store import InMemoryStore
from .log import logger
from .models import CallerProfile, CallSummary, PastCall, SessionRecord, Turn
from .redis_store import RedisMemoryStore
from .session_manager import (
    SessionContext,
    SessionManager,
    get_session_manager,
    init_session_manager,
)
from .store import CallerLookup, MemoryStore
from .version import __version__

__all__ = [
    "CallMemory",
    "CallSummary",
    "CallerLookup",
    "CallerMemory",
    "CallerMemoryError",
    "CallerProfile",
    "ConfigError",
    "InMemoryStore",
    "InvalidPhoneNumberError",
    "Keys",
    "MemoryStore",
    "PastCall",
    "PhoneHasher",
    "RedisConfig",
    "RedisMemoryStore",
    "SessionContext",
    "SessionManager",
    "SessionRecord",
    "StoreUnavailableError",
    "Turn",
    "__version__",
    "caller_phone_number",
    "find_caller",
    "get_session_manager",
    "init_session_manager",
    "normalize_phone",
]


class CallerMemoryPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(CallerMemoryPlugin())
