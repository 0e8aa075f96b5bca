"""The console's audit log: who did what to whose memory, and when. Never a phone number.

One JSON object a line, appended to a file readable by its owner only (0600, its folder 0700)::

    {"at": "2026-11-02T10:14:03Z", "who": "Dana", "action": "erase", "client": "127.0.0.1",
     "user_ids": ["Xq3..."], "keys": 6, "outbox_entries": 0}

Actions: ``login``, ``login_refused``, ``logout``, ``view`` (a caller looked up, found or not),
``export``, ``erase`` (by number, or ``"via": "request"`` for an erasure request), and
``withdraw_fact`` (one fact withdrawn, from the console or ``"via": "cli"``: its ``fact_id`` and
the operator's ``reason``, never the fact itself). A caller is named by their user id (the keyed
hash the store knows them by), which is what ``caller-memory requests`` shows too.

``client`` is the address the request's connection came from, or, when that is a proxy named in
``MEMORY_CONSOLE_TRUSTED_PROXIES``, the client it forwarded (``X-Forwarded-For``); a forwarded
header from anyone else is ignored, so a local process cannot write another address here.
``null``: the Unix socket, or an operator command.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .._folders import private_folder
from ..config import RedisConfig
from ..exceptions import CallerMemoryError
from ..models import utcnow

__all__ = ["AuditLog", "AuditLogError", "default_audit_log"]


def default_audit_log(config: RedisConfig) -> Path:
    """Where the audit log is when ``MEMORY_CONSOLE_AUDIT_LOG`` does not say."""
    return config.data_dir / "console" / "audit.jsonl"


class AuditLogError(CallerMemoryError):
    """The audit log cannot be written (the message names the file, never a caller)."""


class AuditLog:
    """Appends audit records to a file.

    Args:
        path: The file (created 0600 with its folder 0700 on first write).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The audit log file."""
        return self._path

    def write(self, who: str, action: str, *, client: str | None = None, **what: Any) -> None:
        """Append one record, durably (fsynced): it is the proof of what was done.

        Args:
            who: The operator.
            action: What was done.
            client: The client's address, as the console decided it (never a header read
                here: see the module's notes).
            **what: The rest of the record.

        Raises:
            AuditLogError: The file cannot be written; what it would record must not happen
                unrecorded.
        """
        record = {
            "at": utcnow().isoformat().replace("+00:00", "Z"),
            "who": who,
            "action": action,
            "client": client,
            **what,
        }
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                private_folder(self._path.parent)
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                raise AuditLogError(
                    f"the audit log {self._path} cannot be written: "
                    f"{e.strerror or type(e).__name__}"
                ) from None

    def read(self) -> list[dict[str, Any]]:
        """Every record, oldest first (an absent log is empty)."""
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
