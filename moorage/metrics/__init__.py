"""Endpoint metrics: CloudWatch-style per-minute series and Prometheus exposition."""

from __future__ import annotations

from moorage.metrics.series import MetricsRegistry

__all__ = ["MetricsRegistry"]
