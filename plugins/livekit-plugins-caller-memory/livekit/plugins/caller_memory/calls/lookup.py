"""The caller's lookup at call start: their number hashed, their memory read, within the
lookup budget, and what it cost (a metric, a span, a debug line)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

from opentelemetry.util.types import AttributeValue

from ..exceptions import InvalidPhoneNumberError, WithheldNumberError
from ..log import logger
from ..store import CallerLookup, MemoryStore
from ..telemetry import record_lookup, traced_span
from ..timeouts import deadline
from ..troubleshooting import diagnose
from .state import LookupStatus

__all__ = ["LookedUp", "look_up", "look_up_again", "report_lookup"]


class LookedUp(NamedTuple):
    """A lookup's outcome: the caller's hashes and what the store holds for them."""

    phone_hash: str | None
    """None without a usable number."""
    previous: list[str]
    """The number's hashes under earlier secrets."""
    lookup: CallerLookup | None
    """None when the store did not answer (or there is no number)."""
    status: LookupStatus


async def look_up(store: MemoryStore, phone_number: str | None) -> LookedUp:
    """The caller's hashes, and what the store holds for them, within the lookup budget.

    Never raises: a withheld or bad number, an unreachable store or a lookup over its budget
    each come back as a status (and a log line that never holds the number).

    SIP trunks send numbers in E.164. The lookup of the number as given goes out at once,
    read-only, and the number is checked while Redis answers: the check costs as much as a
    fifth of the round trip. When the number was in its normal form already (nearly
    always), that answer is the caller's; otherwise it is dropped.
    """
    if not phone_number:
        return LookedUp(None, [], None, "no_number")
    config = store.config
    hasher = store.hasher
    # With consent required, nothing is written before the caller agrees: not even a new
    # caller's identity (the save mints it).
    create = not config.consent_required
    checked: list[tuple[str, list[str]] | Exception] = []

    def check() -> None:
        try:
            checked.append(hasher.hashes(phone_number))
        except Exception as e:  # raised where the result is read
            checked.append(e)

    def hashes() -> tuple[str, list[str]]:
        if not checked:
            check()
        result = checked[0]
        if isinstance(result, Exception):
            raise result
        return result

    phone_hash: str | None = None
    previous: list[str] = []
    try:
        async with deadline(config.lookup_timeout):  # one timer for all of it
            early_hash = hasher.hash_as_given(phone_number)
            lookup: CallerLookup | None = None
            if early_hash is not None:
                # The check runs as a callback of the event loop, once the request is out
                # and this call waits for the answer: no task, no extra turn of the loop
                # (a task for the early lookup cost ~14 µs more per call start).
                pending = asyncio.get_running_loop().call_soon(check)
                try:
                    lookup = await store.lookup(early_hash, create=False)
                except Exception:
                    # The number's own problems come first; the store's failure counts
                    # only when its answer was the caller's.
                    phone_hash, previous = hashes()
                    if phone_hash == early_hash:
                        raise
                finally:
                    pending.cancel()
            phone_hash, previous = hashes()
            if phone_hash != early_hash:
                lookup = None
            if lookup is None or lookup.user_id is None and (create or previous):
                # Not asked yet, or unknown as given: the full lookup (it mints a new
                # caller's id, or finds one under a previous secret).
                lookup = await store.lookup(phone_hash, previous=previous, create=create)
    except Exception as e:
        # The number's own problem decides first (also when it surfaced as the store's
        # failure or the budget running out while Redis answered), then the store's.
        try:
            phone_hash, previous = hashes()
        except WithheldNumberError:
            return LookedUp(None, [], None, "no_number")
        except InvalidPhoneNumberError as bad:
            logger.warning("caller number unusable, call goes on without memory: %s", bad)
            return LookedUp(None, [], None, "invalid_number")
        except Exception:
            pass  # the check itself failed: reported below as the lookup's failure
        if isinstance(e, TimeoutError):
            # Over its budget: say why when the cause is this worker's, not Redis's.
            cause = diagnose(e, config)
            logger.warning(
                "caller lookup over its budget%s, greeting as a new caller",
                f" ({cause.reason})" if cause.in_worker else "",
                extra={"budget_ms": config.lookup_timeout_ms},
            )
            return LookedUp(phone_hash, previous, None, "timeout")
        # The store is down, or worse: the call goes on.
        logger.warning(
            "caller lookup failed (%s), greeting as a new caller",
            diagnose(e, config).reason,
            extra={"error": type(e).__name__},
        )
        return LookedUp(phone_hash, previous, None, "error")
    status: LookupStatus = "returning" if lookup.is_returning else "new"
    return LookedUp(phone_hash, previous, lookup, status)


async def look_up_again(store: MemoryStore, phone_hash: str, previous: list[str]) -> CallerLookup:
    """The caller's memory read again, for a call whose lookup missed its budget or found the
    store down: no identity is minted (that waits for the save), within
    ``MEMORY_SAVE_TIMEOUT_S``. Raises what the store raises, or ``TimeoutError``."""
    async with deadline(store.config.save_timeout_s):
        return await store.lookup(phone_hash, previous=previous, create=False)


def report_lookup(session_id: str, status: LookupStatus, started: float, started_ns: int) -> None:
    """Record a finished lookup: its metric, its span (when tracing), a debug line.

    Args:
        started: ``time.perf_counter()`` when it began.
        started_ns: ``time.time_ns()`` when it began (the span's start).
    """
    lookup_ms = (time.perf_counter() - started) * 1000
    attributes: dict[str, AttributeValue] = {
        "session_id": session_id,
        "caller_memory.status": status,
    }
    if traced := traced_span("caller_memory.lookup", started_ns, attributes):
        traced.end()
    record_lookup(status, lookup_ms)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "caller looked up",
            extra={"session_id": session_id, "status": status, "lookup_ms": lookup_ms},
        )
