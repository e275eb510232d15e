"""Persistence: SQLAlchemy 2 on SQLite (WAL) by default. Only control/ writes through it."""

from moorage.store.sql import Record, Store

__all__ = ["Record", "Store"]
