"""MetricsRegistry: SageMaker metric semantics, per-minute statistics, aggregation, retention."""

from __future__ import annotations

import math
import random

import pytest

from moorage.clock import FakeClock
from moorage.metrics import MetricsRegistry
from moorage.metrics.histogram import (MAX_RELATIVE_ERROR, float_index, float_rep, int_index,
                                       int_rep, parse_percentile)

T0 = 1_700_000_040  # a multiple of 60 and of 120
EP = "ep"

# (variant, model_status, model_latency_us, overhead_latency_us)
MINUTE_1 = [
    ("A", 200, 100, 10), ("A", 400, 300, 20), ("A", 499, 50, 30), ("A", 500, 1000, 40),
    ("A", None, 2000, 5),
    ("B", 200, 40, 1), ("B", 424, 60, 3),  # the model itself answered 424: a 4xx
]
MINUTE_2 = [("A", 200, 10, 7), ("A", 302, 20, 9), ("B", 503, 5000, 11)]


def record(reg: MetricsRegistry, rows: list) -> None:
    for variant, status, ml, ol in rows:
        reg.record_invocation(EP, variant, model_status=status, model_latency_us=ml,
                              overhead_latency_us=ol)


@pytest.fixture()
def two_minutes() -> tuple[FakeClock, MetricsRegistry]:
    clock = FakeClock(T0 + 5)
    reg = MetricsRegistry(clock)
    reg.set_instance_count(EP, "A", 2)
    record(reg, MINUTE_1)
    clock.advance(60)
    reg.set_instance_count(EP, "A", 4)  # scale-up during minute 2: the max counts
    record(reg, MINUTE_2)
    clock.advance(30)
    return clock, reg


def stats(dp: dict) -> tuple:
    return dp["Timestamp"], dp["Sum"], dp["SampleCount"], dp["Minimum"], dp["Maximum"], dp["Average"]


def test_latency_statistics_per_minute_and_variant(two_minutes) -> None:
    _, reg = two_minutes
    a = reg.query(EP, "ModelLatency", variant="A")
    assert [stats(dp) for dp in a] == [(T0, 3450, 5, 50, 2000, 690), (T0 + 60, 30, 2, 10, 20, 15)]
    assert all(dp["Unit"] == "Microseconds" for dp in a)
    b = reg.query(EP, "OverheadLatency", variant="B")
    assert [stats(dp) for dp in b] == [(T0, 4, 2, 1, 3, 2), (T0 + 60, 11, 1, 11, 11, 11)]


def test_error_classification(two_minutes) -> None:
    _, reg = two_minutes
    e4 = reg.query(EP, "Invocation4XXErrors", variant="A")
    e5 = reg.query(EP, "Invocation5XXErrors", variant="A")
    # 400 and 499 are 4xx; 500 and None (no model answer) are 5xx; 200/302 neither.
    assert [(dp["Sum"], dp["SampleCount"], dp["Average"]) for dp in e4] == [(2, 5, 0.4), (0, 2, 0)]
    assert [(dp["Sum"], dp["SampleCount"], dp["Average"]) for dp in e5] == [(2, 5, 0.4), (0, 2, 0)]
    assert (e4[0]["Minimum"], e4[0]["Maximum"], e4[1]["Maximum"]) == (0, 1, 0)
    assert [dp["Sum"] for dp in reg.query(EP, "Invocation4XXErrors", variant="B")] == [1, 0]
    assert [dp["Sum"] for dp in reg.query(EP, "Invocation5XXErrors", variant="B")] == [0, 1]
    assert [dp["Unit"] for dp in e4] == ["None", "None"]


def test_aggregation_across_variants_and_periods(two_minutes) -> None:
    _, reg = two_minutes
    inv = reg.query(EP, "Invocations")
    assert [(dp["Timestamp"], dp["Sum"], dp["SampleCount"]) for dp in inv] == [(T0, 7, 7), (T0 + 60, 3, 3)]
    ml = reg.query(EP, "ModelLatency")
    assert stats(ml[0]) == (T0, 3550, 7, 40, 2000, 3550 / 7)
    two = reg.query(EP, "ModelLatency", period=120)
    assert len(two) == 1 and stats(two[0]) == (T0, 8580, 10, 10, 5000, 858)
    assert reg.query(EP, "Invocations", period=120, start=T0 + 60)[0]["Sum"] == 3
    e5 = reg.query(EP, "Invocation5XXErrors", period=120)
    assert (e5[0]["Sum"], e5[0]["SampleCount"]) == (3, 10)


def test_start_end_and_statistics_selection(two_minutes) -> None:
    _, reg = two_minutes
    assert [dp["Timestamp"] for dp in reg.query(EP, "Invocations", start=T0 + 30)] == [T0, T0 + 60]
    assert [dp["Timestamp"] for dp in reg.query(EP, "Invocations", end=T0 + 60)] == [T0]
    assert [dp["Timestamp"] for dp in reg.query(EP, "Invocations", start=T0 + 60)] == [T0 + 60]
    dp = reg.query(EP, "Invocations", statistics=("Sum",), extended=())[0]
    assert dp == {"Timestamp": T0, "Sum": 7.0, "Unit": "None"}
    assert reg.query("nobody", "Invocations") == []


def test_invocations_per_instance(two_minutes) -> None:
    _, reg = two_minutes
    a = reg.query(EP, "InvocationsPerInstance", variant="A")
    # minute 1: 5 invocations / 2 instances; minute 2: 2 invocations / max(2, 4)
    assert [(dp["Sum"], dp["SampleCount"], dp["Average"]) for dp in a] == [(2.5, 5, 0.5), (0.5, 2, 0.25)]
    b = reg.query(EP, "InvocationsPerInstance", variant="B")  # never set: counts as 1
    assert [dp["Sum"] for dp in b] == [2, 1]


def test_instance_count_carries_into_later_minutes() -> None:
    clock = FakeClock(T0)
    reg = MetricsRegistry(clock)
    reg.set_instance_count(EP, "A", 2)
    clock.advance(600)
    record(reg, [("A", 200, 1, 1)] * 4)
    assert reg.query(EP, "InvocationsPerInstance")[-1]["Sum"] == 2


def test_percentiles_within_documented_error() -> None:
    rng = random.Random(7)
    clock = FakeClock(T0)
    reg = MetricsRegistry(clock)
    samples = [int(rng.lognormvariate(9, 1.5)) + 1 for _ in range(5000)]
    for n, v in enumerate(samples):  # spread over 2 variants x 2 minutes: exercises merging
        if n == 2500:
            clock.advance(60)
        reg.record_invocation(EP, "AB"[n % 2], model_status=200, model_latency_us=v,
                              overhead_latency_us=v // 7)
    dps = reg.query(EP, "ModelLatency", period=120, extended=("p50", "p90", "p99", "p99.9", "p100"))
    assert len(dps) == 1 and dps[0]["SampleCount"] == 5000
    dp = dps[0]
    ordered = sorted(samples)
    for name, est in dp["ExtendedStatistics"].items():
        p = parse_percentile(name)
        true = ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]
        assert abs(est - true) <= MAX_RELATIVE_ERROR * true, (name, est, true)
    assert dp["ExtendedStatistics"]["p100"] == max(samples)
    e4 = reg.query(EP, "Invocation4XXErrors")[0]["ExtendedStatistics"]
    assert e4 == {"p50": 0, "p90": 0, "p99": 0}


def test_histogram_index_schemes() -> None:
    rng = random.Random(3)
    ints = list(range(0, 5000)) + [rng.randrange(1, 1 << 40) for _ in range(5000)]
    for v in ints:
        rep = int_rep(int_index(v))
        assert abs(rep - v) <= MAX_RELATIVE_ERROR * max(v, 1)
        if v < 32:
            assert rep == v
    assert [int_index(v) for v in sorted(ints)] == sorted(int_index(v) for v in ints)
    floats = [rng.uniform(1e-9, 1e9) * rng.choice((1e-6, 1, 1e6)) for _ in range(5000)]
    for v in floats:
        assert abs(float_rep(float_index(v)) - v) <= MAX_RELATIVE_ERROR * v
    assert float_index(0.0) < float_index(1e-300) and float_rep(float_index(-5.0)) == 0.0
    indices = [float_index(v) for v in sorted(floats)]
    assert indices == sorted(indices)


def test_inlined_hot_path_index_matches_reference() -> None:
    reg = MetricsRegistry(FakeClock(T0))
    values = [0, 1, 31, 32, 33, 63, 64, 1000, 123_456, 10**9]
    for v in values:
        reg.record_invocation(EP, "A", model_status=200, model_latency_us=v, overhead_latency_us=v)
    bucket = reg._series[(EP, "A")].cur
    expected = {int_index(v) for v in values}
    assert set(bucket.ml_hist) == expected and set(bucket.ol_hist) == expected


def test_pruning_after_retention() -> None:
    clock = FakeClock(T0)
    reg = MetricsRegistry(clock, retention_minutes=3)
    for minute in range(5):
        record(reg, [("A", 200, minute + 1, 1)])
        clock.advance(60)
    clock.advance(-60)  # back inside minute 4
    assert [dp["Sum"] for dp in reg.query(EP, "ModelLatency")] == [3, 4, 5]
    assert sorted(reg._series[(EP, "A")].buckets) == [T0 + 120, T0 + 180, T0 + 240]
    clock.advance(60 * 10)  # idle: old minutes fall out of queries and memory
    assert reg.query(EP, "Invocations") == []
    assert reg._series[(EP, "A")].buckets == {}
    record(reg, [("A", 200, 9, 1)])
    assert [dp["Sum"] for dp in reg.query(EP, "ModelLatency")] == [9]


def test_drop_endpoint_and_names(two_minutes) -> None:
    _, reg = two_minutes
    reg.record_invocation("other", "X", model_status=200, model_latency_us=1, overhead_latency_us=1)
    assert reg.names() == [(EP, "A"), (EP, "B"), ("other", "X")]
    reg.drop_endpoint(EP)
    assert reg.names() == [("other", "X")]
    assert reg.query(EP, "Invocations") == []
    assert reg.query("other", "Invocations")[0]["Sum"] == 1


def test_generic_values_and_gauges() -> None:
    clock = FakeClock(T0)
    reg = MetricsRegistry(clock)
    reg.record_value(EP, "A", "ModelSetupTime", 1.5, unit="Seconds")
    reg.record_value(EP, "A", "ModelSetupTime", 2.5, unit="Seconds")
    dp = reg.query(EP, "ModelSetupTime")[0]
    assert stats(dp) == (T0, 4.0, 2, 1.5, 2.5, 2.0) and dp["Unit"] == "Seconds"
    assert "ModelSetupTime" in reg.metric_names() and "Invocations" in reg.metric_names()
    reg.set_gauge(EP, "A", "ApproximateBacklogSize", 10)
    reg.set_gauge(EP, "A", "ApproximateBacklogSize", 4)
    clock.advance(60)
    record(reg, [("A", 200, 1, 1)])  # new minute: the gauge's value stays in effect
    got = [stats(dp) for dp in reg.query(EP, "ApproximateBacklogSize", extended=())]
    assert got == [(T0, 14, 2, 4, 10, 7), (T0 + 60, 4, 1, 4, 4, 4)]
    with pytest.raises(ValueError):
        reg.record_value(EP, "A", "ModelLatency", 1)


@pytest.mark.parametrize("kwargs", [
    {"metric": "NoSuchMetric"}, {"metric": "Invocations", "period": 90},
    {"metric": "Invocations", "period": 0}, {"metric": "Invocations", "statistics": ("Median",)},
    {"metric": "Invocations", "extended": ("p0",)}, {"metric": "Invocations", "extended": ("tm99",)},
])
def test_invalid_queries(two_minutes, kwargs) -> None:
    _, reg = two_minutes
    with pytest.raises(ValueError):
        reg.query(EP, **kwargs)
