"""Counting what an operation costs on the wire and on the server.

:class:`WireCounter` counts the round trips (socket writes) of the store's own connection pool
and names the commands written (:func:`resp_command_names`); :func:`server_snapshot` reads the
server's ``INFO stats`` and ``INFO commandstats``; :class:`Meter` puts the two around a block
of operations and gives an :class:`OpCount` per operation, which :func:`count_row` renders.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis


def resp_command_names(data: bytes) -> list[str]:
    """Names of the commands in a buffer of RESP arrays, as a client writes them."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] != b"*":
            raise ValueError("not a RESP array")
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        head: list[str] = []
        for i in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            pos = end + 2
            if i < 2:
                head.append(data[pos : pos + length].decode(errors="replace").upper())
            pos += length + 2
        name = head[0] if head else "?"
        if name in ("CLIENT", "SCRIPT", "CONFIG", "MEMORY") and len(head) > 1:
            name = f"{name} {head[1]}"
        names.append(name)
    return names


def _as_bytes(command: Any) -> bytes:
    if isinstance(command, str):
        return command.encode()
    if isinstance(command, bytes | bytearray | memoryview):
        return bytes(command)
    return b"".join(bytes(chunk) for chunk in command)


class WireCounter:
    """Counts the writes (round trips) and commands of one client's connection pool.

    Every connection of the pool, present and future, gets a wrapped
    ``send_packed_command`` (an instance attribute: the class and other clients are left
    alone). Counting happens only inside :meth:`counting`.
    """

    def __init__(self, client: object) -> None:
        self.sends = 0
        self.commands: Counter[str] = Counter()
        self._active = False
        self._wrapped: weakref.WeakSet[Any] = weakref.WeakSet()
        pool: Any = getattr(client, "connection_pool", None)
        if pool is None:
            raise SystemExit("the benchmark needs a standalone client with one connection pool")
        existing = [
            *getattr(pool, "_available_connections", []),
            *getattr(pool, "_in_use_connections", []),
        ]
        for conn in existing:
            self._wrap(conn)
        make_connection = pool.make_connection

        def make_counted_connection() -> Any:
            conn = make_connection()
            self._wrap(conn)
            return conn

        pool.make_connection = make_counted_connection

    def _wrap(self, conn: Any) -> None:
        if conn in self._wrapped:
            return
        self._wrapped.add(conn)
        send = conn.send_packed_command

        async def counted(command: Any, check_health: bool = True) -> None:
            if self._active:
                self.sends += 1
                self.commands.update(resp_command_names(_as_bytes(command)))
            await send(command, check_health)

        conn.send_packed_command = counted

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def reset(self) -> None:
        self.sends = 0
        self.commands.clear()


@dataclass
class ServerSnapshot:
    commands: Counter[str]
    reads: int


async def server_snapshot(admin: aioredis.Redis) -> ServerSnapshot:
    info: dict[str, Any] = await admin.info("stats", "commandstats")
    commands: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            commands[key.removeprefix("cmdstat_").upper().replace("|", " ")] = int(value["calls"])
    return ServerSnapshot(commands=commands, reads=int(info["total_reads_processed"]))


@dataclass
class OpCount:
    """Round trips and commands per operation, client side and server side."""

    ops: int
    sends: float
    client_commands: Counter[str]
    server_reads: float
    server_commands: Counter[str]

    @property
    def client_total(self) -> float:
        return sum(self.client_commands.values()) / self.ops

    @property
    def server_total(self) -> float:
        return sum(self.server_commands.values()) / self.ops

    @staticmethod
    def detail(counter: Counter[str], ops: int) -> str:
        parts = []
        for name, calls in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
            per = calls / ops
            parts.append(f"{name} ×{per:g}" if per != 1 else name)
        return ", ".join(parts) or "-"


def count_row(name: str, c: OpCount) -> str:
    """A row of the report's "Round trips and commands per operation" table."""
    return (
        f"| {name} | {c.sends:g} | {c.server_reads:g} | {c.client_total:g} "
        f"({OpCount.detail(c.client_commands, c.ops)}) | {c.server_total:g} "
        f"({OpCount.detail(c.server_commands, c.ops)}) |"
    )


class Meter:
    """Counts what a block of operations costs, on the wire and on the server."""

    def __init__(self, wire: WireCounter, admin: aioredis.Redis) -> None:
        self._wire = wire
        self._admin = admin
        self._overhead: ServerSnapshot | None = None

    async def calibrate(self) -> None:
        # Two snapshots with nothing between them: what the snapshots themselves cost.
        a = await server_snapshot(self._admin)
        b = await server_snapshot(self._admin)
        self._overhead = ServerSnapshot(commands=b.commands - a.commands, reads=b.reads - a.reads)

    @contextlib.asynccontextmanager
    async def measure(self, ops: int) -> AsyncIterator[list[OpCount]]:
        assert self._overhead is not None, "calibrate() first"
        out: list[OpCount] = []
        self._wire.reset()
        before = await server_snapshot(self._admin)
        with self._wire.counting():
            yield out
        after = await server_snapshot(self._admin)
        server = after.commands - before.commands - self._overhead.commands
        server.pop("INFO", None)
        out.append(
            OpCount(
                ops=ops,
                sends=self._wire.sends / ops,
                client_commands=Counter(self._wire.commands),
                server_reads=(after.reads - before.reads - self._overhead.reads) / ops,
                server_commands=+server,
            )
        )
