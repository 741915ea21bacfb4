"""Partners' exports: their cases, or every finding of their cases, as CSV, JSON Lines or XLSX.

Two row sources give the same typed rows: one SQL query on PostgreSQL (the CSV comes straight out
of `COPY ... TO STDOUT` with every cell formatted in SQL), and a simpler ORM path elsewhere.
docs/exports.md lists the columns, the IntelMQ field mapping and how a cut file shows.
"""

from campaign.exports.columns import (
    CASE_COLUMNS,
    COLUMNS,
    CONTENT_TYPES,
    FINDING_COLUMNS,
    FORMATS,
    SHAPES,
    TRAILER,
    Column,
)
from campaign.exports.export import Export, export_for
from campaign.exports.rows import typed_rows

__all__ = [
    "CASE_COLUMNS",
    "COLUMNS",
    "CONTENT_TYPES",
    "FINDING_COLUMNS",
    "FORMATS",
    "SHAPES",
    "TRAILER",
    "Column",
    "Export",
    "export_for",
    "typed_rows",
]
