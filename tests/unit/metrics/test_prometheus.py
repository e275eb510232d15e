"""Prometheus text exposition 0.0.4, checked with a small independent parser."""

from __future__ import annotations

import math
import re

from moorage.clock import FakeClock
from moorage.metrics import MetricsRegistry
from moorage.metrics.prometheus import escape_label, render

T0 = 1_700_000_040
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), s)


def parse(text: str) -> tuple[dict[str, str], dict[tuple, float]]:
    """-> ({family: type}, {(name, frozenset(labels)): value}); asserts well-formedness."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types and name in helps
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, line
        name, raw, value = m.groups()
        labels = {}
        if raw:
            consumed = "".join(x.group(0) for x in _LABEL.finditer(raw))
            assert consumed == raw, raw
            labels = {k: _unescape(v) for k, v in _LABEL.findall(raw)}
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, f"sample before TYPE: {line}"
        key = (name, frozenset(labels.items()))
        assert key not in samples
        samples[key] = float(value)
    return types, samples


def get(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def registry() -> tuple[FakeClock, MetricsRegistry]:
    clock = FakeClock(T0)
    reg = MetricsRegistry(clock, retention_minutes=2)
    reg.set_instance_count("ep", "A", 3)
    rows = [("A", 200, 400, 100), ("A", 404, 1_000, 200), ("A", 500, 2_600, 300),
            ("A", None, 120_000_000, 400), ("B", 200, 7_000, 50)]
    for variant, status, ml, ol in rows:
        reg.record_invocation("ep", variant, model_status=status, model_latency_us=ml,
                              overhead_latency_us=ol)
    return clock, reg


def test_counters_histograms_and_gauges() -> None:
    _, reg = registry()
    types, samples = parse(render(reg))
    assert types["moorage_invocations_total"] == "counter"
    assert types["moorage_model_latency_seconds"] == "histogram"
    assert types["moorage_instances"] == "gauge"
    a = {"endpoint": "ep", "variant": "A"}
    assert get(samples, "moorage_invocations_total", **a) == 4
    assert get(samples, "moorage_invocation_4xx_errors_total", **a) == 1
    assert get(samples, "moorage_invocation_5xx_errors_total", **a) == 2
    assert get(samples, "moorage_invocations_total", endpoint="ep", variant="B") == 1
    assert get(samples, "moorage_instances", **a) == 3
    assert get(samples, "moorage_instances", endpoint="ep", variant="B") == 0
    h = "moorage_model_latency_seconds"
    assert math.isclose(get(samples, h + "_sum", **a), 120.004)
    assert get(samples, h + "_count", **a) == 4
    le = {"0.0005": 1, "0.001": 2, "0.0025": 2, "0.005": 3, "60.0": 3, "+Inf": 4}
    assert {k: get(samples, h + "_bucket", le=k, **a) for k in le} == le
    buckets = sorted((float(dict(lbl)["le"]), v) for (n, lbl), v in samples.items()
                     if n == h + "_bucket" and dict(lbl)["variant"] == "A")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert get(samples, "moorage_overhead_latency_seconds_bucket", le="0.0005", **a) == 4


def test_totals_survive_pruning_and_gauges_are_exported() -> None:
    clock, reg = registry()
    clock.advance(600)
    reg.record_invocation("ep", "A", model_status=200, model_latency_us=1, overhead_latency_us=1)
    reg.set_gauge("ep", "A", "ApproximateBacklogSize", 7)
    assert len(reg.query("ep", "Invocations")) == 1  # old minutes are gone...
    types, samples = parse(render(reg))
    a = {"endpoint": "ep", "variant": "A"}
    assert get(samples, "moorage_invocations_total", **a) == 5  # ...the counters are not
    assert types["moorage_approximate_backlog_size"] == "gauge"
    assert get(samples, "moorage_approximate_backlog_size", **a) == 7


def test_label_escaping_round_trips() -> None:
    reg = MetricsRegistry(FakeClock(T0))
    nasty = 'we"ird\\na\nme'
    reg.record_invocation(nasty, "v", model_status=200, model_latency_us=1, overhead_latency_us=1)
    assert escape_label(nasty) == 'we\\"ird\\\\na\\nme'
    _, samples = parse(render(reg))
    assert get(samples, "moorage_invocations_total", endpoint=nasty, variant="v") == 1


def test_empty_registry_renders_headers_only() -> None:
    types, samples = parse(render(MetricsRegistry(FakeClock(T0))))
    assert "moorage_invocations_total" in types and samples == {}
