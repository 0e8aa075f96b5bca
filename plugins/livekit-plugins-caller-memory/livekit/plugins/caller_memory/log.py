"""The plugin's logger, and a filter that keeps callers' numbers out of LiveKit's own logs.

The plugin never logs a number. LiveKit Agents does, in a SIP call: the caller's participant
identity is ``sip_`` and their number, and RoomIO logs it at INFO ("RoomIO linked to
participant", "closing agent session due to participant disconnect"), under ``lk.pii.*`` keys or
as ``participant``. :func:`hide_numbers_in_livekit_logs` masks those fields.
"""

from __future__ import annotations

import logging
import re
import threading

from .version import __version__

__all__ = ["announce_store", "hide_numbers_in_livekit_logs", "label_store", "logger", "once"]

logger = logging.getLogger("livekit.plugins.caller_memory")

_said: set[str] = set()
_said_lock = threading.Lock()
_store_labels: dict[str, str] = {}


def once(key: str) -> bool:
    """True the first time ``key`` is asked about in this process, False after: for the lines
    a process says once (which store it uses, the development-secret warning), however many
    stores, managers or reconnects it makes."""
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
        return True


def label_store(server: str, label: str) -> None:
    """Name what answers at ``server`` (``host:port``) in :func:`announce_store`'s line."""
    _store_labels[server] = label


def announce_store(server: str) -> None:
    """Log at INFO, once per process, which store caller memory uses, and the plugin's version
    (a worker's first line of caller memory: an old worker in a fleet shows); at DEBUG after
    that."""
    label = _store_labels.get(server, f"Redis at {server}")
    level = logging.INFO if once(f"store:{server}") else logging.DEBUG
    logger.log(
        level, "caller memory uses %s (livekit-plugins-caller-memory %s)", label, __version__
    )


_SIP_IDENTITY = re.compile(r"sip_\+?\d{3,}")


class _HideNumbers(logging.Filter):
    """Masks ``lk.pii.*`` fields and SIP identities (``sip_+1415...``) in a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(vars(record).items()):
            if key.startswith("lk.pii."):
                setattr(record, key, "[hidden]")
            elif isinstance(value, str) and _SIP_IDENTITY.search(value):
                setattr(record, key, _SIP_IDENTITY.sub("sip_[number]", value))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _SIP_IDENTITY.sub("sip_[number]", a) if isinstance(a, str) else a for a in args
            )
        return True


_filter = _HideNumbers()


def hide_numbers_in_livekit_logs() -> None:
    """Mask callers' numbers in LiveKit Agents' own log records, in this process.

    Call it where the agent's module is imported (the worker's main process and each job
    process import it): it filters the ``livekit.agents`` logger. Safe to call twice. LiveKit's
    spans are another matter: ``set_tracer_provider(..., allow_pii=False)`` strips them.
    """
    target = logging.getLogger("livekit.agents")
    if _filter not in target.filters:
        target.addFilter(_filter)
