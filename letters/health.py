"""How the deployment is doing: queue depths, oldest waiting work, stale claims, the last beat
run. Read by `manage.py health` and the /healthz endpoint (numbers and times only, no secrets)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Min
from django.utils import timezone

from campaign import services as campaign_services
from config.broker import queue_depths
from letters.models import Heartbeat, Letter
from letters.services.outbox import letters_due, letters_needing_attention
from scanning.confirmation import findings_provisional_overdue
from scanning.models import ScanBatch
from scanning.services import scan_batches_stale


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _age(value: datetime | None, now: datetime) -> int | None:
    return int((now - value).total_seconds()) if value else None


def health_report(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    problems: list[str] = []
    report: dict[str, Any] = {"checked_at": _iso(now)}
    try:
        connection.ensure_connection()
        report["database"] = "ok"
    except DatabaseError:
        report["database"] = "unreachable"
        report["problems"] = ["the database is unreachable"]
        report["stuck"] = True
        return report

    depths = queue_depths()
    report["queues"] = depths
    redis = str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://"))
    report["broker"] = (
        "unknown" if not redis else ("ok" if None not in depths.values() else "unreachable")
    )
    if report["broker"] == "unreachable":
        problems.append("the broker (Redis) is unreachable")

    S = Letter.Status
    oldest_due = letters_due(now=now).aggregate(at=Min("queued_at"))["at"]
    pending = scan_batches_stale(now=now)
    report["oldest_waiting"] = {
        "letter_queued_at": _iso(oldest_due),
        "letter_age_seconds": _age(oldest_due, now),
        "scan_batch_created_at": _iso(pending["oldest_pending"]),  # type: ignore[arg-type]
        "scan_batch_age_seconds": _age(pending["oldest_pending"], now),  # type: ignore[arg-type]
    }
    # A claim past its lease is repaired by the next reconciler run; one older than two runs
    # means the reconciler is not running or cannot repair it.
    late = now - timedelta(seconds=2 * settings.RECONCILE_INTERVAL)
    report["stale_claims"] = {
        "letters_sending": Letter.objects.filter(status=S.SENDING, lease_until__lt=now).count(),
        "letters_sending_unrepaired": Letter.objects.filter(
            status=S.SENDING, lease_until__lt=late
        ).count(),
        "scan_batches_running": pending["stale_running"],
        "scan_batches_unrepaired": ScanBatch.objects.filter(
            status=ScanBatch.Status.RUNNING, lease_until__lt=late
        ).count(),
    }
    attention = letters_needing_attention(now=now)
    report["needs_attention"] = {
        "letters_unknown": attention.filter(status=S.UNKNOWN).count(),
        "letters_stuck": attention.exclude(status=S.UNKNOWN).count(),
    }
    # Cases whose next step is long due and unclaimed: the schedule's sweep is not running.
    overdue = campaign_services.cases_overdue(now=now).count()
    report["schedule"] = {"cases_overdue": overdue}
    # Relays whose confirmation deadline passed two sweeps ago and are still provisional.
    unsettled = findings_provisional_overdue(now=now)
    report["findings_unsettled"] = unsettled
    beats = dict(Heartbeat.objects.values_list("name", "at"))
    report["beat"] = {
        name: {"last_run": _iso(beats.get(name)), "age_seconds": _age(beats.get(name), now)}
        for name in ("dispatch", "reconcile")
    }

    claims = report["stale_claims"]
    if claims["letters_sending_unrepaired"] or claims["scan_batches_unrepaired"]:
        problems.append("claims past their lease are not being repaired")
    if report["needs_attention"]["letters_stuck"]:
        problems.append(f"{report['needs_attention']['letters_stuck']} letter(s) stuck")
    if overdue:
        problems.append(f"{overdue} case(s) overdue on the schedule (is its sweep running?)")
    if unsettled:
        problems.append(
            f"{unsettled} finding(s) provisional past their deadline (is the settle sweep running?)"
        )
    if beat_problem := beat_health(now=now, beats=beats):
        problems.append(beat_problem)
    report["problems"] = problems
    report["stuck"] = bool(problems)
    return report


def beat_health(*, now: datetime | None = None, beats: dict[str, datetime] | None = None) -> str:
    """'' when beat's periodic jobs ran recently, else what is wrong."""
    now = now or timezone.now()
    if beats is None:
        beats = dict(Heartbeat.objects.values_list("name", "at"))
    limits = {
        "reconcile": 3 * settings.RECONCILE_INTERVAL,
        "dispatch": max(3 * settings.LETTER_DISPATCH_INTERVAL, 60),
    }
    for name, limit in limits.items():
        at = beats.get(name)
        if at is None:
            return f"the periodic {name} has never run (is beat running, with a worker?)"
        if (now - at).total_seconds() > limit:
            return f"the periodic {name} last ran {int((now - at).total_seconds())} s ago"
    return ""
