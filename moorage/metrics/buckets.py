"""Storage records of the metrics registry: minute buckets and per-series totals.

Why ``__slots__`` and flat attributes (no nested stats objects on the hot
path): :meth:`MetricsRegistry.record_invocation` runs once per request and
updates ~20 fields; flat slot attributes are the cheapest Python storage for
that, and a bucket of a quiet minute stays small.
"""

from __future__ import annotations

import math

from moorage.metrics.histogram import float_index

INF = math.inf
#: Prometheus ``le`` bounds (µs) of the cumulative latency histograms.
PROM_LATENCY_BOUNDS_US = (500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
                          500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000)
_NB = len(PROM_LATENCY_BOUNDS_US) + 1  # plus the +Inf bucket


class Stats:
    """Samples of a generic metric in one minute (``float``-scheme histogram)."""
    __slots__ = ("sum", "count", "min", "max", "hist")

    def __init__(self) -> None:
        self.sum, self.count, self.min, self.max = 0.0, 0, INF, -INF
        self.hist: dict[int, int] = {}

    def add(self, v: float) -> None:
        self.sum += v
        self.count += 1
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        i = float_index(v)
        self.hist[i] = self.hist.get(i, 0) + 1


class Bucket:
    """One minute of one (endpoint, variant).

    Every invocation carries one ModelLatency and one OverheadLatency sample,
    so their SampleCount is ``inv`` and is not stored twice.
    """
    __slots__ = ("inv", "e4", "e5", "instances", "ml_sum", "ml_min", "ml_max", "ml_hist",
                 "ol_sum", "ol_min", "ol_max", "ol_hist", "custom")

    def __init__(self, instances: int) -> None:
        self.inv = self.e4 = self.e5 = 0
        self.instances = instances  # max instance count in effect during the minute
        self.ml_sum = self.ol_sum = 0
        self.ml_min = self.ol_min = INF
        self.ml_max = self.ol_max = -INF
        self.ml_hist: dict[int, int] = {}
        self.ol_hist: dict[int, int] = {}
        self.custom: dict[str, Stats] = {}


class Series:
    """Minute buckets of one (endpoint, variant) plus running totals since start.

    The totals (counters, latency sums and ``le`` counts) feed the Prometheus
    scrape, which must not walk a day of minutes and must not lose history
    when old minutes are pruned.
    """
    __slots__ = ("buckets", "cur", "start", "end", "instances", "gauges",
                 "inv", "e4", "e5", "ml_sum", "ml_le", "ol_sum", "ol_le")

    def __init__(self) -> None:
        self.buckets: dict[int, Bucket] = {}
        self.cur: Bucket | None = None
        self.start = self.end = 0.0  # [start, end) of ``cur``; empty forces a roll
        self.instances = 0
        self.gauges: dict[str, float] = {}
        self.inv = self.e4 = self.e5 = self.ml_sum = self.ol_sum = 0
        self.ml_le = [0] * _NB  # non-cumulative counts per PROM_LATENCY_BOUNDS_US slot
        self.ol_le = [0] * _NB
