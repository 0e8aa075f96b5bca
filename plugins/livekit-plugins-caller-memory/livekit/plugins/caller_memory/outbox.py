"""The local outbox: finished calls that Redis could not take, kept on disk until it can.

One file per call under ``MEMORY_DATA_DIR/outbox/``, written durably (a temporary file,
fsync, rename, fsync of the folder), readable by the owner only (0600). A file holds what Redis
would have held for the call (its turns, its summary, the caller's keyed phone hash), never the
raw phone number. Flushing saves each entry with the store's idempotent save and deletes it:
replaying an entry twice stores the call once.

The file work never runs on the event loop (issue 20: two fsyncs per write stalled a loaded
worker's loop for seconds, and a flush parsed every file on it): it runs on one thread of the
process's own (:mod:`._file_thread`), so that the writes of one call stay in order. The ``async``
methods hand their work to it; the plain ones (:meth:`Outbox.put`, :meth:`Outbox.entries`,
``len()``) are for the command line, tests and shutdown code, and block their caller.

A worker killed between a write's temporary file and its rename leaves that file behind:
:meth:`Outbox.clean_strays` (at a worker's start, and before each flush) puts a whole one back
in the outbox and deletes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._file_thread import file_thread, off_loop, on_thread
from ._folders import fsync_folder, private_folder, write_all
from .exceptions import CallerErasedError, ConfigError
from .log import logger
from .models import OutboxEntry, SessionRecord, to_json, utcnow
from .store import MemoryStore
from .summarizer import fallback_summary

__all__ = [
    "STRAY_AFTER_S",
    "Held",
    "Outbox",
    "Strays",
    "check_outbox_folder",
    "outbox_target",
]

STRAY_AFTER_S = 60.0
"""A temporary file of another process this old is a crash's leftover: a write takes
milliseconds (several workers may share one outbox folder; a young file may be a write in
progress). This process's own temporary files are strays at any age: its writes run one at a
time on the thread that also cleans."""

_TMP = ".tmp"
ENDING_GRACE = timedelta(minutes=10)
"""How long a copy of a call still ending is left to its process (``OutboxEntry.ending_pid``):
past LiveKit's 300 s for ``on_session_end`` and the summary's and save's budgets."""


@dataclass(frozen=True)
class Held:
    """An outbox file that holds something of a caller."""

    path: Path
    entry: OutboxEntry | None
    """The entry, or None for a file that cannot be read."""
    raw: bytes

    @property
    def name(self) -> str:
        """The file's name, with ``unreadable/`` for a file set aside."""
        return (
            f"{self.path.parent.name}/{self.path.name}"
            if self.path.parent.name == "unreadable"
            else self.path.name
        )


@dataclass(frozen=True)
class Strays:
    """What :meth:`Outbox.clean_strays` found: temporary files a crash left behind."""

    removed: int = 0
    """Deleted: cut short by the crash, or older than the entry of the same call beside them."""
    restored: int = 0
    """Whole calls, written but not yet renamed when the process died: put back in the outbox."""

    @property
    def found(self) -> int:
        """Every stray temporary file found."""
        return self.removed + self.restored


def check_outbox_folder(data_dir: Path) -> Path:
    """Make the outbox folder (``MEMORY_DATA_DIR/outbox``, 0700) and return it: one calls cannot
    be written to is said when the worker starts, not found at the first Redis outage.

    Raises:
        ConfigError: The folder cannot be made, or this user cannot write in it.
    """
    folder = data_dir / "outbox"
    try:
        private_folder(folder)
    except OSError as e:
        why = e.strerror or type(e).__name__
    else:
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
        why = "Permission denied"
    raise ConfigError(
        f"MEMORY_DATA_DIR: the local outbox cannot be written in {folder} ({why}): the calls "
        "kept while Redis is down would be lost; set MEMORY_DATA_DIR to a folder this user can "
        "write"
    )


class Outbox:
    """Durable local storage of unsaved calls.

    Args:
        folder: Where the entries live (created on first write).
        target: Whose calls this outbox keeps (:func:`outbox_target`): written into each
            entry. Agents on one machine share the default folder; a flush writes only the
            calls of its own store's prefix and secret, and leaves the others.
    """

    def __init__(self, folder: Path, *, target: str | None = None) -> None:
        self._folder = folder
        self._target = target
        self.foreign_prefixes: dict[str, int] = {}
        """Calls the last flush left for another prefix or secret, by prefix (no caller data)."""
        self.erased = 0
        """Calls the last flush dropped: their caller was erased after the call began."""

    @property
    def foreign(self) -> int:
        """How many calls the last flush left for another prefix or secret."""
        return sum(self.foreign_prefixes.values())

    @property
    def folder(self) -> Path:
        """The outbox folder."""
        return self._folder

    def __len__(self) -> int:
        return self._count()

    async def count(self) -> int:
        """The calls waiting in the outbox, counted off the event loop."""
        return await off_loop(self._count)

    @property
    def unreadable(self) -> int:
        """Files set aside because they could not be read (in ``unreadable/``): calls that
        will not be written by themselves. An operator looks at them."""
        folder = self._folder / "unreadable"
        return sum(1 for path in folder.glob("*") if path.is_file()) if folder.is_dir() else 0

    @property
    def strays(self) -> int:
        """Temporary files in the folder (a crash's leftovers, or writes in progress); counted,
        not cleaned (:meth:`clean_strays` cleans)."""
        return sum(1 for _ in self._folder.glob(f"*{_TMP}")) if self._folder.is_dir() else 0

    def put(self, record: SessionRecord, *, phone_hash: str | None, ending: bool = False) -> Path:
        """Keep one finished call (its summary included); replaces an entry of the same call.
        ``ending``: a copy of a call this process is still ending (``OutboxEntry.ending_pid``).

        Blocks until the file is on disk (for shutdown code and the command line; the event
        loop uses :meth:`aput`).

        Raises:
            OSError: The disk refused (full, read-only, a file where the folder should be).
        """
        return on_thread(self._write, record, phone_hash, ending)

    async def aput(
        self, record: SessionRecord, *, phone_hash: str | None, ending: bool = False
    ) -> Path:
        """:meth:`put`, with the write and its fsyncs on the outbox's thread."""
        return await off_loop(self._write, record, phone_hash, ending)

    def entries(self) -> list[OutboxEntry]:
        """The calls waiting, oldest first (unreadable files are set aside)."""
        return [entry for _, entry in on_thread(self._read_all)]

    async def clean_strays(self) -> Strays:
        """Deal with the temporary files a crash left (see :data:`STRAY_AFTER_S`): a whole
        call is put back in the outbox, anything else is deleted. Says what it did in one line.
        """
        if not self._folder.is_dir():
            return Strays()
        strays = await off_loop(self._clean_strays)
        if strays.found:
            logger.warning(
                "%d stray temporary outbox file(s) left by a crash: %d whole call(s) put back "
                "in the outbox, %d removed (cut short, or older than the call's entry)",
                strays.found,
                strays.restored,
                strays.removed,
                extra={"restored": strays.restored, "removed": strays.removed},
            )
        return strays

    def of_caller(self, hashes: set[str], user_ids: set[str]) -> list[Held]:
        """Every file that holds something of a caller: entries, and the strays too (a
        ``.tmp`` a crash left, a file set aside in ``unreadable/``), found by their phone hash
        or user id when they cannot be read (what erasure and export reach)."""
        if not self._folder.is_dir():
            return []
        paths = [
            *self._folder.glob("*.json"),
            *self._folder.glob(f"*{_TMP}"),
            *(self._folder / "unreadable").glob("*"),
        ]
        found = []
        for path in sorted(paths, key=_mtime):
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            entry = _parse(raw)
            if entry is not None:
                mine = entry.phone_hash in hashes or entry.record.user_id in user_ids
            else:
                text = raw.decode(errors="replace")
                mine = any(f'"{token}"' in text for token in hashes | user_ids)
            if mine:
                found.append(Held(path=path, entry=entry, raw=raw))
        return found

    async def adiscard(self, path: Path) -> None:
        """Delete one entry :meth:`aput` wrote (the call was saved after all), off the loop."""
        await off_loop(self._discard, path)

    async def adiscard_call(self, session_id: str) -> None:
        """Delete the entry of one call, if there is one (its caller was erased, or it was
        saved after all), off the loop."""
        await self.adiscard(self._folder / f"{_file_id(session_id)}.json")

    def _discard(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return  # nothing was there: nothing to make durable
        fsync_folder(self._folder)

    def remove(self, held: list[Held]) -> list[str]:
        """Delete files found by :meth:`of_caller` (erasure). Returns their names."""
        removed = []
        for item in held:
            item.path.unlink(missing_ok=True)
            removed.append(item.name)
        if removed:
            fsync_folder(self._folder)
        return removed

    async def flush(self, store: MemoryStore) -> tuple[int, int]:
        """Save every waiting call into ``store``.

        Only one process flushes at a time; the others return at once. The files are listed,
        read and deleted on the outbox's thread; only the saves run on the event loop.

        Returns:
            ``(saved, left)``: calls written to the store, and calls still waiting.
        """
        if not self._folder.is_dir():
            return 0, 0
        await self.clean_strays()
        lock = FileLock(self._folder / ".lock", timeout=0, mode=0o600)
        if not await off_loop(_try_lock, lock):
            return 0, await self.count()
        try:
            saved = await self._save_all(store)
            if saved:
                await off_loop(fsync_folder, self._folder)
                logger.info("calls from the outbox saved", extra={"saved": saved})
            return saved, await self.count() - self.foreign
        finally:
            # On the thread that took it (a lock of filelock belongs to its thread), even when
            # this flush is cancelled: the release is queued, not awaited.
            file_thread().submit(lock.release)

    async def _save_all(self, store: MemoryStore) -> int:
        saved = self.erased = 0
        ours = outbox_target(store)
        foreign: dict[str, int] = {}
        for path, entry in await off_loop(self._read_all):
            if entry.target not in (None, ours):
                # Another agent's (prefix or secret) on this machine: its own.
                prefix = entry.target.split(" ", 1)[0]
                foreign[prefix] = foreign.get(prefix, 0) + 1
                continue
            if _still_ending(entry):
                continue  # its process saves it, or keeps it, or dies and leaves it here
            try:
                summary = entry.record.summary or fallback_summary(entry.record.turns)
                await store.save_call(
                    entry.record, summary, phone_hash=entry.phone_hash, replay=True
                )
            except CallerErasedError:
                # The caller was erased after this call began: it is not kept either.
                logger.info("an outbox entry of an erased caller was dropped",
                            extra={"file": path.name})  # fmt: skip
                await off_loop(_unlink, path)
                self.erased += 1
                continue
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                logger.warning(
                    "outbox flush stopped: the store is still unreachable",
                    extra={"error": type(e).__name__, "waiting": await self.count()},
                )
                break
            except Exception as e:
                # This entry fails on its own: the others are not held up behind it.
                logger.error(
                    "an outbox entry could not be saved; it stays in the outbox",
                    extra={"error": type(e).__name__, "file": path.name},
                )
                continue
            await off_loop(_unlink, path)
            saved += 1
        if foreign and not self.foreign:
            logger.info(
                "outbox calls of another key prefix or phone-hash secret left for their own "
                "workers",
                extra={"calls": sum(foreign.values())},
            )
        self.foreign_prefixes = foreign
        return saved

    # -- on the outbox's thread ------------------------------------------------------------

    def _count(self) -> int:
        return sum(1 for _ in self._folder.glob("*.json")) if self._folder.is_dir() else 0

    def _write(self, record: SessionRecord, phone_hash: str | None, ending: bool) -> Path:
        private_folder(self._folder)
        entry = OutboxEntry(
            record=record, phone_hash=phone_hash, kept_at=utcnow(), target=self._target,
            ending_pid=os.getpid() if ending else None,
        )  # fmt: skip
        path = self._folder / f"{_file_id(record.session_id)}.json"
        tmp = path.with_suffix(f".{os.getpid()}{_TMP}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, to_json(entry).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            # A full disk: the part written is no call, and must not wait for a cleaner.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        fsync_folder(self._folder)
        return path

    def _entries(self) -> Iterator[Path]:
        if not self._folder.is_dir():
            return iter(())
        return iter(sorted(self._folder.glob("*.json"), key=_mtime))

    def _read_all(self) -> list[tuple[Path, OutboxEntry]]:
        out = []
        for path in self._entries():
            try:
                entry = _parse(path.read_bytes())
            except OSError:
                entry = None
            if entry is not None:
                out.append((path, entry))
                continue
            bad = self._folder / "unreadable"
            with contextlib.suppress(OSError):
                private_folder(bad)
                path.replace(bad / path.name)
            logger.warning("unreadable outbox entry set aside", extra={"file": path.name})
        return out

    def _clean_strays(self) -> Strays:
        removed = restored = 0
        mine = f".{os.getpid()}{_TMP}"
        now = time.time()
        for tmp in self._folder.glob(f"*{_TMP}"):
            if not tmp.name.endswith(mine) and now - _mtime(tmp) < STRAY_AFTER_S:
                continue  # perhaps another worker's write, in progress
            try:
                if self._restore(tmp):
                    restored += 1
                    continue
                tmp.unlink(missing_ok=True)
                removed += 1
            except OSError:
                continue  # a disk that refuses: the next pass tries again
        if removed or restored:
            fsync_folder(self._folder)
        return Strays(removed=removed, restored=restored)

    def _restore(self, tmp: Path) -> bool:
        # A stray that parses is a whole call whose rename the crash prevented: it goes back
        # unless the call's entry beside it is newer (written by a later try).
        entry = _parse(tmp.read_bytes())
        if entry is None:
            return False
        path = self._folder / f"{tmp.name.split('.', 1)[0]}.json"
        try:
            current = _parse(path.read_bytes())
        except FileNotFoundError:
            current = None
        if current is not None and current.kept_at >= entry.kept_at:
            return False
        os.replace(tmp, path)
        return True


def outbox_target(store: MemoryStore) -> str:
    """Whose calls an outbox entry holds: the store's key prefix and a fingerprint of its
    phone-hash secret (an HMAC of a fixed text, which tells nothing of the secret). A call
    kept under one is never written under another: its phone hash means nothing there."""
    return f"{store.config.key_prefix} {store.hasher.hash_e164('caller-memory outbox')}"


def _parse(raw: bytes) -> OutboxEntry | None:
    try:
        return OutboxEntry.model_validate_json(raw)
    except (ValidationError, ValueError):
        return None


def _still_ending(entry: OutboxEntry) -> bool:
    # A copy whose process lives, made within LiveKit's time for a call's end (a pid reused
    # since, or of another machine sharing the folder, holds it no longer than that).
    if entry.ending_pid is None or utcnow() - entry.kept_at > ENDING_GRACE:
        return False
    try:
        os.kill(entry.ending_pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def _try_lock(lock: FileLock) -> bool:
    try:
        lock.acquire()
    except Timeout:
        return False
    return True


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _file_id(session_id: str) -> str:
    # Session ids come from LiveKit and may hold any character: the file name is a digest.
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
