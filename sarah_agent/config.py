"""Sarah's caller-memory settings: the environment's, with Sarah's own defaults."""

from __future__ import annotations

from typing import Any

from livekit.plugins.caller_memory import RedisConfig

__all__ = ["DEFAULT_REGION", "KEY_PREFIX", "memory_config"]

KEY_PREFIX = "sarah"
"""Sarah's keys are ``sarah:...`` (the guide's table), unless ``MEMORY_KEY_PREFIX`` says else."""
DEFAULT_REGION = "US"
"""Sarah answers a US practice's line: a number written without its country code is American,
unless ``MEMORY_DEFAULT_REGION`` says else (the plugin alone refuses such numbers)."""


def memory_config(**overrides: Any) -> RedisConfig:
    """The settings of the environment, with Sarah's defaults: the ``sarah`` key prefix and
    the US as the region of numbers written nationally."""
    defaults = {"key_prefix": KEY_PREFIX, "default_region": DEFAULT_REGION}
    return RedisConfig.from_env(defaults=defaults, **overrides)
