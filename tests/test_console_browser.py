"""The operator console in a real headless Chromium, against ``python -m ...console`` in a
process of its own and a real Redis: log in, find a caller by a number spelled differently,
read their memory, export it, erase it after the confirmation, and see them gone; a wrong login
and a form without its CSRF token are refused. Then a scan: the caller's number is in no line
the console logged, no URL the browser asked for, and no header it received.

Screenshots go to ``test-artifacts/console/`` (``caller.png`` is the README's).
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from livekit.plugins.caller_memory import RedisConfig, SessionManager
from livekit.plugins.caller_memory.store import MemoryStore

from .conftest import TEST_SECRET
from .support.browser import ARTIFACTS, Browser, browser_missing
from .support.console import (
    ANA,
    TOKEN,
    ConsoleProcess,
    connected,
    console_env,
    holds_number,
    seed_ana,
)
from .support.servers import TestServer

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

SHOTS = ARTIFACTS / "console"
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def console_config(
    redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> RedisConfig:
    """The settings the console process and the test share (a key prefix of their own)."""
    return RedisConfig(
        url=redis_server.url,
        key_prefix=f"browser{next(_prefixes)}",
        phone_hash_secret=TEST_SECRET,
        default_region="US",
        data_dir=tmp_path_factory.mktemp("console-data"),
        lookup_timeout_ms=10_000,
    )


@pytest.fixture(scope="module")
def console(
    console_config: RedisConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """The console, served by its own command in a process of its own."""
    log = tmp_path_factory.mktemp("console-log") / "console.log"
    process = ConsoleProcess(console_env(console_config), log)
    process.start()
    yield process
    # Uvicorn ends by re-raising the SIGTERM it was stopped with, once shut down cleanly.
    assert process.stop() in (0, -signal.SIGTERM), process.text()
    assert "Application shutdown complete" in process.text()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the module."""
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
    for key in expected["keys"]:
        assert key in text  # the confirmation lists every key that will go
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
