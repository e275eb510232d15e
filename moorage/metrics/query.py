"""Turning minute buckets into CloudWatch GetMetricStatistics datapoints.

Each metric has a *view* that reads one bucket as a ``Point`` -- (sum, count,
min, max, hist, scheme) -- mirroring what SageMaker actually sends to
CloudWatch per invocation, so that aggregating Points over minutes and
variants gives the same Sum/SampleCount/Average CloudWatch would:

* ``Invocations``: 1 per request.
* ``Invocation4XXErrors`` / ``Invocation5XXErrors``: 1 or 0 per request, so
  Average is the error rate and SampleCount the number of invocations.
* ``InvocationsPerInstance``: ``1/instances`` per request, instances being the
  max in effect during that minute (unknown or 0 counts as 1).
* ``ModelLatency`` / ``OverheadLatency``: the latency in µs per request.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from moorage.metrics.buckets import Bucket, Series
from moorage.metrics.histogram import REPS, merge_into, percentile

STATISTICS = ("Sum", "SampleCount", "Average", "Minimum", "Maximum")
PERCENTILES = ("p50", "p90", "p99")

Point = tuple[float, int, float, float, dict, str]
View = Callable[[Bucket], "Point | None"]


def _counter(attr: str) -> View:
    def view(b: Bucket) -> Point | None:
        n, e = b.inv, getattr(b, attr)
        if not n:
            return None
        hist = {k: c for k, c in ((0, n - e), (1, e)) if c}
        return e, n, (0 if e < n else 1), (1 if e else 0), hist, "exact"
    return view


def _latency(prefix: str) -> View:
    s_, lo_, hi_, h_ = (prefix + a for a in ("_sum", "_min", "_max", "_hist"))

    def view(b: Bucket) -> Point | None:
        if not b.inv:
            return None
        return getattr(b, s_), b.inv, getattr(b, lo_), getattr(b, hi_), getattr(b, h_), "int"
    return view


def _invocations(b: Bucket) -> Point | None:
    return (b.inv, b.inv, 1, 1, {1: b.inv}, "exact") if b.inv else None


def _per_instance(b: Bucket) -> Point | None:
    if not b.inv:
        return None
    per = 1.0 / max(b.instances, 1)
    return b.inv * per, b.inv, per, per, {per: b.inv}, "exact"


def custom_view(name: str) -> View:
    def view(b: Bucket) -> Point | None:
        st = b.custom.get(name)
        if st is None or not st.count:
            return None
        return st.sum, st.count, st.min, st.max, st.hist, "float"
    return view


#: Built-in metric name -> (CloudWatch unit, view).
BUILTIN: dict[str, tuple[str, View]] = {
    "Invocations": ("None", _invocations),
    "Invocation4XXErrors": ("None", _counter("e4")),
    "Invocation5XXErrors": ("None", _counter("e5")),
    "InvocationsPerInstance": ("None", _per_instance),
    "ModelLatency": ("Microseconds", _latency("ml")),
    "OverheadLatency": ("Microseconds", _latency("ol")),
}


def aggregate(series: Iterable[Series], view: View, lo: float, hi: float,
              origin: int, period: int) -> dict[int, list]:
    """Merge the Points of minutes in [lo, hi) into period bins keyed by bin start.

    Histograms are only collected here (merged later, and only if percentiles
    were asked for), so plain Sum/Average queries stay cheap.
    """
    bins: dict[int, list] = {}
    for s in series:
        for minute, b in s.buckets.items():
            if minute < lo or minute >= hi or (p := view(b)) is None:
                continue
            t = minute - (minute - origin) % period
            agg = bins.get(t)
            if agg is None:
                bins[t] = [p[0], p[1], p[2], p[3], [p[4]], p[5]]
            else:
                agg[0] += p[0]
                agg[1] += p[1]
                agg[2] = min(agg[2], p[2])
                agg[3] = max(agg[3], p[3])
                agg[4].append(p[4])
    return bins


def datapoint(t: int, agg: list, unit: str, stats: tuple[str, ...],
              pcts: list[tuple[str, float]]) -> dict[str, Any]:
    total, n, lo, hi, hists, scheme = agg
    values = {"Sum": total, "SampleCount": n, "Average": total / n, "Minimum": lo, "Maximum": hi}
    dp: dict[str, Any] = {"Timestamp": t}
    for name in stats:
        dp[name] = float(values[name])
    if pcts:
        hist = hists[0]
        if len(hists) > 1:
            hist = {}
            for h in hists:
                merge_into(hist, h)
        rep = REPS[scheme]
        dp["ExtendedStatistics"] = {name: float(percentile(hist, p, rep, lo, hi))  # type: ignore[arg-type]
                                    for name, p in pcts}
    dp["Unit"] = unit
    return dp
