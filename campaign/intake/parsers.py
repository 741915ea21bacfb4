"""Which parser reads a file: the format given, or guessed from the name and the first bytes."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from typing import IO

from campaign.intake import csvfiles, spam
from campaign.intake.records import FileRejected, Item

FORMATS = ("csv", "shadowserver", "eml", "mbox")
HEAD_BYTES = 64 * 1024

MAGIC = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook? save it as CSV)"),
    (b"\x1f\x8b", "gzip-compressed (decompress it first)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def reject_binary(head: bytes, file_name: str) -> None:
    for magic, what in MAGIC:
        if head.startswith(magic):
            raise FileRejected(f"{file_name} is {what}, not a CSV file or spam sample.")
    if b"\x00" in head:
        raise FileRejected(f"{file_name} is a binary file, not a CSV file or spam sample.")


def _header_columns(head: bytes) -> list[str]:
    for raw in head.lstrip(b"\xef\xbb\xbf").splitlines():
        if raw.strip():
            line = raw.decode("utf-8", "replace")
            row = next(csv.reader([line], delimiter=csvfiles._dialect(line)), [])
            return [c.strip().strip('"').strip().lower() for c in row]
    return []


def guess_format(file_name: str, head: bytes) -> str:
    name = os.path.basename(file_name).lower()
    report = csvfiles.shadowserver_report(name)
    if report is not None:
        return "shadowserver"
    if name.endswith(".eml"):
        return "eml"
    if name.endswith((".mbox", ".mbx")):
        return "mbox"
    text = head.lstrip(b"\r\n")
    if text.startswith(b"From "):
        # An .eml saved with its mbox separator still holds one message; either reader works.
        return "mbox"
    if spam.looks_like_message(text):
        return "eml"
    columns = _header_columns(head)
    if csvfiles.looks_like_shadowserver(columns):
        return "shadowserver"
    if "ip" in columns or name.endswith(".csv"):
        return "csv"
    raise FileRejected(
        f"Could not tell the format of {file_name}: not a CSV with an 'ip' column, a "
        "Shadowserver report, an e-mail message or an mbox. Give --format."
    )


def open_items(
    handle: IO[bytes], *, file_name: str, format: str | None, own_domains: Iterable[str] = ()
) -> tuple[str, Iterator[Item]]:
    """The format and the parsed items; raises FileRejected before anything is read past."""
    chosen, head = checked_format(handle, file_name=file_name, format=format)
    return chosen, parsed_items(
        handle, fmt=chosen, file_name=file_name, head=head, own_domains=own_domains
    )


def parsed_items(
    handle: IO[bytes], *, fmt: str, file_name: str, head: bytes, own_domains: Iterable[str] = ()
) -> Iterator[Item]:
    """The file's items in a format checked_format chose, read in Python."""
    if fmt == "csv":
        return csvfiles.csv_items(handle, file_name)
    if fmt == "shadowserver":
        return csvfiles.shadowserver_items(handle, file_name)
    return spam.spam_items(
        handle, file_name, mbox=fmt == "mbox", own_domains=own_domains, head=head
    )


def checked_format(handle: IO[bytes], *, file_name: str, format: str | None) -> tuple[str, bytes]:
    """The file's format and its first bytes, the handle back at the start; FileRejected if it
    is none of ours."""
    head = handle.read(HEAD_BYTES)
    handle.seek(0)
    if not head.strip():
        raise FileRejected(f"{file_name} is empty.")
    reject_binary(head, file_name)
    if format is not None and format not in FORMATS:
        raise FileRejected(f"Unknown format {format!r}: one of {', '.join(FORMATS)}.")
    chosen = format or guess_format(file_name, head)
    if chosen in ("csv", "shadowserver") and head.lstrip(b"\r\n").startswith(b"From "):
        raise FileRejected(f"{file_name} is an mbox of e-mail messages, not a CSV file.")
    if chosen in ("csv", "shadowserver") and spam.looks_like_message(head):
        raise FileRejected(f"{file_name} is an e-mail message, not a CSV file.")
    return chosen, head
