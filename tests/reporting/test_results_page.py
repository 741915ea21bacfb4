"""/results/: what the agencies publish. Totals per country and month, never a server or owner."""

from __future__ import annotations

from django.core.cache import cache
from django.utils import timezone

from campaign.models import Case, Contact, ServerOwner
from reporting import services
from scanning.models import Target
from tests.base import BaseTestCase
from tests.reporting import world

NOW = timezone.now().replace(microsecond=0)


class ResultsPageTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        world.build(cls, NOW)
        services.figures_refresh(now=NOW)

    def setUp(self) -> None:
        cache.clear()

    def test_it_publishes_figures_per_country(self) -> None:
        r = self.client.get("/results/")
        self.assertEqual(r.status_code, 200)
        rows = {c["country"]: c for c in r.context["r"]["countries"]}
        self.assertEqual(
            (rows["GB"]["found"], rows["GB"]["notified"], rows["GB"]["fixed"]), (4, 3, 2)
        )
        self.assertEqual(
            (rows["DE"]["found"], rows["DE"]["notified"], rows["DE"]["fixed"]), (2, 1, 0)
        )
        self.assertEqual((rows["US"]["found"], rows["US"]["notified"]), (1, 0))
        self.assertContains(
            r,
            '<th scope="row">United Kingdom</th><td class="n">4</td><td class="n">3</td>'
            '<td class="n">66.7 %</td>',
            html=False,
        )
        self.assertEqual((r.context["r"]["found"], r.context["r"]["notified"]), (8, 4))
        self.assertEqual(r.context["r"]["unattributed"], 1)
        self.assertContains(r, "1 server whose owner is still being identified")

    def test_it_publishes_figures_over_time_with_the_running_share_fixed(self) -> None:
        months = self.client.get("/results/").context["r"]["months"]
        self.assertEqual(sum(m["found"] for m in months), 8)
        self.assertEqual(sum(m["notified"] for m in months), 4)
        self.assertEqual(sum(m["fixed"] for m in months), 2)
        self.assertEqual(months[-1]["share_fixed"], 0.5)
        self.assertEqual([m["month"] for m in months], sorted(m["month"] for m in months))

    def test_it_names_no_server_owner_or_contact(self) -> None:
        r = self.client.get("/results/")
        page = r.content.decode()
        secrets = [
            *Target.objects.values_list("ip", flat=True),
            *ServerOwner.objects.values_list("name", flat=True),
            *Contact.objects.values_list("email", flat=True),
            *Case.objects.values_list("reference", flat=True),
        ]
        self.assertGreater(len(secrets), 20)
        for secret in secrets:
            self.assertNotIn(secret, page)

    def test_it_is_cached_for_everyone_and_served_under_the_strict_policy(self) -> None:
        r = self.client.get("/results/")
        self.assertEqual(r["Cache-Control"], "public, max-age=300")
        self.assertIn("default-src 'none'", r["Content-Security-Policy"])
        self.assertContains(r, '<svg class="chart"', count=2)
        self.assertNotContains(r, "<script")
        # New figures arrive; the page keeps serving the cached ones until the cache expires.
        world._finding(
            world._target("192.0.2.99", 25, "smtp", NOW, None), "likely-open", "medium", NOW
        )
        services.figures_refresh()
        self.assertEqual(self.client.get("/results/").context["r"]["found"], 8)
        cache.clear()
        self.assertEqual(self.client.get("/results/").context["r"]["found"], 9)

    def test_it_speaks_the_visitors_language_and_offers_the_others(self) -> None:
        r = self.client.get("/results/", HTTP_ACCEPT_LANGUAGE="ja")
        self.assertContains(r, '<html lang="ja">')
        self.assertEqual(r["Content-Language"], "ja")
        r = self.client.get("/results/", {"lang": "zh-hant"})
        self.assertContains(r, '<html lang="zh-Hant">')
        self.assertContains(r, '<option value="pt-br">')
        r = self.client.get("/results/", {"lang": "xx"})
        self.assertContains(r, '<html lang="en">')

    def test_it_is_translated_country_names_and_numbers_included(self) -> None:
        r = self.client.get("/results/", {"lang": "de"})
        self.assertContains(r, "<h2>Nach Land</h2>")
        self.assertContains(r, '<th scope="row">Vereinigtes Königreich</th>')
        self.assertContains(r, "66,7 %")  # German decimals
        self.assertContains(r, "Die Summe enthält 1 Server, dessen Betreiber noch ermittelt wird.")
        r = self.client.get("/results/", {"lang": "ja"})
        self.assertContains(r, "イギリス")
        self.assertContains(r, "国別")

    def test_it_answers_before_any_figures_were_computed(self) -> None:
        from reporting.models import PartnerFigures

        PartnerFigures.objects.all().delete()
        r = self.client.get("/results/")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.context["r"]["found"], 8)

    def test_only_get_is_accepted(self) -> None:
        self.assertEqual(self.client.post("/results/").status_code, 405)
