"""Table definitions. Resources share one table: the document is the SageMaker shape, and the
columns that List* filters and sorts on are lifted out of it."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint

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

#: InvokeEndpointAsync requests: written before the 202, updated once when the request ends.
#: ``seq`` orders the queue; (endpoint, inference_id) is unique, so a resubmitted id is the
#: same request.
async_requests = Table(
    "async_requests",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(64), nullable=False),
    Column("inference_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # Pending | Completed | Failed
    Column("created", Float, nullable=False),
    Column("finished", Float, nullable=True),
    Column("input_location", Text, nullable=True),
    Column("body", LargeBinary, nullable=True),  # an inline payload (at most 128,000 bytes)
    Column("content_type", String(1024), nullable=False, default=""),
    Column("accept", String(1024), nullable=False, default=""),
    Column("custom_attributes", String(1024), nullable=False, default=""),
    Column("output_location", Text, nullable=False),
    Column("failure_location", Text, nullable=False),
    Column("ttl_seconds", Integer, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("variant", String(64), nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("notify", String(16), nullable=True),  # Pending | Sent, when a topic is configured
    UniqueConstraint("endpoint", "inference_id"),
)

#: ended requests by end time, for the retention sweep. Partial: a request is inserted
#: unfinished, so the insert before the 202 pays nothing for it; the final update adds it.
async_finished = Index("ix_async_requests_finished", async_requests.c.finished,
                       sqlite_where=async_requests.c.finished.isnot(None),
                       postgresql_where=async_requests.c.finished.isnot(None))
