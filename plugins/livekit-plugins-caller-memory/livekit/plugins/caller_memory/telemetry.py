"""Spans and metrics through LiveKit's OpenTelemetry setup, with no personal data in them.

Spans go through ``livekit.agents.telemetry.tracer`` (so they land wherever the worker's
tracer provider sends LiveKit's own), as children of the span the code runs under: in a LiveKit
job, the job's own span. Where no span records (tracing is off), none is made: a span costs
about as much as a tenth of the call-start lookup. Metrics go through the global meter provider,
like LiveKit's ``otel_metrics``. Attributes are ids, counts, durations and outcomes: never a
phone number, a phone hash, a name, a transcript or a summary.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sized

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.util.types import AttributeValue

__all__ = [
    "observe_outbox",
    "record_dropped",
    "record_lookup",
    "record_save",
    "record_summary",
    "span",
    "traced_span",
    "tracing",
]


def tracing() -> bool:
    """True when the code runs under a recording span (a traced LiveKit job)."""
    return trace_api.get_current_span().is_recording()


def traced_span(
    name: str, start_ns: int, attributes: dict[str, AttributeValue]
) -> trace_api.Span | None:
    """A span that started at ``start_ns`` (``time.time_ns()``), when tracing; else None.

    For a hot path: whether to trace is decided after the work, at no cost when it is off.
    """
    if not tracing():
        return None
    return _tracer().start_span(name, start_time=start_ns, attributes=attributes)


@contextlib.contextmanager
def span(name: str, **attributes: AttributeValue) -> Iterator[trace_api.Span | None]:
    """A child span around a block, when tracing; else None."""
    if not tracing():
        yield None
        return
    with _tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current


def _tracer() -> trace_api.Tracer:
    # LiveKit's tracer, imported only once something is traced: the command-line tools start
    # without LiveKit Agents, and a traced job has imported it long before.
    from livekit.agents.telemetry import tracer

    return tracer


_meter = metrics_api.get_meter("livekit.plugins.caller_memory")

_lookup_latency = _meter.create_histogram(
    "caller_memory.lookup.duration",
    unit="ms",
    description="Call-start lookup time, budget included",
)
_lookups = _meter.create_counter(
    "caller_memory.lookups",
    description="Call-start lookups by result: returning (hit), new (miss), timeout (budget "
    "missed), error, no_number, invalid_number",
)
_summary_latency = _meter.create_histogram(
    "caller_memory.summary.duration", unit="ms", description="End-of-call summary time"
)
_summaries = _meter.create_counter(
    "caller_memory.summaries",
    description="End-of-call summaries by source: llm, or fallback (no LLM, failed, timed out)",
)
_dropped = _meter.create_counter(
    "caller_memory.summary.dropped",
    description="What a model proposed at hang-up that the evidence checks dropped, by reason",
)
_saves = _meter.create_counter(
    "caller_memory.saves",
    description="Ends of call by outcome: saved, outbox (store unavailable), not_remembered",
)


def record_lookup(status: str, duration_ms: float) -> None:
    """Count one call-start lookup and its duration."""
    _lookups.add(1, {"result": status})
    _lookup_latency.record(duration_ms, {"result": status})


def record_summary(source: str, duration_ms: float) -> None:
    """Count one end-of-call summary and its duration."""
    _summaries.add(1, {"source": source})
    _summary_latency.record(duration_ms, {"source": source})


def record_dropped(reasons: Mapping[str, int]) -> None:
    """Count what the evidence checks dropped from one call's summary, by reason."""
    for reason, count in reasons.items():
        _dropped.add(count, {"reason": reason})


def record_save(outcome: str) -> None:
    """Count one end of call by outcome."""
    _saves.add(1, {"outcome": outcome})


def observe_outbox(outbox: Sized) -> None:
    """Include ``outbox`` in the outbox-depth gauge (calls waiting for the store)."""
    _outboxes.add(outbox)


def _outbox_depth(_options: metrics_api.CallbackOptions) -> Iterable[metrics_api.Observation]:
    return [metrics_api.Observation(sum(len(box) for box in list(_outboxes)))]


_outboxes: weakref.WeakSet[Sized] = weakref.WeakSet()
_meter.create_observable_gauge(
    "caller_memory.outbox.depth",
    callbacks=[_outbox_depth],
    description="Finished calls kept on local disk until the store takes them",
)
