"""Per-endpoint/variant metric time series with one bucket per wall-clock minute.

Why per-minute buckets: SageMaker publishes its CloudWatch endpoint metrics at
one-minute resolution, and GetMetricStatistics periods are multiples of 60 s,
so a bucket per minute is the finest grain any query needs.  Buckets keep
only counters, Sum/Min/Max and a sparse log histogram (see
:mod:`moorage.metrics.histogram`), so memory is bounded by minutes x series,
not by traffic.  Alongside them every series keeps running totals since start
so the Prometheus scrape is O(series), not O(minutes).

Not thread-safe by design: the router calls :meth:`record_invocation` from
the asyncio event loop, and a lock would double the hot-path cost.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any, Iterable, Iterator

from moorage.clock import Clock
from moorage.metrics.buckets import INF, PROM_LATENCY_BOUNDS_US, Bucket, Series, Stats
from moorage.metrics.histogram import parse_percentile
from moorage.metrics.query import BUILTIN, PERCENTILES, STATISTICS, aggregate, custom_view, datapoint

__all__ = ["MetricsRegistry", "PROM_LATENCY_BOUNDS_US", "STATISTICS", "PERCENTILES"]


class MetricsRegistry:
    """All endpoint metrics of one server; see the module docstring for why."""

    def __init__(self, clock: Clock, retention_minutes: int = 1440) -> None:
        if retention_minutes < 1:
            raise ValueError("retention_minutes must be >= 1")
        self._time = clock.time  # bound once: saves an attribute lookup per call
        self._retention = retention_minutes
        self._series: dict[tuple[str, str], Series] = {}
        self._units: dict[str, str] = {}  # custom metric name -> unit
        self._pruned_at = -INF

    # ---- hot path ---------------------------------------------------------
    def record_invocation(self, endpoint: str, variant: str, *, model_status: int | None,
                          model_latency_us: int, overhead_latency_us: int) -> None:
        """Count one routed request (~1 µs; inlined on purpose, no helper calls)."""
        now = self._time()
        s = self._series.get((endpoint, variant))
        if s is None or not s.start <= now < s.end:
            s = self._roll(endpoint, variant, now)
        b = s.cur
        b.inv += 1
        s.inv += 1
        if model_status is None or model_status >= 500:
            b.e5 += 1
            s.e5 += 1
        elif model_status >= 400:
            b.e4 += 1
            s.e4 += 1
        v = model_latency_us
        b.ml_sum += v
        s.ml_sum += v
        if v < b.ml_min:
            b.ml_min = v
        if v > b.ml_max:
            b.ml_max = v
        if v < 32:  # histogram.int_index, inlined
            i = v if v > 0 else 0
        else:
            sh = v.bit_length() - 5
            i = (sh << 4) + (v >> sh)
        h = b.ml_hist
        h[i] = h.get(i, 0) + 1
        s.ml_le[bisect_left(PROM_LATENCY_BOUNDS_US, v)] += 1
        v = overhead_latency_us
        b.ol_sum += v
        s.ol_sum += v
        if v < b.ol_min:
            b.ol_min = v
        if v > b.ol_max:
            b.ol_max = v
        if v < 32:
            i = v if v > 0 else 0
        else:
            sh = v.bit_length() - 5
            i = (sh << 4) + (v >> sh)
        h = b.ol_hist
        h[i] = h.get(i, 0) + 1
        s.ol_le[bisect_left(PROM_LATENCY_BOUNDS_US, v)] += 1

    def _roll(self, endpoint: str, variant: str, now: float) -> Series:
        """Slow path: first call for a series or first call in a new minute."""
        minute = math.floor(now / 60) * 60
        s = self._series.get((endpoint, variant))
        if s is None:
            s = self._series[(endpoint, variant)] = Series()
        b = s.buckets.get(minute)
        if b is None:
            b = s.buckets[minute] = Bucket(s.instances)
            for name, value in s.gauges.items():  # a gauge's value stays in effect
                b.custom.setdefault(name, Stats()).add(value)
            self._prune(minute)
        s.cur, s.start, s.end = b, minute, minute + 60
        return s

    def _current(self, endpoint: str, variant: str) -> Bucket:
        now = self._time()
        s = self._series.get((endpoint, variant))
        if s is None or not s.start <= now < s.end:
            s = self._roll(endpoint, variant, now)
        return s.cur  # type: ignore[return-value]

    def _prune(self, minute: int) -> None:
        """Drop minutes older than retention, at most once per new minute overall."""
        if minute <= self._pruned_at:
            return
        self._pruned_at = minute
        cutoff = minute - (self._retention - 1) * 60
        for s in self._series.values():
            for m in [m for m in s.buckets if m < cutoff]:
                del s.buckets[m]
            if s.start < cutoff:
                s.cur, s.start, s.end = None, 0.0, 0.0

    # ---- pools, gauges and generic values ---------------------------------
    def set_instance_count(self, endpoint: str, variant: str, n: int) -> None:
        """Record a pool size change; a minute uses the max count in effect in it."""
        b = self._current(endpoint, variant)
        self._series[(endpoint, variant)].instances = n
        if n > b.instances:
            b.instances = n

    def record_value(self, endpoint: str, variant: str, metric_name: str, value: float,
                     *, unit: str = "None") -> None:
        """Add one sample to a generic metric's per-minute statistics."""
        if metric_name in BUILTIN:
            raise ValueError(f"{metric_name} is a built-in metric")
        self._units.setdefault(metric_name, unit)
        self._current(endpoint, variant).custom.setdefault(metric_name, Stats()).add(value)

    def set_gauge(self, endpoint: str, variant: str, metric_name: str, value: float,
                  *, unit: str = "None") -> None:
        """Set a level (e.g. async backlog).  It is sampled now and carried into
        each later minute bucket of the series; set it at least once a minute if
        idle minutes must have datapoints too."""
        self.record_value(endpoint, variant, metric_name, value, unit=unit)
        self._series[(endpoint, variant)].gauges[metric_name] = value

    def drop_endpoint(self, endpoint: str) -> None:
        for key in [k for k in self._series if k[0] == endpoint]:
            del self._series[key]

    # ---- reading ----------------------------------------------------------
    def names(self) -> list[tuple[str, str]]:
        return sorted(self._series)

    def metric_names(self) -> list[str]:
        return list(BUILTIN) + sorted(self._units)

    def invocations_total(self, endpoint: str, variant: str) -> int:
        """Invocations routed to a variant since the server started (for rates)."""
        series = self._series.get((endpoint, variant))
        return series.inv if series else 0

    def gauge(self, endpoint: str, variant: str, metric_name: str) -> float | None:
        """The last value set with ``set_gauge``, or None."""
        series = self._series.get((endpoint, variant))
        return series.gauges.get(metric_name) if series else None

    def totals(self) -> Iterator[tuple[str, str, Any]]:
        """(endpoint, variant, running totals) for exposition; do not mutate."""
        for (e, v), s in sorted(self._series.items()):
            yield e, v, s

    def query(self, endpoint: str, metric: str, *, variant: str | None = None,
              start: float | None = None, end: float | None = None, period: int = 60,
              statistics: Iterable[str] = STATISTICS,
              extended: Iterable[str] | None = PERCENTILES) -> list[dict]:
        """CloudWatch GetMetricStatistics over the retained minutes.

        Periods are aligned to ``start`` (floored to a minute) when given, else
        to the epoch; ``end`` is exclusive.  ``variant=None`` merges variants.
        """
        if metric in BUILTIN:
            unit, view = BUILTIN[metric]
        elif metric in self._units:
            unit = self._units[metric]
            view = custom_view(metric)
        else:
            raise ValueError(f"unknown metric {metric!r}")
        if period < 60 or period % 60:
            raise ValueError("period must be a positive multiple of 60")
        stats = tuple(statistics)
        if bad := [s for s in stats if s not in STATISTICS]:
            raise ValueError(f"unknown statistics {bad}")
        pcts = [(n, parse_percentile(n)) for n in (extended or ())]
        now_minute = math.floor(self._time() / 60) * 60
        self._prune(now_minute)
        lo = now_minute - (self._retention - 1) * 60
        origin = math.floor(start / 60) * 60 if start is not None else 0
        lo = max(lo, origin)
        hi = INF if end is None else end
        chosen = (s for (e, v), s in self._series.items()
                  if e == endpoint and (variant is None or v == variant))
        bins = aggregate(chosen, view, lo, hi, origin, period)
        return [datapoint(t, bins[t], unit, stats, pcts) for t in sorted(bins)]
