"""``sarah``: replay recorded calls offline, or run Sarah with the LiveKit commands.

sarah replay [--calls FILE] [-v]   recorded calls through the real plugin, no server needed
sarah console [--text]             talk to Sarah in this terminal (LiveKit's console mode)
sarah dev | start                  serve a LiveKit server (LIVEKIT_URL, _API_KEY, _SECRET)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from livekit.plugins.caller_memory import CallerMemoryError
from livekit.plugins.caller_memory.server import resolve_default_redis

from .config import memory_config

__all__ = ["main"]


def _replay(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sarah replay", description=__doc__)
    parser.add_argument("--calls", type=Path, help="a recorded-calls JSON file")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every line")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    from .replay import replay

    return asyncio.run(replay(args.calls, verbose=args.verbose))


def _serve() -> None:
    if sys.argv[1] == "start":
        # Production: refuse to start without a shared phone-hash secret, rather than key
        # callers with a per-machine development secret.
        os.environ.setdefault("MEMORY_REQUIRE_SECRET", "true")
    # Start the private Redis here, in the main process, before LiveKit forks its job
    # processes: they inherit REDIS_URL and share one server that lives as long as the worker.
    config, local_redis = resolve_default_redis(memory_config())
    if local_redis is not None:
        os.environ["REDIS_URL"] = config.redis_url()
    from livekit.agents import cli

    from .agent import server

    try:
        cli.run_app(server)
    finally:
        if local_redis is not None:
            local_redis.stop()


def main() -> int:
    """Run the ``sarah`` command."""
    if len(sys.argv) > 1 and sys.argv[1] == "replay":
        return _replay(sys.argv[2:])
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        _serve()
    except CallerMemoryError as e:  # a setting to fix: say which, without a traceback
        print(f"❌ {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
