"""Partners' case lists as CSV, JSON or XLSX, streamed from the scoped queryset."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.db.models import Count, QuerySet

from campaign.models import Case

COLUMNS = [
    "reference",
    "status",
    "partner",
    "campaign",
    "owner",
    "owner_country",
    "language",
    "first_contact",
    "servers",
    "strongest_verdict",
    "findings",
    "opened_at",
    "status_changed_at",
]
VERDICT_ORDER = [
    "confirmed-open",
    "likely-open",
    "likely-open-weak",
    "inconclusive",
    "auth-required",
    "closed",
    "not-applicable",
]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): owner
# names and hostnames come from RDAP and banners, which anyone can write.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_queryset(cases: QuerySet[Case]) -> QuerySet[Case]:
    return (
        cases.select_related("partner", "campaign", "server_owner")
        .prefetch_related("server_owner__contacts", "findings__target")
        .annotate(finding_count=Count("findings", distinct=True))
        .order_by("reference")
    )


def case_rows(cases: QuerySet[Case], *, chunk_size: int = 500) -> Iterator[dict[str, Any]]:
    for case in export_queryset(cases).iterator(chunk_size=chunk_size):
        findings = list(case.findings.all())
        contacts = sorted(case.server_owner.contacts.all(), key=lambda c: c.position)
        verdicts = [f.verdict for f in findings if f.verdict in VERDICT_ORDER]
        yield {
            "reference": case.reference,
            "status": case.status,
            "partner": case.partner.country,
            "campaign": case.campaign.slug,
            "owner": case.server_owner.name,
            "owner_country": case.server_owner.country,
            "language": case.language,
            "first_contact": contacts[0].email if contacts else "",
            "servers": " ".join(sorted({str(f.target) for f in findings})),
            "strongest_verdict": min(verdicts, key=VERDICT_ORDER.index) if verdicts else "",
            "findings": case.finding_count,
            "opened_at": case.opened_at.isoformat(),
            "status_changed_at": case.status_changed_at.isoformat(),
        }


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One CSV line at a time, for StreamingHttpResponse and stdout alike."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def json_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A JSON array, streamed element by element."""
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + "\n" + json.dumps(row, ensure_ascii=False)
    yield "\n]\n"


def write_xlsx(rows: Iterable[dict[str, Any]], out: IO[bytes]) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)  # rows go to disk as they come: bounded memory
    sheet = workbook.create_sheet("cases")
    sheet.append(COLUMNS)
    for row in rows:
        sheet.append([_cell(row[c]) for c in COLUMNS])
    workbook.save(out)
