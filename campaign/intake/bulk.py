"""PostgreSQL's path for suspect lists and Shadowserver reports: PostgreSQL parses and checks.

Python reads the file once, line by line, and hands each record to `COPY` with its line number:
a plain line (no quotes, escapes or stray bytes, the header's number of fields) goes as it is, any
other record is read by Python's csv module first. PostgreSQL then checks every field of a chunk
with set-based SQL (bulk_sql); the few rows that fail are read back and judged by the same Python
code as SQLite's path, so a bad line is reported with the same line number and reason, and what
Python accepts in a form SQL does not (IPv6, "AS64500") is stored as Python normalises it. Each
chunk is merged into Target in line order and committed: memory stays flat whatever the file.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from django.db import connection, transaction

from campaign.intake import bulk_sql
from campaign.intake.csvfiles import (
    MAX_LINE_BYTES,
    _Rows,
    checked_record,
    csv_extra_columns,
    csv_row_item,
    csv_rows,
    shadowserver_row_item,
    shadowserver_rows,
)
from campaign.intake.records import Item, RowError, Suspect

FORMATS = ("csv", "shadowserver")
CHUNK_ROWS = 50_000  # records per COPY, check and merge; one transaction each
WRITE_LINES = 2_000  # lines per write to COPY
FETCH_ROWS = 500  # rows SQL did not accept, read back and judged at a time

# (rows kept, the chunk's rejected rows in line order): after each chunk is committed.
ChunkDone = Callable[[int, list[RowError]], None]


class _Records:
    """The records after the header: plain lines as COPY text lines, anything else as Python
    reads it (a record for COPY, or the Item the Python check makes of it)."""

    def __init__(
        self,
        handle: IO[bytes],
        rows: _Rows,
        validate: Callable[[int, list[str]], Item],
        line_pattern: re.Pattern[bytes] | None = None,
    ) -> None:
        """With a line_pattern, a plain line is staged only if it matches, and every other
        record is judged here by `validate`; without one, SQL checks what is staged."""
        self.handle = handle
        self.line_pattern = line_pattern
        self.number = rows.header_line
        self.width = len(rows.columns)
        self.delimiter = rows.delimiter
        self.validate = validate
        self.overlong: set[int] = set()
        self.pending: str | None = None
        self.reader = csv.reader(self._texts(), delimiter=rows.delimiter)

    def _read(self) -> bytes:
        """The next line, numbered; one longer than MAX_LINE_BYTES is read past (as csvfiles)."""
        raw = self.handle.readline(MAX_LINE_BYTES)
        if not raw:
            return raw
        self.number += 1
        if len(raw) >= MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = self.handle.readline(MAX_LINE_BYTES)
            self.overlong.add(self.number)
            return b"\n"
        return raw

    def _texts(self) -> Iterator[str]:
        """The csv reader's lines: the one set aside for it, then (a quoted field going on)
        the file's next ones."""
        while True:
            if self.pending is not None:
                text, self.pending = self.pending, None
                yield text
                continue
            raw = self._read()
            if not raw:
                return
            yield raw.decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[bytes | Item]:
        delimiter = self.delimiter.encode()
        separators = self.width - 1
        retab = delimiter != b"\t"
        matches = self.line_pattern.fullmatch if self.line_pattern else None
        while raw := self._read():
            body = raw.removesuffix(b"\n").removesuffix(b"\r")
            if (
                body.count(delimiter) == separators
                and b'"' not in body
                and b"\\" not in body
                and b"\r" not in body
                and b"\x00" not in body
                and not (retab and b"\t" in body)
                and (body.isascii() or _is_utf8(body))
                and (matches is None or matches(body))
            ):
                if not body.replace(delimiter, b"").strip():
                    continue  # a blank line, or only separators
                fields = body.replace(delimiter, b"\t") if retab else body
                yield b"%d\t%b\n" % (self.number, fields)
            else:
                yield from self._record(raw)

    def _record(self, raw: bytes) -> Iterator[bytes | Item]:
        start = self.number
        if start in self.overlong and raw == b"\n":
            self.overlong.discard(start)
            yield RowError(start, "line longer than 1 MB")
            return
        self.pending = raw.decode("utf-8", "surrogateescape")
        try:
            row = next(self.reader)
        except csv.Error as exc:
            yield RowError(start, f"unreadable CSV: {exc}")
            return
        done = self.number
        long_line = min((n for n in self.overlong if start <= n <= done), default=None)
        if long_line is not None:
            self.overlong = {n for n in self.overlong if n > done}
            yield RowError(long_line, "line longer than 1 MB")
            return
        checked = checked_record(start, row)
        if checked is None:
            return
        if isinstance(checked, RowError) or len(row) != self.width or self.line_pattern:
            # Fields missing or to spare: rare, and Python knows which of them matter.
            yield checked if isinstance(checked, RowError) else self.validate(start, row)
            return
        yield f"{start}\t{_copy_text(row)}\n".encode()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _copy_text(row: list[str]) -> str:
    """The fields as one line of COPY's text format."""
    text = "\t".join(row)
    if text.count("\t") == len(row) - 1 and not any(c in text for c in "\\\n\r"):
        return text
    return "\t".join(
        v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        for v in row
    )


def run(
    handle: IO[bytes],
    *,
    fmt: str,
    file_name: str,
    batch_id: int,
    now: datetime,
    chunk_done: ChunkDone,
) -> None:
    """Stage, check and merge the file chunk by chunk; FileRejected before anything is stored."""
    line_pattern = None
    if fmt == "shadowserver":
        rows, report = shadowserver_rows(handle, file_name)
        columns = rows.columns
        checks = bulk_sql.shadowserver_checks(columns, report)

        def validate(line: int, row: list[str]) -> Item:
            return shadowserver_row_item(line, row, columns, report)

    else:
        rows = csv_rows(handle, file_name)
        columns = rows.columns
        extra = csv_extra_columns(columns)
        checks = bulk_sql.csv_values(columns)
        line_pattern = bulk_sql.csv_line_pattern(columns, rows.delimiter)

        def validate(line: int, row: list[str]) -> Item:
            return csv_row_item(line, row, columns, extra)

    records = iter(_Records(handle, rows, validate, line_pattern))
    merge = bulk_sql.merge_sql(checks)
    fields = ", ".join(f"r.f{i}" for i in range(len(columns)))
    failed_sql = f"SELECT r.line, {fields} FROM intake_raw r WHERE ({checks.where}) IS NOT TRUE"
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor: Django's has no copy()
            _stage_tables(raw, len(columns))
            staged, accepted, errors = _stage_chunk(raw, records)
            if not staged and not accepted and not errors:
                return
            failed = judged = 0
            if checks.where:
                failed, judged = _judge_failed(raw, failed_sql, validate, errors)
            raw.execute(merge, {"now": now, "batch": batch_id})
        errors.sort(key=_line)
        chunk_done(staged - failed + judged + accepted, errors)


def _judge_failed(
    raw: Any, failed_sql: str, validate: Callable[[int, list[str]], Item], errors: list[RowError]
) -> tuple[int, int]:
    """Python's verdict on the staged rows SQL did not accept, read a few thousand at a time:
    how many there were, and how many Python accepted (staged for the merge); the rest's
    reasons are added to `errors`."""
    failed = accepted = 0
    with raw.connection.cursor(name="intake_failed") as rows:
        rows.execute(failed_sql, {})
        while batch := rows.fetchmany(FETCH_ROWS):
            failed += len(batch)
            suspects = []
            for line, *values in batch:
                checked = checked_record(line, values)
                item = validate(line, values) if isinstance(checked, list) else checked
                if isinstance(item, Suspect):
                    suspects.append(item)
                elif item is not None:
                    errors.append(item)
            _stage_checked(raw, suspects)
            accepted += len(suspects)
    return failed, accepted


def _line(error: RowError) -> int:
    return error.line


def _stage_tables(raw: Any, width: int) -> None:
    fields = ", ".join(f"f{i} text" for i in range(width))
    for statement in (
        # Dropped with the chunk's transaction; inside a caller's (a test's) one, here.
        "DROP TABLE IF EXISTS intake_raw, intake_checked",
        f"CREATE TEMPORARY TABLE intake_raw (line integer, {fields}) ON COMMIT DROP",
        "CREATE TEMPORARY TABLE intake_checked (line integer, ip inet, port integer, "
        "protocol text, hostname text, asn bigint, country text, seen timestamptz, "
        "source text, data jsonb) ON COMMIT DROP",
        # Hashing a chunk in memory; JIT compiling costs more than these statements save.
        "SET LOCAL work_mem = '128MB'",
        "SET LOCAL jit = off",
    ):
        raw.execute(statement)


def _stage_chunk(raw: Any, records: Iterator[bytes | Item]) -> tuple[int, int, list[RowError]]:
    """Up to CHUNK_ROWS records staged: (lines for SQL to check, rows Python accepted, rows
    Python rejected). What Python accepted is staged every FETCH_ROWS rows, so memory stays
    flat even when most rows take Python's path."""
    staged = accepted = 0
    errors: list[RowError] = []
    finished = False
    while not finished and staged + accepted + len(errors) < CHUNK_ROWS:
        suspects: list[Suspect] = []
        lines: list[bytes] = []
        finished = True
        with raw.copy("COPY intake_raw FROM STDIN") as copy:
            for record in records:
                if isinstance(record, bytes):
                    lines.append(record)
                    if len(lines) >= WRITE_LINES:
                        copy.write(b"".join(lines))
                        staged += len(lines)
                        lines = []
                elif isinstance(record, Suspect):
                    suspects.append(record)
                else:
                    errors.append(record)
                count = staged + len(lines) + accepted + len(suspects) + len(errors)
                if count >= CHUNK_ROWS or len(suspects) >= FETCH_ROWS:
                    finished = False
                    break
            if lines:
                copy.write(b"".join(lines))
                staged += len(lines)
        _stage_checked(raw, suspects)
        accepted += len(suspects)
    return staged, accepted, errors


def _stage_checked(raw: Any, suspects: list[Suspect]) -> None:
    if not suspects:
        return
    columns = "line, ip, port, protocol, hostname, asn, country, seen, source, data"
    with raw.copy(f"COPY intake_checked ({columns}) FROM STDIN") as copy:
        for s in suspects:
            copy.write_row(
                (
                    s.line,
                    s.ip,
                    s.port,
                    s.protocol,
                    s.hostname,
                    s.asn,
                    s.country,
                    s.seen,
                    s.source,
                    json.dumps(s.source_data),
                )
            )
