"""The admin's fast paths at scale keep their meaning: every list, filter, sort and search a
partner's staff can reach returns their own rows and never another partner's; sorts break ties
in the sort's own direction (so an index serves them); counts come from PostgreSQL's estimate
only where it expects more rows than the cap; the header's work count stops at its cap."""

from __future__ import annotations

import re
from unittest import mock

from django.contrib import admin
from django.contrib.admin.options import ModelAdmin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from campaign import admin_scale
from campaign.models import Attribution, Case, ServerOwner
from campaign.templatetags import workqueue as workqueue_tags
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.test_admin_scale import add_servers

LISTS = {
    "case": "/admin/campaign/case/",
    "finding": "/admin/scanning/finding/",
    "target": "/admin/scanning/target/",
    "serverowner": "/admin/campaign/serverowner/",
    "contact": "/admin/campaign/contact/",
    "attribution": "/admin/campaign/attribution/",
    "caseevent": "/admin/campaign/caseevent/",
}


class PartnerFastPathsTestCase(BaseTestCase):
    """Each list's first page, each filter choice, each sortable column both ways, and each kind
    of search, as Beta's staff: none shows Alpha's owner, address, reference or e-mail."""

    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        Target.objects.filter(ip="192.0.2.10").update(asn=64500)
        Target.objects.filter(ip="198.51.100.10").update(asn=64511)
        # RDAP's abuse address, in another case than the search's.
        Attribution.objects.filter(target__ip="192.0.2.10").update(
            abuse_email="ABUSE@alpha.example"
        )

    def paths(self, user: object, path: str) -> list[str]:
        """The list, each filter's choices, each sortable column ascending and descending."""
        request = RequestFactory().get(path)
        request.user = user
        model_admin = next(
            a for m, a in admin.site._registry.items() if path.endswith(f"/{m._meta.model_name}/")
        )
        changelist = model_admin.get_changelist_instance(request)
        out = [path]
        for spec in changelist.filter_specs:
            out += [path + c["query_string"] for c in spec.choices(changelist)]
        sortable = [
            i
            for i, name in enumerate(changelist.list_display)
            if name != "action_checkbox" and name in (model_admin.sortable_by or ())
        ]
        out += [f"{path}?o={i}" for i in sortable] + [f"{path}?o=-{i}" for i in sortable]
        terms = ["192.0.2.10", "192.0.2.0/24", "AS64500", "abuse@alpha.example", "Alpha"]
        out += [f"{path}?q={term}" for term in terms + [self.alpha_case.reference]]
        return out

    def test_beta_sees_none_of_alphas_rows_on_any_fast_path(self) -> None:
        self.client.force_login(self.beta_staff)
        checked = rows_seen = 0
        for path in LISTS.values():
            model_admin = next(
                a
                for m, a in admin.site._registry.items()
                if path.endswith(f"/{m._meta.model_name}/")
            )
            for url in self.paths(self.beta_staff, path):
                response = self.client.get(url)
                self.assertIn(response.status_code, (200, 302), url)
                if response.status_code != 200:
                    continue
                for row in response.context["cl"].result_list:
                    self.assertEqual(model_admin.partner_of(row), self.beta, f"{url}: {row}")
                    rows_seen += 1
                checked += 1
        self.assertGreater(checked, 60)  # every list, filter, sort and search was looked at
        self.assertGreater(rows_seen, 30)  # and Beta's own rows were there to be seen

    def test_alpha_finds_its_own_rows_by_address_network_as_and_email(self) -> None:
        self.client.force_login(self.alpha_staff)
        expectations = {
            "case": ["192.0.2.10", "192.0.2.0/24", "AS64500", "abuse@alpha.example"],
            "finding": ["192.0.2.10", "192.0.2.0/24", "AS64500"],
            "target": ["192.0.2.10", "192.0.2.0/24", "AS64500"],
            "attribution": ["192.0.2.10", "192.0.2.0/24", "AS64500", "abuse@alpha.example"],
            "serverowner": ["abuse@alpha.example", "Alpha"],
            "contact": ["abuse@alpha.example", "Alpha"],
        }
        for name, terms in expectations.items():
            for term in terms:
                response = self.client.get(LISTS[name], {"q": term})
                self.assertEqual(response.status_code, 200)
                rows = list(response.context["cl"].result_list)
                self.assertEqual(len(rows), 1, f"{name} ?q={term}")
                # Beta's own address finds nothing of Alpha's, and Alpha's search nothing of Beta's.
                self.assertNotContains(response, "198.51.100.10")

    def test_beta_searching_its_own_network_finds_only_its_own(self) -> None:
        self.client.force_login(self.beta_staff)
        response = self.client.get(LISTS["finding"], {"q": "0.0.0.0/0"})
        self.assertEqual(len(response.context["cl"].result_list), 1)
        self.assertContains(response, "198.51.100.10")


class SortTieBreakTestCase(BaseTestCase):
    def ordering(self, path: str) -> list[object]:
        self.client.force_login(self.regulator)
        response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        return list(response.context["cl"].queryset.query.order_by)

    def test_ties_follow_the_sorts_direction(self) -> None:
        # list_display: action checkbox, reference, owner, partner, status, ...
        self.assertEqual(self.ordering("/admin/campaign/case/?o=4"), ["status", "pk"])
        self.assertEqual(self.ordering("/admin/campaign/case/?o=-4"), ["-status", "-pk"])
        self.assertEqual(self.ordering("/admin/scanning/target/?o=6"), ["last_seen", "pk"])

    def test_a_sorted_list_still_pages_without_repeating_a_row(self) -> None:
        owner = self.alpha_case.server_owner
        add_servers(owner, 7)
        Target.objects.update(protocol="smtp")  # every row ties on the sorted column
        self.client.force_login(self.regulator)
        seen: list[int] = []
        with mock.patch.object(admin.site._registry[Target], "list_per_page", 3):
            for page in (1, 2, 3):
                response = self.client.get("/admin/scanning/target/", {"o": "2", "p": page})
                seen += [t.pk for t in response.context["cl"].result_list]
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(len(seen), Target.objects.count())

    def test_partner_and_unindexed_columns_are_not_sortable(self) -> None:
        self.client.force_login(self.regulator)
        body = self.client.get("/admin/campaign/attribution/").content.decode()
        self.assertNotIn('class="sortable column-reverse_dns', body)
        self.assertIn('class="sortable column-target', body)
        body = self.client.get("/admin/campaign/case/").content.decode()
        self.assertNotIn('class="sortable column-partner_code', body)


class EstimatedCountTestCase(BaseTestCase):
    def test_a_list_postgresql_expects_to_be_long_shows_the_estimate_without_counting(
        self,
    ) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("estimates are PostgreSQL's")
        self.client.force_login(self.alpha_staff)  # partner-scoped: a filtered query
        with (
            mock.patch.object(admin_scale, "_planned_rows", return_value=54_321),
            CaptureQueriesContext(connection) as queries,
        ):
            response = self.client.get("/admin/scanning/finding/")
        self.assertEqual(response.context["cl"].result_count, 54_321)
        self.assertFalse(
            any("COUNT(" in q["sql"].upper() and "finding" in q["sql"] for q in queries)
        )

    def test_a_short_list_is_counted_exactly(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get("/admin/scanning/finding/")
        self.assertEqual(response.context["cl"].result_count, 1)

    def test_the_planners_estimate_is_read_from_explain(self) -> None:
        if connection.vendor != "postgresql":
            self.skipTest("estimates are PostgreSQL's")
        estimate = admin_scale._planned_rows(Case.objects.filter(partner=self.alpha))
        self.assertIsInstance(estimate, int)
        self.assertGreaterEqual(estimate, 1)


class RowMarkupTestCase(BaseTestCase):
    def test_the_direct_checkbox_is_djangos_markup(self) -> None:
        model_admin = admin.site._registry[ServerOwner]
        owner = ServerOwner(pk=7, name='A <b>"&" co')
        self.assertEqual(
            model_admin.action_checkbox(owner), ModelAdmin.action_checkbox(model_admin, owner)
        )

    def test_lists_show_fifty_rows_a_page(self) -> None:
        owner = self.alpha_case.server_owner
        for i in range(55):
            target = Target.objects.get_or_create(
                ip=f"203.0.113.{i + 1}",
                port=25,
                protocol="smtp",
                defaults={
                    "first_seen": self.alpha_case.opened_at,
                    "last_seen": self.alpha_case.opened_at,
                },
            )[0]
            Attribution.objects.create(target=target, server_owner=owner)
        self.client.force_login(self.regulator)
        response = self.client.get("/admin/scanning/target/")
        self.assertEqual(len(response.context["cl"].result_list), 50)


class WorkQueueBadgeTestCase(BaseTestCase):
    def test_the_badge_stops_counting_at_its_cap(self) -> None:
        Case.objects.update(attention="review")
        self.client.force_login(self.regulator)
        page = self.client.get("/admin/").content.decode()
        self.assertEqual(re.findall(r'id="work-queue-count">([^<]*)<', page), ["2"])
        with mock.patch.object(workqueue_tags, "BADGE_CAP", 1):
            page = self.client.get("/admin/").content.decode()
        self.assertEqual(re.findall(r'id="work-queue-count">([^<]*)<', page), ["1+"])
