"""The simpler row source (SQLite): the same typed rows as PostgreSQL's query, from the ORM a
few hundred cases at a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from campaign.exports.columns import (
    EVIDENCE_LABELS,
    KIND_LABELS,
    KIND_ORDER,
    LETTER_EVENT_STATUS,
    LETTER_STATUS_LABELS,
    STATUS_LABELS,
    VERDICT_LABELS,
    VERDICT_ORDER,
)
from campaign.models import Case, CaseEvent, Contact
from scanning.models import Finding, Target

if TYPE_CHECKING:
    from campaign.exports.export import Export


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def orm_case_rows(export: Export) -> Iterator[tuple[Any, ...]]:
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
    case: Mapping[str, Any],
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


def orm_finding_rows(export: Export) -> Iterator[tuple[Any, ...]]:
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
