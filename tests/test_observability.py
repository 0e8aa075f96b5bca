"""Spans, metrics and `caller-memory stats`: what an operator sees, with no personal data."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit.agents.telemetry import set_tracer_provider, tracer
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from livekit.plugins.caller_memory import RedisConfig, RedisMemoryStore, SessionManager

from .conftest import TEST_SECRET


@pytest.fixture(scope="module")
def metrics() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics_api.set_meter_provider(provider)  # once per process: the plugin's meter follows
    yield reader
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = getattr(point, "count", None)
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


async def test_lookups_summaries_saves_and_outbox_are_measured(
    metrics: InMemoryMetricReader, config: RedisConfig
) -> None:
    manager = SessionManager(RedisMemoryStore(config))
    for i in range(2):
        await manager.start_session(session_id=f"m-{i}", phone_number="+14155550161")
        manager.add_turn(f"m-{i}", "user", "hello")
        await manager.end_session(f"m-{i}")
    await manager.start_session(session_id="m-anon", phone_number=None)
    await manager.end_session("m-anon")
    await manager.store.disconnect()

    gc.collect()  # an earlier test's outbox, left in a reference cycle, is in the gauge until then
    points = _points(metrics)
    lookups = {attrs["result"]: value for attrs, value in points["caller_memory.lookups"]}
    assert lookups["new"] >= 1 and lookups["returning"] >= 1 and lookups["no_number"] >= 1
    assert {a["result"] for a, _ in points["caller_memory.lookup.duration"]} >= {"new"}
    assert {a["source"] for a, _ in points["caller_memory.summaries"]} == {"fallback"}
    assert {a["outcome"] for a, _ in points["caller_memory.saves"]} >= {"saved"}
    assert points["caller_memory.outbox.depth"][0][1] == 0
    # Attributes are outcomes and sources only: nothing about who called.
    for series in points.values():
        for attrs, _ in series:
            assert set(attrs) <= {"result", "source", "outcome"}


def test_stats_command_counts_callers_and_finds_no_key_without_ttl(
    config: RedisConfig, tmp_path: Path
) -> None:
    async def calls() -> None:
        manager = SessionManager(RedisMemoryStore(config))
        for i in range(3):
            await manager.start_session(session_id=f"st-{i}", phone_number=f"+141555501{70 + i}")
            manager.add_turn(f"st-{i}", "user", "hi")
            await manager.end_session(f"st-{i}")
        await manager.store.disconnect()

    asyncio.run(calls())
    env = {
        **os.environ,
        "REDIS_URL": config.redis_url(),
        "MEMORY_KEY_PREFIX": config.key_prefix,
        "MEMORY_PHONE_HASH_SECRET": TEST_SECRET,
        "MEMORY_DATA_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "livekit.plugins.caller_memory.cli", "stats"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("  ", 1) for line in out.stdout.splitlines() if "  " in line)
    assert lines["callers"].strip() == "3"
    assert lines["sessions kept"].strip() == "3"
    assert lines["keys without ttl"].strip() == "0"
    assert lines["outbox waiting"].strip() == "0"


async def test_spans_are_children_of_the_job_span_and_none_without_tracing(
    config: RedisConfig,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    set_tracer_provider(provider, allow_pii=False)
    try:
        manager = SessionManager(RedisMemoryStore(config))
        # Outside any recording span (tracing is off, for the plugin): no span, no cost.
        await manager.start_session(session_id="sp-0", phone_number="+14155550162")
        assert exporter.get_finished_spans() == ()
        # In a traced job, the lookup is a child of the job's span.
        with tracer.start_as_current_span("job_entrypoint") as job:
            await manager.start_session(session_id="sp-1", phone_number="+14155550162")
            manager.add_turn("sp-1", "user", "hello")
            await manager.end_session("sp-1")
        await manager.aclose()
        await manager.store.disconnect()
    finally:
        tracer.set_provider(trace_api.get_tracer_provider())
        provider.shutdown()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert {"caller_memory.lookup", "caller_memory.summarize", "caller_memory.save"} <= set(
        finished
    )
    for name in ("caller_memory.lookup", "caller_memory.summarize", "caller_memory.save"):
        parent = finished[name].parent
        assert parent is not None and parent.span_id == job.get_span_context().span_id, name
    assert finished["caller_memory.lookup"].attributes == {
        "session_id": "sp-1",
        "caller_memory.status": "new",  # sp-0 was never saved
    }
