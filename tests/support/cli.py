"""The operator's ``caller-memory`` command, run as an operator runs it: its own process, with
the settings of a test's ``RedisConfig`` in its environment."""

from __future__ import annotations

import os
import subprocess
import sys

from livekit.plugins.caller_memory import RedisConfig

__all__ = ["operator_cli"]


def operator_cli(config: RedisConfig, *args: str) -> subprocess.CompletedProcess[str]:
    """``caller-memory ARGS`` against ``config``'s Redis, prefix, secret and data folder."""
    secret = config.phone_hash_secret
    env = {
        **os.environ,
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": secret.get_secret_value() if secret else "",
        "MEMORY_DATA_DIR": str(config.data_dir),
        "MEMORY_ORPHAN_AFTER_S": str(config.orphan_after_s),
    }
    if config.cluster_nodes:
        env["REDIS_CLUSTER_NODES"] = config.cluster_nodes
    return subprocess.run(
        [sys.executable, "-m", "livekit.plugins.caller_memory.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
