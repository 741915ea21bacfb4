"""Typed rows in column order, from PostgreSQL's query or the ORM (the simpler path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db import connection

if TYPE_CHECKING:
    from campaign.exports.export import Export


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def typed_rows(export: Export) -> Iterator[tuple[Any, ...]]:
    """Rows in column order: str, int, aware datetime or None."""
    from campaign.exports import orm_rows, sql

    if on_postgresql():
        return sql.pg_rows(export)
    if export.shape == "cases":
        return orm_rows.orm_case_rows(export)
    return orm_rows.orm_finding_rows(export)
