"""The operator console over HTTP, served for real by uvicorn, against real Redis servers: a
plain one, a Redis Cluster and the embedded private server. Who may see what (login, proxy
header, CSRF, hosts, headers), what a caller's page shows, that export is ``caller-memory
export`` and erasure ``caller-memory forget``, the audit log, and the health page.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from livekit.plugins.caller_memory import (
    ConfigError,
    InMemoryStore,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.console import ConsoleSettings, create_app, main
from livekit.plugins.caller_memory.console.caller_view import REDACTION_TAGS
from livekit.plugins.caller_memory.redaction import Redactor
from livekit.plugins.caller_memory.store import MemoryStore

from .conftest import TEST_SECRET, replace
from .support.cluster import LocalCluster
from .support.console import (
    ANA,
    SETTINGS,
    TOKEN,
    ConsoleClient,
    ConsoleProcess,
    audit_entries,
    client,
    connected,
    console_env,
    holds_number,
    logged_in,
    next_call_prompt,
    seed_ana,
    seed_call,
    served,
)
from .support.servers import TestServer
from .support.waiting import eventually

PAGES = ["/", "/callers", "/health", "/health/panel"]
FORMS = [
    "/caller",
    "/caller/export",
    "/caller/erase",
    "/caller/fact/withdraw",
    "/requests/erase",
    "/logout",
]


@pytest.fixture
async def store(config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The plain Redis store of ``config`` (this module's tests seed callers through it)."""
    async with connected(config) as impl:
        yield impl


def _facts_shown(html: str) -> dict[str, dict[str, object]]:
    """The current facts a caller's page shows, by value: what they are about, the caller's
    words, verified or not, and whether a withdraw form goes with them."""
    table = html.split('id="current-facts"', 1)[1].split("</table>", 1)[0]
    shown: dict[str, dict[str, object]] = {}
    for row in re.findall(r'<tr class="fact" id="fact-\d+">(.*?)</tr>', table, re.S):
        cells = [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        shown[cells[2]] = {
            "about": cells[1],
            "words": cells[3],
            "verified": cells[5] == "verified",
            "withdraw": "/caller/fact/withdraw" in row,
        }
    return shown


# -- who may see what ----------------------------------------------------------------------


async def test_no_page_shows_anything_before_a_login(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        for path in PAGES:
            page = await browser.get(path)
            assert page.url.endswith("/login"), path
            assert "Ana" not in page.text
        await browser.get("/login")  # a session with a CSRF token, and still nobody logged in
        for path in FORMS:
            page = await browser.post(path, {"number": ANA, "user_id": "x"})
            assert page.url.endswith("/login"), path
            assert "Ana" not in page.text
        panel = await browser.get("/health/panel", headers={"HX-Request": "true"})
        assert panel.status == 401 and panel.headers["HX-Redirect"] == "/login"  # htmx: too


async def test_a_wrong_token_is_refused_audited_and_throttled(config: RedisConfig) -> None:
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        page = await browser.login(token="wrong-token-wrong-token")
        assert page.status == 401 and "Wrong token" in page.text
        assert (await browser.get("/callers")).url.endswith("/login")
        assert (await browser.login(name="")).status == 401  # a name is needed for the audit
        for _ in range(8):
            await browser.login(token="wrong-token-wrong-token")
        page = await browser.login()  # the right token, after ten failures in a minute
        assert page.status == 429 and "Too many failed logins" in page.text
    refused = [r for r in audit_entries(config) if r["action"] == "login_refused"]
    assert len(refused) == 10
    assert refused[0]["who"] == "Dana" and refused[0]["client"] == "127.0.0.1"


async def test_every_form_needs_the_csrf_token_of_its_session(config: RedisConfig) -> None:
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await browser.get("/login")
        assert (
            await browser.post("/login", {"name": "Dana", "token": TOKEN}, csrf=False)
        ).status == 403
        assert (await browser.login()).url.endswith("/callers")
        for path in FORMS:
            page = await browser.post(path, {"number": ANA}, csrf=False)
            assert page.status == 403 and "Form refused" in page.text, path
        async with client(url) as other:
            await other.login()
            stolen = other.csrf
        page = await browser.post("/caller", {"number": ANA, "csrf_token": stolen}, csrf=False)
        assert page.status == 403  # another session's token is no good
        page = await browser.post(
            "/caller", {"number": ANA}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert page.status == 403
        assert (await browser.post("/caller", {"number": ANA})).status == 200


async def test_security_headers_and_unknown_hosts(config: RedisConfig) -> None:
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        login = await browser.login()
        for page in browser.pages:
            headers = page.headers
            assert "script-src 'self'" in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["cache-control"] == "no-store"
            assert "server" not in headers
        cookie = next(p for p in browser.pages if "set-cookie" in p.headers).headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert login.url.endswith("/callers")
        static = await browser.get("/static/console.css")
        assert static.status == 200 and static.headers["cache-control"].startswith("private")
        port = url.rsplit(":", 1)[1]
        rebound = await browser.get("/login", headers={"Host": f"attacker.example:{port}"})
        assert rebound.status == 400


async def test_a_reverse_proxy_names_the_operator(config: RedisConfig, store: MemoryStore) -> None:
    await seed_ana(store)
    secret = "the-proxy-secret-for-this-test"
    settings = ConsoleSettings(
        auth="proxy", proxy_header="X-Auth-Request-User", proxy_secret=secret
    )
    proxy = {"X-Auth-Request-User": "dpo@example.org", "X-Caller-Memory-Proxy-Secret": secret}
    async with served(create_app(config, settings=settings)) as url, client(url) as browser:
        assert (await browser.get("/callers")).status == 401  # the proxy named nobody
        # A header naming an operator, without the proxy's secret: anyone could send it.
        named = await browser.get("/callers", headers={"X-Auth-Request-User": "mallory"})
        assert named.status == 401 and "mallory" not in named.text
        page = await browser.get("/callers", headers=proxy)
        assert page.status == 200 and "dpo@example.org" in page.text
        found = await browser.post("/caller", {"number": "415-555-0134"}, headers=proxy)
        assert "Ana Lopez" in found.text
        assert "Log out" not in found.text  # the proxy logs people out
    assert [r["who"] for r in audit_entries(config)] == ["dpo@example.org"]


def test_a_login_is_required_and_settings_are_checked(config: RedisConfig) -> None:
    with pytest.raises(ConfigError, match="MEMORY_CONSOLE_TOKEN is not set"):
        create_app(config, settings=ConsoleSettings())
    with pytest.raises(ConfigError, match="MEMORY_CONSOLE_TOKEN: .*16 characters") as e:
        ConsoleSettings(token="short-secret")
    assert "short-secret" not in str(e.value)
    with pytest.raises(ConfigError, match="MEMORY_CONSOLE_AUTH"):
        ConsoleSettings(auth="none")


async def test_nothing_is_shown_when_the_audit_log_cannot_be_written(
    config: RedisConfig, store: MemoryStore, tmp_path: Path
) -> None:
    await seed_ana(store)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings = ConsoleSettings(token=TOKEN, audit_log=blocked / "audit.jsonl")
    async with served(create_app(config, settings=settings)) as url, client(url) as browser:
        page = await browser.login()
        assert page.status == 500 and "audit log" in page.text
        assert (await browser.get("/callers")).url.endswith("/login")  # not logged in


# -- a caller's page, export and erasure ---------------------------------------------------


async def test_a_caller_found_by_any_spelling_shows_what_is_remembered(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    await seed_call(
        store,
        ANA,
        "AJ_ana_3",
        ["Hello, it's me again, code 4821 is my PIN"],
        {"summary": "-"},
        end=False,
    )
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        for spelling in ("(415) 555-0134", "415.555.0134", "+1 415 555 0134", "4155550134"):
            page = await browser.post("/caller", {"number": spelling})
            text = page.visible_text()
            assert "Ana Lopez" in text, spelling
        facts = _facts_shown(page.text)
        assert facts["mornings"] == {
            "about": "appointment time",
            "words": "“mornings are best for me”",
            "verified": True,
            "withdraw": True,
        }
        assert facts["cleaning on Tuesday at 10"]["verified"] is False  # the unverified call's
        assert "said " in text and "preferences" not in text.lower()
        assert "follow-up" not in text.lower()
        assert 'id="past-facts"' not in page.text  # nothing replaced or withdrawn yet
        assert "Ana booked a cleaning for Tuesday at 9am" in text
        assert "agreed to be remembered" in text
        assert "not verified on the last call" in text and "1 of 2 remembered calls" in text
        assert '<mark class="redacted">[card number]</mark>' in page.text
        assert "4111" not in text
        assert "in progress (journal)" in text and "is my PIN" in text and "4821" not in text
        assert "…0134" in text
        await seed_call(
            store,
            "+1 415 555 0156",
            "AJ_x",
            ["<img src=x onerror=alert(1)> asked about prices"],
            {
                "summary": "Asked about prices.",
                "ops": [
                    {
                        "op": "add",
                        "label": "<b>question</b>",
                        "value": "<img src=x onerror=alert(1)> prices",
                        "evidence": "<img src=x onerror=alert(1)> asked about prices",
                    }
                ],
            },
        )
        marked = await browser.post("/caller", {"number": "+1 415 555 0156"})
        assert "&lt;img src=x onerror=alert(1)&gt; asked about prices" in marked.text
        assert "&lt;img src=x onerror=alert(1)&gt; prices</td>" in marked.text  # the fact
        assert "&lt;b&gt;question&lt;/b&gt;" in marked.text
        assert "<img" not in marked.text and "<b>question" not in marked.text
        missing = await browser.post("/caller", {"number": "+1 415 555 0199"})
        assert "Nothing is held about this caller" in missing.text
        wrong = await browser.post("/caller", {"number": "hello 12"})
        assert wrong.status == 422 and "hello" not in wrong.visible_text()
    views = [r for r in audit_entries(config) if r["action"] == "view"]
    user_id = store.hasher.hash(ANA)
    assert views[0]["user_ids"] == [user_id] and views[0]["found"] is True
    assert views[-1] == {**views[-1], "user_ids": [], "found": False}
    assert not holds_number((config.data_dir / "console" / "audit.jsonl").read_text())


async def test_export_is_the_json_of_the_export_command(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        page = await browser.post("/caller/export", {"number": "415 555 0134"})
    assert page.headers["content-type"] == "application/json"
    assert re.fullmatch(
        r'attachment; filename="caller-export-\d{8}-\d{6}\.json"',
        page.headers["content-disposition"],
    )
    cli = subprocess.run(
        [sys.executable, "-m", "livekit.plugins.caller_memory.cli", "export", "-"],
        input=ANA,
        env=console_env(config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(page.text) == json.loads(cli.stdout)
    assert page.text == cli.stdout  # to the character
    profile = next(v for k, v in json.loads(page.text)["keys"].items() if k.endswith(":profile"))
    mornings = next(f for f in profile["facts"] if f["value"] == "mornings")
    assert mornings == {
        **mornings,
        "label": "appointment time",
        "evidence": "mornings are best for me",
        "status": "current",
        "confirmed_at": None,
        "verified": True,
    }
    assert mornings["said_at"].endswith("Z")
    assert {f["verified"] for f in profile["facts"]} == {True, False}  # the unverified call's
    exports = [r for r in audit_entries(config) if r["action"] == "export"]
    assert exports[0]["user_ids"] == [store.hasher.hash(ANA)] and exports[0]["keys"] == 6


async def test_erase_shows_what_will_go_then_erases_it(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    before = await SessionManager(store).export_caller(ANA)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        confirm = await browser.post("/caller/erase", {"number": "(415) 555-0134"})
        assert "Erase everything listed" in confirm.text
        for key in before["keys"]:
            assert key in confirm.text
        assert await SessionManager(store).export_caller(ANA) == before  # nothing gone yet
        done = await browser.post("/caller/erase", {"number": "(415) 555-0134", "confirm": "yes"})
        assert "6 Redis keys and 0 outbox entries deleted" in done.visible_text()
        again = await browser.post("/caller", {"number": ANA})
        assert "Nothing is held about this caller" in again.text
    assert (await SessionManager(store).export_caller(ANA))["keys"] == {}
    erased = [r for r in audit_entries(config) if r["action"] == "erase"]
    assert erased == [
        {
            **erased[0],
            "via": "number",
            "user_ids": [store.hasher.hash(ANA)],
            "keys": 6,
            "outbox_entries": 0,
            "who": "Dana",
        }
    ]


async def test_one_wrong_fact_is_withdrawn_with_a_reason_and_audited(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    user_id = store.hasher.hash(ANA)
    before = await store.get_profile(user_id)
    assert before is not None
    mornings = next(f for f in before.facts if f.value == "mornings")
    others = {f.value for f in before.current_facts} - {"mornings"}
    form = {"number": "(415) 555-0134", "fact_id": str(mornings.id)}
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        await browser.post("/caller", {"number": ANA})
        confirm = await browser.post("/caller/fact/withdraw", form)
        text = confirm.visible_text()
        assert confirm.status == 200
        assert f"Withdraw fact #{mornings.id} of caller …0134?" in text
        assert "“mornings are best for me”" in text and "1 summary will be shortened" in text
        assert await store.get_profile(user_id) == before  # nothing happens before the reason

        refusals = {
            "": "a reason is required",
            "  \n ": "a reason is required",
            "Wrong, she is 415.555.0134": "looks like a phone number",
            "She says mornings are best for me is wrong": "repeats the fact",
            "x" * 201: "too long: 200 characters at most",
        }
        for reason, why in refusals.items():
            refused = await browser.post(
                "/caller/fact/withdraw", {**form, "confirm": "yes", "reason": reason}
            )
            assert refused.status == 422 and why in refused.visible_text(), reason
            assert "415.555.0134" not in refused.text  # a refused reason is not repeated
        no_reason = await browser.post("/caller/fact/withdraw", {**form, "confirm": "yes"})
        assert no_reason.status == 422
        assert await store.get_profile(user_id) == before

        reason = "The caller says she never gave a preferred time"
        done = await browser.post(
            "/caller/fact/withdraw", {**form, "confirm": "yes", "reason": reason}
        )
        text = done.visible_text()
        assert done.status == 200
        assert f"Fact #{mornings.id} withdrawn" in text and "(1 earlier call summary cut)" in text
        shown = _facts_shown(done.text)
        assert set(shown) == others and all(f["withdraw"] for f in shown.values())
        past = done.text.split('id="past-facts"', 1)[1].split("</details>", 1)[0]
        assert "1 replaced or withdrawn fact " in " ".join(re.sub("<[^>]+>", " ", past).split())
        assert f'<tr class="fact withdrawn" id="fact-{mornings.id}">' in past
        assert "“mornings are best for me”" in past and ">withdrawn</span>" in past
        # The summary that said it is cut (the calls held in full keep what was said, a day).
        summaries = done.text.split('class="summaries"', 1)[1].split("</ol>", 1)[0]
        assert "She prefers mornings" not in summaries
        assert "Ana booked a cleaning for Tuesday at 9am" in summaries

        erase = await browser.post("/caller/erase", {"number": ANA})
        assert re.search(
            r"\d+ current facts, 1 replaced or withdrawn fact and 2 call summaries",
            erase.visible_text(),
        )
        again = await browser.post(
            "/caller/fact/withdraw", {**form, "confirm": "yes", "reason": reason}
        )
        assert again.status == 404
        assert f"Fact #{mornings.id} of this caller is withdrawn already" in again.visible_text()
        for wrong in ("99", "abc", "-1", ""):
            missing = await browser.post("/caller/fact/withdraw", {**form, "fact_id": wrong})
            assert missing.status == 404 and "No such fact" in missing.text, wrong
        unknown = await browser.post(
            "/caller/fact/withdraw", {"number": "+1 415 555 0199", "fact_id": "1"}
        )
        assert unknown.status == 404 and "Nothing is held about this caller" in unknown.text

    prompt = await next_call_prompt(store)
    assert "mornings" not in prompt and "prefers" not in prompt
    assert all(value in prompt for value in others), prompt
    after = await store.get_profile(user_id)
    assert after is not None and after.call_count == before.call_count
    assert [f.status for f in after.facts if f.id != mornings.id] == [
        f.status for f in before.facts if f.id != mornings.id
    ]

    withdrawn = [r for r in audit_entries(config) if r["action"] == "withdraw_fact"]
    assert withdrawn == [
        {
            "at": withdrawn[0]["at"],
            "who": "Dana",
            "action": "withdraw_fact",
            "client": "127.0.0.1",
            "via": "console",
            "user_ids": [user_id],
            "fact_id": mornings.id,
            "reason": reason,
        }
    ]
    log = (config.data_dir / "console" / "audit.jsonl").read_text()
    assert not holds_number(log)
    for said in ("mornings", "Lopez", "Tuesday", "cleaning"):
        assert said not in log


async def test_an_erasure_request_is_reviewed_then_carried_out(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    user_id = store.hasher.hash(ANA)
    await store.request_erasure(user_id)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        listed = await browser.get("/callers")
        assert user_id in listed.text
        review = await browser.post("/requests/erase", {"user_id": user_id})
        assert "confirmed who asked" in review.visible_text() and "Ana Lopez" in review.text
        assert f"{store.keys.profile(user_id)}" in review.text
        assert await store.get_profile(user_id) is not None
        done = await browser.post("/requests/erase", {"user_id": user_id, "confirm": "yes"})
        assert "Erased" in done.text
        assert await store.get_profile(user_id) is None
        assert user_id not in (await browser.get("/callers")).text  # the request is answered
        gone = await browser.post("/requests/erase", {"user_id": user_id, "confirm": "yes"})
        assert gone.status == 404
        odd = await browser.post("/requests/erase", {"user_id": "a}b", "confirm": "yes"})
        assert odd.status == 404
    erased = [r for r in audit_entries(config) if r["action"] == "erase"]
    assert erased[0]["via"] == "request" and erased[0]["user_ids"] == [user_id]


def test_the_page_marks_every_tag_redaction_leaves() -> None:
    redact = Redactor(region="US")
    said = [
        "my card number is 4111 1111 1111 1111 expiring 09/28",
        "my social security number is 123-45-6789",
        "the code is 482193",
        "my email is ana.lopez@example.com",
        "call me at +44 20 7946 0958",
        "order " + " ".join(f"{n:03d}" for n in range(100, 160)),  # a flood of numbers
    ]
    left = {tag for text in said for tag in re.findall(r"\[[a-z ]+\]", redact(text))}
    assert left == set(REDACTION_TAGS)


# -- health --------------------------------------------------------------------------------


async def _health_checks(browser: ConsoleClient, callers: int) -> str:
    # The exact counts and the chart are the full count's, made when an operator asks.
    await browser.post("/health/count", {})

    async def counted() -> bool:
        return 'id="callers-count"' in (await browser.get("/health")).text

    await eventually(counted, what="the full count's result")
    page = await browser.get("/health")
    text = page.visible_text()
    assert re.search(rf"\b{callers} caller{'' if callers == 1 else 's'}\b", text), text
    assert "answering" in text and "0 keys without an expiry" in text
    bars = re.findall(r'<rect class="bar"', page.text)
    assert len(bars) == 24
    counts = [int(n) for n in re.findall(r'<text class="count"[^>]*>(\d+)</text>', page.text)]
    assert sum(counts) >= 2  # Ana's two calls, in this hour's bar (or the last two)
    panel = await browser.get("/health/panel", headers={"HX-Request": "true"})
    assert 'id="health"' in panel.text and "<html" not in panel.text  # a fragment, for htmx
    return text


async def test_health_shows_the_store_its_counts_and_calls_per_hour(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    await seed_call(store, "+1 415 555 0142", "AJ_bo_1", ["Hi"], {"summary": "Hi."}, end=False)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        text = await _health_checks(browser, callers=2)
    assert "Redis 127.0.0.1" in text
    assert "1 call in progress" in text and "0 orphaned calls waiting" in text
    assert "0 calls waiting, none unreadable" in text
    assert re.search(r"\d+ B memory per caller", text)


async def test_health_says_when_the_store_is_down(
    config: RedisConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        down = replace(config, url=f"redis://127.0.0.1:{free.getsockname()[1]}")
    with caplog.at_level(logging.ERROR, logger="livekit.plugins.caller_memory"):
        async with served(create_app(down, settings=SETTINGS)) as url, client(url) as browser:
            await logged_in(browser)
            text = (await browser.get("/health")).visible_text()
            assert "not answering" in text and "Connection refused" in text
            page = await browser.post("/caller", {"number": ANA})
            assert page.status == 503 and "not answering" in page.text
    # The log says what the console does meanwhile, not what a worker's calls do.
    assert "the console's pages say so until Redis answers" in caplog.text
    assert "calls go on" not in caplog.text


async def test_the_console_of_an_agent_process_shares_its_in_process_memory(
    config: RedisConfig,
) -> None:
    memory = InMemoryStore(replace(config, persistence=False))
    await seed_ana(memory)
    app = create_app(settings=SETTINGS, manager=SessionManager(memory))
    async with served(app) as url, client(url) as browser:
        await logged_in(browser)
        assert "Ana Lopez" in (await browser.post("/caller", {"number": ANA})).text
        text = (await browser.get("/health")).visible_text()
        assert "in-process memory" in text and "1 caller" in text


# -- where it runs -------------------------------------------------------------------------


async def test_on_a_redis_cluster(config: RedisConfig, redis_cluster: LocalCluster) -> None:
    on_cluster = replace(config, url=redis_cluster.url, cluster=True)
    store = RedisMemoryStore(on_cluster)
    assert await store.connect()
    try:
        await seed_ana(store)
        app = create_app(on_cluster, settings=SETTINGS)
        async with served(app) as url, client(url) as browser:
            await logged_in(browser)
            assert "Ana Lopez" in (await browser.post("/caller", {"number": "415-555-0134"})).text
            exported = await browser.post("/caller/export", {"number": ANA})
            assert len(json.loads(exported.text)["keys"]) == 6
            text = await _health_checks(browser, callers=1)
            assert "Redis Cluster" in text
            await browser.post("/caller/erase", {"number": ANA, "confirm": "yes"})
            assert "Nothing is held" in (await browser.post("/caller", {"number": ANA})).text
        assert (await SessionManager(store).export_caller(ANA))["keys"] == {}
    finally:
        await store.disconnect()


@pytest.mark.server_binary
async def test_on_the_embedded_private_server(config: RedisConfig, tmp_path: Path) -> None:
    with socket.socket() as free:  # nothing configured, and nothing on the default port
        free.bind(("127.0.0.1", 0))
        nothing = free.getsockname()[1]
    local = RedisConfig(
        port=nothing,
        data_dir=tmp_path,
        key_prefix=config.key_prefix,
        phone_hash_secret=config.phone_hash_secret,
        default_region="US",
        lookup_timeout_ms=10_000,
    )
    assert not local.is_explicit
    app = create_app(local, settings=SETTINGS)
    async with served(app) as url, client(url) as browser:
        manager = await app.state.console.manager()
        assert manager.store.config.is_explicit  # the private server the console started
        await seed_ana(manager.store)
        await logged_in(browser)
        assert "Ana Lopez" in (await browser.post("/caller", {"number": ANA})).text
        text = await _health_checks(browser, callers=1)
        assert "private server" in text
        await browser.post("/caller/erase", {"number": ANA, "confirm": "yes"})
        assert "Nothing is held" in (await browser.post("/caller", {"number": ANA})).text
    port = int((tmp_path / "redis" / "port").read_text())
    with pytest.raises(ConnectionRefusedError):  # the console stopped the server it started
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


async def test_mounted_in_an_application_of_your_own(
    config: RedisConfig, store: MemoryStore
) -> None:
    await seed_ana(store)
    console = create_app(config, settings=SETTINGS)
    outer = Starlette(routes=[Mount("/memory", app=console)])
    try:
        async with served(outer, root="/memory") as url, client(url) as browser:
            assert (await browser.get("/callers")).url.endswith("/memory/login")
            assert (await browser.login()).url.endswith("/memory/callers")
            page = await browser.post("/caller", {"number": ANA})
            assert "Ana Lopez" in page.text
            assert 'action="/memory/caller/export"' in page.text
            assert (await browser.get("/static/console.css")).status == 200
    finally:
        await console.state.console.aclose()  # a mounted app's lifespan is not run


# -- the command ---------------------------------------------------------------------------


def test_serve_makes_a_token_when_none_is_set(config: RedisConfig, tmp_path: Path) -> None:
    env = console_env(config)
    del env["MEMORY_CONSOLE_TOKEN"]
    with ConsoleProcess(env, tmp_path / "console.log") as process:
        found = re.search(r"Log in with this token .*: (\S+)", process.text())
        assert found and len(found.group(1)) >= 16
        assert process.url.startswith("http://127.0.0.1:")


async def test_serve_behind_a_proxy_on_a_unix_socket(config: RedisConfig, tmp_path: Path) -> None:
    env = console_env(config, MEMORY_CONSOLE_AUTH="proxy")
    del env["MEMORY_CONSOLE_TOKEN"]
    path = tmp_path / "console.sock"
    with ConsoleProcess(env, tmp_path / "console.log", "--uds", str(path)) as process:
        assert process.url == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o660  # the proxy's group, not everyone
        connector = aiohttp.UnixConnector(path=str(path))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get("http://localhost/callers") as response:
                assert response.status == 401
            who = {"X-Forwarded-User": "dana@example.org"}
            async with http.get("http://localhost/callers", headers=who) as response:
                assert response.status == 200 and "dana@example.org" in await response.text()


def test_serve_refuses_what_it_cannot_run(
    config: RedisConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMORY_PERSISTENCE", "false")
    assert main(["--port", "0"]) == 1
    assert "MEMORY_PERSISTENCE=false" in capsys.readouterr().err
    monkeypatch.delenv("MEMORY_PERSISTENCE")
    monkeypatch.setenv("MEMORY_CONSOLE_TOKEN", "too-short")
    assert main(["--port", "0"]) == 1
    assert "MEMORY_CONSOLE_TOKEN" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--auth", "nobody"])


def test_the_plugin_imports_without_the_console_extra() -> None:
    # The console's web stack hidden, as on a machine without the extra.
    script = """
import sys
for name in ("starlette", "jinja2", "uvicorn", "multipart", "python_multipart", "itsdangerous"):
    sys.modules[name] = None
import livekit.plugins.caller_memory
import livekit.plugins.caller_memory.cli
from livekit.plugins.caller_memory import console
code = console.main(["--port", "0"])
loaded = [m for m in ("starlette", "jinja2", "uvicorn") if sys.modules.get(m) is not None]
print(code, loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "console extra" in done.stdout
    assert "pip install './plugins/livekit-plugins-caller-memory[console]'" in done.stdout
    assert done.stdout.strip().endswith("1 []")  # something to install: 1, as documented


async def test_a_silent_redis_makes_the_pages_say_so_instead_of_hanging(
    server: TestServer, tmp_path: Path
) -> None:
    # Redis stops answering (SIGSTOP): the erasure requests section says so and a confirmed
    # erasure answers 503, each within the socket timeout; nothing is erased later, unseen.
    config = RedisConfig(url=server.url, phone_hash_secret=TEST_SECRET, data_dir=tmp_path,
                         default_region="US", socket_timeout=1.0)  # fmt: skip
    store = RedisMemoryStore(config)
    await seed_ana(store)
    user_id = store.hasher.hash(ANA)
    await store.request_erasure(user_id)
    async with served(create_app(config, settings=SETTINGS)) as url, client(url) as browser:
        await logged_in(browser)
        assert user_id in (await browser.get("/callers")).text
        server.pause()
        try:
            listed = await browser.get("/callers")
            assert "Caller memory is not answering" in listed.visible_text()  # the section says so
            done = await browser.post("/requests/erase", {"user_id": user_id, "confirm": "yes"})
            assert done.status == 503
        finally:
            server.resume()
    assert await store.get_profile(user_id) is not None
    await store.disconnect()
