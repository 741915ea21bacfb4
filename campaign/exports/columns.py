"""What an export holds: its columns, the labels partners read, and the vocabularies' order."""

from __future__ import annotations

from dataclasses import dataclass

from campaign.models import Case, CaseEvent
from scanning.models import EvidenceLevel, Protocol, Verdict
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
LETTER_EVENT_STATUS: dict[str, str] = {
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
