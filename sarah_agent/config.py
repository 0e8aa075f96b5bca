"""Sarah's caller-memory settings: the environment's, with Sarah's own key prefix."""

from __future__ import annotations

from typing import Any

from livekit.plugins.caller_memory import RedisConfig

__all__ = ["KEY_PREFIX", "memory_config"]

KEY_PREFIX = "sarah"
"""Sarah's keys are ``sarah:...`` (the guide's table), unless ``MEMORY_KEY_PREFIX`` says else."""


def memory_config(**overrides: Any) -> RedisConfig:
    """The settings of the environment, with ``sarah`` as the default key prefix."""
    return RedisConfig.from_env(defaults={"key_prefix": KEY_PREFIX}, **overrides)
