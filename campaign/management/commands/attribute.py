"""`manage.py attribute [IP ...]`: reverse DNS and RDAP for targets, one line per target."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign import services as case_services
from campaign.attribution import services
from scanning.models import Target


class Command(BaseCommand):
    help = (
        "Attribute the given targets (by IP), or every target with an open finding and no owner. "
        "Prints ip, owner, abuse contact, country and partner, tab-separated, one line per target."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ips", nargs="*", metavar="IP")

    def handle(self, *args: Any, **options: Any) -> None:
        ips = []
        for raw in options["ips"]:
            try:
                ips.append(str(ipaddress.ip_address(raw.strip("[]"))))
            except ValueError:
                raise CommandError(f"{raw!r} is not an IP address.", returncode=2) from None
        if ips:
            targets = list(Target.objects.filter(ip__in=ips).order_by("ip", "port", "protocol"))
            for missing in sorted(set(ips) - {t.ip for t in targets}):
                self.stderr.write(f"{missing}: no such target (import it first)")
        else:
            targets = list(services.targets_needing_attribution())
        try:
            report = services.targets_attribute(targets=targets)
        except services.AttributionSetupError as exc:
            raise CommandError(str(exc)) from None
        for result in report.results:
            self.stdout.write("\t".join(self._columns(result)))
        counts = report.counts()
        self.stderr.write(
            f"{counts['targets']} target(s): {counts['attributed']} attributed, "
            f"{counts['errors']} error(s) ({counts['rate_limited']} rate-limited, "
            f"{counts['timeouts']} timed out), {counts['cases']} case(s) touched"
        )

    def _columns(self, result: services.TargetResult) -> list[str]:
        owner = result.owner
        attribution = result.attribution
        if owner is None:
            columns = [result.target.ip, "-", "-", attribution.registrant_country or "-", "-"]
        else:
            first = owner.contacts.order_by("position").first()
            partner = owner.partner.country
            if case_services.owner_triage_reason(owner):
                partner += " (triage)"
            columns = [
                result.target.ip,
                owner.name,
                first.email if first else "-",
                owner.country or "-",
                partner,
            ]
        if attribution.error:
            columns.append(f"error: {attribution.error}")
        return columns
