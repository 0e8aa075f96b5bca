"""The Redis ACL recipe of docs/operations.md ("Redis ACL users"), applied as the page gives it.

The three ``ACL SETUSER`` lines are read from the page itself (the doc and this test cannot
drift), applied to a private Redis that keeps an append-only file, and each part runs as its
user: a worker's calls through the SessionManager, the console's pages over HTTP, the
operator's ``caller-memory`` commands in their own processes. Redis's own ``ACL LOG`` must then
hold no refusal of that user; and what the user was not given is refused with ``NOPERM``.
Where a rule is taken away (``INFO``, ``BGREWRITEAOF``, ``CONFIG``), the plugin keeps working
and says so in one line (issue 22).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError, ResponseError

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager
from livekit.plugins.caller_memory.config import DEFAULT_KEY_PREFIX
from livekit.plugins.caller_memory.console import ConsoleSettings, create_app
from livekit.plugins.caller_memory.store.redis_client import _SCRIPT_REFUSALS, _SCRIPTS, _SHAS
from livekit.plugins.caller_memory.testing import ScriptedLLM

from .conftest import TEST_SECRET
from .support.cli import operator_cli
from .support.console import ANA, TOKEN, client, seed_ana, seed_call, served
from .support.servers import TestServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
WORKER, CONSOLE, OPERATOR = "callmem-worker", "callmem-console", "callmem-operator"
BO = "+14155550142"
"""A second caller (555-01xx: numbers reserved for fiction)."""
LOGGER = "livekit.plugins.caller_memory"
ASKED_CONFIG = "command config|get"
"""The one refusal the recipe means: a worker's and the console's persistence question."""


def recipe() -> dict[str, list[str]]:
    """The ``ACL SETUSER`` lines of the page's "Redis ACL users" section, by user name."""
    section = DOC.read_text().split("\n## Redis ACL users\n", 1)[1].split("\n## ", 1)[0]
    lines = [shlex.split(line) for line in section.splitlines() if line.startswith("ACL SETUSER")]
    return {words[2]: words for words in lines}


def _password(user: str) -> str:
    return next(w[1:] for w in recipe()[user] if w.startswith(">"))


def _as(server: TestServer, user: str) -> str:
    return server.url.replace("redis://", f"redis://{user}:{_password(user)}@", 1)


def _config(server: TestServer, user: str, data_dir: Path) -> RedisConfig:
    return RedisConfig(
        url=_as(server, user),
        key_prefix=DEFAULT_KEY_PREFIX,
        phone_hash_secret=TEST_SECRET,
        default_region="US",
        data_dir=data_dir,
        lookup_timeout_ms=10_000,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestServer]:
    """A private Redis with an append-only file (what an erasure rewrites) and the recipe's
    three users, applied word for word as the page gives them."""
    with TestServer(data_dir=tmp_path / "redis", appendonly=True) as started:
        with _admin(started) as admin:
            for words in recipe().values():
                assert admin.execute_command(*words) in (b"OK", "OK", True)
            admin.acl_log_reset()
        yield started


def _admin(server: TestServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def refusals(server: TestServer, user: str) -> list[str]:
    """What Redis refused ``user`` (its ``ACL LOG``): ``reason object`` each. ``CLIENT
    SETINFO`` (Redis 7.2+) is left out: redis-py sends it and ignores a refusal."""
    with _admin(server) as admin:
        log: list[dict[str, Any]] = admin.acl_log(count=1000)
    return [
        f"{e['reason']} {e['object']}"
        for e in log
        if e["username"] == user and e["object"] != "client|setinfo"
    ]


def on_disk(server: TestServer) -> bytes:
    """Everything the server keeps in its data folder (append-only file included)."""
    assert server.data_dir is not None
    return b"".join(p.read_bytes() for p in Path(server.data_dir).rglob("*") if p.is_file())


def assert_refused(server: TestServer, user: str, *commands: tuple[Any, ...]) -> None:
    """Each command, sent as ``user``, is refused with NOPERM (the plugin's scripts loaded
    first, as a worker loads them: an unknown one would be refused for that instead)."""
    with _admin(server) as admin:
        for source in _SCRIPTS.values():
            admin.script_load(source)
    with redis.Redis.from_url(_as(server, user)) as conn:
        for command in commands:
            with pytest.raises(ResponseError) as refused:
                conn.execute_command(*command)
            # A refusal inside a script has no NOPERM code: Redis 7.0 and 7.2+ word it so.
            inside = any(words in str(refused.value) for words in _SCRIPT_REFUSALS)
            assert isinstance(refused.value, NoPermissionError) or inside, command


@pytest.fixture
async def seeder(server: TestServer, tmp_path: Path) -> AsyncIterator[RedisMemoryStore]:
    """A worker's store (the worker user), to make callers the way calls make them."""
    store = RedisMemoryStore(_config(server, WORKER, tmp_path / "seeder"))
    assert await store.connect()
    yield store
    await store.disconnect()


def test_the_page_gives_one_user_per_part_limited_to_the_default_prefix() -> None:
    users = recipe()
    assert set(users) == {WORKER, CONSOLE, OPERATOR}
    for words in users.values():
        assert words[:4] == ["ACL", "SETUSER", words[2], "reset"]  # nothing inherited
        assert [w for w in words if w.startswith(("~", "%", "&", "allkeys", "+@"))] == [
            f"~{DEFAULT_KEY_PREFIX}:*"
        ]


# -- the worker ----------------------------------------------------------------------------


async def test_a_worker_runs_its_calls_as_its_user_without_a_refusal(
    server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(server, WORKER, tmp_path / "worker")
    store = RedisMemoryStore(config)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert await store.connect()
        assert (await store.health_check())["healthy"]
        # Calls: a new caller, then a returning one (lookup, journal, save, the facts).
        await seed_ana(store)
        manager = SessionManager(store, llm=ScriptedLLM("Of course.", summary={"summary": "-"}))
        context = await manager.start_session(session_id="AJ_3", phone_number=ANA, verified=True)
        assert context.is_returning and "mornings" in context.memory_prompt()
        manager.set_consent("AJ_3", True)
        manager.dont_remember("AJ_3")
        assert await manager.end_session("AJ_3") is None

        # Unverified, Bo asks to be forgotten: filed for an operator; he withdraws consent.
        await seed_call(store, BO, "AJ_bo_1", ["I'm Bo, I keep bees"], {"summary": "Bo."})
        await manager.start_session(session_id="AJ_bo_2", phone_number=BO, verified=False)
        manager.set_consent("AJ_bo_2", False)
        assert await manager.ask_to_forget("AJ_bo_2") == "requested"
        await manager.end_session("AJ_bo_2")
        assert [u for u, _ in await store.erasure_requests()] == [store.hasher.hash(BO)]

        # A call whose worker died: another worker's recovery saves it from its journal.
        await seed_call(store, "+14155550177", "AJ_cut", ["Hi, I'm Cy"], {}, end=False)
        assert await SessionManager(store).recover_orphans(idle_s=0) == 1
        assert await store.get_session("AJ_cut") is not None
        await store.heartbeat(["AJ_cut"])
        assert isinstance(await store.acquire_maintenance(5), bool)

        # A call saved while Redis was away waits in the outbox; the worker flushes it.
        away = RedisMemoryStore(config.replaced(url="redis://127.0.0.1:1"))
        gone = SessionManager(away, llm=ScriptedLLM("Of course.", summary={"summary": "Dee."}))
        await gone.start_session(session_id="AJ_dee", phone_number="+14155550188")
        gone.add_turn("AJ_dee", "user", "Dee here, about the blue van")
        await gone.end_session("AJ_dee")
        await away.disconnect()
        assert len(manager.outbox) == 1
        assert await manager.flush_outbox() == (1, 0)

        # Ana, verified, asks to be forgotten while a call of hers is still going on: every
        # key goes, the call in progress is not saved after it, and the file forgets her too.
        other = await seed_call(store, ANA, "AJ_ana_4", ["Ana again"], {"summary": "-"}, end=False)
        assert b"Lopez" in on_disk(server)
        erasing = SessionManager(store)
        await erasing.start_session(session_id="AJ_ana_5", phone_number=ANA, verified=True)
        assert await erasing.ask_to_forget("AJ_ana_5") == "erased"
        assert await other.end_session("AJ_ana_4") is None  # the erasure marker wins
        assert (await erasing.export_caller(ANA))["keys"] == {}
        assert b"Lopez" not in on_disk(server)
    await store.disconnect()
    # The one refusal is the recipe's on purpose: the persistence question at the first
    # connect (INFO then shows the append-only file, so nothing needed saying).
    assert refusals(server, WORKER) == [ASKED_CONFIG]
    assert not [r for r in caplog.records if "NOPERM" in r.getMessage()], caplog.text
    assert not [r for r in caplog.records if "not checked" in r.getMessage()], caplog.text


def test_a_worker_cannot_flush_list_reconfigure_nor_leave_its_prefix(server: TestServer) -> None:
    lookup = _SHAS["lookup"]
    assert_refused(
        server,
        WORKER,
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("CONFIG", "GET", "requirepass"),
        ("EVAL", "return 1", "0"),
        ("SHUTDOWN",),
        ("MONITOR",),
        ("GET", "other:app:key"),
        ("SET", "other:app:key", "x"),
        ("DEL", "callmemX:phone:{x}"),
        # The plugin's own script gains nothing: its keys are checked against the user too.
        ("EVALSHA", lookup, "4", "other:a", "other:b", "other:c", "other:d", "", "60", "100"),
    )


# -- the console ---------------------------------------------------------------------------


async def test_the_console_serves_its_pages_as_its_user_without_a_refusal(
    server: TestServer, seeder: RedisMemoryStore, tmp_path: Path
) -> None:
    await seed_ana(seeder)
    await seed_call(seeder, BO, "AJ_bo_1", ["I'm Bo, I keep bees"], {"summary": "Bo keeps bees."})
    bo = seeder.hasher.hash(BO)
    await seeder.request_erasure(bo)
    config = _config(server, CONSOLE, tmp_path / "console")
    settings = ConsoleSettings(token=TOKEN, stats_ttl_s=0)
    async with served(create_app(config, settings=settings)) as url, client(url) as browser:
        assert (await browser.login()).url.endswith("/callers")
        assert bo in (await browser.get("/callers")).text
        found = await browser.post("/caller", {"number": "(415) 555-0134"})
        assert "Ana Lopez" in found.visible_text()
        exported = await browser.post("/caller/export", {"number": ANA})
        assert exported.headers["content-type"] == "application/json"
        profile = next(v for k, v in json.loads(exported.text)["keys"].items() if "profile" in k)
        mornings = next(f for f in profile["facts"] if f["value"] == "mornings")
        withdrawn = await browser.post(
            "/caller/fact/withdraw",
            {"number": ANA, "fact_id": str(mornings["id"]), "confirm": "yes",
             "reason": "The caller says she never gave a preferred time"},
        )  # fmt: skip
        assert f"Fact #{mornings['id']} withdrawn" in withdrawn.visible_text()
        health = (await browser.get("/health")).visible_text()
        assert "answering" in health, health
        assert "Lopez" in on_disk(server).decode(errors="replace")
        done = await browser.post("/caller/erase", {"number": ANA, "confirm": "yes"})
        assert re.search(r"\d+ Redis keys and 0 outbox entries deleted", done.visible_text())
        again = await browser.post("/caller", {"number": ANA})
        assert "Nothing is held about this caller" in again.text
        answered = await browser.post("/requests/erase", {"user_id": bo, "confirm": "yes"})
        assert "Erased" in answered.text, refusals(server, CONSOLE)
    assert await seeder.get_profile(bo) is None
    assert b"Lopez" not in on_disk(server) and b"bees" not in on_disk(server)
    # At most the persistence question, on purpose (asked once a process: the seeder did).
    assert set(refusals(server, CONSOLE)) <= {ASKED_CONFIG}


def test_the_console_cannot_create_save_renew_nor_reconfigure(server: TestServer) -> None:
    # It reads and erases: no journal, no call saved, no caller made, no TTL renewed.
    assert_refused(
        server,
        CONSOLE,
        ("ZADD", "callmem:sessions:open", "1", "AJ_x"),
        ("APPEND", "callmem:session:{AJ_x}", "turn"),
        ("RPUSH", "callmem:user:{u}:sessions", "AJ_x"),
        ("EXPIRE", "callmem:user:{u}:profile", "60"),
        ("GETEX", "callmem:user:{u}:profile", "EX", "60"),
        ("RENAME", "callmem:user:{u}:profile", "callmem:user:{u}:profile:unreadable"),
        ("ZINCRBY", "callmem:versions", "1", "saves:9.9.9"),
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "requirepass"),
        ("EVAL", "return 1", "0"),
        ("GET", "other:app:key"),
        # The lookup that mints a caller runs commands the console does not have.
        ("EVALSHA", _SHAS["lookup"], "4", "callmem:phone:{h}", "callmem:user:{h}:profile",
         "callmem:user:{h}:sessions", "callmem:phone:{h}:unreadable", "h", "60", "100"),
    )  # fmt: skip


# -- the operator's commands ---------------------------------------------------------------


async def test_the_operator_commands_run_as_their_user_without_a_refusal(
    server: TestServer, seeder: RedisMemoryStore, tmp_path: Path
) -> None:
    config = _config(server, OPERATOR, tmp_path / "operator")
    await seed_ana(seeder)
    await seed_call(seeder, BO, "AJ_bo_1", ["I'm Bo, I keep bees"], {"summary": "Bo keeps bees."})
    bo = seeder.hasher.hash(BO)
    await seeder.request_erasure(bo)
    # A call left in the operator's outbox while Redis was away.
    away = RedisMemoryStore(config.replaced(url="redis://127.0.0.1:1"))
    gone = SessionManager(away, llm=ScriptedLLM("Of course.", summary={"summary": "Dee."}))
    await gone.start_session(session_id="AJ_dee", phone_number="+14155550188")
    gone.add_turn("AJ_dee", "user", "Dee here, about the blue van")
    await gone.end_session("AJ_dee")
    await away.disconnect()

    def run(*args: str) -> str:
        done = operator_cli(config, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "NOPERM" not in done.stdout + done.stderr, args
        return done.stdout

    assert "Connected!" in run("check")
    assert "1 of 1 call(s) saved, 0 waiting" in run("flush")
    stats = run("stats")
    assert re.search(r"^callers\s+3$", stats, re.M), stats
    assert bo in run("requests")
    exported = json.loads(run("export", ANA))
    profile = next(v for k, v in exported["keys"].items() if k.endswith(":profile"))
    fact = next(f for f in profile["facts"] if f["value"] == "mornings")
    reason = "The caller says she never gave a preferred time"
    assert "withdrawn" in run("withdraw-fact", ANA, str(fact["id"]), "--reason", reason)
    assert b"Lopez" in on_disk(server)
    assert re.search(r"Erased: [1-9]\d* Redis key", run("forget", "--yes", ANA))
    assert re.search(r"Erased: [1-9]\d* Redis key", run("forget", "--yes", "--user-id", bo))
    assert b"Lopez" not in on_disk(server) and b"bees" not in on_disk(server)
    assert json.loads(run("export", ANA))["keys"] == {}
    assert refusals(server, OPERATOR) == []


def test_the_operator_cannot_flush_reconfigure_nor_leave_the_prefix(server: TestServer) -> None:
    assert_refused(
        server,
        OPERATOR,
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("EVAL", "return 1", "0"),
        ("SHUTDOWN",),
        ("GET", "other:app:key"),
        ("SET", "other:app:key", "x"),
    )


# -- a rule taken away: the plugin works on, and says so in one line -----------------------


@pytest.mark.parametrize("taken", ["-info", "-bgrewriteaof"])
async def test_a_worker_without_info_or_bgrewriteaof_erases_and_names_the_rule(
    taken: str, server: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _admin(server) as admin:
        admin.execute_command("ACL", "SETUSER", WORKER, taken)
    store = RedisMemoryStore(_config(server, WORKER, tmp_path / "worker"))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert await store.connect()  # without INFO too: it is not asked about a cluster
        await seed_ana(store)
        manager = SessionManager(store)
        context = await manager.start_session(session_id="AJ_3", phone_number=ANA, verified=True)
        assert context.is_returning
        assert await manager.ask_to_forget("AJ_3") == "erased"
        assert (await manager.export_caller(ANA))["keys"] == {}  # every key went
    await store.disconnect()
    assert b"Lopez" in on_disk(server)  # what the rule is for: the file still holds her
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        "could not rewrite the append-only file after an erasure; the deleted data stays in "
        "it until Redis rewrites it (BGREWRITEAOF): this Redis user may not run it (NOPERM); "
        "add +info +bgrewriteaof to its ACL rule (docs/operations.md, Redis ACL users)"
    ]
    if taken == "-info":
        infos = [r.getMessage() for r in caplog.records if "refused INFO" in r.getMessage()]
        assert infos == [
            "Redis refused INFO (NOPERM): not asked whether it is a Redis Cluster; on a "
            "cluster set REDIS_CLUSTER=true"
        ]


async def test_a_worker_without_config_says_persistence_was_not_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Redis that keeps nothing, and a worker that may not ask (the recipe gives it no
    # CONFIG): no warning is guessed, and one line says the question went unanswered.
    with TestServer(data_dir=tmp_path / "volatile", appendonly=False) as volatile:
        with _admin(volatile) as admin:
            admin.execute_command(*recipe()[WORKER])
        store = RedisMemoryStore(_config(volatile, WORKER, tmp_path / "worker"))
        with caplog.at_level(logging.INFO, logger=LOGGER):
            assert await store.connect()
            assert await store.persistence_warning() is None
            assert (await store.health_check())["healthy"]
        await store.disconnect()
    lines = [r.getMessage() for r in caplog.records if "not checked whether" in r.getMessage()]
    assert lines == [
        f"Redis at 127.0.0.1:{volatile.port}: not checked whether it keeps data across a "
        "restart (this user may not run CONFIG GET, and INFO shows no append-only file); if "
        "it keeps neither, a restart loses the calls it acknowledged"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
