"""Model data by URL (local path, file:// or s3://) -> a local directory, cached by digest."""

from __future__ import annotations

from moorage.artifacts.fetch import fetch_model_data, model_data_exists

__all__ = ["fetch_model_data", "model_data_exists"]
