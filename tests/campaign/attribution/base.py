"""A test world with loopback registries, a loopback resolver and targets with open findings."""

from __future__ import annotations

from typing import Any

from django.test import override_settings
from django.utils import timezone

from campaign.attribution import rdap
from campaign.models import Partner
from fakes import registry_tls as tls
from fakes.registries import (
    DnsResponder,
    RdapServer,
    SilentServer,
    write_bootstrap,
)
from scanning.models import Finding, Target
from tests.base import BaseTestCase


class AttributionTestCase(BaseTestCase):
    arin: RdapServer
    ripe: RdapServer
    apnic: RdapServer
    lacnic: RdapServer
    afrinic: RdapServer
    silent: SilentServer
    dns: DnsResponder
    brazil: Partner
    switzerland: Partner

    @classmethod
    def setUpClass(cls) -> None:
        cls.arin = RdapServer("127.0.60.1", "/registry/")
        cls.ripe = RdapServer("127.0.60.2", "/")
        cls.apnic = RdapServer("127.0.60.3", "/")
        cls.lacnic = RdapServer("127.0.60.4", "/rdap/")
        cls.afrinic = RdapServer("127.0.60.5", "/rdap/")
        cls.silent = SilentServer("127.0.60.9")
        cls.dns = DnsResponder("127.0.60.53")
        cls.arin.route("ip/192.0.2.77", 200, "arin_192.0.2.0.json")
        cls.arin.route("ip/192.0.2.78", 200, "arin_192.0.2.0.json")
        cls.arin.route("ip/198.51.100.200", 500, None)
        cls.arin.route("ip/198.51.100.201", 404, "arin_404.json")
        cls.arin.route("ip/198.51.100.99", 429, None, **{"Retry-After": "120"})
        cls.arin.route("ip/198.51.100.98", 200, "arin_192.0.2.0.json")
        # ARIN answers for space another registry holds with a redirect to that registry.
        cls.arin.route("ip/198.51.100.20", 302, None, Location=cls.ripe.url("ip/198.51.100.20"))
        cls.ripe.route("ip/198.51.100.20", 200, "ripe_198.51.100.0.json")
        cls.apnic.route("ip/203.0.113.30", 200, "apnic_203.0.113.0.json")
        cls.lacnic.route("ip/2001:db8:1::5", 200, "lacnic_2001-db8-1.json")
        cls.afrinic.route("ip/2001:db8:2::7", 200, "afrinic_2001-db8-2.json")
        cls.dns.names["77.2.0.192.in-addr.arpa."] = "mail.example.net."
        for server in (cls.arin, cls.ripe, cls.apnic, cls.lacnic, cls.afrinic, cls.dns):
            server.start()
        cls.bootstrap = write_bootstrap(
            v4=[
                (["192.0.2.0/24", "198.51.100.0/24"], cls.arin.base_url),
                (["203.0.113.0/25"], cls.apnic.base_url),
                # RIPE is a registry too: ARIN's redirects may go there.
                (["192.88.99.0/24"], cls.ripe.base_url),
                (["203.0.113.128/25"], cls.silent.base_url),
            ],
            v6=[
                (["2001:db8:1::/48"], cls.lacnic.base_url),
                (["2001:db8:2::/48"], cls.afrinic.base_url),
            ],
        )
        cls._settings = override_settings(
            RDAP_BOOTSTRAP=cls.bootstrap,
            RDAP_TIMEOUT=0.5,
            RDAP_CA_BUNDLE=tls.trusted().bundle,
            ATTRIBUTION_DNS_SERVER=(cls.dns.host, cls.dns.port),
            ATTRIBUTION_DNS_TIMEOUT=0.5,
        )
        cls._settings.enable()
        rdap.clear_bootstrap_cache()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls._settings.disable()
        for server in (cls.arin, cls.ripe, cls.apnic, cls.lacnic, cls.afrinic, cls.silent):
            server.stop()
        cls.dns.stop()

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        Partner.objects.filter(is_lead=True).update(reply_to="triage@lead.example")
        cls.lead.refresh_from_db()
        cls.brazil = Partner.objects.create(
            country="BR", country_name="Brazil", agency="Brazil Agency", languages=["pt-br"]
        )
        cls.switzerland = Partner.objects.create(
            country="CH",
            country_name="Switzerland",
            agency="Swiss Agency",
            languages=["de", "fr", "it"],
        )

    def setUp(self) -> None:
        super().setUp()
        for server in (self.arin, self.ripe, self.apnic, self.lacnic, self.afrinic):
            server.hits.clear()

    def make_target(
        self, ip: str, *, port: int = 25, protocol: str = "smtp", verdict: str = "confirmed-open"
    ) -> Target:
        now = timezone.now()
        target = Target.objects.create(
            ip=ip, port=port, protocol=protocol, first_seen=now, last_seen=now
        )
        self.add_finding(target, verdict=verdict)
        return target

    def add_finding(self, target: Target, *, verdict: str = "confirmed-open", **kw: Any) -> Finding:
        return Finding.objects.create(
            target=target,
            protocol=target.protocol,
            verdict=verdict,
            evidence_level="strong" if verdict == "confirmed-open" else "medium",
            probed_at=kw.pop("probed_at", timezone.now()),
            **kw,
        )
