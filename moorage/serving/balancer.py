"""Instance choice: least outstanding requests, ties broken round-robin. Pure."""

from __future__ import annotations

from typing import Sequence


def least_outstanding(outstanding: Sequence[int], start: int) -> int:
    """Index of the instance with the fewest requests in flight.

    Scanning from ``start`` (a rotating counter) spreads ties, so idle instances share
    sequential traffic instead of the first one taking it all. -1 if there are none.
    """
    n = len(outstanding)
    best, best_load = -1, 1 << 62
    for k in range(n):
        i = (start + k) % n
        load = outstanding[i]
        if load < best_load:
            best, best_load = i, load
            if load == 0:
                break
    return best
