"""Fixed log-scale histograms for per-minute percentiles without keeping samples.

Why: CloudWatch-style p50/p90/p99 per minute would otherwise need every sample
of every minute for a day of retention.  Instead each sample bumps one sparse
``dict[index, count]`` entry, HDR-histogram style: an octave (power of two) is
split into ``2**SUB_BITS`` equal sub-buckets, so a bucket is never wider than
1/16 of its lower bound.  Percentiles report the bucket midpoint, so the
**documented relative error is at most 1/32 (3.125 %)** of the true
nearest-rank sample (integers below 32 are exact), and results are further
clamped to the exact observed Minimum/Maximum.

Two index schemes share that layout:

* ``int`` – for integer microsecond latencies on the hot path; it uses only
  ``int.bit_length`` and shifts (the index computation is inlined by
  :mod:`moorage.metrics.series` for speed; :func:`int_index` is the reference).
* ``float`` – for generic :meth:`MetricsRegistry.record_value` samples of any
  magnitude, via :func:`math.frexp`.  Values <= 0 share one bucket that
  reports 0 (percentiles assume non-negative values).

A third pseudo-scheme, ``exact``, uses the sample values themselves as keys;
query code builds these for counter-like metrics whose samples are only a few
distinct values (0/1 error flags, ``1/instances``).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

SUB_BITS = 4
SUB = 1 << SUB_BITS  # sub-buckets per octave
EXACT_BELOW = SUB << 1  # ints below this get their own bucket
MAX_RELATIVE_ERROR = 1 / (2 * SUB)  # midpoint of a bucket at most 1/16 wide
_ZERO_INDEX = -(1 << 40)  # float scheme: every value <= 0, sorts first

Hist = dict  # dict[int | float, int]: bucket key -> sample count


def int_index(v: int) -> int:
    """Bucket index of a non-negative integer (negative values land in 0)."""
    if v < EXACT_BELOW:
        return v if v > 0 else 0
    sh = v.bit_length() - SUB_BITS - 1
    return (sh << SUB_BITS) + (v >> sh)


def int_rep(i: int) -> float:
    """Representative value (midpoint of the integers) of an ``int`` bucket."""
    if i < EXACT_BELOW:
        return float(i)
    sh = (i >> SUB_BITS) - 1
    lo = (i - (sh << SUB_BITS)) << sh
    return lo + ((1 << sh) - 1) / 2


def float_index(v: float) -> int:
    """Bucket index of any real value in the ``float`` scheme."""
    if v <= 0:
        return _ZERO_INDEX
    m, e = math.frexp(v)  # v = m * 2**e with 0.5 <= m < 1
    return (e << SUB_BITS) + int(m * (SUB << 1))


def float_rep(i: int) -> float:
    """Representative value (interval midpoint) of a ``float`` bucket."""
    if i == _ZERO_INDEX:
        return 0.0
    e = (i >> SUB_BITS) - 1
    k = (i & (SUB - 1)) + SUB
    return math.ldexp(k + 0.5, e - SUB_BITS - 1)


def exact_rep(v: float) -> float:
    return float(v)


REPS: dict[str, Callable[[float], float]] = {
    "int": int_rep,  # type: ignore[dict-item]
    "float": float_rep,  # type: ignore[dict-item]
    "exact": exact_rep,
}


def merge_into(dst: Hist, src: Mapping) -> None:
    for k, c in src.items():
        dst[k] = dst.get(k, 0) + c


def percentile(hist: Mapping, p: float, rep: Callable[[float], float],
               lo: float, hi: float) -> float | None:
    """Nearest-rank ``p``-th percentile (0 < p <= 100), clamped to [lo, hi].

    Why nearest-rank: it always answers with (an approximation of) a value
    that was actually observed, as CloudWatch does for small sample counts.
    """
    n = sum(hist.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(p / 100.0 * n))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return min(max(rep(k), lo), hi)
    return hi  # unreachable: the ranks cover n


def parse_percentile(name: str) -> float:
    """``"p99"`` / ``"p99.9"`` -> 99.0 / 99.9; anything else is a ValueError."""
    if len(name) < 2 or name[0] != "p":
        raise ValueError(f"unsupported extended statistic {name!r}")
    try:
        p = float(name[1:])
    except ValueError:
        raise ValueError(f"unsupported extended statistic {name!r}") from None
    if not 0.0 < p <= 100.0 or not math.isfinite(p):
        raise ValueError(f"percentile out of range in {name!r}")
    return p
