"""The operator console under test: callers seeded through real calls, the console served for
real (uvicorn in this process, or ``python -m ...console`` in a process of its own), an HTTP
client that logs in and sends forms with their CSRF token as a browser does, and what the
console test modules share: their settings, the audit log as read back, a page's text outside
its folds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from livekit.agents import Agent
from starlette.applications import Starlette

from livekit.plugins.caller_memory import (
    CallerMemory,
    RedisConfig,
    RedisMemoryStore,
    SessionManager,
)
from livekit.plugins.caller_memory.console import ConsoleSettings
from livekit.plugins.caller_memory.console.audit import AuditLog
from livekit.plugins.caller_memory.store import MemoryStore
from livekit.plugins.caller_memory.testing import (
    ScriptedLLM,
    join,
    leave,
    offline_job,
    shut_down,
    sip_caller,
    text_session,
)

from ..conftest import TEST_SECRET
from .facts import answer
from .servers import TestServer
from .waiting import eventually

__all__ = [
    "ANA",
    "SETTINGS",
    "TOKEN",
    "ConsoleClient",
    "ConsoleProcess",
    "Page",
    "audit_entries",
    "console_env",
    "logged_in",
    "outside_folds",
    "process_config",
    "running_console",
    "worker_call",
    "holds_number",
    "next_call_prompt",
    "seed_ana",
    "seed_call",
    "client",
    "connected",
    "served",
]

TOKEN = "console-test-token-7d1f0b9e"
"""The console token of the tests (16+ characters)."""
SETTINGS = ConsoleSettings(token=TOKEN, stats_ttl_s=0)
"""The console of the tests served in their own process: the test token, and the health page's
sample drawn afresh on every load."""


async def seed_call(
    store: MemoryStore,
    number: str,
    session_id: str,
    says: list[str | tuple[str, str]],
    summary: dict[str, Any],
    *,
    verified: bool = True,
    consent: bool = False,
    end: bool = True,
) -> SessionManager:
    """One real call of ``number`` through the session manager: turns (redacted as the agent
    records them; a line alone is answered "Of course."), then the scripted LLM's summary at
    hang-up; with ``end`` False the call stays in progress, and this returns once its turns
    are in its journal."""
    manager = SessionManager(store, llm=ScriptedLLM("Of course.", summary=summary))
    await manager.start_session(session_id=session_id, phone_number=number, verified=verified)
    if consent:
        manager.set_consent(session_id, True)
    for line in says:
        caller, agent = (line, "Of course.") if isinstance(line, str) else line
        manager.add_turn(session_id, "user", caller)
        manager.add_turn(session_id, "assistant", agent)
    if end:
        await manager.end_session(session_id)
        return manager

    async def journaled() -> bool:
        raw = await store.read(store.keys.session(session_id))
        return raw is not None and raw.count(b"\n") >= 2 * len(says)

    await eventually(journaled, what="the call's turns in its journal")
    return manager


@contextlib.asynccontextmanager
async def connected(config: RedisConfig) -> AsyncIterator[MemoryStore]:
    """The Redis store of ``config``, connected (the tests seed callers through it)."""
    store = RedisMemoryStore(config)
    assert await store.connect()
    try:
        yield store
    finally:
        await store.disconnect()


async def worker_call(config: RedisConfig, number: str, trunk: str, job: str) -> None:
    """One inbound SIP call to the trunk number ``trunk``, through a worker's CallerMemory
    (LiveKit's real room, participant and session classes; only the model is scripted)."""
    memory = CallerMemory(config=config)
    caller = sip_caller(number, "sip_caller", attributes={"sip.trunkPhoneNumber": trunk})
    with offline_job(job, fake=False) as ctx:
        join(ctx.room, caller)
        session = text_session(ScriptedLLM("Hello!", summary=answer("Asked the hours.")))
        await memory.attach(ctx, session, Agent(instructions="You are Sarah."))
        await session.start(Agent(instructions="You are Sarah."))
        await session.run(user_input="When do you open?")
        leave(ctx.room, caller)
        await session.aclose()
        await memory.on_session_end(ctx)
        await shut_down(ctx)
    await memory.aclose()


ANA = "+14155550134"
"""A caller of the scenario below (555-01xx: numbers reserved for fiction)."""


async def seed_ana(store: MemoryStore) -> None:
    """Ana's two calls: the first verified, with her consent and a card number said (redacted),
    giving her name, that mornings suit her and her booking; the second from an unverified
    caller id (it only adds to her memory: a fact of its own, unverified)."""
    await seed_call(
        store,
        ANA,
        "AJ_ana_1",
        [
            (
                "Hi, this is Ana Lopez. I'd like to book a cleaning; mornings are best for me.",
                "Happy to help, Ana! I have Tuesday at 9 or Thursday at 10.",
            ),
            (
                "Tuesday at 9, please. Can I pay the deposit now? My card is 4111 1111 1111 1111.",
                "Thank you. You're booked for Tuesday at 9, and the deposit is paid.",
            ),
        ],
        {
            "summary": "Ana booked a cleaning for Tuesday at 9am and paid the deposit by card. "
            "She prefers mornings.",
            "ops": [
                _op("name", "Ana Lopez", "this is Ana Lopez"),
                _op("appointment time", "mornings", "mornings are best for me"),
                _op("appointment", "cleaning on Tuesday at 9", "Tuesday at 9, please"),
            ],
        },
        consent=True,
    )
    await seed_call(
        store,
        ANA,
        "AJ_ana_2",
        [("Hi, it's Ana again. Could we move Tuesday to 10?", "Done: Tuesday at 10.")],
        {
            "summary": "Ana asked to move her cleaning to Tuesday at 10am.",
            "ops": [_op("appointment", "cleaning on Tuesday at 10", "move Tuesday to 10")],
        },
        verified=False,
    )


def _op(label: str, value: str, evidence: str) -> dict[str, Any]:
    # An ``add`` as a model writes it in its answer: the evidence is the caller's own words.
    return {"op": "add", "label": label, "value": value, "evidence": evidence}


async def next_call_prompt(store: MemoryStore, number: str = ANA) -> str:
    """What the agent of the caller's next call is given (verified: the whole memory); the
    call itself is not remembered."""
    manager = SessionManager(store)
    context = await manager.start_session(session_id="AJ_next", phone_number=number, verified=True)
    manager.dont_remember("AJ_next")
    await manager.end_session("AJ_next")
    return context.memory_prompt()


def holds_number(text: str, number: str = ANA) -> bool:
    """True when ``text`` holds ``number`` in any spelling (its last 7 digits, separated by
    spaces, dots, dashes or brackets, or not at all)."""
    tail = re.sub(r"\D", "", number)[-7:]
    return any(tail in re.sub(r"\D", "", run) for run in re.findall(r"[\d()+.\s-]{7,}", text))


def audit_entries(config: RedisConfig) -> list[dict[str, Any]]:
    """The console's audit log of ``config`` (its default place), read back."""
    return AuditLog(config.data_dir / "console" / "audit.jsonl").read()


def process_config(
    server: TestServer, key_prefix: str, data_dir: Path, default_region: str | None = "US"
) -> RedisConfig:
    """The settings a console in a process of its own and its tests share: ``server``, a key
    prefix of their own, and a generous lookup budget (a loaded machine must not turn a
    returning caller into a new one)."""
    return RedisConfig(
        url=server.url,
        key_prefix=key_prefix,
        phone_hash_secret=TEST_SECRET,
        default_region=default_region,
        data_dir=data_dir,
        lookup_timeout_ms=10_000,
    )


def console_env(config: RedisConfig, **extra: str) -> dict[str, str]:
    """The environment of a console process using ``config``'s store."""
    assert config.url is not None
    env = {
        **os.environ,
        "REDIS_URL": config.url.get_secret_value(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": config.phone_hash_secret.get_secret_value()
        if config.phone_hash_secret
        else "",
        "MEMORY_DEFAULT_REGION": config.default_region or "",
        "MEMORY_DATA_DIR": str(config.data_dir),
        "MEMORY_CONSOLE_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class ConsoleProcess:
    """``python -m livekit.plugins.caller_memory.console --port 0`` in a process of its own;
    everything it prints is kept in a file (the server's log, access log included).

    Args:
        env: Its environment (:func:`console_env`).
        log: The file its output goes to.
        args: More command-line arguments.
    """

    def __init__(self, env: Mapping[str, str], log: Path, *args: str) -> None:
        self._env = dict(env)
        self.log = log
        self._args = args
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        """Start it and wait until it prints its address (it answers from then on)."""
        command = [sys.executable, "-m", "livekit.plugins.caller_memory.console", "--port", "0"]
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                [*command, *self._args], env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Caller-memory console: (\S+)", self.text())
            if found:
                self.url = found.group(1).rstrip("/")
                return self.url
            if self._proc.poll() is not None:
                raise RuntimeError(f"the console exited {self._proc.returncode}:\n{self.text()}")
            time.sleep(0.05)
        raise RuntimeError(f"the console did not start in {timeout:g} s:\n{self.text()}")

    def text(self) -> str:
        """Everything it has printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop it (SIGTERM to its pid, then SIGKILL) and return its exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def __enter__(self) -> ConsoleProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_console(env: Mapping[str, str], log: Path) -> Iterator[ConsoleProcess]:
    """A console process, started; stopped at the end, where it must have shut down cleanly
    (uvicorn ends by re-raising the SIGTERM it was stopped with, once shut down cleanly)."""
    process = ConsoleProcess(env, log)
    process.start()
    try:
        yield process
    finally:
        status = process.stop()
    assert status in (0, -signal.SIGTERM), process.text()


@contextlib.asynccontextmanager
async def served(app: Starlette, root: str = "") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in this event loop; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", server_header=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}{root}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Page:
    """A response of the console, read."""

    status: int
    text: str
    headers: Mapping[str, str]
    url: str

    @property
    def csrf(self) -> str:
        """The CSRF token of the page's forms."""
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert found, "no CSRF token in the page"
        return found.group(1)

    def visible_text(self) -> str:
        """The page's text as a person reads it (no markup)."""
        parser = _Text()
        parser.feed(self.text)
        return " ".join(" ".join(parser.parts).split())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style", "title")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


class ConsoleClient:
    """A browser's HTTP side: cookies, and the page's CSRF token sent with each form.

    Args:
        base: The console's URL.
        session: An ``aiohttp`` session with a cookie jar that takes cookies from an IP host.
    """

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.http = session
        self.csrf = ""
        self.pages: list[Page] = []
        """Every response, in order (for the scans of URLs and headers)."""

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> Page:
        """GET a page (redirects followed); its CSRF token becomes the one sent next."""
        async with self.http.get(self.base + path, headers=headers) as response:
            return await self._read(response)

    async def post(
        self,
        path: str,
        form: Mapping[str, str],
        *,
        csrf: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Page:
        """POST a form, with the CSRF token of the last page unless ``csrf`` is False."""
        data = {**form, **({"csrf_token": self.csrf} if csrf else {})}
        async with self.http.post(self.base + path, data=data, headers=headers) as response:
            return await self._read(response)

    async def login(self, name: str = "Dana", token: str = TOKEN) -> Page:
        """Open the login page and log in."""
        await self.get("/login")
        return await self.post("/login", {"name": name, "token": token})

    async def _read(self, response: aiohttp.ClientResponse) -> Page:
        page = Page(response.status, await response.text(), response.headers, str(response.url))
        for hop in [*response.history, response]:
            self.pages.append(Page(hop.status, "", hop.headers, str(hop.url)))
        with contextlib.suppress(AssertionError):
            self.csrf = page.csrf
        return page


@contextlib.asynccontextmanager
async def client(base: str) -> AsyncIterator[ConsoleClient]:
    """A :class:`ConsoleClient` of its own (its own cookies)."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield ConsoleClient(base, session)


async def logged_in(browser: ConsoleClient) -> None:
    """Log in with the test token; the callers page must follow."""
    assert (await browser.login()).url.endswith("/callers")


def outside_folds(page: Page) -> Page:
    """The page less every ``<details>`` fold: what it shows before one is opened."""
    return dataclasses.replace(
        page, text=re.sub(r"<details\b.*?</details>", " ", page.text, flags=re.S)
    )
