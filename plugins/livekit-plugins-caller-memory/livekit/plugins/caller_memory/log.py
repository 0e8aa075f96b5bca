import logging

logger = logging.getLogger("livekit.plugins.caller_memory")
