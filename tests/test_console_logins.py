"""Console logins that end, a throttle that locks out only who failed, and forwarded headers
believed only from the proxies the operator names.

In a real headless Chromium against ``python -m ...console`` in a process of its own: a
cookie copied before logout is refused after it; ten bad logins from one client leave another
client's login working; and in proxy mode, only requests carrying the proxy's secret name an
operator. Over HTTP, against the console served for real: a token change ends every login made
before; ``X-Forwarded-For`` from a peer nobody named is not what the audit log records, and a
named proxy's is; the throttle per operator name; and ``serve`` refusing proxy mode on
loopback without the secret.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from livekit.plugins.caller_memory import ConfigError, RedisConfig
from livekit.plugins.caller_memory.console import ConsoleSettings, create_app

from .support.browser import ARTIFACTS, Browser, browser_missing
from .support.console import (
    ANA,
    TOKEN,
    ConsoleClient,
    ConsoleProcess,
    audit_entries,
    client,
    connected,
    console_env,
    process_config,
    running_console,
    seed_ana,
    served,
)
from .support.servers import TestServer

needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

SHOTS = ARTIFACTS / "console"
COOKIE = "caller_memory_console"
PROXY_SECRET = "proxy-secret-for-the-tests-4c1e"
SECRET_HEADER = "X-Caller-Memory-Proxy-Secret"
ENDED = "Your login has ended"
_prefixes = itertools.count()


@contextlib.asynccontextmanager
async def client_from(base: str, address: str) -> AsyncIterator[ConsoleClient]:
    """A :class:`ConsoleClient` whose connections come from ``address`` (a loopback address
    of its own: another machine, as far as the console can tell)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        yield ConsoleClient(base, session)


# -- in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_config(
    redis_server: TestServer, tmp_path_factory: pytest.TempPathFactory
) -> RedisConfig:
    """The settings the console processes and the tests share (a key prefix of their own)."""
    data = tmp_path_factory.mktemp("console-data")
    return process_config(redis_server, f"logins{next(_prefixes)}", data)


@pytest.fixture(scope="module")
def console(
    console_config: RedisConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """The console with a login token, served by its own command in a process of its own."""
    log = tmp_path_factory.mktemp("console-log") / "console.log"
    with running_console(console_env(console_config), log) as process:
        yield process


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the module."""
    chromium = Browser(tmp_path_factory.mktemp("chromium"), SHOTS)
    yield chromium
    chromium.close()


def _log_in(browser: Browser, url: str, name: str = "Dana") -> None:
    browser.driver.delete_all_cookies()
    browser.open(f"{url}/login")
    browser.fill("input[name=name]", name)
    browser.fill("input[name=token]", TOKEN)
    browser.submit("#login button")
    assert browser.driver.current_url.endswith("/callers"), browser.text()
    assert name in browser.text()


async def _cookie_works(url: str, cookie: str) -> bool:
    """Whether another program holding a copy of the cookie is let in."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        copied = ConsoleClient(url, session)
        page = await copied.get("/callers", headers={"Cookie": f"{COOKIE}={cookie}"})
        return page.url.endswith("/callers") and page.status == 200


@needs_browser
async def test_a_cookie_copied_before_logout_is_refused_after_it(
    console: ConsoleProcess, browser: Browser, console_config: RedisConfig
) -> None:
    _log_in(browser, console.url)
    cookie = browser.driver.get_cookie(COOKIE)
    assert cookie is not None
    assert await _cookie_works(console.url, cookie["value"])  # a copy works while logged in

    browser.submit("header form[action$='/logout'] button")
    assert "/login" in browser.driver.current_url
    browser.driver.add_cookie(
        {"name": COOKIE, "value": cookie["value"], "path": cookie.get("path", "/")}
    )
    browser.open(f"{console.url}/callers")  # the old cookie, put back
    assert "/login" in browser.driver.current_url
    assert ENDED in browser.text()
    assert "Log out" not in browser.text()
    browser.screenshot("login-ended")
    assert not await _cookie_works(console.url, cookie["value"])  # and refused to a copy
    actions = [(r["who"], r["action"]) for r in audit_entries(console_config)]
    assert ("Dana", "logout") in actions


@needs_browser
async def test_ten_bad_logins_from_one_client_leave_another_clients_login_working(
    console: ConsoleProcess, browser: Browser, console_config: RedisConfig
) -> None:
    async with client_from(console.url, "127.0.0.2") as guesser:
        for attempt in range(10):
            page = await guesser.login(
                name=f"Mallory {attempt}", token=f"guess-{attempt:02}-xxxxxxxxxx"
            )
            assert page.status == 401 and "Wrong token" in page.text
        page = await guesser.login(name="Mallory", token=TOKEN)  # even the right token, now
        assert page.status == 429 and "Too many failed logins" in page.text

    _log_in(browser, console.url, name="Erin")  # from 127.0.0.1: logs in as ever
    browser.screenshot("login-after-another-clients-failures")
    refused = [r for r in audit_entries(console_config) if r["action"] == "login_refused"]
    assert len(refused) == 10 and {r["client"] for r in refused} == {"127.0.0.2"}


@pytest.fixture(scope="module")
def proxied(
    console_config: RedisConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """The console behind an authenticating proxy on loopback: with the proxy's secret."""
    env = console_env(
        console_config, MEMORY_CONSOLE_AUTH="proxy", MEMORY_CONSOLE_PROXY_SECRET=PROXY_SECRET
    )
    del env["MEMORY_CONSOLE_TOKEN"]
    with running_console(env, tmp_path_factory.mktemp("proxied") / "console.log") as process:
        yield process


@needs_browser
async def test_behind_a_proxy_only_a_request_with_its_secret_names_an_operator(
    proxied: ConsoleProcess, browser: Browser, console_config: RedisConfig
) -> None:
    async with connected(console_config) as store:
        await seed_ana(store)
    driver = browser.driver
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        # A local process posing as the proxy: it names an operator, without the secret.
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-User": "mallory"}}
        )
        browser.open(f"{proxied.url}/callers")
        assert "Not signed in" in browser.text() and "mallory" not in browser.text()
        browser.screenshot("proxy-without-secret")
        # The proxy: the operator it authenticated, and its secret.
        headers = {"X-Forwarded-User": "dpo@example.org", SECRET_HEADER: PROXY_SECRET}
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})
        browser.open(f"{proxied.url}/callers")
        assert "dpo@example.org" in browser.text()
        browser.fill("#find input[name=number]", "(415) 555-0134")
        browser.submit("#find button")
        assert "Ana Lopez" in browser.text()
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    viewed = [r["who"] for r in audit_entries(console_config) if r["action"] == "view"]
    assert viewed == ["dpo@example.org"]


# -- serve refuses an unguarded proxy mode -----------------------------------------------------


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "livekit.plugins.caller_memory.console", "--port", "0"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_proxy_mode_on_loopback_without_the_shared_secret_refuses_to_start(
    config: RedisConfig,
) -> None:
    env = console_env(config, MEMORY_CONSOLE_AUTH="proxy")
    del env["MEMORY_CONSOLE_TOKEN"]
    for host, trusted in (("127.0.0.1", ""), ("0.0.0.0", ""), ("::1", "::1")):
        done = _serve({**env, "MEMORY_CONSOLE_TRUSTED_PROXIES": trusted}, "--host", host)
        assert done.returncode == 2, (host, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"--auth proxy on {host}" in lines[0]
        assert "MEMORY_CONSOLE_PROXY_SECRET" in lines[0] and "--uds" in lines[0]
        assert "Caller-memory console" not in done.stdout  # it never served
    too_short = _serve({**env, "MEMORY_CONSOLE_PROXY_SECRET": "short"})
    assert too_short.returncode == 1
    assert "MEMORY_CONSOLE_PROXY_SECRET: " in too_short.stderr and "short" not in too_short.stderr


# -- over HTTP ---------------------------------------------------------------------------------


async def test_a_token_change_ends_every_login_made_before(config: RedisConfig) -> None:
    key = "session-key-kept-across-the-change"
    before = ConsoleSettings(token=TOKEN, session_key=key)
    after = ConsoleSettings(token="the-new-console-token-91ab", session_key=key)
    async with client("http://127.0.0.1") as browser:
        async with served(create_app(config, settings=before)) as url:
            browser.base = url
            assert (await browser.login()).url.endswith("/callers")
        # The same token and session key after a restart: the login goes on.
        async with served(create_app(config, settings=before)) as url:
            browser.base = url
            assert (await browser.get("/callers")).url.endswith("/callers")
        # The token changed, the session key kept: the cookie is refused.
        async with served(create_app(config, settings=after)) as url:
            browser.base = url
            page = await browser.get("/callers")
            assert page.url.endswith("/login") and ENDED in page.text
            page = await browser.login(token="the-new-console-token-91ab")
            assert page.url.endswith("/callers")
        # And the token changed back: the logins made under the new one are no good there.
        async with served(create_app(config, settings=before)) as url:
            browser.base = url
            assert (await browser.get("/callers")).url.endswith("/login")


async def test_forwarded_for_from_a_peer_nobody_named_is_not_what_the_audit_log_records(
    config: RedisConfig, tmp_path: Path
) -> None:
    with ConsoleProcess(console_env(config), tmp_path / "console.log") as process:
        async with client(process.url) as browser:
            forged = {"X-Forwarded-For": "203.0.113.7"}
            await browser.get("/login")
            page = await browser.post("/login", {"name": "Dana", "token": TOKEN}, headers=forged)
            assert page.url.endswith("/callers")
            await browser.post("/caller", {"number": ANA}, headers=forged)
            # Nor does a forged address escape the throttle of the address it came from.
            for attempt in range(10):
                spoofed = {"X-Forwarded-For": f"198.51.100.{attempt}"}
                await browser.post(
                    "/login", {"name": "Mallory", "token": "x" * 20}, headers=spoofed
                )
            page = await browser.post("/login", {"name": "Dana", "token": TOKEN})
            assert page.status == 429
    records = audit_entries(config)
    assert {r["client"] for r in records} == {"127.0.0.1"}
    assert [r["action"] for r in records[:2]] == ["login", "view"]
    assert "203.0.113.7" not in process.text()  # nor in the access log


async def test_a_named_proxys_forwarded_for_is_what_the_audit_log_records(
    config: RedisConfig, tmp_path: Path
) -> None:
    env = console_env(config, MEMORY_CONSOLE_TRUSTED_PROXIES="127.0.0.1")
    with ConsoleProcess(env, tmp_path / "console.log") as process:
        async with client(process.url) as proxy:
            # The client wrote an address of its own; the proxy appended the one it saw.
            forwarded = {"X-Forwarded-For": "192.0.2.66, 198.51.100.23"}
            await proxy.get("/login")
            page = await proxy.post("/login", {"name": "Dana", "token": TOKEN}, headers=forwarded)
            assert page.url.endswith("/callers")
        async with client_from(process.url, "127.0.0.3") as stranger:
            await stranger.get("/login")
            headers = {"X-Forwarded-For": "192.0.2.66"}
            await stranger.post("/login", {"name": "Erin", "token": TOKEN}, headers=headers)
    clients = {r["who"]: r["client"] for r in audit_entries(config) if r["action"] == "login"}
    assert clients == {"Dana": "198.51.100.23", "Erin": "127.0.0.3"}
    assert '198.51.100.23:0 - "POST /login HTTP/1.1" 303' in process.text()


async def test_ten_bad_logins_under_one_name_stop_that_name_only(config: RedisConfig) -> None:
    async with served(create_app(config, settings=ConsoleSettings(token=TOKEN))) as url:
        for n in range(10):  # ten clients, one guess each, all as Dana
            async with client_from(url, f"127.0.0.{10 + n}") as guesser:
                assert (await guesser.login(name="Dana", token="y" * 20)).status == 401
        async with client_from(url, "127.0.0.30") as someone:
            page = await someone.login(name="  dana ")  # the same name, any case or spacing
            assert page.status == 429
            assert (await someone.login(name="Erin")).url.endswith("/callers")


def test_proxy_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="MEMORY_CONSOLE_TRUSTED_PROXIES: .*'proxy.lan'"):
        ConsoleSettings(trusted_proxies="10.0.0.5, proxy.lan")
    with pytest.raises(ConfigError, match="MEMORY_CONSOLE_PROXY_SECRET: .*16 characters"):
        ConsoleSettings(auth="proxy", proxy_secret="too-short")
    settings = ConsoleSettings(trusted_proxies=" 10.0.0.5 ,10.1.0.0/24,unix,")
    assert settings.proxies == ["10.0.0.5", "10.1.0.0/24", "unix"]
