"""The text formats: CSV built in Python (the path for SQLite) and JSON Lines of IntelMQ
events."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from campaign.exports.columns import FORMULA_STARTS, INTELMQ_IDENTIFIERS, TRAILER, TS
from campaign.exports.rows import typed_rows

if TYPE_CHECKING:
    from campaign.exports.export import Export


def iso(value: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    """ISO 8601 in the partner's zone, to the second: 2026-12-07T10:30:00+01:00."""
    if value is None:
        return ""
    return value.astimezone(zone).replace(microsecond=0).isoformat()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(export: Export) -> Iterator[str]:
    """The same CSV as COPY writes, built in Python (the path for SQLite)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in export.columns])
    zone, columns = export.zone, export.columns
    for row in typed_rows(export):
        writer.writerow(
            [
                iso(v, zone) if c.kind == TS else ("" if v is None else _cell(v) if c.free else v)
                for v, c in zip(row, columns, strict=True)
            ]
        )
        export.rows += 1
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield TRAILER.format(rows=export.rows)


def intelmq_event(export: Export, row: tuple[Any, ...]) -> dict[str, Any]:
    """One row as an IntelMQ event: harmonised names where IntelMQ has them, `extra.*` else."""
    zone = export.zone
    values = {c.name: v for c, v in zip(export.columns, row, strict=True)}
    event: dict[str, Any] = {
        "feed.name": "Secure Your Server",
        "classification.taxonomy": "vulnerable",
        "classification.type": "vulnerable-system",
    }
    if export.shape == "findings":
        event.update(
            {
                "classification.identifier": INTELMQ_IDENTIFIERS.get(
                    values["kind_code"], "open-service"
                ),
                "source.ip": values["ip"],
                "source.port": values["port"],
                "source.reverse_dns": values["reverse_dns"],
                "source.asn": values["asn"],
                "source.geolocation.cc": values["server_country"],
                "protocol.application": values["kind_code"],
                "protocol.transport": "tcp",
                "time.source": iso(values["probed_at"], zone),
            }
        )
        skip = {"ip", "port", "reverse_dns", "asn", "server_country", "probed_at"}
    else:
        kinds = (values["kind_codes"] or "").split()
        event.update(
            {
                "classification.identifier": INTELMQ_IDENTIFIERS.get(
                    kinds[0] if kinds else "", "open-service"
                ),
                "source.abuse_contact": values["contact"],
                "source.geolocation.cc": values["owner_country"] or None,
                "time.source": iso(values["opened_at"], zone),
            }
        )
        skip = {"contact"}
    for column in export.columns:
        if column.name in skip:
            continue
        value = values[column.name]
        if column.kind == TS:
            value = iso(value, zone) or None
        event[f"extra.{column.name}"] = value
    return {k: v for k, v in event.items() if v is not None and v != ""}


def json_lines(export: Export) -> Iterator[str]:
    """JSON Lines: one IntelMQ event a line (IntelMQ's JSON parser with `splitlines`)."""
    for row in typed_rows(export):
        export.rows += 1
        yield json.dumps(intelmq_event(export, row), ensure_ascii=False) + "\n"
