"""The health page's estimates: keys drawn at random inside Redis, scaled to the database.

One read-only script (``sample.lua``: ``DBSIZE``, ``RANDOMKEY``, the keys counted by kind and a
few callers' ``MEMORY USAGE``) draws :data:`SAMPLE_KEYS` keys, so only counts cross the wire;
on a cluster it runs on each primary, with a share in proportion to its keys. Each count comes
with its 99.9 % margin (a Wilson interval). No ``SCAN`` of a large database: a sample costs the
same at 1,000 callers and at 100,000. A database of no more keys than the draw is counted whole
by the same script, exactly (``RANDOMKEY`` is not uniform enough over a few dozen keys of a
kind for the margins to hold).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..store.codec import text

__all__ = ["MEMORY_SAMPLE_NOW", "SAMPLE_KEYS", "Drawn", "Estimate", "Sample", "draw_sample"]

SAMPLE_KEYS = 4000
"""Keys drawn at random for the estimates (one script, ``sample.lua``, on each primary)."""
MEMORY_SAMPLE_NOW = 20
"""Callers of the random draw whose keys are measured for the estimate."""
_SAMPLE_SCRIPT = resources.files(__package__).joinpath("sample.lua").read_text()
_SAMPLE_SHA = hashlib.sha1(_SAMPLE_SCRIPT.encode()).hexdigest()
_Z = 3.29
"""The margins' normal quantile: the true count is within them 999 times in 1,000."""


@dataclass(frozen=True)
class Estimate:
    """A count with its 99.9 % margin (0 when it is exact)."""

    value: int
    margin: int

    @property
    def exact(self) -> bool:
        """True when the count is exact."""
        return self.margin == 0


@dataclass(frozen=True)
class Sample:
    """Keys drawn at random, by kind, and the database's size they scale to."""

    at: datetime
    db_keys: int
    """Keys of the whole database (``DBSIZE``; the sum over a cluster's primaries)."""
    drawn: int
    """Keys drawn (with replacement); every key when ``exact``."""
    kinds: dict[str, int]
    """Drawn keys by :meth:`~..store.keys.Keys.kind` (``other``: not of this prefix)."""
    exact: bool
    """Every key was counted: in-process memory, or a database of no more keys than the draw."""
    memory_per_caller: int | None
    memory_sampled: int
    in_process: bool = False
    """Counted in this process (in-process memory), not by Redis."""

    def estimate(self, kind: str) -> Estimate:
        """How many keys of ``kind`` the database holds, with the 99.9 % margin of the draw."""
        hits = self.kinds.get(kind, 0)
        if self.exact:
            return Estimate(hits, 0)
        if not self.drawn or not self.db_keys:
            return Estimate(0, 0)
        low, high = _wilson(hits, self.drawn)
        value = round(self.db_keys * hits / self.drawn)
        margin = math.ceil(self.db_keys * max(high - hits / self.drawn, hits / self.drawn - low))
        return Estimate(value, max(margin, 1))


def _wilson(hits: int, n: int) -> tuple[float, float]:
    """The 99.9 % Wilson score interval of a proportion (sound at 0 hits, unlike p ± 1.96 se)."""
    p = hits / n
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Drawn:
    """What ``sample.lua`` answered, summed over the nodes it ran on."""

    db_keys: int
    drawn: int
    kinds: dict[str, int]
    sizes: list[int]
    """Bytes of each caller measured (phone, profile and session-list keys)."""
    whole: bool = False
    """Every key was counted (a database of no more keys than the draw), not drawn."""


async def draw_sample(client: Any, prefix: str, n: int) -> Drawn:
    """The random sample of ``n`` keys in one EVALSHA of ``sample.lua``; on a cluster, one on
    each primary with its share of ``n`` in proportion to its keys (``DBSIZE`` first)."""
    if not isinstance(client, aioredis.RedisCluster):
        return _drawn(await _run_sample(client, None, prefix, n, MEMORY_SAMPLE_NOW))
    primaries = client.get_primaries()
    sizes = await asyncio.gather(
        *(client.execute_command("DBSIZE", target_nodes=node) for node in primaries)
    )
    total = sum(int(size) for size in sizes)
    if not total:
        return Drawn(0, 0, {}, [], whole=True)
    shares = [round(n * int(size) / total) for size in sizes]
    answers = await asyncio.gather(
        *(
            _run_sample(client, node, prefix, share, MEMORY_SAMPLE_NOW)
            for node, share in zip(primaries, shares, strict=True)
            if share
        )
    )
    kinds: dict[str, int] = {}
    drawn, measured = 0, []
    # Counted whole when every primary was (a primary with keys always gets a share then).
    whole = len(answers) == len(primaries)
    for found in map(_drawn, answers):
        whole = whole and found.whole
        drawn += found.drawn
        measured += found.sizes
        for kind, count in found.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    # Each node's share was rounded: weigh by what was drawn, not by what was asked; the size
    # is the one the shares were taken from.
    return Drawn(total, drawn, kinds, measured[:MEMORY_SAMPLE_NOW], whole=whole)


async def _run_sample(client: Any, node: Any, prefix: str, n: int, measure: int) -> Any:
    """EVALSHA of the sample script (on ``node`` of a cluster); loaded once where unknown."""
    args = [prefix, n, measure]
    target = {} if node is None else {"target_nodes": node}
    try:
        return await client.execute_command("EVALSHA", _SAMPLE_SHA, 0, *args, **target)
    except NoScriptError:
        await client.execute_command("SCRIPT LOAD", _SAMPLE_SCRIPT, **target)
        return await client.execute_command("EVALSHA", _SAMPLE_SHA, 0, *args, **target)


def _drawn(answer: Any) -> Drawn:
    size, drawn, flat, sizes, whole = answer
    kinds = {text(flat[i]) or "": int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return Drawn(int(size), int(drawn), kinds, [int(s) for s in sizes], whole=bool(whole))
