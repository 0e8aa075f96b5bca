"""The local outbox: finished calls that Redis could not take, kept on disk until it can.

One file per call under ``MEMORY_DATA_DIR/outbox/``, written durably (a temporary file,
fsync, rename, fsync of the folder), readable by the owner only (0600). A file holds what Redis
would have held for the call (its turns, its summary, the caller's keyed phone hash), never the
raw phone number. Flushing saves each entry with the store's idempotent save and deletes it:
replaying an entry twice stores the call once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._folders import private_folder
from .exceptions import CallerErasedError
from .log import logger
from .models import OutboxEntry, SessionRecord, to_json, utcnow
from .store import MemoryStore
from .summarizer import fallback_summary

__all__ = ["Held", "Outbox"]


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


class Outbox:
    """Durable local storage of unsaved calls.

    Args:
        folder: Where the entries live (created on first write).
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path:
        """The outbox folder."""
        return self._folder

    def __len__(self) -> int:
        return sum(1 for _ in self._entries())

    @property
    def unreadable(self) -> int:
        """Files set aside because they could not be read (in ``unreadable/``): calls that
        will not be written by themselves. An operator looks at them."""
        folder = self._folder / "unreadable"
        return sum(1 for path in folder.glob("*") if path.is_file()) if folder.is_dir() else 0

    def put(self, record: SessionRecord, *, phone_hash: str | None) -> Path:
        """Keep one finished call (its summary included); replaces an entry of the same call."""
        private_folder(self._folder)
        entry = OutboxEntry(record=record, phone_hash=phone_hash, kept_at=utcnow())
        path = self._folder / f"{_file_id(record.session_id)}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, to_json(entry).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self._folder)
        return path

    def entries(self) -> list[OutboxEntry]:
        """The calls waiting, oldest first (unreadable files are set aside)."""
        return [entry for _, entry in self._read_all()]

    def of_caller(self, hashes: set[str], user_ids: set[str]) -> list[Held]:
        """Every file that holds something of a caller: entries, and the strays too (a
        ``.tmp`` a crash left, a file set aside in ``unreadable/``), found by their phone hash
        or user id when they cannot be read (what erasure and export reach)."""
        if not self._folder.is_dir():
            return []
        paths = [
            *self._folder.glob("*.json"),
            *self._folder.glob("*.tmp"),
            *(self._folder / "unreadable").glob("*"),
        ]
        found = []
        for path in sorted(paths, key=_mtime):
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            try:
                entry: OutboxEntry | None = OutboxEntry.model_validate_json(raw)
            except (ValidationError, ValueError):
                entry = None
            if entry is not None:
                mine = entry.phone_hash in hashes or entry.record.user_id in user_ids
            else:
                text = raw.decode(errors="replace")
                mine = any(f'"{token}"' in text for token in hashes | user_ids)
            if mine:
                found.append(Held(path=path, entry=entry, raw=raw))
        return found

    def remove(self, held: list[Held]) -> list[str]:
        """Delete files found by :meth:`of_caller` (erasure). Returns their names."""
        removed = []
        for item in held:
            item.path.unlink(missing_ok=True)
            removed.append(item.name)
        if removed:
            _fsync_dir(self._folder)
        return removed

    async def flush(self, store: MemoryStore) -> tuple[int, int]:
        """Save every waiting call into ``store``.

        Only one process flushes at a time; the others return at once.

        Returns:
            ``(saved, left)``: calls written to the store, and calls still waiting.
        """
        if not self._folder.is_dir():
            return 0, 0
        with self._exclusive() as acquired:
            if not acquired:
                return 0, len(self)
            saved = 0
            for path, entry in self._read_all():
                try:
                    summary = entry.record.summary or fallback_summary(entry.record.turns)
                    await store.save_call(
                        entry.record, summary, phone_hash=entry.phone_hash, replay=True
                    )
                except CallerErasedError:
                    # The caller was erased after this call began: it is not kept either.
                    logger.info("an outbox entry of an erased caller was dropped",
                                extra={"file": path.name})  # fmt: skip
                    path.unlink(missing_ok=True)
                    continue
                except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                    logger.warning(
                        "outbox flush stopped: the store is still unreachable",
                        extra={"error": type(e).__name__, "waiting": len(self)},
                    )
                    break
                except Exception as e:
                    # This entry fails on its own: the others are not held up behind it.
                    logger.error(
                        "an outbox entry could not be saved; it stays in the outbox",
                        extra={"error": type(e).__name__, "file": path.name},
                    )
                    continue
                path.unlink(missing_ok=True)
                saved += 1
            if saved:
                _fsync_dir(self._folder)
                logger.info("calls from the outbox saved", extra={"saved": saved})
            return saved, len(self)

    def _entries(self) -> Iterator[Path]:
        if not self._folder.is_dir():
            return iter(())
        return iter(sorted(self._folder.glob("*.json"), key=_mtime))

    def _read_all(self) -> list[tuple[Path, OutboxEntry]]:
        out = []
        for path in self._entries():
            try:
                out.append((path, OutboxEntry.model_validate_json(path.read_bytes())))
            except (OSError, ValidationError, ValueError):
                bad = self._folder / "unreadable"
                private_folder(bad)
                with contextlib.suppress(OSError):
                    path.replace(bad / path.name)
                logger.warning("unreadable outbox entry set aside", extra={"file": path.name})
        return out

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        lock = FileLock(self._folder / ".lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


def _file_id(session_id: str) -> str:
    # Session ids come from LiveKit and may hold any character: the file name is a digest.
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder; its renames are durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
