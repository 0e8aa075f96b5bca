"""The plugin's logger, and a filter that keeps callers' numbers out of LiveKit's own logs.

The plugin never logs a number. LiveKit Agents does, in a SIP call: the caller's participant
identity is ``sip_`` and their number, and RoomIO logs it at INFO ("RoomIO linked to
participant", "closing agent session due to participant disconnect"), under ``lk.pii.*`` keys or
as ``participant``. :func:`hide_numbers_in_livekit_logs` masks those fields.
"""

from __future__ import annotations

import logging
import re

__all__ = ["hide_numbers_in_livekit_logs", "logger"]

logger = logging.getLogger("livekit.plugins.caller_memory")

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
