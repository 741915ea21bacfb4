"""Probing one batch: claim it under a lease, probe its targets with the runner, store the findings
(provisional where a canary delivery may still come) and reconcile batches a dead worker left."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from scanning import confirmation
from scanning.confirmation import findings_confirm_from_hits
from scanning.models import CanaryHit, Finding, Protocol, ScanBatch, ScanRun, Target
from scanning.probes import cli, runner
from scanning.probes.base import ProbeResult, host_port
from scanning.probes.canary import CanaryHit as Hit
from scanning.probes.canary import MemoryHitStore
from scanning.services.environment import excluded_networks, probe_environment, scan_limits
from scanning.signals import finding_recorded

logger = logging.getLogger(__name__)


def _claim_batch(batch_id: int, claim: str, now: datetime) -> bool:
    """PENDING -> RUNNING under a lease; also takes over a claim whose lease expired (its worker
    died) and this task's own claim when the broker redelivers it after a crash."""
    S = ScanBatch.Status
    takeover = Q(status=S.RUNNING) & (Q(lease_until__lt=now) | Q(claimed_by=claim))
    return bool(
        ScanBatch.objects.filter(
            Q(status=S.PENDING) | takeover,
            id=batch_id,
            claims__lt=settings.SCAN_BATCH_MAX_CLAIMS,
        ).update(
            status=S.RUNNING,
            claimed_by=claim,
            lease_until=now + timedelta(seconds=settings.SCAN_BATCH_LEASE),
            claims=F("claims") + 1,
        )
    )


def scan_batch_probe(*, batch_id: int, claim: str = "") -> None:
    """Probe one batch and store its findings. Claims the batch first; a second call is a no-op
    while the first one's claim is alive."""
    now = timezone.now()
    if not _claim_batch(batch_id, claim or f"direct:{uuid.uuid4().hex}", now):
        return
    batch = ScanBatch.objects.select_related("scan_run").get(id=batch_id)
    ScanRun.objects.filter(pk=batch.scan_run_id, started_at__isnull=True).update(
        started_at=now, status=ScanRun.Status.RUNNING
    )
    targets = {t.pk: t for t in Target.objects.filter(id__in=batch.target_ids)}
    try:
        networks = excluded_networks()
        outcome = asyncio.run(_probe_targets(batch, list(targets.values()), networks))
    except Exception as exc:  # a broken batch is reported on the run, never a stuck worker
        logger.exception("scan batch %s failed", batch_id)
        _finish_batch(
            batch,
            ScanBatch.Status.FAILED,
            findings=[],
            refused=batch.target_ids,
            error=f"{type(exc).__name__}: {exc}",
        )
        return
    if outcome.void:
        _finish_batch(
            batch,
            ScanBatch.Status.VOID,
            findings=[],
            refused=[],
            error="self-check failed: something on the scanner's side answers for "
            "every destination; no results were kept",
        )
        return
    findings = []
    retry: dict[int, str] = {}
    by_address = {(t.ip, t.port): t for t in targets.values()}
    for result in outcome.results:
        target = by_address.get((result.ip, result.port))
        if target is None:
            continue
        findings.append(_finding_from(result, target, batch.scan_run_id, now))
        if result.retry_after is not None and result.token:
            retry[target.pk] = result.token
    _finish_batch(
        batch,
        ScanBatch.Status.DONE,
        findings=findings,
        refused=outcome.refused,
        refusals=[
            {"target": _given(targets[pk]) if pk in targets else str(pk), "reason": why}
            for pk, why in outcome.refusal_reasons.items()
        ],
        hits=outcome.hits,
    )
    # A delivery the canary stored while this batch was still writing found no finding to
    # upgrade: look once now rather than at the next sweep.
    provisional = [f.token for f in findings if not f.final]
    if provisional:
        findings_confirm_from_hits(tokens=provisional)
    delays = settings.SCAN_GREYLIST_RETRY_DELAYS
    if retry and batch.attempt < len(delays):
        _schedule_retry(batch, retry, delays[batch.attempt])


@dataclasses.dataclass
class _Outcome:
    results: list[ProbeResult]
    refused: list[int]
    void: bool
    refusal_reasons: dict[int, str] = dataclasses.field(default_factory=dict)
    # Deliveries our own in-process canary received for provisional results; they are kept
    # with the findings, since that canary stops with the batch.
    hits: list[Hit] = dataclasses.field(default_factory=list)


async def _probe_targets(
    batch: ScanBatch,
    targets: list[Target],
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> _Outcome:
    # No ORM in here: this runs in the event loop. Everything from the database is read before.
    def is_excluded(ip: str) -> bool:  # asked right before every connection
        address = ipaddress.ip_address(ip)
        return any(address in network for network in networks)

    options = runner.ScanOptions(
        allow_private=settings.SCAN_ALLOW_PRIVATE,
        confirm=batch.scan_run.confirm_relays,
        source=settings.SCAN_SOURCE_ADDRESS or None,
        scanner_name=settings.SCANNER_NAME,
        user_agent=probe_environment().user_agent,
        limits=scan_limits(),
        network_rate=settings.SCAN_NETWORK_RATE,
        max_concurrency=settings.SCAN_CONCURRENCY,
    )
    async with cli.open_canary(probe_environment()) as (canary, hits):
        if settings.CANARY_SELFCHECK_ADDR:  # the designated self-check port, local canary too
            canary = dataclasses.replace(canary, selfcheck_addr=settings.CANARY_SELFCHECK_ADDR)
        scanner = runner.Scanner(canary=canary, hits=hits, options=options, is_excluded=is_excluded)
        wanted = {t.pk: runner.Target(given=_given(t), ip=t.ip, port=t.port) for t in targets}
        protocols = {
            t.pk: (None if t.protocol == Protocol.UNKNOWN else t.protocol) for t in targets
        }
        # Refused (private without SCAN_ALLOW_PRIVATE, or a proxy test that would aim a remote
        # proxy at our loopback canary): counted on the run, never probed.
        reasons = {
            pk: why for pk, rt in wanted.items() for _, why in scanner.refusals([rt], protocols[pk])
        }
        refused = list(reasons)
        runnable = {pk: rt for pk, rt in wanted.items() if pk not in reasons}
        tokens = {int(pk): token for pk, token in batch.tokens.items()}
        results = await scanner.run_each(
            [(rt, protocols[pk], tokens.get(pk)) for pk, rt in runnable.items()]
        )
        local_hits: list[Hit] = []
        if isinstance(hits, MemoryHitStore):  # the deployed canary's hits are in the table
            for result in results:
                # A relay's delivery or a proxy test's request, read as it is (timeout 0):
                # no waiting here either.
                for token in confirmation.awaited_hit_tokens(result):
                    local_hits += await hits.wait_for(token, kind=None, timeout=0)
        return _Outcome(
            results=results,
            refused=refused,
            void=scanner.selfcheck_passed is False,
            refusal_reasons={pk: str(why) for pk, why in reasons.items()},
            hits=local_hits,
        )


def _given(target: Target) -> str:
    return host_port(target.ip, target.port)


def _finding_from(result: ProbeResult, target: Target, scan_run_id: int, now: datetime) -> Finding:
    software = result.software
    provisional = confirmation.is_provisional(result)
    return Finding(
        target=target,
        scan_run_id=scan_run_id,
        protocol=str(result.protocol),
        transport=str(result.transport),
        transport_status=str(result.transport_status),
        verdict=str(result.verdict),
        evidence_level=str(result.evidence_level),
        reasons=[str(r) for r in result.reasons],
        software_family=software.family[:64] if software else "",
        software_version=(software.version or "")[:64] if software else "",
        software_source=software.source[:32] if software else "",
        duration_ms=result.duration_ms,
        retry_after=result.retry_after,
        token=result.token or "",
        details=result.details,
        transcript=result.transcript,
        catalogue_version=result.catalogue_version,
        probed_at=now,
        final=not provisional,
        confirm_by=confirmation.confirm_deadline(now) if provisional else None,
    )


def _finish_batch(
    batch: ScanBatch,
    status: str,
    *,
    findings: list[Finding],
    refused: list[int],
    error: str = "",
    refusals: list[dict[str, str]] | None = None,
    hits: list[Hit] | None = None,
) -> None:
    with transaction.atomic():
        # Only the claim's holder records: a worker whose claim was taken over (it looked dead)
        # keeps nothing, so a batch's findings are stored once.
        if not ScanBatch.objects.filter(
            pk=batch.pk, status=ScanBatch.Status.RUNNING, claimed_by=batch.claimed_by
        ).update(status=status, error=error, finished_at=timezone.now(), lease_until=None):
            logger.warning("%s: claim lost to another worker; results dropped", batch)
            return
        stored = Finding.objects.bulk_create(findings)
        if hits:
            CanaryHit.objects.bulk_create(_hit_rows(hits))
        run = ScanRun.objects.select_for_update().get(pk=batch.scan_run_id)
        counts = dict(run.verdict_counts)
        if status == ScanBatch.Status.DONE:
            for finding in stored:
                counts[finding.verdict] = counts.get(finding.verdict, 0) + 1
            if refused:
                counts["refused"] = counts.get("refused", 0) + len(refused)
            if refusals and batch.attempt == 0:
                run.refusals = [*run.refusals, *refusals][:1000]
        else:
            counts[status] = counts.get(status, 0) + len(batch.target_ids)
        run.verdict_counts = counts
        if batch.attempt == 0:  # retries revisit targets already counted
            run.targets_done = min(run.targets_total, run.targets_done + len(batch.target_ids))
        notes = [run.note] if run.note else []
        if error:
            notes.append(f"{batch}: {error}")
        run.note = "\n".join(notes)
        open_batches = run.batches.filter(
            status__in=(ScanBatch.Status.PENDING, ScanBatch.Status.RUNNING)
        ).exclude(pk=batch.pk)
        if run.targets_done >= run.targets_total and not open_batches.exists():
            all_void = not run.batches.exclude(status=ScanBatch.Status.VOID).exists()
            run.status = ScanRun.Status.VOID if all_void else ScanRun.Status.FINISHED
            run.finished_at = timezone.now()
        run.save(
            update_fields=[
                "verdict_counts",
                "refusals",
                "targets_done",
                "note",
                "status",
                "finished_at",
            ]
        )
        for finding in stored:  # campaign opens cases; it acts once the rows are committed
            transaction.on_commit(
                functools.partial(finding_recorded.send, sender=Finding, finding=finding)
            )


def _hit_rows(hits: list[Hit]) -> list[CanaryHit]:
    return [
        CanaryHit(
            token=hit.token[:64],
            kind=hit.kind[:8],
            peer_ip=_address_or_unknown(hit.peer_ip),
            headers=hit.headers,
            detail=hit.detail,
            at=datetime.fromtimestamp(hit.at, UTC),
        )
        for hit in hits
    ]


def _address_or_unknown(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return "::"  # the column needs an address; the hit is kept, its peer unknown


def _schedule_retry(batch: ScanBatch, tokens: dict[int, str], delay: int) -> None:
    from scanning.tasks import probe_batch_task

    with transaction.atomic():
        retry = ScanBatch.objects.create(
            scan_run_id=batch.scan_run_id,
            target_ids=sorted(tokens),
            attempt=batch.attempt + 1,
            tokens={str(pk): token for pk, token in tokens.items()},
            not_before=timezone.now() + timedelta(seconds=delay),
        )
        # The same token again: a greylister keys on sender and recipient, which carry it.
        transaction.on_commit(lambda: probe_batch_task.apply_async((retry.pk,), countdown=delay))


@dataclasses.dataclass
class BatchReconcileReport:
    requeued: int = 0  # running, claim expired: handed to a worker again
    failed: int = 0  # claimed too often by workers that died
    reenqueued: int = 0  # pending, its task lost with the broker

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def scan_batches_reconcile(
    *, now: datetime | None = None, broker_waiting: int | None = None
) -> BatchReconcileReport:
    """Scan batches whose row says a worker should be on them but none is. `broker_waiting` is
    how many messages wait in the scans queue (None: unknown); pending batches are enqueued again
    only when none wait, since a full queue explains a batch not yet claimed."""
    from scanning.tasks import probe_batch_task

    now = now or timezone.now()
    report = BatchReconcileReport()
    S = ScanBatch.Status
    grace = timedelta(seconds=settings.SCAN_PENDING_GRACE)
    expired = ScanBatch.objects.filter(status=S.RUNNING, lease_until__lt=now)
    for batch in expired.filter(claims__gte=settings.SCAN_BATCH_MAX_CLAIMS).select_related(
        "scan_run"
    ):
        token = f"reconciler:{uuid.uuid4().hex}"
        if ScanBatch.objects.filter(pk=batch.pk, status=S.RUNNING, lease_until__lt=now).update(
            claimed_by=token
        ):
            batch.claimed_by = token
            _finish_batch(
                batch,
                S.FAILED,
                findings=[],
                refused=batch.target_ids,
                error=f"its workers stopped {batch.claims} times; not probed again",
            )
            report.failed += 1
    requeue = list(
        expired.filter(claims__lt=settings.SCAN_BATCH_MAX_CLAIMS).values_list("id", flat=True)
    )
    report.requeued = ScanBatch.objects.filter(
        id__in=requeue, status=S.RUNNING, lease_until__lt=now
    ).update(status=S.PENDING, claimed_by="", lease_until=now + grace)
    lost: list[int] = []
    if broker_waiting == 0:
        lost = list(
            ScanBatch.objects.filter(status=S.PENDING, created_at__lt=now - grace)
            .filter(Q(not_before__isnull=True) | Q(not_before__lt=now - grace))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .exclude(id__in=requeue)
            .values_list("id", flat=True)
        )
        report.reenqueued = ScanBatch.objects.filter(id__in=lost).update(lease_until=now + grace)
    for batch_id in [*requeue, *lost]:
        probe_batch_task.delay(batch_id)
    if report.requeued or report.failed or report.reenqueued:
        logger.warning("Scan batches reconciled: %s", report.as_dict())
    return report
