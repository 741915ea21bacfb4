from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from campaign import demo, services
from campaign.models import Attribution, Campaign, Contact, Membership, Partner, ServerOwner
from scanning.models import Finding, Target

EVIDENCE = {"confirmed-open": "strong", "likely-open": "medium", "likely-open-weak": "weak"}
REASONS = {
    ("smtp", "confirmed-open"): [
        "control_invalid_refused",
        "rcpt_2xx_external",
        "data_accepted",
        "delivered_to_canary",
    ],
    ("smtp", "likely-open"): [
        "control_invalid_refused",
        "rcpt_2xx_external",
        "accepted_not_delivered",
    ],
    ("http", "confirmed-open"): ["canary_hit", "secret_returned"],
    ("http", "likely-open"): ["canary_hit", "secret_missing"],
    ("socks5", "confirmed-open"): ["socks_granted", "canary_hit", "secret_returned"],
    ("socks5", "likely-open-weak"): ["socks_granted"],
}


def demo_transcript(server: demo.DemoServer) -> list[dict[str, Any]]:
    host = f"[{server.ip}]" if ":" in server.ip else server.ip
    if server.protocol == "smtp":
        lines = [
            ("<", server.banner),
            (">", "EHLO scanner.secure-your-server.invalid"),
            ("<", "250-PIPELINING"),
            ("<", "250 8BITMIME"),
            (">", "MAIL FROM:<probe-[REDACTED]@canary.secure-your-server.example>"),
            (">", "RCPT TO:<nx-[REDACTED]@[REDACTED].invalid>"),
            ("<", "550 5.1.2 Domain not found"),
            (">", "RSET"),
            ("<", "250 2.0.0 Ok"),
            (">", "MAIL FROM:<probe-[REDACTED]@canary.secure-your-server.example>"),
            ("<", "250 2.1.0 Ok"),
            (">", "RCPT TO:<rcpt-[REDACTED]@canary.secure-your-server.example>"),
            ("<", "250 2.1.5 Ok"),
        ]
        if server.verdict == "confirmed-open":
            lines += [
                (">", "DATA"),
                ("<", "354 End data with <CR><LF>.<CR><LF>"),
                (">", "[test message, 612 bytes]"),
                ("<", "250 2.0.0 Ok: queued"),
                ("!", "canary sink received the test message from " + host),
            ]
    else:
        lines = [
            (">", "GET http://canary.secure-your-server.example/c/[REDACTED] HTTP/1.1"),
            ("<", "HTTP/1.1 200 OK"),
            ("<", server.banner or "Content-Type: text/plain"),
            ("!", "canary logged the token from exit address " + server.ip),
        ]
    return [{"t_ms": 40 * i, "direction": d, "text": t} for i, (d, t) in enumerate(lines)]


class Command(BaseCommand):
    help = "Load the demo (26 partners, staff, a campaign, owners, findings, cases). Rerunnable."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            partners = self.load_partners()
            self.load_staff(partners)
            campaign = self.load_campaign()
            cases = self.load_owners(partners, campaign)
        self.stdout.write(
            f"Demo data: {Partner.objects.count()} partners, {ServerOwner.objects.count()} owners, "
            f"{Target.objects.count()} targets, {Finding.objects.count()} findings, {cases} cases."
        )
        self.stdout.write(f"Admin login: {demo.ADMIN_USERNAME} / {demo.ADMIN_PASSWORD}")
        self.stdout.write(
            f"Partner staff (password {demo.DEMO_PASSWORD}): "
            + ", ".join(username for username, _, _ in demo.STAFF)
        )
        from django.core.management import call_command  # letters: shipped templates, approved

        call_command("load_templates", "--approve-as", demo.ADMIN_USERNAME, stdout=self.stdout)

    def load_partners(self) -> dict[str, Partner]:
        partners = {}
        for country, name, agency, languages in demo.PARTNERS:
            partner, _ = Partner.objects.update_or_create(
                country=country,
                defaults={
                    "country_name": name,
                    "agency": agency,
                    "languages": languages,
                    "is_lead": country == demo.LEAD_COUNTRY,
                    # The letterhead prints the agency: the signature names the team and its
                    # role, not the agency again.
                    "signatory_name": "Secure Your Server team",
                    "signatory_title": "Network Security Outreach",
                    "names": demo.LOCAL_NAMES.get(country, {}),
                    "reply_to": f"secure-your-server@{country.lower()}.agency.example",
                    "time_zone": demo.TIME_ZONES[country],
                },
            )
            partners[country] = partner
        return partners

    def load_staff(self, partners: dict[str, Partner]) -> None:
        admin = User.objects.filter(username=demo.ADMIN_USERNAME).first()
        if admin is None:
            User.objects.create_superuser(
                demo.ADMIN_USERNAME, "admin@localhost", demo.ADMIN_PASSWORD
            )
        for username, country, role in demo.STAFF:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(
                    username, f"{username}@localhost", demo.DEMO_PASSWORD, is_staff=True
                )
            Membership.objects.update_or_create(
                user=user, partner=partners[country], defaults={"role": role}
            )

    def load_campaign(self) -> Campaign:
        campaign, _ = Campaign.objects.get_or_create(
            slug="secure-your-server-2026",
            defaults={
                "name": "Secure Your Server 2026",
                "starts_on": timezone.localdate() - timedelta(30),
                "ends_on": timezone.localdate() + timedelta(150),
            },
        )
        return campaign

    def load_owners(self, partners: dict[str, Partner], campaign: Campaign) -> int:
        now = timezone.now()
        lead = partners[demo.LEAD_COUNTRY]
        for owner_data in demo.OWNERS:
            owner, _ = ServerOwner.objects.get_or_create(
                name=owner_data.name,
                defaults={
                    "country": owner_data.country,
                    "partner": partners.get(owner_data.country, lead),
                    "preferred_language": owner_data.preferred_language,
                },
            )
            chain = [(Contact.Kind.ABUSE, owner_data.abuse)]
            if owner_data.network:
                chain.append((Contact.Kind.NETWORK, owner_data.network))
            for position, (kind, email) in enumerate(chain):
                Contact.objects.get_or_create(
                    server_owner=owner,
                    email=email,
                    defaults={"position": position, "kind": kind, "source": "rdap"},
                )
            for server in owner_data.servers:
                target, _ = Target.objects.get_or_create(
                    ip=server.ip,
                    port=server.port,
                    protocol=server.protocol,
                    defaults={
                        "first_seen": now - timedelta(days=12),
                        "last_seen": now - timedelta(days=2),
                        "sources": ["demo"],
                        "geo_country": owner_data.country,
                    },
                )
                network = ipaddress.ip_network(owner_data.cidr)
                Attribution.objects.get_or_create(
                    target=target,
                    defaults={
                        "server_owner": owner,
                        "network_cidr": str(network),
                        "network_name": owner_data.name.upper().replace(" ", "-")[:30],
                        "registrant_country": owner_data.country,
                        "abuse_email": owner_data.abuse,
                        "attributed_at": now,
                    },
                )
                if target.findings.exists():
                    continue
                finding = Finding.objects.create(
                    target=target,
                    protocol=server.protocol,
                    verdict=server.verdict,
                    evidence_level=EVIDENCE[server.verdict],
                    reasons=REASONS.get((server.protocol, server.verdict), ["rcpt_2xx_external"]),
                    software_family=server.software,
                    software_source="banner",
                    duration_ms=1840,
                    transcript=demo_transcript(server),
                    details={"banner": server.banner} if server.banner else {},
                    catalogue_version="2026.11.1",
                    probed_at=now - timedelta(days=2),
                )
                services.case_add_finding(
                    campaign=campaign, owner=owner, finding=finding, actor_label="demo"
                )
        return campaign.cases.count()
