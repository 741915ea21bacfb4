"""Plain CSV suspect lists and Shadowserver report CSVs, read as a stream."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

from campaign.intake.addresses import (
    PORT_PROTOCOLS,
    BadValue,
    normalize_ip,
    parse_asn,
    parse_country,
    parse_port,
    parse_protocol,
)
from campaign.intake.records import FileRejected, Item, RowError, Suspect

MAX_LINE_BYTES = 1 << 20  # a "line" longer than this is split, so memory stays bounded
CSV_COLUMNS = ("ip", "port", "protocol", "hostname", "asn", "country", "first_seen", "source")

# Shadowserver names its files YYYY-MM-DD-<report type>-<identifier>.csv (report_schema's
# report-filename.md). The reports about open proxies and accessible SMTP, IPv4 and IPv6:
SHADOWSERVER_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-([^-]+)-.+\.csv$", re.IGNORECASE)
SHADOWSERVER_REPORTS = {
    "scan_http_proxy": "http",
    "scan6_http_proxy": "http",
    "scan_socks": "socks",
    "scan6_socks": "socks",
    "scan_smtp": "smtp",
    "scan6_smtp": "smtp",
}
SHADOWSERVER_REQUIRED = ("timestamp", "ip", "port")


def shadowserver_report(file_name: str) -> str | None:
    match = SHADOWSERVER_NAME.match(os.path.basename(file_name))
    return match.group(2).lower() if match else None


def looks_like_shadowserver(columns: list[str]) -> bool:
    return all(c in columns for c in SHADOWSERVER_REQUIRED) and (
        "geo" in columns or "tag" in columns
    )


def text_lines(handle: IO[bytes], overlong: set[int] | None = None) -> Iterator[str]:
    """Decoded lines; bytes that are not UTF-8 survive as surrogates and fail their row only.

    A line longer than MAX_LINE_BYTES is read past and given as an empty line, its number added
    to `overlong`: one line, one error, and the lines after it keep their numbers.
    """
    first = True
    for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES), b""), start=1):
        if first:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
            first = False
        if len(raw) >= MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_BYTES)
            if overlong is not None:
                overlong.add(number)
            yield "\n"
            continue
        yield raw.decode("utf-8", "surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _undecodable(values: list[str]) -> bool:
    return any(_SURROGATE.search(v) for v in values)


def _dialect(header_line: str) -> str:
    if "," not in header_line:
        for delimiter in (";", "\t"):
            if delimiter in header_line:
                return delimiter
    return ","


def parse_time(raw: str) -> datetime | None:
    text = raw.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace(" UTC", "").replace(" GMT", ""))
        # In UTC, as stored: 0001-01-01T00:00+14:00 is a year before year 1.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadValue(f"bad timestamp {text[:40]!r} (ISO 8601: 2026-11-20 13:45:00)") from None


class _Rows:
    """csv.reader over the file, with the line each record starts on and its header."""

    def __init__(self, handle: IO[bytes], file_name: str) -> None:
        self.overlong: set[int] = set()
        self.lines = text_lines(handle, self.overlong)
        self.header_line = 0
        header: list[str] | None = None
        for number, line in enumerate(self.lines, start=1):
            if number in self.overlong:
                raise FileRejected(f"{file_name}: the header line is longer than 1 MB.")
            if line.strip():
                self.header_line = number
                if _undecodable([line]):
                    raise FileRejected(
                        f"{file_name}: the header line is not UTF-8 text; is it a CSV file?"
                    )
                delimiter = _dialect(line)
                try:
                    header = next(csv.reader([line], delimiter=delimiter))
                except csv.Error as exc:  # lines ended by a bare CR (old Mac Excel), a NUL
                    raise FileRejected(
                        f"{file_name}: the header line is unreadable ({exc}); save the file "
                        "as CSV with Windows or Unix line ends."
                    ) from None
                break
        if header is None:
            raise FileRejected(f"{file_name} is empty: no header line.")
        self.delimiter = delimiter
        self.columns = [c.strip().strip('"').strip().lower() for c in header]

    def __iter__(self) -> Iterator[tuple[int, list[str] | RowError]]:
        reader = csv.reader(self.lines, delimiter=self.delimiter)
        done = self.header_line
        while True:
            start = done + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                done = self.header_line + reader.line_num
                yield start, RowError(start, f"unreadable CSV: {exc}")
                continue
            done = self.header_line + reader.line_num
            long_line = next((n for n in sorted(self.overlong) if start <= n <= done), None)
            if long_line is not None:
                self.overlong -= {n for n in self.overlong if n <= done}
                yield long_line, RowError(long_line, "line longer than 1 MB")
                continue
            checked = checked_record(start, row)
            if checked is not None:
                yield start, checked


def checked_record(start: int, row: list[str]) -> list[str] | RowError | None:
    """The record as read, what makes it unusable, or None for a blank one (skipped)."""
    if not row or not any(v.strip() for v in row):
        return None
    if _undecodable(row):
        return RowError(start, "undecodable bytes (the file must be UTF-8)")
    if any("\x00" in v for v in row):  # PostgreSQL stores no NUL in text or JSON
        return RowError(start, "NUL byte in the row (the file must be text)")
    return row


REQUIRED_COLUMNS = ("ip", "port")


def _field(columns: list[str], row: list[str], name: str) -> str:
    try:
        index = columns.index(name)
    except ValueError:
        return ""
    if index >= len(row):
        # Spreadsheets drop empty trailing cells: only a missing ip or port spoils the row.
        if name in REQUIRED_COLUMNS:
            raise BadValue(f"missing column {name!r}")
        return ""
    return row[index]


def csv_items(handle: IO[bytes], file_name: str) -> Iterator[Item]:
    rows = csv_rows(handle, file_name)
    return _csv_items(rows, rows.columns, csv_extra_columns(rows.columns))


def csv_rows(handle: IO[bytes], file_name: str) -> _Rows:
    """A suspect list's records after its header, once the header names what a list needs."""
    rows = _Rows(handle, file_name)
    columns = rows.columns
    if "ip" not in columns:
        raise FileRejected(
            f"{file_name} is not a suspect list: its header has no 'ip' column "
            f"(found: {', '.join(columns[:8]) or 'nothing'}). Expected: {', '.join(CSV_COLUMNS)}."
        )
    if "port" not in columns:
        raise FileRejected(f"{file_name} has an 'ip' column but no 'port' column.")
    return rows


def _csv_items(rows: _Rows, columns: list[str], extra: list[str]) -> Iterator[Item]:
    for line, row in rows:
        yield row if isinstance(row, RowError) else csv_row_item(line, row, columns, extra)


def csv_extra_columns(columns: list[str]) -> list[str]:
    """The columns of a suspect list kept as they are in the target's source_data."""
    return [c for c in columns if c and c not in CSV_COLUMNS and c != "last_seen"]


def csv_row_item(line: int, row: list[str], columns: list[str], extra: list[str]) -> Item:
    """One record of a suspect list, checked: the suspect, or what is wrong with it."""
    try:
        ip = normalize_ip(_field(columns, row, "ip"))
        port = parse_port(_field(columns, row, "port"))
        first_seen = parse_time(_field(columns, row, "first_seen"))
        last_seen = parse_time(_field(columns, row, "last_seen"))
        suspect = Suspect(
            line=line,
            ip=ip,
            port=port,
            protocol=parse_protocol(_field(columns, row, "protocol"), port),
            seen=first_seen or last_seen,
            hostname=_field(columns, row, "hostname").strip()[:255],
            asn=parse_asn(_field(columns, row, "asn")),
            country=parse_country(_field(columns, row, "country")),
            source=_field(columns, row, "source").strip()[:100] or "csv",
        )
    except BadValue as exc:
        return RowError(line, str(exc))
    kept = {c: row[columns.index(c)] for c in extra if columns.index(c) < len(row)}
    kept = {k: v for k, v in kept.items() if v}
    if last_seen and first_seen and last_seen > first_seen:
        kept["last_seen"] = last_seen.isoformat()
    if kept:
        suspect.source_data = {"csv": kept}
    return suspect


def _socks_protocol(tag: str) -> str:
    tags = tag.lower()
    return "socks5" if "socks5" in tags else "socks4" if "socks4" in tags else "socks5"


def _protocol_from_tag(tag: str, port: int) -> str:
    tags = tag.lower()
    if "socks" in tags:
        return _socks_protocol(tags)
    if "smtp" in tags:
        return "smtp"
    if "proxy" in tags or "http" in tags:
        return "http"
    return PORT_PROTOCOLS.get(port, "unknown")


def shadowserver_items(handle: IO[bytes], file_name: str) -> Iterator[Item]:
    rows, report = shadowserver_rows(handle, file_name)
    return _shadowserver_items(rows, rows.columns, report)


def shadowserver_rows(handle: IO[bytes], file_name: str) -> tuple[_Rows, str | None]:
    """A report's records after its header, and which report it is (from the file name)."""
    report = shadowserver_report(file_name)
    if report is not None and report not in SHADOWSERVER_REPORTS:
        raise FileRejected(
            f"{file_name} is a Shadowserver '{report}' report; only these are suspects: "
            f"{', '.join(sorted(SHADOWSERVER_REPORTS))}."
        )
    rows = _Rows(handle, file_name)
    columns = rows.columns
    missing = [c for c in SHADOWSERVER_REQUIRED if c not in columns]
    if missing:
        raise FileRejected(
            f"{file_name} is not a Shadowserver report: its header has no "
            f"{', '.join(repr(c) for c in missing)} column(s) "
            f"(found: {', '.join(columns[:8]) or 'nothing'})."
        )
    return rows, report


def _shadowserver_items(rows: _Rows, columns: list[str], report: str | None) -> Iterator[Item]:
    for line, row in rows:
        if isinstance(row, RowError):
            yield row
        else:
            yield shadowserver_row_item(line, row, columns, report)


def shadowserver_source(report: str | None) -> str:
    return f"shadowserver:{report}" if report else "shadowserver"


def shadowserver_row_item(
    line: int, row: list[str], columns: list[str], report: str | None
) -> Item:
    """One record of a Shadowserver report, checked: the suspect, or what is wrong with it."""
    kind = SHADOWSERVER_REPORTS.get(report or "")
    try:
        ip = normalize_ip(_field(columns, row, "ip"))
        port = parse_port(_field(columns, row, "port"))
        seen = parse_time(_field(columns, row, "timestamp"))
        tag = _field(columns, row, "tag")
    except BadValue as exc:
        return RowError(line, str(exc))
    if kind == "socks":
        protocol = _socks_protocol(tag)
    elif kind is not None:
        protocol = kind
    else:
        protocol = _protocol_from_tag(tag, port)
    try:
        asn = parse_asn(_field(columns, row, "asn"))
    except BadValue:
        asn = None  # Shadowserver's enrichment, not the finding: a bad value is dropped
    try:
        country = parse_country(_field(columns, row, "geo"))
    except BadValue:
        country = ""
    kept: dict[str, object] = {c: v for c, v in zip(columns, row, strict=False) if c and v != ""}
    if report:
        kept["report"] = report
    return Suspect(
        line=line,
        ip=ip,
        port=port,
        protocol=protocol,
        seen=seen,
        hostname=_field(columns, row, "hostname").strip()[:255],
        asn=asn,
        country="" if country == "ZZ" else country,
        source=shadowserver_source(report),
        source_data={"shadowserver": kept},
    )
