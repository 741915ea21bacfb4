"""The dashboard, /results/ and the API over a large synthetic campaign.

Default: 10,000 cases and 100,000 findings (tens of seconds). BENCH_DASHBOARD_CASES=100000 gives
the issue's 100,000 cases and 1,000,000 findings. Everything is rolled back afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any

FINDINGS_PER_TARGET = 5
TARGETS_PER_CASE = 2
KINDS = (("smtp", 25), ("http", 3128), ("socks5", 1080), ("socks4", 1080), ("http", 8080))
SOFTWARE = {
    "smtp": ("postfix", "exim", "sendmail", "exchange", ""),
    "http": ("squid", "tinyproxy", "apache", "nginx", ""),
    "socks5": ("dante", "3proxy", ""),
    "socks4": ("dante", "3proxy", ""),
}


class _Rollback(Exception):
    pass


def populate(cases: int, *, seed: int = 7) -> dict[str, int]:
    """A synthetic campaign over the existing partners: owners, targets, findings, cases and
    letters with plausible timing (letters after findings, fixes after letters)."""
    from django.utils import timezone

    from campaign.demo import PARTNERS
    from campaign.models import Attribution, Campaign, Case, CaseSequence, Partner, ServerOwner
    from letters.models import Letter
    from scanning.models import Finding, Target

    rng = random.Random(seed)
    now = timezone.now()
    day = timedelta(days=1)
    if not Partner.objects.exists():
        Partner.objects.bulk_create(
            Partner(
                country=cc, country_name=name, agency=agency, languages=langs, is_lead=cc == "US"
            )
            for cc, name, agency, langs in PARTNERS
        )
    partners = list(Partner.objects.order_by("id"))
    weights = [rng.uniform(0.3, 3.0) for _ in partners]
    campaign, _ = Campaign.objects.get_or_create(slug="bench-dashboard", defaults={"name": "Bench"})
    year = now.year - 1
    first = CaseSequence.objects.filter(year=year).values_list("last", flat=True).first() or 0
    batch = 5000

    owner_partner = rng.choices(partners, weights=weights, k=cases)
    owners = ServerOwner.objects.bulk_create(
        (
            ServerOwner(name=f"Bench Owner {first + i}", country=p.country, partner=p)
            for i, p in enumerate(owner_partner)
        ),
        batch_size=batch,
    )
    targets: list[Target] = []
    for i in range(cases):
        for j in range(TARGETS_PER_CASE):
            n = (first + i) * TARGETS_PER_CASE + j
            protocol, port = rng.choice(KINDS)
            seen = now - rng.uniform(20, 150) * day
            targets.append(
                Target(
                    ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                    port=port,
                    protocol=protocol,
                    first_seen=seen,
                    last_seen=seen,
                )
            )
    targets = Target.objects.bulk_create(targets, batch_size=batch)
    Attribution.objects.bulk_create(
        (
            Attribution(target=t, server_owner=owners[k // TARGETS_PER_CASE])
            for k, t in enumerate(targets)
        ),
        batch_size=batch,
    )

    statuses = [
        (Case.Status.NEEDS_REVIEW, 6),
        (Case.Status.READY, 8),
        (Case.Status.NOTIFIED, 25),
        (Case.Status.REMINDED, 12),
        (Case.Status.ESCALATED, 4),
        (Case.Status.FIXED, 35),
        (Case.Status.UNRESPONSIVE, 6),
        (Case.Status.WITHDRAWN, 2),
        (Case.Status.SUPPRESSED, 2),
    ]
    chosen = rng.choices([s for s, _ in statuses], weights=[w for _, w in statuses], k=cases)
    case_rows: list[Case] = []
    plans: list[tuple[Any, Any, Any]] = []  # (first letter, reminder, fixed at)
    for i, status in enumerate(chosen):
        found = min(
            t.first_seen for t in targets[i * TARGETS_PER_CASE : (i + 1) * TARGETS_PER_CASE]
        )
        letter_at = reminder_at = fixed_at = None
        changed = found + day
        if status not in (
            Case.Status.NEEDS_REVIEW,
            Case.Status.READY,
            Case.Status.WITHDRAWN,
            Case.Status.SUPPRESSED,
        ):
            letter_at = min(found + rng.uniform(1, 10) * day, now - day)
            changed = letter_at
            if status in (
                Case.Status.REMINDED,
                Case.Status.ESCALATED,
                Case.Status.UNRESPONSIVE,
            ) or (status == Case.Status.FIXED and rng.random() < 0.35):
                reminder_at = min(letter_at + 21 * day, now)
                changed = reminder_at
            if status == Case.Status.FIXED:
                fixed_at = min(letter_at + rng.expovariate(1 / 12) * day, now)
                if reminder_at and fixed_at < reminder_at:
                    fixed_at = min(reminder_at + rng.uniform(0.5, 15) * day, now)
                changed = fixed_at
        case_rows.append(
            Case(
                reference=f"SYS-{year}-{first + i + 1:06d}",
                campaign=campaign,
                server_owner=owners[i],
                partner=owner_partner[i],
                language="en",
                status=status,
                review_reason="Weak evidence only." if status == Case.Status.NEEDS_REVIEW else "",
                opened_at=found,
                status_changed_at=changed,
            )
        )
        plans.append((letter_at, reminder_at, fixed_at))
    case_rows = Case.objects.bulk_create(case_rows, batch_size=batch)
    CaseSequence.objects.update_or_create(year=year, defaults={"last": first + cases})

    through = Case.findings.through
    verdicts = {"strong": "confirmed-open", "medium": "likely-open", "weak": "likely-open-weak"}
    finding_count = 0
    for start in range(0, len(targets), batch):  # a slice at a time: bounded memory at 1M rows
        findings: list[Finding] = []
        owners_of: list[int] = []
        for k in range(start, min(start + batch, len(targets))):
            target = targets[k]
            case_index = k // TARGETS_PER_CASE
            fixed_at = plans[case_index][2]
            software = rng.choice(SOFTWARE[target.protocol])
            evidence = rng.choices(("strong", "medium", "weak"), weights=(70, 20, 10))[0]
            at = target.first_seen
            for n in range(FINDINGS_PER_TARGET):
                closed = fixed_at is not None and at >= fixed_at
                findings.append(
                    Finding(
                        target=target,
                        protocol=target.protocol,
                        verdict="closed" if closed else verdicts[evidence],
                        evidence_level="none" if closed else evidence,
                        software_family=software,
                        probed_at=at,
                    )
                )
                owners_of.append(case_rows[case_index].id)
                at = min(at + rng.uniform(3, 20) * day, now)
                if n == FINDINGS_PER_TARGET - 2 and fixed_at is not None:
                    at = max(at, fixed_at)
        findings = Finding.objects.bulk_create(findings, batch_size=batch)
        through.objects.bulk_create(
            (through(case_id=c, finding_id=f.id) for c, f in zip(owners_of, findings, strict=True)),
            batch_size=batch,
        )
        finding_count += len(findings)

    letters: list[Letter] = []
    for case, (letter_at, reminder_at, _) in zip(case_rows, plans, strict=True):
        if letter_at is None:
            continue
        roll = rng.random()
        letter_status = (
            Letter.Status.BOUNCED
            if roll < 0.04
            else Letter.Status.COMPLAINED
            if roll < 0.041
            else Letter.Status.DELIVERED
        )
        email = f"abuse@{case.reference.lower()}.example"
        letters.append(
            Letter(
                case=case,
                kind="initial",
                language="en",
                recipient_email=email,
                status=letter_status,
                sent_at=letter_at,
                status_changed_at=letter_at,
            )
        )
        if reminder_at is not None:
            letters.append(
                Letter(
                    case=case,
                    kind="reminder",
                    language="en",
                    recipient_email=email,
                    status=Letter.Status.DELIVERED,
                    sent_at=reminder_at,
                    status_changed_at=reminder_at,
                )
            )
    for case in rng.sample(case_rows, k=max(1, cases // 200)):
        letters.append(
            Letter(
                case=case,
                kind="fixed",
                language="en",
                recipient_email="x@failed.example",
                status=Letter.Status.FAILED,
            )
        )
    Letter.objects.bulk_create(letters, batch_size=batch)
    return {
        "cases": len(case_rows),
        "targets": len(targets),
        "findings": finding_count,
        "letters": len(letters),
    }


def _timed(fn: Any, repeat: int = 5) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def run(cases: int | None = None) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection, transaction
    from django.test import Client

    from api.services import api_token_create
    from campaign.models import Membership, Partner
    from reporting import services

    n = cases or int(os.environ.get("BENCH_DASHBOARD_CASES", "10000"))
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.MFA_REQUIRED = False  # the bench measures the pages, not the second factor
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            started = time.perf_counter()
            sizes = populate(n)
            result["data"] = {**sizes, "build_seconds": round(time.perf_counter() - started, 1)}
            started = time.perf_counter()
            services.figures_refresh()
            result["figures_refresh_seconds"] = round(time.perf_counter() - started, 2)

            lead = User.objects.create_user("bench-lead", "l@localhost", "pw", is_staff=True)
            Membership.objects.create(
                user=lead, partner=Partner.objects.get(is_lead=True), role="viewer"
            )
            partner = Partner.objects.exclude(is_lead=True).order_by("id")[0]
            viewer = User.objects.create_user("bench-partner", "p@localhost", "pw", is_staff=True)
            Membership.objects.create(user=viewer, partner=partner, role="viewer")
            for name, user in (("lead", lead), ("partner", viewer)):
                client = Client()
                client.force_login(user)
                assert client.get("/admin/").status_code == 200
                counted: list[str] = []

                def count(execute: Any, sql: str, *args: Any, seen: list[str] = counted) -> Any:
                    seen.append(sql)
                    return execute(sql, *args)

                with connection.execute_wrapper(count):
                    client.get("/admin/")
                result[f"dashboard_{name}"] = {
                    **_timed(lambda c=client: c.get("/admin/")),
                    "queries": len(counted),
                }
            public = Client()

            def uncached() -> None:
                cache.delete("reporting:results:v1")
                public.get("/results/")

            result["results_page_uncached"] = _timed(uncached)
            result["results_page_cached"] = _timed(lambda: public.get("/results/"))
            raw = api_token_create(user=lead, name="bench")[1]
            api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
            with settings_rate():
                result["api_cases_page_of_100"] = _timed(lambda: api.get("/api/v1/cases/"))
                result["api_findings_page_of_100"] = _timed(lambda: api.get("/api/v1/findings/"))
                last = api.get("/api/v1/cases/", {"status": "fixed", "kind": "socks-proxy"})
                assert last.status_code == 200, last.content[:200]
                result["api_cases_filtered"] = _timed(
                    lambda: api.get("/api/v1/cases/", {"status": "fixed", "kind": "socks-proxy"})
                )
            raise _Rollback
    except _Rollback:
        pass
    except Exception as exc:  # keep the figures measured before it, then report it
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


class settings_rate:
    """No rate limit while the bench measures the API itself."""

    def __enter__(self) -> None:
        from django.test.utils import override_settings

        self._override = override_settings(API_RATE_LIMIT="1000000/minute")
        self._override.enable()

    def __exit__(self, *exc: object) -> None:
        self._override.disable()
