"""The console at a front desk (issue 22), over HTTP against a real Redis: numbers as people type
them when no ``MEMORY_DEFAULT_REGION`` is set (the operator's country, asked once and kept in
their session, read by the calls' own rule), refusals in plain words with the number kept in the
box, and times as ``<time>`` elements in UTC for the console's script to show in local time. The
browser side (Chromium in another time zone) is in ``test_console_browser.py``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from datetime import timezone

import pytest
import redis.asyncio as aioredis

from livekit.plugins.caller_memory import RedisConfig
from livekit.plugins.caller_memory.console import create_app
from livekit.plugins.caller_memory.console.caller_view import why_refused
from livekit.plugins.caller_memory.exceptions import InvalidPhoneNumberError
from livekit.plugins.caller_memory.identity import normalize_phone
from livekit.plugins.caller_memory.store import InMemoryStore, MemoryStore, RedisMemoryStore

from .conftest import replace
from .support.console import (
    SETTINGS,
    Page,
    client,
    connected,
    logged_in,
    outside_folds,
    seed_call,
    served,
    worker_call,
)

BO = "+14155550101"
TYPED = "(415) 555-0101"
"""Bo's number as the find box's placeholder spells numbers (no country code)."""


@pytest.fixture
def desk(config: RedisConfig) -> RedisConfig:
    """The test's settings with no region: national numbers are not read by default."""
    return replace(config, default_region=None)


@pytest.fixture
async def store(desk: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The store, with Bo's one call in it (a fact with his words)."""
    async with connected(desk) as impl:
        await seed_call(
            impl,
            BO,
            "AJ_bo",
            ["I'm Bo Chen, and I drive a blue Civic."],
            {
                "summary": "Bo Chen called about his blue Civic.",
                "ops": [
                    {"op": "add", "label": "name", "value": "Bo Chen", "evidence": "I'm Bo Chen"},
                    {"op": "add", "label": "vehicle", "value": "blue Civic",
                     "evidence": "I drive a blue Civic"},
                ],
            },
        )  # fmt: skip
        yield impl


def _box(page: Page) -> str:
    """What the find box holds."""
    found = re.search(r'<input name="number"[^>]*value="([^"]*)"', page.text)
    assert found, "no find box"
    return html.unescape(found.group(1))


async def test_a_national_number_is_refused_in_plain_words_until_the_country_is_given(
    desk: RedisConfig, store: MemoryStore
) -> None:
    async with served(create_app(desk, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        callers = await browser.get("/callers")
        assert '<select name="region"' in callers.text and '<option value="US">' in callers.text

        refused = await browser.post("/caller", {"number": TYPED})
        assert refused.status == 422
        assert "This number has no country code. Choose the country" in refused.visible_text()
        assert _box(refused) == TYPED  # kept in the box
        assert 'aria-invalid="true"' in refused.text
        assert "MEMORY_" not in refused.visible_text()

        found = await browser.post("/caller", {"number": TYPED, "region": "US"})
        assert found.status == 200 and "Bo Chen" in found.text
        assert "read as a number of United States (+1)" in found.visible_text()
        assert f'name="number" value="{BO}"' in found.text  # the forms carry it as read

        again = await browser.post("/caller", {"number": "415-555-0101"})  # asked once
        assert again.status == 200 and "Bo Chen" in again.text
        assert 'id="region-name">United States (+1)</b>' in again.text

        changed = await browser.post("/caller", {"number": TYPED, "region": "GB"})
        assert changed.status == 422
        assert "not a number of United Kingdom (+44)" in changed.visible_text()
        assert _box(changed) == TYPED
        ignored = await browser.post("/caller", {"number": TYPED, "region": "XX"})
        assert "United Kingdom (+44)" in ignored.visible_text()  # an unknown code changes nothing

        async with client(url) as other:  # another operator is asked for theirs
            await logged_in(other)
            assert (await other.post("/caller", {"number": TYPED})).status == 422
            assert (await other.post("/caller", {"number": BO})).status == 200  # +1: no need


async def test_export_erase_and_withdraw_read_numbers_in_the_operators_country(
    desk: RedisConfig, store: MemoryStore
) -> None:
    async with served(create_app(desk, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        await browser.post("/caller", {"number": TYPED, "region": "US"})
        exported = await browser.post("/caller/export", {"number": TYPED})
        assert exported.headers["content-type"] == "application/json"
        assert json.loads(exported.text)["user_ids"] == [store.hasher.hash(BO)]
        profile = await store.get_profile(store.hasher.hash(BO))
        assert profile is not None
        civic = next(f for f in profile.facts if f.value == "blue Civic")
        confirm = await browser.post(
            "/caller/fact/withdraw", {"number": TYPED, "fact_id": str(civic.id)}
        )
        assert confirm.status == 200 and "“I drive a blue Civic”" in confirm.visible_text()
        missing = await browser.post("/caller/fact/withdraw", {"number": TYPED, "fact_id": "99"})
        assert missing.status == 404 and "This caller has no fact #99." in missing.visible_text()
        assert "the export lists each fact" in missing.text  # in the details fold
        erase = await browser.post("/caller/erase", {"number": TYPED})
        assert "Erase everything listed" in erase.text
        assert store.keys.profile(store.hasher.hash(BO)) not in outside_folds(erase).text
        assert store.keys.profile(store.hasher.hash(BO)) in erase.text  # folded for support


async def test_the_country_of_the_phone_line_is_used_when_the_calls_name_one(
    desk: RedisConfig, store: MemoryStore, redis_client: aioredis.Redis
) -> None:
    # A call to a US line, its number sent without the country code as some carriers do.
    await worker_call(desk, "4155550142", "+1 415 555 0000", "AJ_line_1")
    assert await redis_client.zrange(store.keys.trunk_regions(), 0, -1) == [b"US"]
    assert 0 < await redis_client.ttl(store.keys.trunk_regions()) <= desk.profile_ttl_seconds
    async with served(create_app(desk, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        callers = await browser.get("/callers")
        said = "Numbers without a country code are read as United States (+1) numbers, the " \
            "country of your phone line. Change"  # fmt: skip
        assert said in callers.visible_text()
        found = await browser.post("/caller", {"number": TYPED})  # no country asked
        assert found.status == 200 and "Bo Chen" in found.text
        assert "read as a number of United States (+1)" in found.visible_text()
        chosen = await browser.post("/caller", {"number": TYPED, "region": "GB"})  # Change
        assert chosen.status == 422 and "not a number of United Kingdom (+44)" in chosen.text
        assert "your phone line" not in chosen.visible_text()  # the operator's own choice

    # A second line, in the United Kingdom: which one is the operator's is asked again, the
    # phone lines' countries listed first.
    await worker_call(desk, "020 7183 8750", "+44 20 7183 8000", "AJ_line_2")
    async with served(create_app(desk, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        refused = await browser.post("/caller", {"number": TYPED})
        assert refused.status == 422
        assert "This number has no country code. Choose the country" in refused.visible_text()
        lines = re.search(r'id="line-countries">(.*?)</optgroup>', refused.text, re.S)
        assert lines is not None
        assert re.findall(r'value="(\w\w)"', lines.group(1)) == ["GB", "US"]  # latest first
        found = await browser.post("/caller", {"number": TYPED, "region": "US"})
        assert found.status == 200 and "Bo Chen" in found.text


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_each_store_keeps_the_regions_once_a_minute(desk: RedisConfig, kind: str) -> None:
    impl = RedisMemoryStore(desk) if kind == "redis" else InMemoryStore(desk)
    assert await impl.connect()
    try:
        await impl.note_trunk_region("us")
        await impl.note_trunk_region("GB")
        assert sorted(await impl.trunk_regions()) == ["GB", "US"]  # one millisecond: a tie
        scores = dict(await impl.read_scores(impl.keys.trunk_regions()))
        await impl.note_trunk_region("US")  # again within the minute: not written again
        assert dict(await impl.read_scores(impl.keys.trunk_regions())) == scores
    finally:
        await impl.disconnect()


async def test_with_the_region_configured_nothing_is_asked(
    config: RedisConfig, store: MemoryStore
) -> None:
    assert config.default_region == "US"
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        found = await browser.post("/caller", {"number": TYPED})
        assert found.status == 200 and "Bo Chen" in found.text
        assert 'name="region"' not in found.text
        refused = await browser.post("/caller", {"number": "(415) 555"})
        assert refused.status == 422 and _box(refused) == "(415) 555"
        assert "not a number of United States (+1)" in refused.visible_text()


async def test_times_are_utc_time_elements_for_the_consoles_own_script(
    config: RedisConfig, store: MemoryStore
) -> None:
    profile = await store.get_profile(store.hasher.hash(BO))
    assert profile is not None and profile.first_call_at is not None
    first = profile.first_call_at.astimezone(timezone.utc)
    utc = first.strftime("%Y-%m-%d %H:%M UTC")
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        page = await browser.post("/caller", {"number": BO})
        element = (
            f'<time datetime="{first.strftime("%Y-%m-%dT%H:%M:%SZ")}" title="{utc}">{utc}</time>'
        )
        assert element in page.text
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
        assert all('src="' in attributes and not body.strip() for attributes, body in scripts)
        assert any("/static/console.js" in attributes for attributes, _ in scripts)
        script = await browser.get("/static/console.js")
        assert script.status == 200 and "time[datetime]" in script.text


def test_refusals_are_in_plain_words_without_the_number_or_a_setting() -> None:
    cases = {
        "4155550101": (None, "This number has no country code"),
        "415 555 O1O1": ("US", "A phone number has no letters"),
        "(415) 555": ("US", "not a number of United States (+1)"),
        "+1 415 555": (None, "not a valid phone number"),
        "1" * 70: (None, "too long for a phone number"),
        "anonymous": (None, "That is not a phone number"),
    }
    for typed, (region, why) in cases.items():
        with pytest.raises(InvalidPhoneNumberError) as raised:
            normalize_phone(typed, default_region=region)
        said = why_refused(raised.value, typed, region)
        assert why in said, typed
        assert "MEMORY_" not in said and "415" not in said, typed
