"""Provisional findings become final: upgraded when our canary's hit arrives, else settled.

A campaign batch never waits for the canary. A relay that accepted the test message is stored
with the verdict its session supports, `final=False`, its token and a deadline (`confirm_by`).
Whenever the canary stores a delivery carrying that token, even minutes later,
`findings_confirm_from_hits` upgrades the finding with the probe's own rule
(`confirm_with_hits`); past the deadline, `findings_settle_overdue` makes the session's verdict
final. Each change is claimed with a conditional UPDATE and announced inside its transaction
(`scanning.signals`), so two workers, a repeated sweep or a redelivered task change a finding
once and campaign records it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone

from scanning.models import CanaryHit, Finding, ScanRun
from scanning.probes import base
from scanning.probes.canary import CanaryHit as Hit
from scanning.probes.proxy_judgement import awaited_tokens, awaits_canary, rejudge_with_hits
from scanning.probes.smtp_relay import awaits_confirmation, confirm_with_hits
from scanning.signals import finding_confirmed, finding_settled

logger = logging.getLogger(__name__)

# The canary files a relayed test message under its token with this kind.
DELIVERY = "smtp"
# A proxy probe's tests ask the canary's web side, each under "<probe token>-<test>".
PROXY_HIT_KINDS = ("http", "tls")
# Findings handled per query; a sweep goes on chunk after chunk until none is left.
CHUNK = 500


def is_provisional(result: base.ProbeResult) -> bool:
    """A result a later hit on our canary could still upgrade (the probe's own test): a relay's
    delivery, or a proxy's request that the canary had not logged when the probe was judged."""
    return awaits_confirmation(result) or awaits_canary(result)


def awaited_hit_tokens(result: base.ProbeResult) -> list[str]:
    """The canary tokens whose hits would upgrade `result` (none when it is final)."""
    if awaits_confirmation(result) and result.token:
        return [result.token]
    return awaited_tokens(result)


def confirm_deadline(probed_at: datetime) -> datetime:
    return probed_at + timedelta(seconds=settings.SCAN_CONFIRM_DEADLINE)


def _deliveries() -> QuerySet[CanaryHit]:
    """The hits that settle a finding: its relay's delivery, or one of its proxy tests' requests
    (tokens are random, so an SMTP token never prefixes another probe's)."""
    return CanaryHit.objects.filter(
        Q(token=OuterRef("token"), kind=DELIVERY)
        | Q(token__startswith=Concat(OuterRef("token"), Value("-")), kind__in=PROXY_HIT_KINDS)
    )


def _base_token(token: str) -> str:
    """A proxy test's token is its probe's token, "-", the test: the finding holds the former."""
    return token.split("-", 1)[0]


def findings_confirm_from_hits(*, tokens: Iterable[str] | None = None) -> int:
    """Upgrade every provisional finding whose token our canary has a delivery for (only those
    of `tokens` when given: the canary's trigger names the token it just stored). Returns how
    many were upgraded; safe to run any number of times, by any number of workers."""
    pending = Finding.objects.filter(final=False).filter(Exists(_deliveries()))
    if tokens is not None:
        # From a task's message: only what could be a token is looked up.
        wanted = sorted(
            {_base_token(t) for t in tokens if isinstance(t, str) and 0 < len(t) <= 64} - {""}
        )
        if not wanted:
            return 0
        pending = pending.filter(token__in=wanted)
    upgraded = 0
    for pk in _each_pk(pending):
        # One finding, one transaction: a row that fails (a value the probe's rule cannot read,
        # a receiver's error) is rolled back whole and logged, and the sweep goes on.
        try:
            upgraded += _confirm_one(pk)
        except Exception:
            logger.exception("finding %s: confirmation failed; kept provisional", pk)
    return upgraded


def findings_settle_overdue(*, now: datetime | None = None) -> int:
    """Make final every provisional finding past its deadline with no delivery on record: its
    verdict is the one its session supports. Returns how many were settled."""
    now = now or timezone.now()
    due = Finding.objects.filter(final=False, confirm_by__lte=now).exclude(Exists(_deliveries()))
    settled = 0
    for pk in _each_pk(due):
        try:
            settled += _settle_one(pk, now)
        except Exception:
            logger.exception("finding %s: settling failed; kept provisional", pk)
    return settled


def findings_provisional_overdue(*, now: datetime | None = None) -> int:
    """Provisional findings two sweeps past their deadline: the settle sweep is not running."""
    now = now or timezone.now()
    late = now - timedelta(seconds=2 * settings.RECONCILE_INTERVAL)
    return Finding.objects.filter(final=False, confirm_by__lt=late).count()


def _each_pk(queryset: QuerySet[Finding]) -> Iterable[int]:
    last = 0
    while True:
        chunk = list(
            queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:CHUNK]
        )
        yield from chunk
        if len(chunk) < CHUNK:
            return
        last = chunk[-1]


@transaction.atomic
def _confirm_one(pk: int) -> bool:
    # The claim: one conditional UPDATE; a second worker blocks on the row, then finds it final.
    claimed = (
        Finding.objects.filter(pk=pk, final=False)
        .filter(Exists(_deliveries()))
        .update(final=True, confirm_by=None)
    )
    if not claimed:
        return False
    finding = Finding.objects.select_related("target").get(pk=pk)
    smtp = finding.protocol == str(base.Protocol.SMTP)
    if smtp:
        rows = CanaryHit.objects.filter(token=finding.token, kind=DELIVERY)
    else:
        rows = CanaryHit.objects.filter(
            token__startswith=f"{finding.token}-", kind__in=PROXY_HIT_KINDS
        )
    rows = rows.order_by("at", "id")
    hits = [
        Hit(
            token=row.token,
            kind=row.kind,
            peer_ip=row.peer_ip,
            headers=row.headers,
            detail=row.detail,
            at=row.at.timestamp(),
        )
        for row in rows
    ]
    previous = finding.verdict
    result = probe_result(finding)
    confirmed = confirm_with_hits(result, hits) if smtp else rejudge_with_hits(result, hits)
    _store(finding, confirmed)
    _recount(finding, previous)
    finding_confirmed.send(sender=Finding, finding=finding, previous_verdict=previous)
    return True


@transaction.atomic
def _settle_one(pk: int, now: datetime) -> bool:
    claimed = (
        Finding.objects.filter(pk=pk, final=False, confirm_by__lte=now)
        .exclude(Exists(_deliveries()))  # a delivery stored meanwhile: confirmation takes it
        .update(final=True, confirm_by=None)
    )
    if not claimed:
        return False
    finding = Finding.objects.select_related("target").get(pk=pk)
    previous = finding.verdict
    # The probe judged the session as if no delivery would come (`accepted_not_delivered`):
    # that judgement is the verdict the evidence supports, so it stands as it was stored.
    note = {
        "t_ms": finding.duration_ms,
        "direction": "!",
        "text": f"no delivery to the canary sink by the deadline: {previous} is final",
    }
    finding.transcript = [*finding.transcript, note]
    finding.save(update_fields=["transcript"])
    finding_settled.send(sender=Finding, finding=finding, previous_verdict=previous)
    return True


def probe_result(finding: Finding) -> base.ProbeResult:
    """The stored finding as the probe's result, for the probe's own rules to read."""
    target = finding.target
    return base.ProbeResult(
        target=base.host_port(target.ip, target.port),
        ip=target.ip,
        port=target.port,
        protocol=base.Protocol(finding.protocol),
        verdict=base.Verdict(finding.verdict),
        # A reason of an older catalogue is kept as it was written.
        reasons=[_reason(r) for r in finding.reasons],
        transport=base.Transport(finding.transport),
        transport_status=base.TransportStatus(finding.transport_status),
        duration_ms=finding.duration_ms,
        retry_after=finding.retry_after,
        token=finding.token or None,
        details=dict(finding.details),
        transcript=list(finding.transcript),
        catalogue_version=finding.catalogue_version,
    )


def _reason(code: str) -> base.Reason:
    try:
        return base.Reason(code)
    except ValueError:
        return cast(base.Reason, code)


def _store(finding: Finding, result: base.ProbeResult) -> None:
    finding.verdict = str(result.verdict)
    finding.evidence_level = str(result.evidence_level)
    finding.reasons = [str(r) for r in result.reasons]
    finding.details = result.details
    finding.transcript = result.transcript
    finding.final, finding.confirm_by = True, None
    finding.save(update_fields=["verdict", "evidence_level", "reasons", "details", "transcript"])


def _recount(finding: Finding, previous: str) -> None:
    """The run's verdict counts follow the finding from its provisional verdict to this one."""
    if finding.scan_run_id is None or previous == finding.verdict:
        return
    run = ScanRun.objects.select_for_update().filter(pk=finding.scan_run_id).first()
    if run is None:
        return
    counts: dict[str, Any] = dict(run.verdict_counts)
    counts[previous] = max(int(counts.get(previous, 0)) - 1, 0)
    if not counts[previous]:
        del counts[previous]
    counts[finding.verdict] = int(counts.get(finding.verdict, 0)) + 1
    run.verdict_counts = counts
    run.save(update_fields=["verdict_counts"])


__all__ = [
    "awaited_hit_tokens",
    "confirm_deadline",
    "findings_confirm_from_hits",
    "findings_provisional_overdue",
    "findings_settle_overdue",
    "is_provisional",
    "probe_result",
]
