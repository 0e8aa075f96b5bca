"""The peers benchmark's table writer (``benchmarks/peers/report.py``): its targets, and that it
rewrites only its own section of ``docs/PERFORMANCE.md``. mem0 is not needed: the benchmark
itself runs from its own environment, never in this suite."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench.stats import Dist
from benchmarks.peers.report import (
    BEGIN,
    END,
    HEADING,
    Footprint,
    Results,
    Timed,
    render,
    targets,
    write_section,
)

MS = 1_000_000


def timed(setup: str, p50_ms: float, *, wrong: int = 0, operation: str = "load") -> Timed:
    return Timed(setup, operation, Dist([int(p50_ms * MS)] * 9), checked=9, wrong=wrong)


def results(plugin_ms: float, qdrant_ms: float, chroma_ms: float) -> Results:
    return Results(
        command="python -m benchmarks.peers",
        when="2026-01-01 00:00",
        took_s=1.0,
        callers=10,
        memories_per_caller="5 calls kept",
        machine=["| CPU | test |"],
        loads=[
            timed("plugin", plugin_ms),
            timed("mem0 + qdrant", qdrant_ms),
            timed("mem0 + chroma", chroma_ms),
        ],
        footprints=[Footprint("plugin", "1 KiB", "1 KiB", "1 s", "100 MiB")],
    )


def test_targets_compare_p50_with_the_default_store_and_the_fastest_correct_one() -> None:
    plugin = timed("plugin", 0.2)
    met = targets(plugin, [timed("mem0 + qdrant", 50.0), timed("mem0 + chroma", 2.5)])
    assert [ok for _, _, ok in met] == [True, True]
    assert "250×" in met[0][1] and "12.5× against mem0 + chroma" in met[1][1]

    # A faster setup that returns incomplete answers is not the one compared against.
    missed = targets(plugin, [timed("mem0 + qdrant", 1.5), timed("mem0 + chroma", 1.0, wrong=1)])
    assert [ok for _, _, ok in missed] == [False, False]
    assert "against mem0 + qdrant" in missed[1][1]


def test_render_has_the_tables_between_the_markers() -> None:
    section = render(results(0.3, 60.0, 1.5))
    assert section.startswith(BEGIN) and section.rstrip().endswith(END)
    assert "| mem0 + chroma | load | 9 | 1.500 |" in section
    assert "❌ missed" in section and "✅ met" in section  # 5× chroma, 200× qdrant


def test_render_judges_both_pacings_and_explains_the_gap() -> None:
    run = results(0.6, 60.0, 3.0)
    run.loads[0] = timed("plugin", 0.6, operation="`start_session`")
    run.loads.insert(1, timed("plugin", 0.4, operation="bare `GET`"))
    run.back_to_back = [
        timed("plugin", 0.2, operation="`start_session`"),
        timed("plugin", 0.1, operation="bare `GET`"),
        timed("mem0 + qdrant", 55.0),
        timed("mem0 + chroma", 2.5),
    ]
    section = render(run)
    assert "p50, interleaved | 5.0× against mem0 + chroma" in section
    assert "p50, back to back | 12.5× against mem0 + chroma" in section
    assert "A bare `GET` takes 0.400 ms at p50 interleaved and 0.100 ms back to back" in section


def test_write_section_appends_once_then_rewrites_only_its_own_part(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    other = (
        "<!-- bench:begin -->\nthe main benchmark\n<!-- bench:end -->\n\n## Analysis\n\nby hand\n"
    )
    doc.write_text("# Performance\n\n" + other)

    write_section(doc, render(results(0.3, 60.0, 1.5)))
    first = doc.read_text()
    assert first.startswith("# Performance\n\n" + other.rstrip("\n"))
    assert first.count(HEADING) == 1 and "| 1.500 |" in first

    write_section(doc, render(results(0.3, 60.0, 4.0)))
    second = doc.read_text()
    assert second.count(HEADING) == 1 and second.count(BEGIN) == 1
    assert "| 4.000 |" in second and "| 1.500 |" not in second
    assert second.split(BEGIN)[0] == first.split(BEGIN)[0]
