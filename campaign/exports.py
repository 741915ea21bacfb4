"""Partners' exports: their cases, or every finding of their cases, as CSV, JSON Lines or XLSX.

Two row sources give the same typed rows: one SQL query on PostgreSQL (the CSV comes straight out
of `COPY ... TO STDOUT` with every cell formatted in SQL), and a simpler ORM path elsewhere.
docs/exports.md lists the columns, the IntelMQ field mapping and how a cut file shows.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import re
import zipfile
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaign.models import Case, CaseEvent, Contact, Partner
from scanning.models import EvidenceLevel, Finding, Protocol, Target, Verdict
from scanning.probes.base import VERDICTS_STRONGEST_FIRST

FORMATS = ("csv", "json", "xlsx")
SHAPES = ("cases", "findings")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
TEXT, INT, TS = "text", "int", "ts"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = TEXT
    width: int = 14  # XLSX column width, in characters
    free: bool = False  # text from outside (RDAP, banners, staff): may start like a formula


# What a finding's protocol means to a partner; the code stays in its own column.
KIND_LABELS = {
    Protocol.SMTP: "Open SMTP relay",
    Protocol.HTTP: "Open HTTP proxy",
    Protocol.SOCKS4: "Open SOCKS4/4a proxy",
    Protocol.SOCKS5: "Open SOCKS5 proxy",
    Protocol.UNKNOWN: "Unknown service",
}
KIND_ORDER = [Protocol.SMTP, Protocol.HTTP, Protocol.SOCKS4, Protocol.SOCKS5, Protocol.UNKNOWN]
INTELMQ_IDENTIFIERS = {
    Protocol.SMTP: "open-smtp-relay",
    Protocol.HTTP: "open-http-proxy",
    Protocol.SOCKS4: "open-socks4-proxy",
    Protocol.SOCKS5: "open-socks5-proxy",
    Protocol.UNKNOWN: "open-service",
}
VERDICT_ORDER = [str(verdict) for verdict in VERDICTS_STRONGEST_FIRST]
# The letter's state as the case's audit trail records it (the letters app writes these events).
LETTER_EVENT_STATUS = {
    CaseEvent.Kind.LETTER_QUEUED: "queued",
    CaseEvent.Kind.LETTER_SENT: "sent",
    CaseEvent.Kind.LETTER_DELIVERED: "delivered",
    CaseEvent.Kind.LETTER_BOUNCED: "bounced",
    CaseEvent.Kind.LETTER_COMPLAINED: "complained",
}
LETTER_STATUS_LABELS = {
    "queued": "Queued",
    "sent": "Sent",
    "delivered": "Delivered",
    "bounced": "Bounced",
    "complained": "Complaint",
    "failed": "Failed",
}
# Exports are written in English: the labels are plain strings, even where the model's are lazy.
STATUS_LABELS = {code: str(label) for code, label in Case.Status.choices}
VERDICT_LABELS = {code: str(label) for code, label in Verdict.choices}
EVIDENCE_LABELS = {code: str(label) for code, label in EvidenceLevel.choices}

CASE_COLUMNS = [
    Column("reference", width=16),
    Column("status", width=14),
    Column("status_code", width=12),
    Column("partner", width=8),
    Column("campaign", width=12, free=True),
    Column("owner", width=30, free=True),
    Column("owner_country", width=8),
    Column("language", width=8),
    Column("contact", width=30, free=True),
    Column("servers", INT, 8),
    Column("findings", INT, 8),
    Column("kinds", width=24),
    Column("kind_codes", width=12),
    Column("strongest_verdict", width=18),
    Column("strongest_verdict_code", width=16),
    Column("letter_status", width=12),
    Column("letter_status_code", width=10),
    Column("letter_sent_at", TS, 20),
    Column("letter_delivered_at", TS, 20),
    Column("letter_bounced_at", TS, 20),
    Column("reminder_sent_at", TS, 20),
    Column("last_check_at", TS, 20),
    Column("last_check_result", width=18),
    Column("last_check_result_code", width=16),
    Column("fixed_at", TS, 20),
    Column("escalated_at", TS, 20),
    Column("next_deadline", TS, 20),
    Column("opened_at", TS, 20),
    Column("status_changed_at", TS, 20),
]
FINDING_COLUMNS = [
    Column("case", width=16),
    Column("partner", width=8),
    Column("owner", width=30, free=True),
    Column("ip", width=18),
    Column("port", INT, 7),
    Column("kind", width=20),
    Column("kind_code", width=9),
    Column("transport", width=12),
    Column("verdict", width=18),
    Column("verdict_code", width=16),
    Column("evidence_level", width=18),
    Column("evidence_level_code", width=10),
    Column("software", width=18, free=True),
    Column("reverse_dns", width=28, free=True),
    Column("asn", INT, 10),
    Column("server_country", width=8),
    Column("probed_at", TS, 20),
    Column("first_seen", TS, 20),
    Column("last_seen", TS, 20),
    Column("last_check_at", TS, 20),
    Column("last_check_result", width=18),
    Column("last_check_result_code", width=16),
]
COLUMNS = {"cases": CASE_COLUMNS, "findings": FINDING_COLUMNS}

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): owner
# names and hostnames come from RDAP and banners, which anyone can write.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TRAILER = "# complete: {rows} rows\n"


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
        if on_postgresql():
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


# --- Typed rows ---------------------------------------------------------------------------------
def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def typed_rows(export: Export) -> Iterator[tuple[Any, ...]]:
    """Rows in column order: str, int, aware datetime or None."""
    if on_postgresql():
        return _pg_rows(export)
    return _orm_case_rows(export) if export.shape == "cases" else _orm_finding_rows(export)


def _label_sql(expr: str, labels: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {_lit(code)} THEN {_lit(label)}" for code, label in labels.items())
    return f"CASE {expr} {whens} ELSE {expr} END"


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# The latest row of a group, by (time, id), with a small code of its value: max() of this array
# is a plain aggregate PostgreSQL computes by hashing, where array_agg(... ORDER BY) or a text
# key built with to_char() costs several times more per row.
def _latest_key(at: str, id_: str, rank: str) -> str:
    return f"ARRAY[extract(epoch FROM {at}), {id_}, {rank}]"


def _rank_sql(expr: str, codes: list[str]) -> str:
    """1-based position of the code in the list (NULL if absent), as a cheap CASE."""
    whens = " ".join(f"WHEN {_lit(code)} THEN {i}" for i, code in enumerate(codes, start=1))
    return f"(CASE {expr} {whens} END)"


def _unrank_sql(expr: str, codes: list[str], labels: dict[str, str] | None = None) -> str:
    whens = " ".join(
        f"WHEN {i} THEN {_lit(labels[code] if labels else code)}"
        for i, code in enumerate(codes, start=1)
    )
    return f"(CASE {expr} {whens} END)"


def _kinds_sql(mask: str, labels: bool) -> str:
    names = KIND_LABELS if labels else {k: str(k) for k in KIND_ORDER}
    parts = ", ".join(
        f"CASE WHEN {mask} & {1 << i} <> 0 THEN {_lit(names[k])} END"
        for i, k in enumerate(KIND_ORDER)
    )
    return f"NULLIF(concat_ws({_lit('; ' if labels else ' ')}, {parts}), '')"


def _case_select(scope: str) -> str:
    verdicts = [str(v) for v in VERDICT_ORDER]
    letters = [*LETTER_EVENT_STATUS.values(), "failed"]
    by_kind = _label_sql("e.kind", dict(LETTER_EVENT_STATUS))
    letter_rank = _rank_sql(f"CASE WHEN e.kind = 'note' THEN 'failed' ELSE {by_kind} END", letters)
    letter_kinds = ", ".join(_lit(k) for k in LETTER_EVENT_STATUS)
    transitions = "e.kind = 'status_changed' AND e.from_status <> e.to_status"
    kind_bit = " ".join(f"WHEN {_lit(k)} THEN {1 << i}" for i, k in enumerate(KIND_ORDER))
    return f"""
SELECT c.reference, {_label_sql("c.status", STATUS_LABELS)}, c.status, p.country, cp.slug, o.name,
  o.country, c.language, substr(ct.first, 6), COALESCE(fa.servers, 0), COALESCE(fa.findings, 0),
  {_kinds_sql("fa.kinds", True)}, {_kinds_sql("fa.kinds", False)},
  {_unrank_sql("fa.strongest", verdicts, VERDICT_LABELS)}, {_unrank_sql("fa.strongest", verdicts)},
  {_unrank_sql("ev.letter[3]", letters, LETTER_STATUS_LABELS)},
  {_unrank_sql("ev.letter[3]", letters)},
  ev.sent, ev.delivered, ev.bounced, ev.reminded,
  fa.last_at, {_unrank_sql("fa.last_key[3]", verdicts, VERDICT_LABELS)},
  {_unrank_sql("fa.last_key[3]", verdicts)},
  ev.fixed, ev.escalated, c.next_action_at, c.opened_at, c.status_changed_at
FROM campaign_case c
JOIN campaign_partner p ON p.id = c.partner_id
JOIN campaign_campaign cp ON cp.id = c.campaign_id
JOIN campaign_serverowner o ON o.id = c.server_owner_id
LEFT JOIN (
  SELECT server_owner_id, min(lpad(position::text, 5, '0') || email) AS first
  FROM campaign_contact WHERE bounced_at IS NULL GROUP BY server_owner_id
) ct ON ct.server_owner_id = o.id
LEFT JOIN (
  SELECT cf.case_id, count(DISTINCT f.target_id) AS servers, count(*) AS findings,
    bit_or(CASE f.protocol {kind_bit} END) AS kinds,
    min({_rank_sql("f.verdict", verdicts)}) AS strongest,
    max(f.probed_at) AS last_at,
    max({_latest_key("f.probed_at", "f.id", _rank_sql("f.verdict", verdicts))}) AS last_key
  FROM campaign_case_findings cf JOIN scanning_finding f ON f.id = cf.finding_id
  WHERE cf.case_id IN ({scope})
  GROUP BY cf.case_id
) fa ON fa.case_id = c.id
LEFT JOIN (
  SELECT e.case_id,
    max({_latest_key("e.at", "e.id", letter_rank)})
      FILTER (WHERE e.kind IN ({letter_kinds}) OR (e.kind = 'note' AND e.data ? 'failed'))
      AS letter,
    min(e.at) FILTER (WHERE e.kind = 'letter_sent') AS sent,
    max(e.at) FILTER (WHERE e.kind = 'letter_delivered') AS delivered,
    max(e.at) FILTER (WHERE e.kind = 'letter_bounced') AS bounced,
    min(e.at) FILTER (WHERE {transitions} AND e.to_status = 'reminded') AS reminded,
    max(e.at) FILTER (WHERE {transitions} AND e.to_status = 'fixed') AS fixed,
    max(e.at) FILTER (WHERE {transitions} AND e.to_status = 'escalated') AS escalated
  FROM campaign_caseevent e
  WHERE e.case_id IN ({scope})
  GROUP BY e.case_id
) ev ON ev.case_id = c.id
WHERE c.id IN ({scope})
ORDER BY c.reference"""


def _finding_select(scope: str) -> str:
    verdicts = [str(v) for v in VERDICT_ORDER]
    software = "NULLIF(trim(f.software_family || ' ' || f.software_version), '')"
    return f"""
SELECT c.reference, p.country, o.name, host(t.ip), t.port,
  {_label_sql("f.protocol", KIND_LABELS)}, f.protocol, f.transport,
  {_label_sql("f.verdict", VERDICT_LABELS)}, f.verdict,
  {_label_sql("f.evidence_level", EVIDENCE_LABELS)}, f.evidence_level,
  {software}, COALESCE(NULLIF(f.reverse_dns, ''), NULLIF(t.hostname, '')), t.asn,
  NULLIF(t.geo_country, ''), f.probed_at, t.first_seen, t.last_seen,
  lc.last_at, {_unrank_sql("lc.last_key[3]", verdicts, VERDICT_LABELS)},
  {_unrank_sql("lc.last_key[3]", verdicts)}
FROM campaign_case_findings cf
JOIN campaign_case c ON c.id = cf.case_id
JOIN campaign_partner p ON p.id = c.partner_id
JOIN campaign_serverowner o ON o.id = c.server_owner_id
JOIN scanning_finding f ON f.id = cf.finding_id
JOIN scanning_target t ON t.id = f.target_id
LEFT JOIN (
  SELECT l.target_id, l.protocol, max(l.probed_at) AS last_at,
    max({_latest_key("l.probed_at", "l.id", _rank_sql("l.verdict", verdicts))}) AS last_key
  FROM scanning_finding l
  WHERE l.target_id IN (
    SELECT f2.target_id FROM campaign_case_findings cf2
    JOIN scanning_finding f2 ON f2.id = cf2.finding_id WHERE cf2.case_id IN ({scope}))
  GROUP BY l.target_id, l.protocol
) lc ON lc.target_id = f.target_id AND lc.protocol = f.protocol
WHERE cf.case_id IN ({scope})
ORDER BY c.reference, f.probed_at, f.id"""


def _pg_query(export: Export) -> tuple[str, tuple[Any, ...]]:
    scope_sql, params = export.cases.order_by().values("pk").query.sql_with_params()
    build = _case_select if export.shape == "cases" else _finding_select
    # The scope appears once per use in the text: its parameters repeat with it.
    uses = 3 if export.shape == "cases" else 2
    return build(scope_sql), tuple(params) * uses


# Sorting and hashing a whole partner's findings in memory rather than in temporary files.
EXPORT_WORK_MEM = "128MB"


@contextlib.contextmanager
def _session(cursor: Any, **values: str) -> Iterator[None]:
    """Settings for this transaction only, put back at once: the caller's own transaction (a
    test, a request) goes on as before. Django reads timestamps as UTC whatever the zone says."""
    previous = {}
    for name, value in values.items():
        cursor.execute("SELECT current_setting(%s)", (name,))
        previous[name] = cursor.fetchone()[0]
        cursor.execute("SELECT set_config(%s, %s, true)", (name, value))
    try:
        yield
    finally:
        for name, value in previous.items():
            cursor.execute("SELECT set_config(%s, %s, true)", (name, value))


def _pg_rows(export: Export) -> Iterator[tuple[Any, ...]]:
    sql, params = _pg_query(export)
    kinds = [c.kind for c in export.columns]
    with transaction.atomic():
        with connection.cursor() as plain, _session(plain, work_mem=EXPORT_WORK_MEM, jit="off"):
            with connection.chunked_cursor() as cursor:
                cursor.execute(sql, params)
                while batch := cursor.fetchmany(2000):
                    for row in batch:
                        yield tuple(
                            int(v) if k == INT and v is not None else v
                            for v, k in zip(row, kinds, strict=True)
                        )


def pg_copy_csv(export: Export) -> Iterator[bytes]:
    """The CSV straight from PostgreSQL: every cell formatted in SQL, streamed as COPY sends it."""
    sql, params = _pg_query(export)
    cells = []
    for i, column in enumerate(export.columns):
        ref = f"t.c{i}"
        if column.kind == TS:
            cell = f"""to_char({ref}, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')"""
        elif column.kind == INT:
            cell = ref
        elif not column.free:
            cell = f"NULLIF({ref}::text, '')"
        else:
            cell = (
                f"CASE WHEN left({ref}::text, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
                f"THEN '''' || {ref}::text ELSE NULLIF({ref}::text, '') END"
            )
        cells.append(f'{cell} AS "{column.name}"')
    aliased = ", ".join(f"c{i}" for i in range(len(export.columns)))
    copy_sql = (
        f"COPY (SELECT {', '.join(cells)} FROM ({sql}) AS t({aliased})) "
        "TO STDOUT WITH (FORMAT csv, HEADER true)"
    )
    pending: list[bytes] = []
    with transaction.atomic():
        raw = connection.cursor().cursor  # psycopg's own cursor: Django's has no copy()
        with _session(raw, TimeZone=export.time_zone, work_mem=EXPORT_WORK_MEM, jit="off"):
            with raw.copy(copy_sql, params or None) as copy:
                size = 0
                for data in copy:
                    pending.append(bytes(data))
                    size += len(data)
                    if size >= 64 * 1024:
                        yield b"".join(pending)
                        pending, size = [], 0
            export.rows = raw.rowcount
    pending.append(TRAILER.format(rows=export.rows).encode())
    yield b"".join(pending)


# --- The simpler path (SQLite) ----------------------------------------------------------------
def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _orm_case_rows(export: Export) -> Iterator[tuple[Any, ...]]:
    ids = list(export.cases.order_by("reference").values_list("pk", flat=True))
    through = Case.findings.through
    for chunk in _chunks(ids):
        cases = {
            c["pk"]: c
            for c in Case.objects.filter(pk__in=chunk).values(
                "pk",
                "reference",
                "status",
                "partner__country",
                "campaign__slug",
                "server_owner_id",
                "server_owner__name",
                "server_owner__country",
                "language",
                "next_action_at",
                "opened_at",
                "status_changed_at",
            )
        }
        contacts: dict[int, str] = {}
        owners = [c["server_owner_id"] for c in cases.values()]
        for owner_id, email in (
            Contact.objects.filter(server_owner_id__in=owners, bounced_at__isnull=True)
            .order_by("-position")
            .values_list("server_owner_id", "email")
        ):
            contacts[owner_id] = email  # the lowest position is written last
        findings: dict[int, list[tuple[Any, ...]]] = {pk: [] for pk in chunk}
        for case_id, *values in (
            through.objects.filter(case_id__in=chunk)
            .order_by("finding__probed_at", "finding_id")
            .values_list(
                "case_id",
                "finding_id",
                "finding__target_id",
                "finding__protocol",
                "finding__verdict",
                "finding__probed_at",
            )
        ):
            findings[case_id].append(tuple(values))
        events: dict[int, list[CaseEvent]] = {pk: [] for pk in chunk}
        for event in CaseEvent.objects.filter(case_id__in=chunk).order_by("at", "id"):
            events[event.case_id].append(event)
        for pk in chunk:
            yield _case_row(cases[pk], contacts, findings[pk], events[pk])


def _case_row(
    case: dict[str, Any],
    contacts: dict[int, str],
    findings: list[tuple[Any, ...]],
    events: list[CaseEvent],
) -> tuple[Any, ...]:
    kinds = sorted({f[2] for f in findings}, key=KIND_ORDER.index)
    ranks = [VERDICT_ORDER.index(f[3]) for f in findings if f[3] in VERDICT_ORDER]
    strongest = VERDICT_ORDER[min(ranks)] if ranks else None
    last = max(findings, key=lambda f: (f[4], f[0])) if findings else None
    letter = None
    for e in events:
        if e.kind in LETTER_EVENT_STATUS:
            letter = LETTER_EVENT_STATUS[e.kind]
        elif e.kind == CaseEvent.Kind.NOTE and "failed" in (e.data or {}):
            letter = "failed"

    def first(kind: str) -> dt.datetime | None:
        return next((e.at for e in events if e.kind == kind), None)

    def latest(kind: str) -> dt.datetime | None:
        return next((e.at for e in reversed(events) if e.kind == kind), None)

    def moved(to: str, pick: Callable[[Iterable[dt.datetime]], dt.datetime]) -> Any:
        ats = [
            e.at
            for e in events
            if e.kind == CaseEvent.Kind.STATUS_CHANGED
            and e.from_status != e.to_status
            and e.to_status == to
        ]
        return pick(ats) if ats else None

    return (
        case["reference"],
        STATUS_LABELS.get(case["status"], case["status"]),
        case["status"],
        case["partner__country"],
        case["campaign__slug"],
        case["server_owner__name"],
        case["server_owner__country"],
        case["language"],
        contacts.get(case["server_owner_id"]),
        len({f[1] for f in findings}),
        len(findings),
        "; ".join(KIND_LABELS.get(k, k) for k in kinds) or None,
        " ".join(kinds) or None,
        VERDICT_LABELS.get(strongest) if strongest else None,
        strongest,
        LETTER_STATUS_LABELS.get(letter) if letter else None,
        letter,
        first(CaseEvent.Kind.LETTER_SENT),
        latest(CaseEvent.Kind.LETTER_DELIVERED),
        latest(CaseEvent.Kind.LETTER_BOUNCED),
        moved(Case.Status.REMINDED, min),
        last[4] if last else None,
        VERDICT_LABELS.get(last[3], last[3]) if last else None,
        last[3] if last else None,
        moved(Case.Status.FIXED, max),
        moved(Case.Status.ESCALATED, max),
        case["next_action_at"],
        case["opened_at"],
        case["status_changed_at"],
    )


def _orm_finding_rows(export: Export) -> Iterator[tuple[Any, ...]]:
    through = Case.findings.through
    links = (
        through.objects.filter(case_id__in=export.cases.order_by().values("pk"))
        .order_by("case__reference", "finding__probed_at", "finding_id")
        .values_list("case_id", "finding_id")
    )
    pairs = list(links)
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        cases = {
            c["pk"]: c
            for c in Case.objects.filter(pk__in={p[0] for p in chunk}).values(
                "pk", "reference", "partner__country", "server_owner__name"
            )
        }
        findings = {
            f.pk: f
            for f in Finding.objects.filter(pk__in={p[1] for p in chunk})
            .select_related("target")
            .only(
                "protocol",
                "transport",
                "verdict",
                "evidence_level",
                "software_family",
                "software_version",
                "reverse_dns",
                "probed_at",
                "target_id",
                *(f"target__{n}" for n in ("ip", "port", "hostname", "asn", "geo_country")),
                *(f"target__{n}" for n in ("first_seen", "last_seen")),
            )
        }
        services = {(f.target_id, f.protocol) for f in findings.values()}
        latest: dict[tuple[int, str], tuple[Any, str]] = {}
        for target_id, protocol, probed_at, verdict in (
            Finding.objects.filter(target_id__in={s[0] for s in services})
            .order_by("probed_at", "id")
            .values_list("target_id", "protocol", "probed_at", "verdict")
        ):
            latest[(target_id, protocol)] = (probed_at, verdict)
        for case_id, finding_id in chunk:
            case, f = cases[case_id], findings[finding_id]
            target: Target = f.target
            software = f"{f.software_family} {f.software_version}".strip()
            last_at, last_verdict = latest.get((f.target_id, f.protocol), (None, None))
            yield (
                case["reference"],
                case["partner__country"],
                case["server_owner__name"],
                target.ip,
                target.port,
                KIND_LABELS.get(f.protocol, f.protocol),
                f.protocol,
                f.transport,
                VERDICT_LABELS.get(f.verdict, f.verdict),
                f.verdict,
                EVIDENCE_LABELS.get(f.evidence_level, f.evidence_level),
                f.evidence_level,
                software or None,
                f.reverse_dns or target.hostname or None,
                target.asn,
                target.geo_country or None,
                f.probed_at,
                target.first_seen,
                target.last_seen,
                last_at,
                VERDICT_LABELS.get(last_verdict, last_verdict) if last_verdict else None,
                last_verdict,
            )


# --- Formats ----------------------------------------------------------------------------------
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


# --- XLSX -------------------------------------------------------------------------------------
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
    styles = {}
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
