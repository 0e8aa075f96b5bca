"""What other stored forms of a profile would save: a measurement for deciding, not a feature.

A five-call profile is stored in about 926 bytes (zlib with the preset dictionary of
``store/codec.py``): jemalloc gives Redis's string the 1,024-byte class, and the caller's
memory misses the memory issue's 1.5 KB by about 125 bytes. A value of at most 890 bytes
(896 minus the sds header and its terminator) would take the 896-byte class, 128 bytes less.
This measures, on the main benchmark's profiles (the same generator, no Redis needed), what
each change of the stored form would take off the value, and what share of profiles it would
bring under that class:

- the JSON without its default values (``"status":"current"``, ``"verified":true``, ...),
  which the current model reads back the same;
- without ``user_id``, which the key names already (a form the current workers cannot read);
- times as integer seconds instead of ISO text (pydantic reads both);
- a larger preset dictionary: the 2,000 most frequent words of spoken English (zxcvbn's
  ``us_tv_and_film`` list), most frequent last, before the current dictionary.

Run: ``python -m benchmarks.profile_forms [--callers 2000]``
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import statistics
import time
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

from zxcvbn.frequency_lists import FREQUENCY_LISTS

from livekit.plugins.caller_memory import CallerProfile
from livekit.plugins.caller_memory.store import codec

from .bench.data import SummaryPool, make_caller, now_utc

CLASS_896_LIMIT = 890
"""The largest value that Redis stores in jemalloc's 896-byte class (sdshdr16: 5 bytes of
header and the terminator)."""
SPOKEN_WORDS = 2_000


def _int_times(value: Any) -> Any:
    # ISO times ("2026-09-23T07:17:50Z") as Unix seconds, the rest as it is.
    if isinstance(value, dict):
        return {k: _int_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_int_times(v) for v in value]
    if isinstance(value, str) and len(value) == 20 and value[4] == "-" and value[-1] == "Z":
        return int(dt.datetime.fromisoformat(value).timestamp())
    return value


def _json(profile: CallerProfile, *, defaults: bool, user_id: bool, int_times: bool) -> bytes:
    data = profile.model_dump(mode="json", exclude_none=True, exclude_defaults=not defaults)
    data["v"] = profile.v  # kept whatever else goes: it says how to read the rest
    if not user_id:
        data.pop("user_id", None)
    if int_times:
        data = _int_times(data)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _deflate(zdict: bytes) -> Callable[[bytes], bytes]:
    def deflate(data: bytes) -> bytes:
        packer = zlib.compressobj(6, zdict=zdict)
        return packer.compress(data) + packer.flush()

    return deflate


def _inflate(zdict: bytes, packed: bytes) -> bytes:
    return zlib.decompressobj(zdict=zdict).decompress(packed)


def _per_call_us(work: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        work()
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    """Print one row per stored form: sizes, the share under the 896-byte class, the costs."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_forms")
    parser.add_argument("--callers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool, now = SummaryPool(rng), now_utc()
    # Each caller's id is a keyed hash: 22 base64url characters that compress to nothing.
    hashes = [
        base64.urlsafe_b64encode(rng.randbytes(16)).rstrip(b"=").decode()
        for _ in range(args.callers)
    ]
    profiles = [make_caller(rng, h, now, pool).profile(5) for h in hashes]
    spoken = " ".join(reversed(FREQUENCY_LISTS["us_tv_and_film"][:SPOKEN_WORDS])).encode()
    larger = spoken + b" " + codec.PROFILE_ZDICT
    everything = {"defaults": False, "user_id": False, "int_times": True}
    forms: list[tuple[str, dict[str, bool], bytes]] = [
        ("as stored now", {}, codec.PROFILE_ZDICT),
        ("without default values", {"defaults": False}, codec.PROFILE_ZDICT),
        ("without user_id", {"user_id": False}, codec.PROFILE_ZDICT),
        ("integer times", {"int_times": True}, codec.PROFILE_ZDICT),
        ("all three", everything, codec.PROFILE_ZDICT),
        (f"larger dictionary (+{SPOKEN_WORDS:,} spoken words)", {}, larger),
        ("all three and the larger dictionary", everything, larger),
    ]
    print(f"{len(profiles):,} five-call profiles of the main benchmark (seed {args.seed})\n")
    print(
        "| stored form | JSON mean | stored p50 | p99 | mean | ≤ 890 B (896-byte class) "
        "| compress | inflate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, options, zdict in forms:
        shape = {"defaults": True, "user_id": True, "int_times": False} | options
        datas = [_json(p, **shape) for p in profiles]
        deflate = _deflate(zdict)
        packed = [deflate(d) for d in datas]
        sizes = sorted(len(p) for p in packed)
        under = sum(1 for s in sizes if s <= CLASS_896_LIMIT) / len(sizes)
        compress_us = _per_call_us(partial(deflate, datas[0]), 300)
        inflate_us = _per_call_us(partial(_inflate, zdict, packed[0]), 3000)
        print(
            f"| {name} | {statistics.mean(map(len, datas)):,.0f} B | {sizes[len(sizes) // 2]} B "
            f"| {sizes[int(0.99 * len(sizes))]} B | {statistics.mean(sizes):.0f} B | {under:.0%} "
            f"| {compress_us:.0f} µs | {inflate_us:.1f} µs |"
        )


if __name__ == "__main__":
    main()
