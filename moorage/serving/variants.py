"""Variant choice by weight, as a pure function over precomputed cumulative weights."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate
from typing import Sequence


def cumulative(weights: Sequence[float]) -> list[float]:
    """Running sums of the weights; the last item is the total."""
    return list(accumulate(weights))


def choose(cum: Sequence[float], r: float) -> int:
    """Index of the variant that a uniform draw ``r`` in [0, 1) selects.

    A variant's share is its weight over the total, so weight 0 is never chosen.
    Returns -1 when every weight is zero.
    """
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return -1
    i = bisect_right(cum, r * total)
    return min(i, len(cum) - 1)
