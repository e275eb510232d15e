"""Registers the shared moto S3 server fixture for these tests."""

from __future__ import annotations

from tests.s3server import s3_server  # noqa: F401
