"""Prometheus text exposition (format 0.0.4) of a :class:`MetricsRegistry`.

Hand-written because ``prometheus_client`` is not a dependency and the format
is small.  Everything rendered comes from the per-series running totals kept
since start (never from minute buckets), so counters are monotonic even
after retention pruning and a scrape costs O(series).

Gauges set through :meth:`MetricsRegistry.set_gauge` are exported as
``moorage_<snake_case_name>`` (e.g. ``ApproximateBacklogSize`` ->
``moorage_approximate_backlog_size``).
"""

from __future__ import annotations

import math
import re

from moorage.metrics.series import PROM_LATENCY_BOUNDS_US, MetricsRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTERS = (
    ("moorage_invocations_total", "inv", "Requests routed to a production variant."),
    ("moorage_invocation_4xx_errors_total", "e4", "Invocations where the model returned a 4xx."),
    ("moorage_invocation_5xx_errors_total", "e5",
     "Invocations where the model returned a 5xx, failed or timed out."),
)
_HISTOGRAMS = (
    ("moorage_model_latency_seconds", "ml",
     "Time the model container took to answer, as seen by the router."),
    ("moorage_overhead_latency_seconds", "ol", "Time spent in Moorage outside the model."),
)
_LE = [repr(b / 1e6) for b in PROM_LATENCY_BOUNDS_US] + ["+Inf"]


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and newline (0.0.4 spec)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return re.sub(r"[^a-z0-9_]", "_", s)


def render(registry: MetricsRegistry) -> str:
    """The whole registry as one exposition document (ends with a newline)."""
    rows = [(f'endpoint="{escape_label(e)}",variant="{escape_label(v)}"', s)
            for e, v, s in registry.totals()]
    out: list[str] = []

    def header(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {_escape_help(help_)}")
        out.append(f"# TYPE {name} {kind}")

    for name, attr, help_ in _COUNTERS:
        header(name, "counter", help_)
        out.extend(f"{name}{{{labels}}} {getattr(s, attr)}" for labels, s in rows)
    for name, p, help_ in _HISTOGRAMS:
        header(name, "histogram", help_)
        for labels, s in rows:
            cumulative = 0
            for le, c in zip(_LE, getattr(s, p + "_le")):
                cumulative += c
                out.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
            out.append(f"{name}_sum{{{labels}}} {_fmt(getattr(s, p + '_sum') / 1e6)}")
            out.append(f"{name}_count{{{labels}}} {s.inv}")
    header("moorage_instances", "gauge", "Instances serving the variant.")
    out.extend(f"moorage_instances{{{labels}}} {s.instances}" for labels, s in rows)
    gauges = sorted({g for _, s in rows for g in s.gauges})
    taken = {n for n, _, _ in _COUNTERS} | {n for n, _, _ in _HISTOGRAMS} | {"moorage_instances"}
    for g in gauges:
        name = "moorage_" + _snake(g)
        if name in taken or name.endswith(("_total", "_bucket", "_sum", "_count")):
            name = "moorage_gauge_" + _snake(g)  # never collide with a built-in family
        taken.add(name)
        header(name, "gauge", f"{g} (set_gauge).")
        out.extend(f"{name}{{{labels}}} {_fmt(s.gauges[g])}" for labels, s in rows if g in s.gauges)
    return "\n".join(out) + "\n"
