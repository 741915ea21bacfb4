"""One export (scoped cases, shape, format, time zone) and where its rows come from."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.utils import timezone

from campaign.exports import rows as row_source
from campaign.exports.columns import COLUMNS, FORMATS, SHAPES, Column
from campaign.exports.sql import pg_copy_csv
from campaign.exports.text import csv_lines, json_lines
from campaign.exports.xlsx import xlsx_stream
from campaign.models import Case, Partner


@dataclass
class Export:
    """One export: the scoped cases it covers, its shape and format, and its time zone."""

    cases: QuerySet[Case]
    shape: str = "cases"
    fmt: str = "csv"
    partner_code: str = "all"
    time_zone: str = "UTC"
    rows: int = field(default=0, init=False)  # rows written so far; final once streamed

    @property
    def columns(self) -> list[Column]:
        return COLUMNS[self.shape]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def filename(self, today: dt.date | None = None) -> str:
        day = today or timezone.now().astimezone(self.zone).date()
        return f"sys-{self.partner_code}-{self.shape}-{day.isoformat()}.{self.fmt}"

    def count(self) -> int:
        """How many rows the export will hold: the client checks the file against it."""
        scope = self.cases.order_by().values("pk")
        if self.shape == "cases":
            return scope.count()
        return Case.findings.through.objects.filter(case_id__in=scope).count()

    def stream(self) -> Iterator[bytes]:
        if self.fmt == "csv":
            return self._csv()
        if self.fmt == "json":
            return self._encoded(json_lines(self))
        return xlsx_stream(self)

    def _csv(self) -> Iterator[bytes]:
        if row_source.on_postgresql():
            return pg_copy_csv(self)
        return self._encoded(csv_lines(self))

    @staticmethod
    def _encoded(lines: Iterable[str]) -> Iterator[bytes]:
        buffered: list[str] = []
        size = 0
        for line in lines:
            buffered.append(line)
            size += len(line)
            if size >= 64 * 1024:
                yield "".join(buffered).encode()
                buffered, size = [], 0
        if buffered:
            yield "".join(buffered).encode()


def export_for(
    cases: QuerySet[Case], *, shape: str = "cases", fmt: str = "csv", partner: Partner | None = None
) -> Export:
    """An export of these (already scoped) cases, dated in the zone of the partner they belong
    to: the one given, else the only one among the cases, else the lead agency's."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, not {shape!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if partner is None:
        ids = list(cases.order_by().values_list("partner_id", flat=True).distinct()[:2])
        if len(ids) == 1:
            partner = Partner.objects.get(pk=ids[0])
    if partner is not None:
        return Export(cases, shape, fmt, partner.country, partner.time_zone)
    lead = Partner.objects.filter(is_lead=True).values_list("time_zone", flat=True).first()
    return Export(cases, shape, fmt, "all", lead or "UTC")
