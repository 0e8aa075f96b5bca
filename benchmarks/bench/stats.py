"""Latency distributions and their formatting: :class:`Dist`, nearest-rank percentiles, the
millisecond cells and rows of the report's tables, and :func:`quiet_gc` around timed loops."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field

MS = 1e6  # ns per ms


@dataclass
class Dist:
    """A latency distribution, in nanoseconds."""

    samples: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    def pct(self, q: float) -> float:
        """Nearest-rank percentile ``q`` (0-100), in milliseconds."""
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
        return ordered[int(rank) - 1] / MS

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def p99(self) -> float:
        return self.pct(99)

    @property
    def p999(self) -> float:
        return self.pct(99.9)

    @property
    def max(self) -> float:
        return max(self.samples) / MS if self.samples else float("nan")


def ms(value: float) -> str:
    """A duration in ms for the tables: 3 decimals below 10 ms."""
    if value != value:  # NaN
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def latency_row(name: str, dist: Dist) -> str:
    """A table row; p99.9 only when there are 1,000 samples or more."""
    cells = [name, str(dist.n), ms(dist.p50), ms(dist.p99)]
    cells += [ms(dist.p999) if dist.n >= 1000 else "", ms(dist.max)]
    return "| " + " | ".join(cells) + " |"


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect, then freeze what exists: the timed code pays only for its own garbage."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
