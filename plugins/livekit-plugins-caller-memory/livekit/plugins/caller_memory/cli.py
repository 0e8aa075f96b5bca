"""``caller-memory``: check and look after the memory store from a terminal.

``caller-memory check`` is the guide's ``test_redis.py`` as a command: it connects with the
settings of the environment (and ``.env``), prints the latency, creates and removes a test
identity, and exits 1 with the guide's troubleshooting text when something fails.

``caller-memory forget NUMBER`` erases everything held about a caller; ``caller-memory export
NUMBER`` prints it as JSON, each fact with its id, evidence and status. ``caller-memory
withdraw-fact NUMBER FACT_ID --reason "..."`` withdraws one wrong fact instead, and records it
in the console's audit log. ``caller-memory requests`` lists the erasures callers asked for on
a call without being verified; ``caller-memory forget --user-id ID`` carries one out once staff
have confirmed who asked.

``caller-memory stats`` counts callers, sessions and keys, says which versions of the plugin
saved calls, and exits 1 if any key of the prefix has no TTL, or one longer than any setting
allows.

``caller-memory flush`` writes the calls kept in the local outbox while Redis was down, and
recovers the calls of workers that died mid-call; it exits 1 while calls still wait.

``caller-memory serve`` runs the operator console in a browser (:mod:`.console`).

Each command that reads memory first says, in one line on standard error, which Redis
(``host:port/db``, never a password) and which key prefix it reads, and names the other prefixes
that hold callers: ``MEMORY_KEY_PREFIX`` when set, else the prefix that holds callers
(:mod:`.prefixes`), so that ``caller-memory stats`` right after ``sarah replay`` reads Sarah's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timezone  # datetime.UTC is Python 3.11+

from redis.exceptions import OutOfMemoryError, RedisError

from . import privacy
from ._usage import caller_memory_parser
from .calls import SessionManager
from .commands import error_line, run_command
from .config import MAX_PROFILE_TTL_DAYS, RedisConfig
from .console import main as console_main
from .console.audit import AuditLog, AuditLogError, default_audit_log
from .console.settings import AuditSettings
from .exceptions import CallerMemoryError, InvalidPhoneNumberError, StoreUnavailableError
from .identity import normalize_phone
from .log import logger
from .outbox import Outbox, check_outbox_folder
from .prefixes import open_operator_memory
from .progress import on_terminal, progress
from .store import MemoryStore, RedisMemoryStore, VersionSaves, open_store
from .troubleshooting import diagnose

__all__ = ["main"]

_PROGRESS_POLL_S = 0.2
"""How often the outbox is counted while a flush shows its progress."""


@contextlib.asynccontextmanager
async def _store(config: RedisConfig, *, callers: bool = True) -> AsyncIterator[MemoryStore]:
    """The store the settings ask for, connected, under the prefix that holds callers
    (:mod:`.prefixes`), said in one line on standard error; closed at the end.

    Args:
        callers: The command reads callers already remembered. With no Redis named and
            ``localhost:6379`` answering but holding no callers, this machine's private server
            is read when it holds some (``sarah replay`` writes there on such a machine).

    Raises:
        StoreUnavailableError: It cannot be reached (the guide's text is logged).
    """
    if not config.persistence:
        store = await open_store(config)
        print(
            "memory: in this process only (MEMORY_PERSISTENCE=false): nothing is stored "
            "outside the process",
            file=sys.stderr,
        )
        try:
            yield store
        finally:
            await store.disconnect()
        return
    memory = await open_operator_memory(config, callers=callers)
    try:
        print(memory.line, file=sys.stderr)
        yield memory.store
    finally:
        await memory.opened.aclose()


async def _check(config: RedisConfig) -> int:
    async with _store(config, callers=False) as store:
        health = await store.health_check()
        if not health["healthy"]:
            print(f"❌ {health['error']} ({health['server']})", file=sys.stderr)
            return 1
        print(f"✅ Connected! Latency: {health['latency_ms']}ms ({health['server']})")
        await _say_persistence(store)
        if health.get("full"):
            full = OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'")
            print(diagnose(full, config).render(health["server"]), file=sys.stderr)
            return 1
        number = await _unused_test_number(store)
        phone_hash = store.hasher.hash(number)
        try:
            user_id = await store.get_or_create_user_id(phone_number=number)
            kept = await store.read(store.keys.phone(phone_hash)) is not None
            print(f"User ID: {user_id}")
        finally:  # also when the output is closed early (`check | head -1`) or interrupted
            removed = await store.forget(phone_hash)
            await store.delete([store.keys.erased(phone_hash)])  # a test identity needs no guard
        if not kept:
            print(
                "❌ Redis did not keep the test identity: it takes no writes (the line above "
                "says why)",
                file=sys.stderr,
            )
            return 1
        print(f"Test identity removed ({len(removed)} key).")
    # Where calls wait while Redis is down: an unusable folder is one line and exit 1.
    print(f"✅ Local outbox: {check_outbox_folder(config.data_dir)}")
    return 0


async def _flush(config: RedisConfig) -> int:
    async with _store(config, callers=False) as store:
        manager = SessionManager(store)
        strays = await manager.outbox.clean_strays()
        if strays.found:
            print(
                f"Outbox: {strays.found} stray temporary file(s) left by a crash: "
                f"{strays.restored} whole call(s) put back, {strays.removed} removed.",
                flush=True,
            )
        waiting = await manager.outbox.count()
        print(f"Outbox: {waiting} call(s) to write.", flush=True)
        with progress(waiting, "outbox calls written") as advance:
            shown = [0]
            watch = asyncio.ensure_future(_watch_outbox(manager.outbox, waiting, advance, shown))
            try:
                saved, left = await manager.flush_outbox()
            finally:
                watch.cancel()
            advance(max(0, waiting - len(manager.outbox) - shown[0]))
        recovered = await manager.recover_orphans()
        orphans = await store.orphans_waiting(config.orphan_after_s)
    unreadable = manager.outbox.unreadable
    others = manager.outbox.foreign
    aside = f", {others} kept for another prefix or secret" if others else ""
    if manager.outbox.erased:
        aside += f", {manager.outbox.erased} dropped (their caller was erased)"
    print(f"Outbox: {saved} of {waiting} call(s) saved, {left} waiting{aside}.")
    if others:
        kept_for = ", ".join(
            f"{n} under prefix {prefix}"
            for prefix, n in sorted(manager.outbox.foreign_prefixes.items())
        )
        print(
            f"Outbox: {others} call(s) of another key prefix or phone-hash "
            f"secret ({kept_for}; this store's prefix: {store.config.key_prefix}) left for the "
            "workers that use it; to write them here, run again with their MEMORY_KEY_PREFIX "
            "and MEMORY_PHONE_HASH_SECRET."
        )
    print(f"Calls recovered from the journals of dead workers: {recovered}, {orphans} left.")
    if unreadable:
        print(
            f"❌ {unreadable} outbox file(s) could not be read and were set aside in "
            f"{manager.outbox.folder / 'unreadable'}: look at them, then delete them.",
            file=sys.stderr,
        )
    return 0 if left == 0 and orphans == 0 and unreadable == 0 else 1


async def _watch_outbox(
    outbox: Outbox, waiting: int, advance: Callable[[int], None], shown: list[int]
) -> None:
    # The flush works file by file: the files gone are the calls written (or set aside).
    while True:
        await asyncio.sleep(_PROGRESS_POLL_S)
        done = waiting - len(outbox)
        if done > shown[0]:
            advance(done - shown[0])
            shown[0] = done


def _audit_log(config: RedisConfig) -> AuditLog:
    """The operators' audit log, the console's (``MEMORY_CONSOLE_AUDIT_LOG``)."""
    return AuditLog(AuditSettings().audit_log or default_audit_log(config))


async def _forget(
    config: RedisConfig, number: str | None, user_id: str | None, yes: bool, operator: str
) -> int:
    if number is not None:
        # A number that is none is said before the question, not after the answer (one that
        # no numbering plan holds is judged after it: privacy.caller_hashes).
        normalize_phone(number, default_region=config.default_region, strict=False)
    if not yes and not sys.stdin.isatty():
        print("❌ Add --yes to erase without a prompt.", file=sys.stderr)
        return 2
    audit = _audit_log(config)  # its setting checked before anything is erased
    async with _store(config) as store:  # says which store, before the question
        if not yes:
            answer = await asyncio.to_thread(
                input, "Erase everything held about this caller? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing erased.")  # as the operator chose: nothing to fix
                return 0
        manager = SessionManager(store)
        if user_id is not None:
            user_ids = [user_id]
            deleted = await manager.forget_user(user_id)
        else:
            assert number is not None
            phone_hash, previous = await privacy.caller_hashes(store, number)
            user_ids = (await store.held_data(phone_hash, previous=previous)).user_ids
            deleted = await manager.forget_caller(number)
    keys = [d for d in deleted if not d.startswith("outbox:")]
    try:  # after the erasure, as the console's: a caller's erasure never waits on the log
        audit.write(
            operator, "erase", via="cli", user_ids=user_ids, keys=len(keys),
            outbox_entries=len(deleted) - len(keys),
        )  # fmt: skip
        unrecorded = None
    except AuditLogError as e:
        unrecorded = e
    if not deleted and user_id is not None:
        print("Nothing is held under this user id.", file=sys.stderr)
    elif not deleted:
        print(
            "Nothing is held about this caller (under this phone-hash secret: the workers' "
            "MEMORY_PHONE_HASH_SECRET must be set here too).",
            file=sys.stderr,
        )
    print(f"Erased: {len(keys)} Redis key(s), {len(deleted) - len(keys)} outbox entry(ies).")
    for item in deleted:
        print(f"  {item}")
    if unrecorded is not None:
        print(f"❌ The erasure is done but not recorded: {error_line(unrecorded)}", file=sys.stderr)
        return 1
    return 0


async def _export(config: RedisConfig, number: str, operator: str) -> int:
    async with _store(config) as store:
        data = await SessionManager(store).export_caller(number)
    # Recorded first: nothing leaves unrecorded.
    _audit_log(config).write(
        operator, "export", via="cli", user_ids=data["user_ids"], keys=len(data["keys"]),
        outbox_entries=len(data["outbox"]),
    )  # fmt: skip
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


async def _withdraw_fact(
    config: RedisConfig, number: str, fact_id: int, reason: str, operator: str
) -> int:
    async with _store(config) as store:
        phone_hash, previous = await privacy.caller_hashes(store, number)
        held = await privacy.find_fact(store, phone_hash, fact_id, previous)
        try:
            reason = privacy.check_reason(reason, held.fact, region=config.default_region)
        except privacy.InvalidReasonError as e:
            print(f"❌ {error_line(e)}", file=sys.stderr)
            return 2
        # Recorded first: a withdrawal never happens unrecorded.
        audit = _audit_log(config)
        audit.write(operator, "withdraw_fact", via="cli", user_ids=[held.user_id],
                    fact_id=fact_id, reason=reason)  # fmt: skip
        stored = await store.withdraw_fact(held.user_id, fact_id)
    if stored is None:
        print(f"❌ fact #{fact_id} changed meanwhile: export the caller again", file=sys.stderr)
        return 1
    cut = privacy.summaries_cut(held.profile, stored)
    summaries = "summary" if cut == 1 else "summaries"
    print(
        f"Fact #{fact_id} withdrawn: the agent no longer hears it from the next call on "
        f"({cut} earlier call {summaries} cut). Recorded in the audit log {audit.path}."
    )
    return 0


async def _requests(config: RedisConfig) -> int:
    async with _store(config) as store:
        requests = await store.erasure_requests()
    if not requests:
        print("No erasure requests.")
        return 0
    print("Erasures callers asked for without being verified (oldest first). Once staff have")
    print("confirmed who asked, run: caller-memory forget --user-id ID")
    for user_id, when in requests:
        print(f"  {datetime.fromtimestamp(when, timezone.utc):%Y-%m-%d %H:%M} UTC  {user_id}")
    return 0


async def _stats(config: RedisConfig) -> int:
    if not config.persistence:
        print("MEMORY_PERSISTENCE=false: nothing is stored outside the process.")
        return 0
    async with _store(config) as store:
        # The bar's end is the database's key count; plain lines count without one (the
        # prefix's keys may be a small part of the database).
        total = await _key_count(store) if on_terminal() else None
        with progress(total, "keys read") as advance:
            stats = await store.stats(progress=advance)
        stats["orphans_waiting"] = await store.orphans_waiting(config.orphan_after_s)
        stats["written_by"] = _written_by(await store.saves_by_version())
        await _say_persistence(store)
    outbox = Outbox(config.data_dir / "outbox")
    stats["outbox_waiting"] = len(outbox)
    stats["outbox_unreadable"] = outbox.unreadable
    # Counted, not cleaned: a worker's start or caller-memory flush deals with them.
    stats["outbox_stray_temp_files"] = outbox.strays
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        print(f"{key.replace('_', ' '):<{width}}  {_shown(value)}")
    past = (
        f"with a TTL past {MAX_PROFILE_TTL_DAYS} days, longer than any setting allows (written "
        "with an unbounded MEMORY_PROFILE_TTL_DAYS or MEMORY_SESSION_TTL_HOURS before 0.2.0; a "
        "caller's next call shortens theirs)"
    )
    aside = "set aside (wrong type or unreadable; keys ending in ':unreadable')"
    trouble = {  # (one, many): count
        ("key without a TTL", "keys without a TTL"): stats["keys_without_ttl"],
        (f"key {past}", f"keys {past}"): stats["keys_past_longest_ttl"],
        (f"key {aside}", f"keys {aside}"): stats.get("keys_set_aside", 0),
        ("unreadable outbox file", "unreadable outbox files"): stats["outbox_unreadable"],
        (
            "orphaned call waiting for recovery (caller-memory flush)",
            "orphaned calls waiting for recovery (caller-memory flush)",
        ): stats["orphans_waiting"],
    }
    for (one, many), count in trouble.items():
        if count:
            print(f"❌ {count} {one if count == 1 else many}", file=sys.stderr)
    return 1 if any(trouble.values()) else 0


def _shown(value: object) -> str:
    # A line of the stats as a person reads it: "phone 2 · profile 2", not a Python dict.
    if isinstance(value, dict):
        return " · ".join(f"{k} {v}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


async def _say_persistence(store: MemoryStore) -> None:
    """Warn on standard error, in one line, when the Redis keeps nothing across a restart: a
    warning, not a failure (the exit code is the command's own)."""
    if not isinstance(store, RedisMemoryStore):
        return
    with contextlib.suppress(CallerMemoryError, OSError, TimeoutError, RedisError):
        warning = await store.persistence_warning()
        if warning is not None:
            print(f"⚠️  {warning}", file=sys.stderr)


class _NotTwice(logging.Filter):
    """Drops the store's own persistence warning: check and stats print it in their place,
    and the other commands are not about the server."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "caller_memory.persistence")


_NOT_TWICE = _NotTwice()


def _written_by(saves: list[VersionSaves]) -> str:
    """``0.2.0 (1,204 saves, last 2026-05-04 09:12 UTC), 0.2.1 (3 saves, ...)``."""
    if not saves:
        return "no save recorded (workers before 0.2.0 record none)"
    said = []
    for s in saves:
        plural = "" if s.saves == 1 else "s"
        last = ""
        if s.last is not None:
            last = f", last {datetime.fromtimestamp(s.last, timezone.utc):%Y-%m-%d %H:%M} UTC"
        said.append(f"{s.version} ({s.saves:,} save{plural}{last})")
    return ", ".join(said)


async def _key_count(store: MemoryStore) -> int | None:
    """The database's key count (the prefix's keys are some of them), for a progress bar."""
    if not isinstance(store, RedisMemoryStore):
        return None
    try:
        return int(await store.client.dbsize())
    except Exception:
        return None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password file
        return ""


def _number(value: str) -> str:
    # "-" reads the number from standard input, out of the shell history and `ps`.
    number = sys.stdin.readline().strip() if value == "-" else value
    if not number.strip():  # to the plugin, a caller id with no number is a withheld one
        raise InvalidPhoneNumberError("no number given")
    return number


async def _unused_test_number(store: MemoryStore) -> str:
    # 555-0100..0199 are reserved for fiction in North America: never a real caller's number.
    for _ in range(20):
        number = f"+1202555{secrets.randbelow(100) + 100:04d}"
        if (await store.lookup(store.hasher.hash(number), create=False)).user_id is None:
            return number
    raise CallerMemoryError("every test number is taken; is another check running?")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``caller-memory`` command: exit 0 when done, 1 with one line saying what to fix
    (or the guide's troubleshooting text), 2 for a command line that cannot be understood."""
    given = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, arg in enumerate(given) if arg not in ("-v", "-vv", "--verbose")), 0)
    if given[first : first + 1] == ["serve"]:  # the console parses its own options
        return console_main(given[first + 1 :])
    args = caller_memory_parser().parse_args(given)
    verbose = int(args.verbose)
    # A command prints its results; the library's log stays at WARNING unless -v asks.
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logger.addFilter(_NOT_TWICE)
    try:
        return run_command(lambda: _quiet_when_unavailable(args), verbose=verbose)
    finally:
        logger.removeFilter(_NOT_TWICE)


def _quiet_when_unavailable(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except StoreUnavailableError:
        return 1  # the guide's troubleshooting text is logged already


def _run(args: argparse.Namespace) -> int:
    config = RedisConfig.from_env()
    # The workers' rule here too: with the secret required, a command under another one
    # would look for callers where they are not.
    config.check_secret()
    try:
        return _command(args, config)
    except RedisError as e:  # refused mid-command (out of memory, a replica...): the guide's text
        print(diagnose(e, config).render(config.describe_server()), file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, config: RedisConfig) -> int:
    if args.command == "check":
        return asyncio.run(_check(config))
    if args.command == "flush":
        return asyncio.run(_flush(config))
    if args.command == "stats":
        return asyncio.run(_stats(config))
    operator = " ".join((getattr(args, "operator", None) or _login_name()).split())[:60]
    operator = operator or "(unknown)"
    if args.command == "forget":
        number = None if args.number is None else _number(args.number)
        return asyncio.run(_forget(config, number, args.user_id, args.yes, operator))
    if args.command == "requests":
        return asyncio.run(_requests(config))
    if args.command == "export":
        return asyncio.run(_export(config, _number(args.number), operator))
    if args.command == "withdraw-fact":
        return asyncio.run(
            _withdraw_fact(config, _number(args.number), args.fact_id, args.reason, operator)
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
