"""The peers table: :func:`render` turns a run's :class:`Results` into the markdown between
:data:`BEGIN` and :data:`END`, and :func:`write_section` puts it into ``docs/PERFORMANCE.md``
under a ``## Peers`` heading, leaving the rest of the file (the main benchmark's section among
it) as it was. Nothing here imports mem0: the main test suite checks this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..bench.stats import Dist, ms

BEGIN = "<!-- peers:begin -->"
END = "<!-- peers:end -->"
HEADING = "## Peers"
INTRO = (
    "mem0 open-source measured side by side with the plugin, in one process, on the same "
    "callers, by `python -m benchmarks.peers` (its own environment: "
    "`benchmarks/peers/requirements.txt`). The section between the `peers:begin` / "
    "`peers:end` markers is rewritten by each run."
)
DEFAULT_STORE = "mem0 + qdrant"
"""The setup with mem0's default vector store: the first target is measured against it."""
FASTER_THAN_DEFAULT = 100.0
FASTER_THAN_FASTEST = 10.0


@dataclass
class Timed:
    """One timed operation of one setup, and whether its answers were complete."""

    setup: str
    operation: str
    dist: Dist
    checked: int = 0
    wrong: int = 0

    @property
    def correct(self) -> bool:
        return self.checked > 0 and self.wrong == 0


@dataclass
class Footprint:
    """What one setup holds and costs, per caller and per process."""

    setup: str
    memory_per_caller: str
    disk_per_caller: str
    cold_start: str
    rss: str


@dataclass
class Results:
    """Everything a run found."""

    command: str
    when: str
    took_s: float
    callers: int
    memories_per_caller: str
    machine: list[str]
    loads: list[Timed] = field(default_factory=list)
    """Call-start loads, interleaved; the plugin's ``start_session`` first."""
    back_to_back: list[Timed] = field(default_factory=list)
    """The same loads, each on its own one call after another; ``start_session`` first."""
    searches: list[Timed] = field(default_factory=list)
    writes: list[Timed] = field(default_factory=list)
    footprints: list[Footprint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    others: tuple[float, float] | None = None
    """Cores used by other processes and stolen by the host, over the timed loop."""


def times(slower: float, faster: float) -> float:
    """How many times ``faster`` beats ``slower`` (NaN when either is missing)."""
    if faster != faster or slower != slower or faster <= 0:
        return float("nan")
    return slower / faster


def load_warning(others: tuple[float, float] | None) -> list[str]:
    """A warning above the tables when other work shared the CPU during the timed loop."""
    if others is None or others[0] + others[1] < 0.2:
        return []
    return [
        f"> **Other processes shared the CPU during the timed loop** ({others[0]:.2f} cores on "
        f"average, {others[1]:.2f} stolen): every time here, medians included, is longer than "
        "on an idle machine, on both sides; the ratios, measured in the same loop, are the "
        "comparable part.",
        "",
    ]


def yes(met: bool) -> str:
    return "✅ met" if met else "❌ missed"


def targets(plugin: Timed, peers: list[Timed], pace: str = "") -> list[tuple[str, str, bool]]:
    """The issue's two targets at p50: against mem0's default store, and against the fastest
    mem0 setup whose answers were complete; ``pace`` names the way they were called."""
    out: list[tuple[str, str, bool]] = []
    pace = f", {pace}" if pace else ""
    default = next((t for t in peers if t.setup == DEFAULT_STORE), None)
    if default is not None:
        ratio = times(default.dist.p50, plugin.dist.p50)
        out.append(
            (
                f"Call start ≥ {FASTER_THAN_DEFAULT:.0f}× faster than mem0's default store "
                f"(qdrant), p50{pace}",
                f"{ratio:.0f}× ({ms(plugin.dist.p50)} vs {ms(default.dist.p50)} ms)",
                ratio >= FASTER_THAN_DEFAULT,
            )
        )
    correct = [t for t in peers if t.correct]
    if correct:
        fastest = min(correct, key=lambda t: t.dist.p50)
        ratio = times(fastest.dist.p50, plugin.dist.p50)
        out.append(
            (
                f"Call start ≥ {FASTER_THAN_FASTEST:.0f}× faster than mem0's fastest correct "
                f"setup, p50{pace}",
                f"{ratio:.1f}× against {fastest.setup} ({ms(plugin.dist.p50)} vs "
                f"{ms(fastest.dist.p50)} ms)",
                ratio >= FASTER_THAN_FASTEST,
            )
        )
    return out


def pacing_note(interleaved: list[Timed], back_to_back: list[Timed]) -> list[str]:
    """Why the two pacings differ for the plugin and hardly for mem0: the bare ``GET``'s own
    numbers, both ways (a call after other work waits for the idle server to wake)."""

    def p50(rows: list[Timed], setup: str, start: str) -> float:
        found = [t for t in rows if t.setup == setup and t.operation.startswith(start)]
        return found[0].dist.p50 if found else float("nan")

    get = (p50(interleaved, "plugin", "bare"), p50(back_to_back, "plugin", "bare"))
    start = (p50(interleaved, "plugin", "`start_session`"), p50(back_to_back, "plugin", "`start"))
    if any(v != v for v in (*get, *start)):
        return []
    return [
        f"A bare `GET` takes {ms(get[0])} ms at p50 interleaved and {ms(get[1])} ms back to "
        f"back, and `start_session` {ms(start[0])} vs {ms(start[1])} ms: after other work, "
        "the round trip waits for the Redis server, another process that went idle, to be "
        "scheduled again (probably with colder CPU caches too). mem0's local stores run inside the "
        "calling process and pay no such wake-up, so the interleaved ratios are the "
        "smaller ones; a worker whose calls arrive now and then sees the interleaved numbers.",
    ]


def timed_row(t: Timed, plugin_p50: float) -> str:
    versus = times(t.dist.p50, plugin_p50)
    cells = [
        t.setup,
        t.operation,
        str(t.dist.n),
        ms(t.dist.p50),
        ms(t.dist.p99),
        ms(t.dist.max),
        "1×" if t.setup == "plugin" else f"{versus:,.1f}×",
        f"{t.checked - t.wrong}/{t.checked}",
    ]
    return "| " + " | ".join(cells) + " |"


TIMED_HEAD = [
    "| Setup | Operation | N | p50 | p99 | max | p50 / plugin's | Complete answers |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]


def render(results: Results) -> str:
    """The markdown between the markers, markers included."""
    plugin = results.loads[0]
    peers = [t for t in results.loads[1:] if t.setup != "plugin"]
    met = targets(plugin, peers, "interleaved")
    back_to_back: list[str] = []
    wake: list[str] = []
    if results.back_to_back:
        alone = results.back_to_back[0]
        peers_alone = [t for t in results.back_to_back[1:] if t.setup != "plugin"]
        met += targets(alone, peers_alone, "back to back")
        wake = pacing_note(results.loads, results.back_to_back)
        back_to_back = [
            "",
            "Each operation on its own, one call after another (a busy worker's pace):",
            "",
            *TIMED_HEAD,
            *(timed_row(t, alone.dist.p50) for t in results.back_to_back),
            "",
            *wake,
        ]
    write_base = results.writes[0].dist.p50 if results.writes else float("nan")
    lines = [
        BEGIN,
        f"Generated by `{results.command}` on {results.when} UTC ({results.took_s:.0f} s), "
        f"{results.callers:,} callers, {results.memories_per_caller}. Times in milliseconds.",
        "",
        "### Machine",
        "",
        *load_warning(results.others),
        "| | |",
        "|---|---|",
        *results.machine,
        "",
        "### Targets",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
        *(f"| {t} | {m} | {yes(ok)} |" for t, m, ok in met),
        "",
        "### Loading a returning caller at call start",
        "",
        "Interleaved: each round calls every operation once (searches included), in a "
        "rotating order, so each call comes after other work, as a call start does:",
        "",
        *TIMED_HEAD,
        *(timed_row(t, plugin.dist.p50) for t in results.loads),
        *back_to_back,
        "",
        "### Semantic search over a caller's memories (mem0 only)",
        "",
        *TIMED_HEAD,
        *(timed_row(t, plugin.dist.p50) for t in results.searches),
        "",
        "### End-of-call write (no LLM)",
        "",
        *TIMED_HEAD,
        *(timed_row(t, write_base) for t in results.writes),
        "",
        "### Footprint",
        "",
        "| Setup | Memory per caller | On disk per caller | Cold start | RSS |",
        "|---|---:|---:|---|---|",
        *(
            f"| {f.setup} | {f.memory_per_caller} | {f.disk_per_caller} | {f.cold_start} "
            f"| {f.rss} |"
            for f in results.footprints
        ),
        "",
        *results.notes,
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between the markers of ``path``; the first time, append a ``## Peers``
    section at the end of the file. Nothing outside the markers changes."""
    text = path.read_text() if path.exists() else "# Performance of caller memory\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(head + section.rstrip("\n") + tail)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + f"\n\n{HEADING}\n\n{INTRO}\n\n" + section)
