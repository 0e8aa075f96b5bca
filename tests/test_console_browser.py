"""The operator console in a real headless Chromium, against ``python -m ...console`` in a
process of its own and a real Redis: log in, find a caller by a number spelled differently,
read their memory, export it, erase it after the confirmation, and see them gone; a wrong login
and a form without its CSRF token are refused. Then a scan: the caller's number is in no line
the console logged, no URL the browser asked for, and no header it received.

At a front desk (issue 22), against a console with no ``MEMORY_DEFAULT_REGION``: a number typed
as the placeholder shows it finds the caller once the operator gave the country, a refused
number stays in the box with the reason, times are in the browser's own time zone (Chromium runs
with ``TZ`` set to India's, UTC+5:30) with UTC on hover, no setting or Redis key name is shown
outside a details fold, counts are singular or plural as they should be, and one wrong fact,
shown with the caller's own words, is withdrawn from the caller's page.

Screenshots go to ``test-artifacts/console/`` (``caller.png`` is the README's).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from livekit.plugins.caller_memory import RedisConfig, SessionManager
from livekit.plugins.caller_memory.store import MemoryStore

from .support.browser import ARTIFACTS, Browser, browser_missing
from .support.console import (
    ANA,
    TOKEN,
    ConsoleProcess,
    connected,
    console_env,
    holds_number,
    next_call_prompt,
    process_config,
    running_console,
    seed_ana,
    seed_call,
    worker_call,
)
from .support.servers import TestServer

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

SHOTS = ARTIFACTS / "console"
_prefixes = itertools.count()
BROWSER_ZONE = "Asia/Kolkata"
"""The browser's time zone (its ``TZ``): UTC+5:30 all year, so no time reads the same as UTC."""


@pytest.fixture(scope="module")
def console_config(
    redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> RedisConfig:
    """The settings the console process and the test share (a key prefix of their own)."""
    data = tmp_path_factory.mktemp("console-data")
    return process_config(redis_server, f"browser{next(_prefixes)}", data)


@pytest.fixture(scope="module")
def console(
    console_config: RedisConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """The console, served by its own command in a process of its own."""
    log = tmp_path_factory.mktemp("console-log") / "console.log"
    with running_console(console_env(console_config), log) as process:
        yield process
    assert "Application shutdown complete" in process.text()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the module, in India's time zone (its own ``TZ``; chromedriver
    and the browser it starts take this process's environment when they start)."""
    with mock.patch.dict(os.environ, {"TZ": BROWSER_ZONE}):
        chromium = Browser(tmp_path_factory.mktemp("chromium"), SHOTS)
    yield chromium
    chromium.close()


def _log_in(browser: Browser, url: str) -> None:
    browser.open(f"{url}/callers")
    if "/login" in browser.driver.current_url:
        browser.fill("input[name=name]", "Dana")
        browser.fill("input[name=token]", TOKEN)
        browser.submit("#login button")
    assert browser.driver.current_url.endswith("/callers")


def _find(browser: Browser, spelling: str) -> None:
    browser.fill("#find input[name=number]", spelling)
    browser.submit("#find button")


@pytest.fixture
async def store(console_config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The console's store, with Ana's calls in it."""
    async with connected(console_config) as impl:
        await seed_ana(impl)
        yield impl


async def test_an_operator_finds_reads_exports_and_erases_a_caller(
    console: ConsoleProcess, browser: Browser, store: MemoryStore
) -> None:
    expected = await SessionManager(store).export_caller(ANA)

    browser.driver.delete_all_cookies()
    browser.open(f"{console.url}/")
    assert "/login" in browser.driver.current_url
    assert "Ana" not in browser.text()
    browser.screenshot("login")
    _log_in(browser, console.url)

    _find(browser, "(415) 555-0134")
    text = browser.text()
    assert "Ana Lopez" in text
    assert "Ana booked a cleaning for Tuesday at 9am" in text
    assert "Ana asked to move her cleaning to Tuesday at 10am" in text
    assert "not verified on the last call" in text  # the last call was unverified
    marks = browser.driver.find_elements("css selector", "mark.redacted")
    assert any(mark.text == "[card number]" for mark in marks)
    assert "4111" not in text
    browser.screenshot("caller", full_page=True)

    browser.click("#export button")  # a download: the page stays
    exported = json.loads(browser.downloaded().read_text())
    assert exported == expected  # what `caller-memory export` gives

    browser.submit("#erase button")
    text = browser.text()
    assert "Erase caller …0134?" in text
    assert "Ana Lopez" in text
    assert not any(key in text for key in expected["keys"])  # folded away for support
    browser.click("#will-go-keys summary")
    text = browser.text()
    for key in expected["keys"]:
        assert key in text  # the confirmation lists every key that will go, in its fold
    browser.screenshot("confirm-erase", full_page=True)
    held_before = await SessionManager(store).export_caller(ANA)
    assert held_before == expected  # nothing goes before the confirmation

    browser.submit("#confirm-erase button")
    assert "Erased" in browser.text()
    browser.screenshot("erased")

    _find(browser, "415.555.0134")
    assert "Nothing is held about this caller." in browser.text()
    browser.screenshot("gone")
    assert (await SessionManager(store).export_caller(ANA))["keys"] == {}


def test_a_wrong_login_is_refused(console: ConsoleProcess, browser: Browser) -> None:
    browser.driver.delete_all_cookies()
    browser.open(f"{console.url}/login")
    browser.fill("input[name=name]", "Mallory")
    browser.fill("input[name=token]", "not-the-console-token")
    browser.submit("#login button")
    assert "Wrong token" in browser.text()
    assert "/login" in browser.driver.current_url
    browser.screenshot("wrong-login")
    browser.open(f"{console.url}/callers")
    assert "/login" in browser.driver.current_url  # still nobody logged in


def test_a_form_without_its_csrf_token_is_refused(
    console: ConsoleProcess, browser: Browser
) -> None:
    _log_in(browser, console.url)
    browser.driver.execute_script("document.querySelector('#find input[name=csrf_token]').remove()")
    _find(browser, "+1 415 555 0134")
    assert "Form refused" in browser.text()
    browser.screenshot("csrf-refused")
    status = browser.driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].responseStatus"
    )
    assert status == 403


async def test_the_number_is_in_no_log_line_url_or_header(
    console: ConsoleProcess, browser: Browser, store: MemoryStore, console_config: RedisConfig
) -> None:
    _log_in(browser, console.url)
    for spelling in ("+14155550134", "(415) 555-0134", "415 555 0134", "4155550134"):
        _find(browser, spelling)
        assert "Ana Lopez" in browser.text()
    browser.open(f"{console.url}/health")
    browser.submit("#full-count button")  # the chart is the full count's, made when asked
    browser.wait(
        lambda: browser.driver.find_elements("css selector", "#calls-chart"), "the full count"
    )
    assert "Calls per hour" in browser.text()
    bars = browser.driver.find_elements("css selector", "#calls-chart rect.bar")
    assert len(bars) == 24
    browser.screenshot("health", full_page=True)
    exchange = browser.record()
    log = console.text()

    assert '"POST /caller HTTP/1.1" 200' in log  # the access log is there, and was read
    assert exchange.urls and exchange.headers  # so were the browser's requests
    leaks = [line for line in log.splitlines() if holds_number(line)]
    assert leaks == [], "the console logged the number"
    assert [url for url in exchange.urls if holds_number(url)] == []
    assert [h for h in exchange.headers if holds_number(f"{h[1]}: {h[2]}")] == []
    audit = Path(console_config.data_dir) / "console" / "audit.jsonl"
    assert "view" in audit.read_text()
    assert not holds_number(audit.read_text())


# -- at a front desk: no MEMORY_DEFAULT_REGION -----------------------------------------------


@pytest.fixture(scope="module")
def desk_config(redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> RedisConfig:
    """A console's settings with no region set (national numbers are not read by default)."""
    data = tmp_path_factory.mktemp("desk-data")
    return process_config(redis_server, f"desk{next(_prefixes)}", data, default_region=None)


@pytest.fixture(scope="module")
def desk(desk_config: RedisConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """That console, in a process of its own; yields its URL."""
    log = tmp_path_factory.mktemp("desk-log") / "console.log"
    env = console_env(desk_config)
    assert env["MEMORY_DEFAULT_REGION"] == ""
    with ConsoleProcess(env, log) as process:
        yield process.url


@pytest.fixture
async def desk_store(desk_config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The front-desk console's store (each test seeds callers of its own numbers)."""
    async with connected(desk_config) as impl:
        yield impl


async def _seed_one_call(store: MemoryStore, number: str, session_id: str) -> None:
    """A caller with exactly one call, one line said and one fact (for the singular counts)."""
    await seed_call(
        store,
        number,
        session_id,
        ["I'm Bo Chen, and I drive a blue Civic."],
        {
            "summary": "Bo Chen called; he drives a blue Civic.",
            "ops": [
                {"op": "add", "label": "name", "value": "Bo Chen", "evidence": "I'm Bo Chen"},
                {
                    "op": "add",
                    "label": "vehicle",
                    "value": "blue Civic",
                    "evidence": "I drive a blue Civic",
                },
            ],
        },
    )


def _fresh_login(browser: Browser, url: str) -> None:
    browser.driver.delete_all_cookies()  # a new operator: nothing remembered for them
    _log_in(browser, url)


def _typed(browser: Browser) -> str:
    box = browser.driver.find_element("css selector", "#find input[name=number]")
    return box.get_attribute("value") or ""


def _outside_folds(browser: Browser) -> str:
    """The page's text without what its details folds hold (folded or not)."""
    text: str = browser.driver.execute_script(
        "const body = document.body.cloneNode(true);"
        "body.querySelectorAll('details').forEach(d => d.remove());"
        "body.querySelectorAll('select').forEach(s => s.remove());"
        "return body.textContent;"
    )
    return " ".join(text.split())


def _choose_country(browser: Browser, code: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(
        browser.driver.find_element("css selector", "#find select[name=region]")
    ).select_by_value(code)


async def test_a_national_number_as_the_placeholder_shows_is_found_after_the_country_once(
    desk: str, browser: Browser, desk_store: MemoryStore
) -> None:
    await _seed_one_call(desk_store, "+14155550101", "AJ_desk_bo")
    _fresh_login(browser, desk)
    box = browser.driver.find_element("css selector", "#find input[name=number]")
    placeholder = box.get_attribute("placeholder") or ""
    assert "(415) 555-0134" in placeholder  # the spelling the box itself suggests

    _find(browser, "(415) 555-0101")
    error = browser.driver.find_element("css selector", "#find-error").text
    assert "no country code" in error and "Choose the country" in error
    assert _typed(browser) == "(415) 555-0101"  # what was typed is still there
    assert "MEMORY_" not in browser.text()
    browser.screenshot("desk-country-asked")

    _choose_country(browser, "US")
    browser.submit("#find button")
    text = browser.text()
    assert "Bo Chen" in text
    assert "The number was read as a number of United States (+1)." in text

    # Asked once: the next national number is read in the same country, without asking.
    _find(browser, "415.555.0101")
    assert "Bo Chen" in browser.text()
    chosen = browser.driver.find_element("css selector", "#region-name").text
    assert chosen == "United States (+1)"
    browser.screenshot("desk-found")

    # Another operator (another session) is asked again.
    _fresh_login(browser, desk)
    _find(browser, "(415) 555-0101")
    assert "no country code" in browser.driver.find_element("css selector", "#find-error").text


async def test_a_refused_number_stays_in_the_box_with_the_reason(
    desk: str, browser: Browser
) -> None:
    _fresh_login(browser, desk)
    refusals = {
        "415 555 O1O1": "A phone number has no letters",  # letter O for zero
        "+1 415 555": "not a valid phone number",
    }
    for typed, why in refusals.items():
        _find(browser, typed)
        assert why in browser.driver.find_element("css selector", "#find-error").text, typed
        assert _typed(browser) == typed
        assert "MEMORY_" not in browser.text()
    status = browser.driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].responseStatus"
    )
    assert status == 422
    _choose_country(browser, "GB")
    browser.fill("#find input[name=number]", "(415) 555-0101")
    browser.submit("#find button")  # a US spelling, read as British
    error = browser.driver.find_element("css selector", "#find-error").text
    assert "not a number of United Kingdom (+44)" in error and "country code" in error
    assert _typed(browser) == "(415) 555-0101"
    browser.screenshot("desk-refused")


async def test_times_are_in_the_browsers_zone_with_utc_on_hover(
    desk: str, browser: Browser, desk_store: MemoryStore
) -> None:
    number = "+14155550102"
    await _seed_one_call(desk_store, number, "AJ_desk_times")
    profile = await desk_store.get_profile(desk_store.hasher.hash(number))
    assert profile is not None and profile.first_call_at is not None
    first = profile.first_call_at.astimezone(timezone.utc)
    _fresh_login(browser, desk)
    _find(browser, "+1 415 555 0102")

    shown = browser.driver.find_elements("css selector", "#calls time")
    assert shown, "no time on the page"
    first_shown = shown[0]
    local = first.astimezone(ZoneInfo(BROWSER_ZONE))
    assert first_shown.text.startswith(local.strftime("%Y-%m-%d %H:%M")), first_shown.text
    assert "UTC" not in first_shown.text
    assert first_shown.get_attribute("title") == first.strftime("%Y-%m-%d %H:%M UTC")
    assert local.strftime("%H:%M") != first.strftime("%H:%M")  # the zone is not UTC
    for element in browser.driver.find_elements("css selector", "time"):
        moment = datetime.fromisoformat(element.get_attribute("datetime") or "")
        in_zone = moment.astimezone(ZoneInfo(BROWSER_ZONE)).strftime("%Y-%m-%d %H:%M")
        if element.is_displayed():
            assert element.text.startswith(in_zone), element.text
        assert element.get_attribute("title") == moment.strftime("%Y-%m-%d %H:%M UTC")


async def test_no_setting_or_key_name_outside_a_fold_and_counts_singular_or_plural(
    desk: str, browser: Browser, desk_store: MemoryStore, desk_config: RedisConfig
) -> None:
    one, two = "+14155550103", "+14155550104"
    await _seed_one_call(desk_store, one, "AJ_desk_one")
    for n, line in enumerate(["I'm Cy Diaz; mornings suit me.", "Cy again: still mornings."]):
        await seed_call(
            desk_store,
            two,
            f"AJ_desk_two_{n}",
            [line, "And my dog is called Rex."],
            {
                "summary": f"Cy Diaz called ({n + 1}).",
                "ops": [
                    {"op": "add", "label": "name", "value": "Cy Diaz", "evidence": "I'm Cy Diaz"},
                    {"op": "add", "label": "dog", "value": "Rex", "evidence": "dog is called Rex"},
                ]
                if n == 0
                else [],
            },
        )
    _fresh_login(browser, desk)
    prefix = f"{desk_config.key_prefix}:"
    pages: dict[str, str] = {"callers": _outside_folds(browser)}  # outside the folds
    shown: dict[str, str] = {}  # as shown, the folds' headings included

    _find(browser, "+1 415 555 0103")
    pages["one call"] = single = _outside_folds(browser)
    shown["one call"] = browser.text()
    assert "1 call since" in single and "1 of 1 remembered call verified" in single
    assert "2 turns" in shown["one call"]  # the caller's line and the agent's answer
    browser.click("#tech summary")
    assert re.search(r"\b\d+ Redis keys\b", browser.text())  # in the fold, unfolded
    for fold in browser.driver.find_elements("css selector", "details.setting"):
        fold.find_element("css selector", "summary").click()
    assert "MEMORY_UNVERIFIED_DISCLOSURE=" in browser.text()  # once unfolded
    browser.screenshot("desk-one-call", full_page=True)

    _find(browser, "+1 415 555 0104")
    pages["two calls"] = double = _outside_folds(browser)
    shown["two calls"] = browser.text()
    assert "2 calls since" in double and "2 of 2 remembered calls verified" in double
    assert "4 turns" in shown["two calls"]

    browser.submit("#erase button")
    pages["confirm erase"] = confirm = _outside_folds(browser)
    assert "2 calls held in full" in confirm
    assert re.search(
        r"\b2 current facts, 0 replaced or withdrawn facts and 2 call summaries", confirm
    )
    browser.submit("#confirm-erase button")
    pages["erased"] = _outside_folds(browser)
    _find(browser, "+1 415 555 0104")
    pages["not found"] = _outside_folds(browser)
    assert "Nothing is held about this caller." in pages["not found"]

    for name, text in pages.items():
        assert "MEMORY_" not in text, name
        assert prefix not in text and "Redis" not in text and "outbox" not in text, name
    for name, text in {**pages, **shown}.items():
        wrong = re.findall(
            r"\b1 (calls|turns|facts|keys|summaries|entries|hours|things|remembered calls)\b", text
        )
        assert wrong == [], (name, wrong)
        assert not re.search(
            r"\b([02-9]|\d\d+) (call|turn|fact|key|summary|hour)\b(?! summar)", text
        ), name

    # The health page: a technical page (it names the store), but no setting or key name
    # outside a fold either, and its counts in words ("1 call waiting", "2 callers").
    browser.open(f"{desk}/health")
    browser.submit("#full-count button")
    browser.wait(lambda: browser.driver.find_elements("css selector", "#callers-count"), "count")
    health = _outside_folds(browser)
    assert "MEMORY_" not in health and prefix not in health
    assert re.search(r"\b\d+ calls? waiting, none unreadable", health)
    assert not re.search(r"(?<!± )\b1 (calls|callers|keys|requests)\b", health)
    assert not re.search(r"(?<!± )\b([02-9]|\d\d+) (call|caller|key|request)\b", health)
    browser.click("#now-how summary")
    assert f"{prefix}sessions:open" in browser.text()  # in the fold, unfolded


async def test_a_fact_with_its_evidence_is_withdrawn_from_the_callers_page(
    desk: str, browser: Browser, desk_store: MemoryStore, desk_config: RedisConfig
) -> None:
    number = "+14155550105"
    await _seed_one_call(desk_store, number, "AJ_desk_fact")
    assert "blue Civic" in await next_call_prompt(desk_store, number)
    _fresh_login(browser, desk)
    _find(browser, "+1 (415) 555-0105")

    row = next(
        r
        for r in browser.driver.find_elements("css selector", "#current-facts tr.fact")
        if "blue Civic" in r.text
    )
    assert "“I drive a blue Civic”" in row.find_element("css selector", ".evidence").text
    fact_id = row.get_attribute("id")
    browser.submit(f"#{fact_id} .withdraw-fact button")
    text = browser.text()
    assert "Withdraw fact #" in text and "“I drive a blue Civic”" in text
    browser.screenshot("desk-withdraw")
    browser.fill("#confirm-withdraw input[name=reason]", "The caller says it was never his car")
    browser.submit("#confirm-withdraw button")

    notice = browser.driver.find_element("css selector", "#notice").text
    assert "withdrawn: the agent no longer hears it" in notice
    current = browser.driver.find_element("css selector", "#current-facts").text
    assert "blue Civic" not in current and "Bo Chen" in current
    browser.screenshot("desk-withdrawn", full_page=True)

    prompt = await next_call_prompt(desk_store, number)  # what the next call is given
    assert "Civic" not in prompt and "Bo Chen" in prompt
    audit = (desk_config.data_dir / "console" / "audit.jsonl").read_text().splitlines()
    withdrawn = [json.loads(line) for line in audit if '"withdraw_fact"' in line]
    assert [(r["who"], r["via"], r["reason"]) for r in withdrawn] == [
        ("Dana", "console", "The caller says it was never his car")
    ]
    assert not holds_number("\n".join(audit), number)


async def test_a_national_number_is_found_in_the_country_of_the_phone_line_without_asking(
    redis_server: TestServer, browser: Browser, tmp_path: Path
) -> None:
    # A console of its own (no MEMORY_DEFAULT_REGION) over a prefix whose calls came in on a
    # US line: a worker recorded the line's region when it read a caller's number.
    config = process_config(redis_server, f"line{next(_prefixes)}", tmp_path, default_region=None)
    async with connected(config) as store:
        await _seed_one_call(store, "+14155550106", "AJ_line_bo")
    await worker_call(config, "4155550107", "+14155550000", "AJ_line_other")
    with running_console(console_env(config), tmp_path / "console.log") as process:
        _fresh_login(browser, process.url)
        said = browser.driver.find_element("css selector", "#region-line").text
        assert said == (
            "Numbers without a country code are read as United States (+1) numbers, the "
            "country of your phone line. Change"
        )
        _find(browser, "(415) 555-0106")  # as the placeholder spells numbers
        text = browser.text()
        assert "Bo Chen" in text and "no country code" not in text
        assert "The number was read as a number of United States (+1)." in text
        assert "MEMORY_" not in _outside_folds(browser)
        browser.screenshot("desk-phone-line")
