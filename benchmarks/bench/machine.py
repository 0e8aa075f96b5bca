"""The conditions of a run, for the report's Machine table: CPU, OS and library versions, the
server, the git state of the plugin, the plugin settings, and the CPU that other processes used
during the run (sampled from /proc at the start and at the end)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE

from livekit.plugins.caller_memory import RedisConfig

from .env import ROOT


def settings(config: RedisConfig) -> str:
    """The settings that shape the numbers (some come from the environment)."""
    names = [
        "lookup_timeout_ms",
        "socket_timeout",
        "max_connections",
        "journal_turns",
        "max_sessions",
        "max_summaries",
        "session_ttl_hours",
        "profile_ttl_days",
    ]
    values = [f"{n}={getattr(config, n)}" for n in names if hasattr(config, n)]
    return ", ".join(values)


def machine(
    server_info: dict[str, Any],
    load: tuple[float, float],
    others: tuple[float, float] | None,
    config: RedisConfig,
) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} cores" + (f" ({usable} usable)" if usable is not None else "")
    try:
        hiredis = f"yes (hiredis {importlib.metadata.version('hiredis')})"
    except importlib.metadata.PackageNotFoundError:
        hiredis = "yes" if HIREDIS_AVAILABLE else "no"
    if not HIREDIS_AVAILABLE:
        hiredis = "no"
    version = server_info.get("valkey_version") or server_info.get("redis_version")
    kind = "Valkey" if "valkey_version" in server_info else "Redis"
    exe = server_info.get("executable", "?")
    return [
        f"| CPU | {cpu} (`model name` in /proc/cpuinfo), {cores} |",
        f"| OS | {platform.system()} {platform.release()} ({platform.machine()}) |",
        f"| Python | {platform.python_implementation()} {platform.python_version()} |",
        f"| redis-py | {redis.__version__}, hiredis {hiredis} |",
        f"| pydantic | {importlib.metadata.version('pydantic')} |",
        f"| livekit-agents | {importlib.metadata.version('livekit-agents')} |",
        f"| Server | {kind} {version} (`{exe}`), private, loopback TCP, no persistence |",
        f"| Load average (1 min) | {load[0]:.2f} at the start, {load[1]:.2f} at the end "
        "(this run included) |",
        f"| CPU used by other processes during the run | {describe_others(others)} |",
        f"| Niceness of this process and its server | {os.nice(0)} |",
        f"| Code | {git_state()} |",
        f"| Plugin settings | {settings(config)} |",
    ]


def git_state() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10
        )
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [
        line[3:] for line in git("status", "--porcelain", "--", "plugins").splitlines() if line
    ]
    if not changed:
        return f"git {head}, plugin as committed"
    files = "file" if len(changed) == 1 else "files"
    return f"git {head} + uncommitted changes to {len(changed)} plugin {files}"


def describe_others(others: tuple[float, float] | None) -> str:
    if others is None:
        return "unknown (no /proc)"
    used, stolen = others
    return (
        f"{used:.2f} cores on average (/proc/stat busy time minus this process and the "
        f"server); {stolen:.2f} cores stolen by the hypervisor"
    )


@dataclass
class CpuSample:
    """CPU seconds so far: the whole machine (busy, stolen), this process, the server."""

    wall: float
    busy: float
    steal: float
    own: float
    server: float


def cpu_sample(server_pid: int | None) -> CpuSample | None:
    """Read /proc (Linux only): None elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        steal = fields[7] if len(fields) > 7 else 0
        busy = sum(fields[:8]) - idle
        server = 0.0
        if server_pid is not None:
            stat = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    times = os.times()
    return CpuSample(
        wall=time.monotonic(),
        busy=busy / tick,
        steal=steal / tick,
        own=times.user + times.system,
        server=server,
    )


def others_cpu(start: CpuSample | None, end: CpuSample | None) -> tuple[float, float] | None:
    """Cores used on average by other processes during the run, and cores stolen by the host."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    wall = end.wall - start.wall
    others = (end.busy - start.busy) - (end.own - start.own) - (end.server - start.server)
    return max(0.0, others) / wall, (end.steal - start.steal) / wall
