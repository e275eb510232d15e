"""Table definitions. Resources share one table: the document is the SageMaker shape, and the
columns that List* filters and sorts on are lifted out of it."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

resources = Table(
    "resources",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("arn", String(512), nullable=False),
    Column("status", String(32), nullable=True),
    Column("created", Float, nullable=False),
    Column("modified", Float, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("doc", Text, nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("endpoints", String(256), nullable=False, default="*"),
    Column("created", Float, nullable=False),
    Column("revoked", Float, nullable=True),
)
