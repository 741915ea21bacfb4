"""XLSX written as a stream: openpyxl's write-only workbook as a skeleton, rows in between."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from campaign.exports.columns import INT, TS
from campaign.exports.rows import typed_rows

if TYPE_CHECKING:
    from campaign.exports.export import Export


# XML 1.0 forbids most control characters; banners and RDAP names may hold them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)


class _Sink:
    """A write-only file for zipfile: what is written waits here until the response takes it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index))


def _skeleton(export: Export) -> tuple[dict[str, bytes], str, bytes, bytes, dict[int, str]]:
    """A finished one-row workbook from openpyxl (styles, frozen header, filter, widths), taken
    apart so the rows between its header and its tail can be streamed."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill

    columns = export.columns
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(export.shape)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{_column_letter(len(columns))}1"
    for i, column in enumerate(columns, start=1):
        sheet.column_dimensions[_column_letter(i)].width = column.width
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=column.name)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="1F4E78")
        cell.alignment = Alignment(vertical="center")
        header.append(cell)
    sheet.append(header)
    sample = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=dt.datetime(2000, 1, 1) if column.kind == TS else 0)
        if column.kind == TS:
            cell.number_format = "yyyy-mm-dd hh:mm:ss"
        sample.append(cell)
    sheet.append(sample)
    buffer = io.BytesIO()
    workbook.save(buffer)
    parts: dict[str, bytes] = {}
    sheet_name = ""
    with zipfile.ZipFile(buffer) as archive:
        for name in archive.namelist():
            parts[name] = archive.read(name)
            if name.startswith("xl/worksheets/sheet"):
                sheet_name = name
    xml = parts.pop(sheet_name)
    head, rest = xml.split(b"<sheetData>", 1)
    rows_xml, tail = rest.split(b"</sheetData>", 1)
    head = re.sub(rb"<dimension [^>]*/>", b"", head)
    header_row, sample_row = rows_xml.split(b"</row>", 1)
    styles: dict[int, str] = {}
    for match in re.finditer(rb'<c r="([A-Z]+)2"([^>]*)>', sample_row):
        style = re.search(rb's="(\d+)"', match.group(2))
        if style:
            styles[len(styles)] = style.group(1).decode()
        else:
            styles[len(styles)] = ""
    return parts, sheet_name, head + b"<sheetData>" + header_row + b"</row>", tail, styles


def _xlsx_row(number: int, row: tuple[Any, ...], export: Export, styles: dict[int, str]) -> str:
    zone = export.zone
    cells = []
    for i, (column, value) in enumerate(zip(export.columns, row, strict=True)):
        if value is None or value == "":
            continue
        ref = f"{_column_letter(i + 1)}{number}"
        if column.kind == TS:
            local = value.astimezone(zone).replace(tzinfo=None, microsecond=0)
            serial = (local - _EXCEL_EPOCH).total_seconds() / 86400
            cells.append(f'<c r="{ref}" s="{styles[i]}"><v>{serial!r}</v></c>')
        elif column.kind == INT:
            cells.append(f'<c r="{ref}"><v>{int(value)}</v></c>')
        else:
            text = escape(_XML_ILLEGAL.sub("", str(value)))
            space = ' xml:space="preserve"' if text != text.strip() else ""
            cells.append(f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>')
    return f'<row r="{number}">{"".join(cells)}</row>'


def xlsx_stream(export: Export) -> Iterator[bytes]:
    """A workbook streamed as a zip: the first bytes leave before the first row is read, memory
    stays flat, and a cut download is an unreadable file (no zip directory), never a short one."""
    parts, sheet_name, head, tail, styles = _skeleton(export)
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
        yield sink.take()
        with archive.open(sheet_name, "w", force_zip64=True) as out:
            out.write(head)
            pending: list[str] = []
            number = 1
            for row in typed_rows(export):
                number += 1
                pending.append(_xlsx_row(number, row, export, styles))
                if len(pending) >= 1000:
                    out.write("".join(pending).encode())
                    pending = []
                    if sink.size >= 64 * 1024:
                        yield sink.take()
            out.write("".join(pending).encode())
            export.rows = number - 1
            last = f"{_column_letter(len(export.columns))}{max(number, 1)}"
            ref = f'<autoFilter ref="A1:{last}"'.encode()
            out.write(b"</sheetData>" + re.sub(rb'<autoFilter ref="[^"]*"', ref, tail))
    yield sink.take()
