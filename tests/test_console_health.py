"""The console's health page stays cheap, and its long lists come a page at a time.

Against a real Redis server of this module's own (its database holds only what the tests put
there, so that its size is theirs): the page answers without a ``SCAN`` (counted by the
server's own ``INFO commandstats``), its estimates hold the full count within the margins it
states, the full count runs only when an operator presses its button, and the erasure
requests page with next and previous links that lose and repeat nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import CallSummary, RedisConfig
from livekit.plugins.caller_memory.console import create_app
from livekit.plugins.caller_memory.console.health import HealthMonitor, store_kind
from livekit.plugins.caller_memory.console.paging import PAGE_SIZE
from livekit.plugins.caller_memory.console.sampling import Sample, draw_sample
from livekit.plugins.caller_memory.models import SessionRecord, Turn, utcnow
from livekit.plugins.caller_memory.outbox import Outbox
from livekit.plugins.caller_memory.store import MemoryStore, RedisMemoryStore

from .conftest import TEST_SECRET, replace
from .support.cluster import LocalCluster
from .support.console import (
    SETTINGS,
    ConsoleClient,
    Page,
    client,
    logged_in,
    outside_folds,
    seed_call,
    served,
)
from .support.servers import TestServer
from .support.waiting import eventually

CALLERS = 1500
"""Callers of the populated store: more keys than one random draw (4,000) reads."""


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """A server for this module alone: ``DBSIZE`` counts only its tests' keys."""
    server = TestServer(data_dir=tmp_path_factory.mktemp("health-redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def config(own_server: TestServer, tmp_path: Path) -> AsyncIterator[RedisConfig]:
    """Settings pointing at this module's server, emptied for each test."""
    admin = aioredis.Redis.from_url(own_server.url)
    await admin.flushall()
    await admin.aclose()
    yield RedisConfig(
        url=own_server.url,
        key_prefix="health",
        phone_hash_secret=TEST_SECRET,
        default_region="US",
        data_dir=tmp_path,
        lookup_timeout_ms=10_000,
    )


@pytest.fixture
async def store(config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The Redis store of ``config``, connected."""
    impl = RedisMemoryStore(config)
    assert await impl.connect()
    yield impl
    await impl.disconnect()


async def _populate(store: MemoryStore, callers: int) -> None:
    """``callers`` callers with one saved call each (the store's own save path), 25 at once."""

    async def one(i: int) -> None:
        phone_hash = store.hasher.hash(f"+1212{2_000_000 + i:07d}")
        found = await store.lookup(phone_hash)
        now = utcnow()
        record = SessionRecord(
            session_id=f"AJ_pop_{i:06d}", user_id=found.user_id, started_at=now, ended_at=now,
            turns=[Turn(role="user", text="I'd like to book a cleaning.")],
        )  # fmt: skip
        summary = CallSummary(summary="Asked to book a cleaning.")
        await store.save_call(record, summary, phone_hash=phone_hash, base=found)

    for start in range(0, callers, 25):
        await asyncio.gather(*(one(i) for i in range(start, min(callers, start + 25))))


async def _scans(url: str) -> int:
    """``SCAN`` commands the server has answered since it started."""
    admin = aioredis.Redis.from_url(url)
    try:
        stats = await admin.info("commandstats")
    finally:
        await admin.aclose()
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def _tile(page: Page, tile_id: str) -> tuple[int, int]:
    """A tile's number and its margin (0 when it shows none: exact)."""
    found = re.search(rf'id="{tile_id}">(.*?)</b>', page.text, re.S)
    assert found, f"no tile {tile_id}"
    shown = re.sub(r"<[^>]+>", " ", found.group(1))
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", shown)]
    return numbers[0], (numbers[1] if "±" in shown else 0)


async def _full_count(browser: ConsoleClient) -> Page:
    """Press the full count's button, and wait for its result on the page."""
    await browser.post("/health/count", {})

    async def counted() -> bool:
        return 'id="callers-count"' in (await browser.get("/health")).text

    await eventually(counted, what="the full count's result")
    return await browser.get("/health")


# -- health --------------------------------------------------------------------------------


async def test_the_page_answers_without_scanning_and_says_what_is_exact(
    config: RedisConfig, store: MemoryStore, own_server: TestServer
) -> None:
    await _populate(store, CALLERS)  # more keys than a sample draws: estimated, not counted
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        before = await _scans(own_server.url)
        page = await browser.get("/health")
        panel = await browser.get("/health/panel", headers={"HX-Request": "true"})
        again = await browser.get("/health")
        assert await _scans(own_server.url) == before  # no SCAN, on load nor on refresh
    assert page.status == panel.status == again.status == 200
    text = page.visible_text()
    assert re.search(r"Exact ?: calls in progress", text)
    assert re.search(r"Estimates ?: callers, calls held in full and memory per caller", text)
    assert "999 times in 1,000" in text
    assert "not made since the console started" in text
    assert 'id="callers-count"' not in page.text  # no full count's numbers: none was made
    assert _tile(page, "now-in-progress") == (0, 0)
    assert _tile(page, "now-no-ttl") == (0, 0)
    callers, margin = _tile(page, "now-callers")
    assert margin > 0 and abs(callers - CALLERS) <= margin


async def test_a_store_with_fewer_keys_than_a_sample_is_counted_not_estimated(
    config: RedisConfig, store: MemoryStore
) -> None:
    # RANDOMKEY favours some keys over others: over a few dozen keys of a kind its margins
    # would not hold, so a database of no more keys than the draw is counted whole.
    await _populate(store, 40)
    await seed_call(store, "+1 415 555 0142", "AJ_open_1", ["Hi"], {}, end=False)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        page = await browser.get("/health")
        counted = await _full_count(browser)
    text = page.visible_text()
    assert "Counted" in text and "999 times in 1,000" not in text
    assert re.search(r"Counted ?: callers and calls held in full, from every one", text)
    stats = await store.stats()
    assert _tile(page, "now-callers") == (stats["callers"], 0) == (41, 0)
    assert _tile(page, "now-held") == (stats["sessions_kept"], 0)
    assert _tile(counted, "callers-count") == (41, 0)  # what the full count finds too
    memory, _ = _tile(page, "now-memory")
    assert memory > 100


async def test_the_full_count_runs_only_when_asked_and_is_timestamped(
    config: RedisConfig, store: MemoryStore, own_server: TestServer
) -> None:
    await _populate(store, 30)
    await seed_call(store, "+1 415 555 0142", "AJ_bo_1", ["Hi"], {"summary": "Hi."}, end=False)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        before = await _scans(own_server.url)
        for _ in range(3):  # a store this small is counted whole at each load; not the full count
            assert 'id="callers-count"' not in (await browser.get("/health")).text
        page = await _full_count(browser)
        assert await _scans(own_server.url) > before  # the count read every key
        text = page.visible_text()
        assert re.search(r"Full count counted \d{4}-\d\d-\d\d \d\d:\d\d UTC ?, in \d+\.\d s", text)
        assert _tile(page, "callers-count") == (31, 0)  # exact: Bo's first call included
        assert _tile(page, "in-progress") == (1, 0)
        assert _tile(page, "now-in-progress") == (1, 0)
        assert len(re.findall(r'<rect class="bar"', page.text)) == 24
        counts = re.findall(r'<text class="count"[^>]*>(\d+)</text>', page.text)
        assert sum(int(n) for n in counts) >= 30  # the calls of this hour (or the last two)
        assert _tile(page, "now-saved-since") == (0, 0)
        await seed_call(store, "+1 415 555 0177", "AJ_cy_1", ["Hi"], {"summary": "Hi."})
        after = await browser.get("/health")
        assert _tile(after, "now-saved-since") == (1, 0)  # exact, without another count
        assert _tile(after, "callers-count") == (31, 0)  # the count's own time, kept


async def test_estimates_hold_the_full_count_within_their_stated_margins(
    config: RedisConfig, store: MemoryStore
) -> None:
    await _populate(store, CALLERS)
    for i in range(3):  # calls in progress: journals among the session keys
        await seed_call(store, f"+1 415 555 02{i:02d}", f"AJ_open_{i}", ["Hi"], {}, end=False)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        estimated = await browser.get("/health")
        counted = await _full_count(browser)
    exact = (await store.stats())["callers"]
    assert exact == CALLERS + 3
    callers, margin = _tile(estimated, "now-callers")
    assert 0 < margin < exact // 5 and abs(callers - exact) <= margin
    assert _tile(counted, "callers-count") == (exact, 0)
    held, held_margin = _tile(estimated, "now-held")
    assert abs(held - (await store.stats())["sessions_kept"]) <= held_margin
    assert _tile(estimated, "now-in-progress") == (3, 0)
    memory, _ = _tile(estimated, "now-memory")
    assert memory > 100  # bytes of a caller's three keys, measured on the ones drawn


async def _sampled(store: MemoryStore, config: RedisConfig) -> HealthMonitor:
    outbox = Outbox(config.data_dir / "outbox")
    return HealthMonitor(store, outbox, store_kind(store, config), 0, sample_keys=200)


async def test_the_sample_counts_each_kind_of_key_as_the_store_names_it(
    config: RedisConfig, store: MemoryStore, own_server: TestServer
) -> None:
    # The draw is counted by kind inside Redis (sample.lua): it must agree with the store's
    # own names for every key it writes, and count a stranger's key as none of them.
    keys = store.keys
    one_of_each = {
        keys.phone("h1"): "phone",
        keys.unreadable_phone("h1"): "unreadable",
        keys.profile("u1"): "profile",
        keys.unreadable_profile("u1"): "unreadable",
        keys.sessions("u1"): "sessions",
        keys.calls("u1"): "calls",
        keys.erased("u1"): "erased",
        keys.session("AJ_1"): "session",
        keys.open_calls(): "open",
        keys.erasure_requests(): "requests",
        keys.maintenance(): "maintenance",
        keys.versions(): "versions",
        keys.trunk_regions(): "regions",
        "health2:phone:{h1}": "other",
        "healthy:phone:{h1}": "other",
        "health:something:else": "other",
    }
    admin = aioredis.Redis.from_url(own_server.url)
    monitor = await _sampled(store, config)
    try:
        for key, kind in one_of_each.items():
            assert store.keys.kind(key) == kind
            await admin.flushall()
            if kind in ("open", "requests", "versions", "regions", "calls"):
                await admin.zadd(key, {"saves:0.3.0": 1})  # read by the exact numbers
            else:
                await admin.set(key, "x")
            sample = (await monitor.health()).sample
            assert sample is not None and sample.db_keys == 1
            assert sample.kinds == {kind: 1} and sample.exact, key  # counted whole: one key
    finally:
        await admin.aclose()
        await monitor.aclose()


async def test_on_a_cluster_each_primary_draws_its_share(
    config: RedisConfig, redis_cluster: LocalCluster
) -> None:
    on_cluster = replace(config, url=redis_cluster.url, cluster=True, key_prefix="healthc")
    store = RedisMemoryStore(on_cluster)
    assert await store.connect()
    try:
        await _populate(store, 300)
        async with served(create_app(on_cluster, settings=SETTINGS)) as url, client(url) as b:
            await logged_in(b)
            page = await b.get("/health")
        assert "Redis Cluster" in page.visible_text()
        exact = (await store.stats())["callers"]
        assert exact == 300
        # Counted whole when the cluster holds no more keys than a sample draws (other tests
        # share it): exact then, within its margin otherwise.
        callers, margin = _tile(page, "now-callers")
        assert abs(callers - exact) <= margin
        memory, _ = _tile(page, "now-memory")
        assert memory > 100  # measured on the primaries that hold the callers drawn
        # A draw smaller than the cluster: each primary draws its share of it.
        cluster = store.client
        assert isinstance(cluster, aioredis.RedisCluster)
        drawn = await draw_sample(cluster, "healthc", 400)
        assert not drawn.whole and abs(drawn.drawn - 400) <= len(cluster.get_primaries())
        sample = Sample(
            at=utcnow(), db_keys=drawn.db_keys, drawn=drawn.drawn, kinds=drawn.kinds,
            exact=False, memory_per_caller=None, memory_sampled=0,
        )  # fmt: skip
        estimate = sample.estimate("phone")
        assert estimate.margin > 0 and abs(estimate.value - exact) <= estimate.margin
    finally:
        for key in [k async for k in store.client.scan_iter(match="healthc:*")]:
            await store.client.delete(key)
        await store.disconnect()


_WRONG_SINGULAR = re.compile(r"(?<!± )\b1 (calls|callers|keys|requests|turns)\b")
_WRONG_PLURAL = re.compile(r"(?<!± )\b(0|[2-9]|\d[\d,]+) (call|caller|key|request)\b(?! summar)")
"""A count other than 1 with a singular noun (an estimate's margin, ``≈ 1 ± 3 caller``, is not
its count)."""


async def test_the_page_says_its_counts_in_words_and_folds_the_names(
    config: RedisConfig, store: MemoryStore
) -> None:
    # One of each: a caller, a call in progress, an erasure request, a call in the outbox.
    await seed_call(store, "+1 415 555 0142", "AJ_bo_1", ["Hi"], {"summary": "Hi."}, end=False)
    await store.request_erasure("someone")
    now = utcnow()
    record = SessionRecord(session_id="AJ_out_1", user_id="u", started_at=now, ended_at=now)
    Outbox(config.data_dir / "outbox").put(record, phone_hash=None)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        pages = {"estimated": await browser.get("/health")}
        pages["counted"] = await _full_count(browser)
    for name, page in pages.items():
        shown, bare = page.visible_text(), outside_folds(page).visible_text()
        assert "MEMORY_" not in bare and f"{config.key_prefix}:" not in bare, name
        assert _WRONG_SINGULAR.findall(shown) == [], name
        assert _WRONG_PLURAL.findall(shown) == [], name
    bare = outside_folds(pages["counted"]).visible_text()
    assert "1 call waiting, none unreadable" in bare
    assert "1 call in progress" in bare and "0 orphaned calls waiting" in bare
    assert "1 erasure request " in bare and "0 keys without an expiry" in bare
    assert re.search(r"\b1 caller\b", bare)  # the full count's, exact
    # The names an engineer needs are one click away.
    shown = pages["counted"].visible_text()
    assert "MEMORY_DATA_DIR/outbox" in shown and "MEMORY_ORPHAN_AFTER_S" in shown
    assert f"{config.key_prefix}:sessions:open" in shown


# -- paging --------------------------------------------------------------------------------


async def _request_ids(page: Page) -> list[str]:
    return re.findall(r'name="user_id" value="([^"]+)"', page.text)


def _link(page: Page, rel: str) -> str | None:
    found = re.search(rf'href="[^"]*(/callers\?[^"]+)" rel="{rel}"', page.text)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_erasure_requests_come_a_page_at_a_time(
    config: RedisConfig, store: MemoryStore
) -> None:
    asked = [f"user{i:03d}" for i in range(PAGE_SIZE + 1)]
    for user_id in asked:
        await store.request_erasure(user_id)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        first = await browser.get("/callers")
        shown = await _request_ids(first)
        assert len(shown) == PAGE_SIZE and _link(first, "prev") is None
        assert f"Requests 1–{PAGE_SIZE} of {PAGE_SIZE + 1}" in first.visible_text()
        later = _link(first, "next")
        assert later is not None and "user" not in later  # the cursor is a time, no user id
        second = await browser.get(later)
        rest = await _request_ids(second)
        assert _link(second, "next") is None
        assert sorted(shown + rest) == sorted(asked)  # none lost, none repeated
        earlier = _link(second, "prev")
        assert earlier is not None
        assert await _request_ids(await browser.get(earlier)) == shown

        # Answering a request on the first page moves nothing off the next one.
        await store.forget_user(shown[0])
        assert await _request_ids(await browser.get(later)) == rest
        assert "of 50" in (await browser.get("/callers")).visible_text()


async def test_requests_made_in_the_same_millisecond_split_across_pages_exactly(
    config: RedisConfig, store: MemoryStore
) -> None:
    key = store.keys.erasure_requests()
    at = 1_800_000_000.25
    early = [f"early{i:03d}" for i in range(PAGE_SIZE - 2)]
    for i, user_id in enumerate(early):
        await store.add_request(key, user_id, ttl=86400, at=at - 100 + i)
    tied = [f"tied{i}" for i in range(5)]  # one millisecond, straddling the page's edge
    for user_id in tied:
        await store.add_request(key, user_id, ttl=86400, at=at)
    await store.add_request(key, "last", ttl=86400, at=at + 1)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        first = await browser.get("/callers")
        assert await _request_ids(first) == [*early, *tied[:2]]
        later = _link(first, "next")
        assert later is not None
        second = await browser.get(later)
        assert await _request_ids(second) == [*tied[2:], "last"]
        assert f"Requests {PAGE_SIZE + 1}–{PAGE_SIZE + 4} of {PAGE_SIZE + 4}" in (
            second.visible_text()
        )
        earlier = _link(second, "prev")
        assert earlier is not None
        assert await _request_ids(await browser.get(earlier)) == [*early, *tied[:2]]
        odd = await browser.get("/callers?after=nan_1")  # a cursor that is no time: page one
        assert await _request_ids(odd) == [*early, *tied[:2]]
