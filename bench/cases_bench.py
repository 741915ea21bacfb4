"""Cases built per second: open findings joining their owners' cases through the case service
(reference numbering, CaseEvents, routing to ready). Rolled back afterwards."""

from __future__ import annotations

import os
import time
from typing import Any


class _Rollback(Exception):
    pass


def run(owners: int | None = None) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from campaign import services
    from campaign.models import Campaign, Contact, Partner, ServerOwner
    from scanning.models import Finding, Target

    n = owners or int(os.environ.get("BENCH_CASE_OWNERS", "1000"))
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            now = timezone.now()
            partner, _ = Partner.objects.get_or_create(
                country="ZY",
                defaults={"country_name": "Bench", "agency": "Bench", "languages": ["en"]},
            )
            campaign = Campaign.objects.create(slug="bench-cases", name="Bench")
            findings: list[tuple[ServerOwner, Finding]] = []
            for i in range(n):
                owner = ServerOwner.objects.create(name=f"Owner {i}", partner=partner, country="ZY")
                Contact.objects.create(
                    server_owner=owner, position=0, kind="abuse", email=f"abuse{i}@bench.example"
                )
                for port in (25, 3128):  # two findings per owner: one opens, one joins
                    target = Target.objects.create(
                        ip=f"10.{i >> 8 & 255}.{i & 255}.1",
                        port=port,
                        protocol="smtp" if port == 25 else "http",
                        first_seen=now,
                        last_seen=now,
                    )
                    findings.append(
                        (
                            owner,
                            Finding.objects.create(
                                target=target,
                                protocol=target.protocol,
                                verdict="confirmed-open",
                                evidence_level="strong",
                                probed_at=now,
                            ),
                        )
                    )
            started = time.perf_counter()
            for owner, finding in findings:
                services.case_add_finding(campaign=campaign, owner=owner, finding=finding)
            seconds = time.perf_counter() - started
            cases = campaign.cases.count()
            result = {
                "owners": n,
                "findings": len(findings),
                "cases": cases,
                "seconds": round(seconds, 2),
                "cases_per_second": round(cases / seconds, 1),
                "findings_per_second": round(len(findings) / seconds, 1),
            }
            raise _Rollback
    except _Rollback:
        pass
    return result
