"""The admin at scale: address search (IP, CIDR, AS number) through indexes, bounded related
lists on change pages, no per-row queries and no whole-table DISTINCT on changelists."""

from __future__ import annotations

import re
from unittest import mock

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaign import admin_scale
from campaign.models import Attribution
from scanning.models import Finding, Target
from tests.base import BaseTestCase


def add_servers(owner: object, count: int, base: str = "192.0.2.") -> list[Target]:
    now = timezone.now()
    targets = []
    for i in range(count):
        target = Target.objects.create(
            ip=f"{base}{100 + i}",
            port=25,
            protocol="smtp",
            asn=64500,
            first_seen=now,
            last_seen=now,
        )
        Attribution.objects.create(target=target, server_owner=owner, reverse_dns=f"mx{i}.example")
        targets.append(target)
    return targets


def add_findings(case: object, targets: list[Target]) -> None:
    for target in targets:
        finding = Finding.objects.create(
            target=target,
            protocol="smtp",
            verdict="likely-open",
            evidence_level="medium",
            transcript=[{"t_ms": 0, "direction": "<", "text": "220 x" * 200}],
            probed_at=timezone.now(),
        )
        case.findings.add(finding)


def rows(body: str) -> list[str]:
    return re.findall(r'<th class="field-__str__"><a [^>]*>([^<]+)</a>', body)


class AddressSearchTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        add_servers(cls.alpha_case.server_owner, 3)  # 192.0.2.100-102, AS64500
        Target.objects.filter(ip="198.51.100.10").update(asn=64511)

    def search(self, user: object, path: str, term: str) -> str:
        self.client.force_login(user)
        response = self.client.get(path, {"q": term})
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_it_finds_targets_by_address_network_and_as_number(self) -> None:
        page = self.search(self.lead_staff, "/admin/scanning/target/", "192.0.2.101")
        self.assertEqual(rows(page), ["192.0.2.101:25/smtp"])
        page = self.search(self.lead_staff, "/admin/scanning/target/", "192.0.2.96/29")
        self.assertEqual(
            sorted(rows(page)),
            ["192.0.2.100:25/smtp", "192.0.2.101:25/smtp", "192.0.2.102:25/smtp"],
        )
        page = self.search(self.lead_staff, "/admin/scanning/target/", "as64511")
        self.assertEqual(rows(page), ["198.51.100.10:25/smtp"])

    def test_a_partner_finds_nothing_of_another_partner_by_address(self) -> None:
        for term in ("192.0.2.10", "192.0.2.0/24", "AS64500"):
            page = self.search(self.beta_staff, "/admin/scanning/target/", term)
            self.assertEqual(rows(page), [], term)
            page = self.search(self.beta_staff, "/admin/scanning/finding/", term)
            self.assertIn("0 findings", page, term)

    def test_findings_by_network(self) -> None:
        page = self.search(self.alpha_staff, "/admin/scanning/finding/", "192.0.2.0/24")
        self.assertIn("192.0.2.10:25/smtp", page)
        self.assertNotIn("198.51.100.10", page)

    def test_the_simpler_network_search_is_exact_for_ipv4(self) -> None:
        # SQLite's path (octet prefixes) gives the same rows as PostgreSQL's inet operator.
        targets = Target.objects.all()
        for network in ("192.0.2.96/29", "192.0.2.0/24", "192.0.0.0/16", "192.0.2.100/31"):
            net = admin_scale.ipaddress.ip_network(network)
            expected = {t.ip for t in targets if admin_scale.ipaddress.ip_address(t.ip) in net}
            with mock.patch.object(admin_scale, "connection", mock.Mock(vendor="sqlite")):
                q = admin_scale.network_q("ip", net)
            self.assertEqual(set(targets.filter(q).values_list("ip", flat=True)), expected)

    def test_cases_by_reference_owner_name_and_contact_email(self) -> None:
        path = "/admin/campaign/case/"
        ref = self.alpha_case.reference
        self.assertIn(ref, self.search(self.lead_staff, path, ref.lower()))
        self.assertIn(ref, self.search(self.lead_staff, path, "alpha host"))
        page = self.search(self.lead_staff, path, "ABUSE@alpha.example")
        self.assertIn(ref, page)
        self.assertNotIn(self.beta_case.reference, page)
        self.assertNotIn(ref, self.search(self.beta_staff, path, "abuse@alpha.example"))

    def test_parse_address_term(self) -> None:
        parse = admin_scale.parse_address_term
        self.assertEqual(parse(" 10.0.0.1 "), ("ip", "10.0.0.1"))
        self.assertEqual(parse("::ffff:10.0.0.1"), ("ip", "10.0.0.1"))
        self.assertEqual(parse("10.20.30.7/24")[1].with_prefixlen, "10.20.30.0/24")
        self.assertEqual(parse("AS 64500"), ("asn", 64500))
        self.assertIsNone(parse("64500"))  # a bare number may be a port or a reference
        self.assertIsNone(parse("10.20.30.0/33"))
        self.assertIsNone(parse("mx.example"))


class BoundedPagesTestCase(BaseTestCase):
    def page_queries(self, path: str) -> tuple[int, str]:
        self.client.force_login(self.regulator)
        self.client.get(path)  # warm caches
        with CaptureQueriesContext(connection) as queries:
            response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        return len(queries), response.content.decode()

    def test_an_owner_with_many_servers_shows_a_bounded_list_and_a_link(self) -> None:
        owner = self.alpha_case.server_owner
        path = f"/admin/campaign/serverowner/{owner.pk}/change/"
        add_servers(owner, 5)
        few, _ = self.page_queries(path)
        add_servers(owner, 60, base="203.0.113.")
        many, body = self.page_queries(path)
        self.assertEqual(few, many)  # no query per server
        self.assertLessEqual(many, 15)  # and a handful in all, whatever the owner holds
        self.assertEqual(len(re.findall(r"/admin/campaign/attribution/\d+/change/", body)), 50)
        self.assertIn(f"?server_owner__id__exact={owner.pk}", body)
        self.assertIn("All 66 servers of this owner", body)

    def test_a_case_with_many_findings_shows_a_bounded_list_and_a_link(self) -> None:
        case = self.alpha_case
        path = f"/admin/campaign/case/{case.pk}/change/"
        targets = add_servers(case.server_owner, 70, base="203.0.113.")
        add_findings(case, targets[:55])
        few, _ = self.page_queries(path)
        add_findings(case, targets[55:])
        many, body = self.page_queries(path)
        self.assertEqual(few, many)
        self.assertLessEqual(many, 25)
        self.assertIn("All 71 findings of this case", body)
        self.assertIn(f"?cases__id__exact={case.pk}", body)
        self.assertEqual(body.count("/admin/scanning/finding/") - body.count("?cases__id"), 51)
        self.assertNotIn("220 x220 x", body)  # transcripts stay out of the case page

    def test_the_case_findings_link_lists_that_case_only_and_only_for_its_partner(self) -> None:
        path = f"/admin/scanning/finding/?cases__id__exact={self.alpha_case.pk}"
        self.client.force_login(self.alpha_staff)
        self.assertContains(self.client.get(path), "192.0.2.10:25/smtp")
        self.client.force_login(self.beta_staff)
        self.assertNotContains(self.client.get(path), "192.0.2.10")

    def test_changelists_make_no_query_per_row_and_no_whole_table_distinct(self) -> None:
        owner = self.alpha_case.server_owner
        paths = [
            "/admin/campaign/case/",
            "/admin/campaign/serverowner/",
            "/admin/campaign/attribution/",
            "/admin/campaign/caseevent/",
            "/admin/scanning/target/",
            "/admin/scanning/finding/",
        ]
        before = {path: self.page_queries(path)[0] for path in paths}
        add_findings(self.alpha_case, add_servers(owner, 30, base="203.0.113."))
        for path in paths:
            self.client.get(path)
            with CaptureQueriesContext(connection) as queries:
                self.client.get(path)
            self.assertEqual(len(queries), before[path], path)
            for query in queries:
                sql = query["sql"].upper()
                self.assertNotIn("DATE_TRUNC", sql, path)  # no date hierarchy
                self.assertFalse("SELECT DISTINCT" in sql and "LIMIT" not in sql, (path, sql))

    def test_a_filtered_list_is_counted_up_to_the_cap(self) -> None:
        add_servers(self.alpha_case.server_owner, 6)
        self.client.force_login(self.regulator)
        with mock.patch.object(admin_scale.ScalePaginator, "CAP", 4):
            response = self.client.get("/admin/scanning/target/", {"protocol__exact": "smtp"})
        self.assertEqual(response.context["cl"].result_count, 4)
