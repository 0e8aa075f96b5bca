"""What a leaked phone-hash secret costs: how fast one Python core tests phone numbers.

Whoever holds the secret and a copy of Redis can hash every number of a numbering plan and
compare. This measures the HMAC-SHA256 rate of one core (the key schedule precomputed, as an
attacker would) and what it makes of the North American plan: area code and exchange 200-999,
four more digits, 6.4 billion numbers.

Run: ``python benchmarks/brute_force_cost.py``
"""

from __future__ import annotations

import hashlib
import hmac
import time

NANP_NUMBERS = 800 * 800 * 10_000


def main(n: int = 10**6) -> None:
    """Print the rate and the time for every North American number."""
    base = hmac.new(b"k" * 64, digestmod=hashlib.sha256)
    started = time.perf_counter()
    for i in range(n):
        attempt = base.copy()
        attempt.update(b"+1415%07d" % i)
        attempt.digest()
    rate = n / (time.perf_counter() - started)
    hours = NANP_NUMBERS / rate / 3600
    print(f"{rate:,.0f} numbers per second on one core: all {NANP_NUMBERS:,} in {hours:.1f} h")


if __name__ == "__main__":
    main()
