from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase, override_settings
from django.utils import timezone

from campaign.attribution import rdap
from campaign.attribution.parse import parse_network, vcard_country
from campaign.attribution.reverse_dns import reverse_dns
from campaign.attribution.services import targets_attribute
from campaign.models import Attribution, Contact, RdapNetworkCache
from campaign.tasks import attribute_targets as attribute_targets_task
from fakes.registries import RdapServer
from tests.campaign.attribution.base import AttributionTestCase

SHIPPED = Path(settings.BASE_DIR) / "campaign" / "rdap_bootstrap"


class RegistryShapesTestCase(AttributionTestCase):
    def test_it_finds_arins_abuse_contact_nested_in_the_registrant(self) -> None:
        target = self.make_target("192.0.2.77")
        report = targets_attribute(targets=[target])
        self.assertEqual(report.counts()["attributed"], 1)
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.reverse_dns, "mail.example.net")
        self.assertEqual(a.network_cidr, "192.0.2.0/24")
        self.assertEqual(a.network_name, "EXAMPLE-NET-1")
        self.assertEqual(a.registrant_country, "US")  # from the org's vCard: ARIN has no country
        self.assertEqual(a.abuse_email, "abuse@example.net")
        self.assertEqual(a.asn, 64496)
        self.assertEqual(a.rdap_source, self.arin.url("ip/192.0.2.77"))
        self.assertEqual(a.error, "")
        owner = a.server_owner
        self.assertEqual((owner.name, owner.rdap_handle), ("Example Networks LLC", "EXNET"))
        chain = list(owner.contacts.values_list("kind", "email", "source"))
        self.assertEqual(
            chain,
            [
                ("abuse", "abuse@example.net", "rdap"),
                ("technical", "noc@example.net", "rdap"),
                ("partner", "triage@lead.example", "partner"),
            ],
        )

    def test_it_follows_arins_redirect_to_ripe(self) -> None:
        target = self.make_target("198.51.100.20")
        targets_attribute(targets=[target])
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.rdap_source, self.ripe.url("ip/198.51.100.20"))
        self.assertEqual(self.arin.hits["/registry/ip/198.51.100.20"], 1)
        self.assertEqual(self.ripe.hits["/ip/198.51.100.20"], 1)
        self.assertEqual(a.registrant_country, "DE")
        self.assertEqual(a.abuse_email, "abuse@example-hosting.de")
        # The organisation, not the maintainer object RIPE also lists as registrant.
        self.assertEqual(a.server_owner.rdap_handle, "ORG-EH1-RIPE")
        self.assertEqual(a.server_owner.name, "Example Hosting GmbH")
        self.assertEqual(a.server_owner.partner, self.beta)

    def test_it_reads_apnics_irt_by_preference_and_uses_the_network_without_registrant(
        self,
    ) -> None:
        target = self.make_target("203.0.113.30")
        targets_attribute(targets=[target])
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.abuse_email, "abuse@example.jp")  # pref=1 before the other
        self.assertEqual(a.registrant_country, "JP")
        self.assertEqual(a.server_owner.rdap_handle, "203.0.113.0 - 203.0.113.255")
        self.assertEqual(a.server_owner.name, "EXAMPLE-JP")
        self.assertEqual(a.reverse_dns, "")  # NXDOMAIN from the resolver is not an error
        self.assertEqual(a.error, "")

    def test_it_reads_lacnic_ipv6_from_start_and_end_addresses(self) -> None:
        target = self.make_target("2001:db8:1::5")
        targets_attribute(targets=[target])
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.network_cidr, "2001:db8:1::/48")
        self.assertEqual(a.abuse_email, "abuse@exemplo.com.br")
        owner = a.server_owner
        self.assertEqual((owner.rdap_handle, owner.country), ("BR-EXLT-LACNIC", "BR"))
        self.assertEqual(owner.name, "Exemplo Telecom Ltda")
        self.assertEqual(owner.partner, self.brazil)

    def test_without_an_abuse_contact_it_falls_back_to_technical_then_administrative(
        self,
    ) -> None:
        target = self.make_target("2001:db8:2::7")
        targets_attribute(targets=[target])
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.abuse_email, "ops@example-africa.co.ke")
        chain = list(a.server_owner.contacts.values_list("kind", "email"))
        self.assertEqual(
            chain,
            [
                (Contact.Kind.TECHNICAL, "ops@example-africa.co.ke"),
                (Contact.Kind.ADMINISTRATIVE, "admin@example-africa.co.ke"),
                (Contact.Kind.PARTNER, "triage@lead.example"),
            ],
        )
        self.assertEqual(a.server_owner.rdap_handle, "ORG-EA1-AFRINIC")


class ErrorsTestCase(AttributionTestCase):
    def test_errors_timeouts_and_rate_limits_are_reported_on_the_batch(self) -> None:
        targets = [
            self.make_target("192.0.2.77"),
            self.make_target("198.51.100.200"),  # HTTP 500
            self.make_target("198.51.100.201"),  # HTTP 404
            self.make_target("198.51.100.99"),  # HTTP 429, Retry-After: 120
            self.make_target("203.0.113.200"),  # a registry that never answers
            self.make_target("10.0.0.1"),  # in no bootstrap entry
        ]
        started = time.monotonic()
        counts = attribute_targets_task.delay([t.id for t in targets]).get()
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(
            counts,
            {
                "targets": 6,
                "attributed": 1,
                "errors": 5,
                "rate_limited": 1,
                "timeouts": 1,
                "cases": 1,
            },
        )
        errors = dict(Attribution.objects.values_list("target__ip", "error"))
        self.assertEqual(errors["192.0.2.77"], "")
        self.assertRegex(errors["198.51.100.200"], r"^error: 127\.0\.60\.1:\d+ answered HTTP 500$")
        self.assertRegex(errors["198.51.100.201"], r"^not_found: ")
        self.assertRegex(errors["198.51.100.99"], r"^rate_limited: .*retry after 120s")
        self.assertRegex(errors["203.0.113.200"], r"^timeout: 127\.0\.60\.9:\d+ did not answer")
        self.assertRegex(errors["10.0.0.1"], r"^no_server: ")

    def test_a_rate_limited_registry_is_not_asked_again_in_the_same_batch(self) -> None:
        first = self.make_target("198.51.100.99")
        second = self.make_target("198.51.100.98")
        counts = targets_attribute(targets=[first, second]).counts()
        self.assertEqual(counts["rate_limited"], 2)
        self.assertEqual(self.arin.hits["/registry/ip/198.51.100.98"], 0)

    def test_an_error_keeps_the_owner_found_before(self) -> None:
        target = self.make_target("192.0.2.77")
        targets_attribute(targets=[target])
        owner = Attribution.objects.get(target=target).server_owner
        RdapNetworkCache.objects.all().delete()
        self.arin.route("ip/192.0.2.77", 500, None)
        try:
            targets_attribute(targets=[target])
        finally:
            self.arin.route("ip/192.0.2.77", 200, "arin_192.0.2.0.json")
        a = Attribution.objects.get(target=target)
        self.assertEqual(a.server_owner, owner)
        self.assertTrue(a.error.startswith("error: "))


class CacheTestCase(AttributionTestCase):
    def test_it_caches_per_network_until_expiry(self) -> None:
        first, second = self.make_target("192.0.2.77"), self.make_target("192.0.2.78")
        targets_attribute(targets=[first, second])
        self.assertEqual(self.arin.hits["/registry/ip/192.0.2.77"], 1)
        self.assertEqual(self.arin.hits["/registry/ip/192.0.2.78"], 0)  # same /24: cached
        cached = RdapNetworkCache.objects.get()
        self.assertEqual(cached.network_cidr, "192.0.2.0/24")
        self.assertEqual(Attribution.objects.get(target=second).abuse_email, "abuse@example.net")
        RdapNetworkCache.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        targets_attribute(targets=[second])
        self.assertEqual(self.arin.hits["/registry/ip/192.0.2.78"], 1)
        self.assertEqual(RdapNetworkCache.objects.count(), 1)

    def test_ipv6_networks_are_cached_by_range_too(self) -> None:
        target = self.make_target("2001:db8:1::5")
        targets_attribute(targets=[target])
        cached = RdapNetworkCache.objects.get()
        self.assertEqual((cached.ip_version, cached.network_cidr), (6, "2001:db8:1::/48"))
        other = self.make_target("2001:db8:1::6")
        targets_attribute(targets=[other])
        self.assertEqual(self.lacnic.hits["/rdap/ip/2001:db8:1::6"], 0)
        self.assertEqual(Attribution.objects.get(target=other).server_owner.country, "BR")


class BootstrapTestCase(AttributionTestCase):
    def test_rdap_bootstrap_may_be_a_base_url(self) -> None:
        files = RdapServer("127.0.60.6", "/rdap/")
        files.route("ipv4.json", 200, str(Path(self.bootstrap) / "ipv4.json"))
        files.route("ipv6.json", 200, str(Path(self.bootstrap) / "ipv6.json"))
        files.start()
        try:
            with override_settings(RDAP_BOOTSTRAP=files.base_url):
                target = self.make_target("192.0.2.77")
                targets_attribute(targets=[target])
        finally:
            files.stop()
            rdap.clear_bootstrap_cache()
        self.assertEqual(files.hits["/rdap/ipv4.json"], 1)
        self.assertEqual(Attribution.objects.get(target=target).abuse_email, "abuse@example.net")

    def test_reverse_dns_asks_only_the_configured_server(self) -> None:
        self.dns.queries.clear()
        self.assertEqual(reverse_dns("192.0.2.77"), "mail.example.net")
        self.assertEqual(reverse_dns("192.0.2.99"), "")
        self.assertEqual(self.dns.queries, ["77.2.0.192.in-addr.arpa.", "99.2.0.192.in-addr.arpa."])


@override_settings(RDAP_BOOTSTRAP=str(SHIPPED))
class ShippedBootstrapTestCase(SimpleTestCase):
    def tearDown(self) -> None:
        rdap.clear_bootstrap_cache()

    def test_the_shipped_files_name_each_registry_for_its_space(self) -> None:
        import ipaddress

        cases = {
            "8.8.8.8": "https://rdap.arin.net/registry/",
            "193.0.6.139": "https://rdap.db.ripe.net/",
            "1.1.1.1": "https://rdap.apnic.net/",
            "200.57.141.161": "https://rdap.lacnic.net/rdap/",
            "196.216.2.1": "https://rdap.afrinic.net/rdap/",
            "2001:4860:4860::8888": "https://rdap.arin.net/registry/",
            "2a00:2381:ffff::1": "https://rdap.db.ripe.net/",
            "2001:43f8:7b0::": "https://rdap.afrinic.net/rdap/",
        }
        for ip, base in cases.items():
            with self.subTest(ip=ip):
                self.assertEqual(rdap.base_urls_for(ipaddress.ip_address(ip))[0], base)
        with self.assertRaises(rdap.RdapNoServer):
            rdap.base_urls_for(ipaddress.ip_address("127.0.0.1"))


class ParseTestCase(SimpleTestCase):
    def test_it_reads_the_country_from_a_vcard_label_or_adr_value(self) -> None:
        label = {"vcardArray": ["vcard", [["adr", {"label": "x\nLondon GB"}, "text", None]]]}
        self.assertEqual(vcard_country(label), "GB")
        value = {"vcardArray": ["vcard", [["adr", {}, "text", ["", "", "", "", "", "", "MX"]]]]}
        self.assertEqual(vcard_country(value), "MX")
        cc = {
            "vcardArray": ["vcard", [["adr", {"cc": "nl"}, "text", ["", "", "", "", "", "", ""]]]]
        }
        self.assertEqual(vcard_country(cc), "NL")

    def test_registry_pseudo_countries_are_unknown(self) -> None:
        self.assertEqual(parse_network({"country": "EU", "handle": "x"}).country, "")

    def test_start_address_with_a_prefix_suffix_is_read(self) -> None:
        info = parse_network(
            {"startAddress": "62.239.237.0/32", "endAddress": "62.239.237.255/32", "handle": "h"}
        )
        self.assertEqual(info.cidrs, ["62.239.237.0/24"])
