"""The dashboard's figures against the hand-built world in tests/reporting/world.py."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone

from campaign.models import Case
from reporting import selectors, services
from reporting.models import PartnerFigures
from reporting.tasks import refresh_figures
from tests.base import BaseTestCase
from tests.reporting import world

NOW = timezone.now().replace(microsecond=0)
DAY = timedelta(days=1)


def month(days_ago: int) -> str:
    return services._month(NOW - days_ago * DAY)


class FiguresTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        world.build(cls, NOW)
        services.figures_refresh(now=NOW)

    def setUp(self) -> None:
        cache.clear()
        self.rows = {row.partner_id: row.figures for row in PartnerFigures.objects.all()}

    def test_it_counts_alphas_funnel_by_server_not_by_probe(self) -> None:
        f = self.rows[self.alpha.id]
        self.assertEqual(f["targets_probed"], 4)
        self.assertEqual(f["found_open"], 4)
        # .30 was weak first and strong later: its best evidence counts, once.
        self.assertEqual(f["found_open_by_evidence"], {"strong": 3, "medium": 1, "weak": 0})
        self.assertEqual(f["owners_attributed"], 4)
        self.assertEqual(f["cases"], 4)
        self.assertEqual(f["cases_by_status"], {"needs_review": 1, "fixed": 2, "notified": 1})
        self.assertEqual(
            (f["letters_sent"], f["letters_delivered"], f["letters_bounced"]), (5, 4, 1)
        )
        self.assertEqual(f["letters_complained"], 1)
        self.assertEqual((f["cases_notified"], f["cases_fixed"], f["notified_fixed"]), (3, 2, 2))

    def test_it_tells_fixes_after_the_first_letter_from_fixes_after_the_reminder(self) -> None:
        f = self.rows[self.alpha.id]
        self.assertEqual((f["fixed_after_first"], f["fixed_after_reminder"]), (1, 1))
        self.assertEqual(f["fix_hours"], {"240": 1, "720": 1})
        derived = selectors.Derived.of(f)
        self.assertEqual(derived.median_days_to_fix, 20.0)
        self.assertAlmostEqual(derived.fix_share, 2 / 3)

    def test_it_builds_the_fix_curve_over_cases_old_enough_for_each_day(self) -> None:
        f = self.rows[self.alpha.id]
        eligible, fixed = f["curve_eligible"], f["curve_fixed"]
        # First letters 15, 30 and 40 days ago.
        self.assertEqual([eligible[d] for d in (0, 15, 16, 30, 31, 40, 41)], [3, 3, 2, 2, 1, 1, 0])
        # Fixed 10 days (observed to day 30) and 30 days (observed to day 40) after the letter.
        self.assertEqual([fixed[d] for d in (9, 10, 29, 30, 31, 40, 41)], [0, 1, 1, 2, 1, 1, 0])
        curve = selectors.Derived.of(f).curve
        self.assertEqual(curve[14][3], 1 / 3)
        self.assertEqual(curve[30][3], 1.0)
        self.assertIsNone(curve[41][3])

    def test_it_breaks_servers_down_by_kind_and_software(self) -> None:
        f = self.rows[self.alpha.id]
        self.assertEqual(
            f["kinds"],
            {
                "relay": {"found": 2, "open": 2},
                "http-proxy": {"found": 1, "closed": 1},
                "socks-proxy": {"found": 1, "closed": 1},
            },
        )
        self.assertEqual(
            f["software"],
            {
                "postfix": {"found": 1, "open": 1},
                "squid": {"found": 1, "closed": 1},
                "dante": {"found": 1, "closed": 1},
                "exim": {"found": 1, "open": 1},
            },
        )

    def test_it_counts_months_of_finding_notifying_and_fixing(self) -> None:
        months = self.rows[self.alpha.id]["months"]
        expected: dict[str, dict[str, int]] = {}
        for days, what in (
            (70, "found"),
            (40, "found"),
            (50, "found"),
            (20, "found"),
            (30, "notified"),
            (40, "notified"),
            (15, "notified"),
            (20, "fixed"),
            (10, "fixed"),
        ):
            expected.setdefault(month(days), {}).setdefault(what, 0)
            expected[month(days)][what] += 1
        self.assertEqual(months, expected)

    def test_it_keeps_unattributed_servers_apart_from_every_partner(self) -> None:
        f = self.rows[None]
        self.assertEqual((f["targets_probed"], f["found_open"]), (2, 1))
        self.assertEqual(f["kinds"], {"socks-proxy": {"found": 1, "open": 1}})
        self.assertEqual(self.rows[self.lead.id]["found_open"], 1)
        self.assertEqual(self.rows[self.beta.id]["found_open_by_evidence"]["weak"], 1)

    def test_it_merges_every_partner_for_the_lead(self) -> None:
        board = selectors.dashboard_for(self.lead_staff)
        f = board.total.figures
        self.assertEqual((f["targets_probed"], f["found_open"]), (9, 8))
        self.assertEqual(f["found_open_by_evidence"], {"strong": 5, "medium": 2, "weak": 1})
        self.assertEqual((f["owners_attributed"], f["cases"]), (7, 7))
        self.assertEqual(
            (f["letters_sent"], f["letters_delivered"], f["letters_bounced"]), (7, 6, 1)
        )
        self.assertEqual((f["cases_notified"], f["notified_fixed"]), (4, 2))
        self.assertEqual(board.total.fix_share, 0.5)
        self.assertEqual(board.total.median_days_to_fix, 20.0)
        self.assertEqual(
            board.stuck, {"needs_review": 2, "escalated": 1, "failed_letters": 1, "triage": 1}
        )
        # Every partner has a row, then the servers nobody owns yet.
        self.assertEqual(
            [r.partner for r in board.partners], [self.beta, self.alpha, self.lead, None]
        )

    def test_a_partner_sees_only_its_own_figures(self) -> None:
        board = selectors.dashboard_for(self.beta_staff)
        f = board.total.figures
        self.assertEqual([r.partner for r in board.partners], [self.beta])
        self.assertEqual((f["targets_probed"], f["found_open"], f["cases"]), (2, 2, 2))
        self.assertEqual(
            (f["letters_sent"], f["letters_bounced"], f["letters_complained"]), (2, 0, 0)
        )
        self.assertEqual((f["cases_notified"], f["notified_fixed"]), (1, 0))
        self.assertEqual(board.total.fix_share, 0.0)
        self.assertEqual(board.stuck, {"needs_review": 0, "escalated": 1, "failed_letters": 0})
        alpha = selectors.dashboard_for(self.alpha_staff)
        self.assertEqual(alpha.stuck, {"needs_review": 1, "escalated": 0, "failed_letters": 1})
        self.assertEqual(alpha.total.figures["found_open"], 4)

    def test_it_flags_a_partner_whose_bounces_and_complaints_hurt_reputation(self) -> None:
        rows = {r.partner: r.derived for r in selectors.dashboard_for(self.regulator).partners}
        self.assertEqual(
            (rows[self.alpha].bounce_rate, rows[self.alpha].complaint_rate), (0.2, 0.2)
        )
        self.assertTrue(rows[self.alpha].bounce_warning and rows[self.alpha].complaint_warning)
        self.assertFalse(rows[self.beta].bounce_warning or rows[self.beta].complaint_warning)
        self.assertIsNone(rows[self.lead].bounce_rate)

    def test_the_admin_front_page_shows_the_dashboard_and_keeps_the_model_list(self) -> None:
        self.client.force_login(self.lead_staff)
        r = self.client.get("/admin/")
        self.assertEqual(r.status_code, 200)
        self.assertContains(r, "Where the campaign stands")
        self.assertContains(r, 'href="/admin/campaign/case/"')  # the app list, beside it
        self.assertContains(r, "/admin/campaign/case/?status__exact=needs_review")
        self.assertContains(r, "/admin/letters/letter/?status__exact=failed")
        self.assertContains(r, "reputation warning")
        self.assertContains(r, '<svg class="chart"', count=5)
        self.assertContains(r, "66.7 %")  # two of three Alpha+Beta cases old enough for day 30
        for attribute in ('src="http', "src='http", 'href="http', "url(http"):
            self.assertNotContains(r, attribute)  # no external asset
        for label in (
            "Targets probed",
            "Servers found open",
            "Owners attributed",
            "Letters sent",
            "Letters delivered",
            "Letters bounced",
            "Cases verified fixed",
        ):
            self.assertContains(r, label)

    def test_the_stuck_links_open_the_lists_they_count(self) -> None:
        self.client.force_login(self.lead_staff)
        r = self.client.get(
            "/admin/campaign/case/", {"status__exact": "needs_review", "triage": "yes"}
        )
        self.assertEqual(
            [c.reference for c in r.context["cl"].result_list],
            list(
                Case.objects.filter(review_reason__contains="triage").values_list(
                    "reference", flat=True
                )
            ),
        )
        r = self.client.get("/admin/letters/letter/", {"status__exact": "failed"})
        self.assertEqual(len(r.context["cl"].result_list), 1)

    def test_it_counts_a_probe_once_per_server_however_often_rescanned(self) -> None:
        target = self.alpha_case.findings.get().target
        for days in (5, 4, 3):
            world._finding(target, "confirmed-open", "strong", NOW - days * DAY)
        services.figures_refresh(now=NOW)
        f = PartnerFigures.objects.get(partner=self.alpha).figures
        self.assertEqual((f["targets_probed"], f["found_open"]), (4, 4))

    def test_a_second_refresh_replaces_the_figures(self) -> None:
        services.figures_refresh(now=NOW)
        self.assertEqual(PartnerFigures.objects.filter(partner=self.alpha).count(), 1)
        self.assertEqual(PartnerFigures.objects.count(), 4)


class RefreshTestCase(BaseTestCase):
    def test_recompute_now_queues_the_refresh_task_for_members_only(self) -> None:
        self.client.force_login(self.alpha_staff)
        with self.captureOnCommitCallbacks() as callbacks:
            r = self.client.post("/admin/dashboard/refresh/")
        self.assertRedirects(r, "/admin/", fetch_redirect_response=False)
        self.assertEqual(len(callbacks), 1)
        with self.captureOnCommitCallbacks() as callbacks:
            self.client.get("/admin/dashboard/refresh/")  # a link or a prefetch queues nothing
        self.assertEqual(callbacks, [])
        outsider = User.objects.create_user("outsider", "o@localhost", "pw", is_staff=True)
        self.client.force_login(outsider)
        with self.captureOnCommitCallbacks() as callbacks:
            self.client.post("/admin/dashboard/refresh/")
        self.assertEqual(callbacks, [])

    def test_the_beat_refreshes_the_figures_and_the_task_writes_them(self) -> None:
        entry = settings.CELERY_BEAT_SCHEDULE["refresh-figures"]
        self.assertEqual(entry["task"], refresh_figures.name)
        self.assertLess(entry["options"]["expires"], entry["schedule"] + 1)
        self.assertEqual(refresh_figures(), 2)  # Alpha and Beta: the lead has no servers yet
        self.assertEqual(PartnerFigures.objects.get(partner=self.alpha).figures["cases"], 1)

    def test_a_staff_user_without_a_partner_gets_the_plain_model_list(self) -> None:
        outsider = User.objects.create_user("outsider", "o@localhost", "pw", is_staff=True)
        self.client.force_login(outsider)
        r = self.client.get("/admin/")
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("board", r.context)
        self.assertNotContains(r, "Where the campaign stands")


class DashboardLanguageTestCase(BaseTestCase):
    def test_it_is_one_language_for_staff_who_read_the_admin_in_another(self) -> None:
        services.figures_refresh()
        self.client.force_login(self.beta_staff)
        r = self.client.get("/admin/", HTTP_ACCEPT_LANGUAGE="de")
        self.assertContains(
            r, "owners notified"
        )  # not the public pages' "Betreiber benachrichtigt"
        self.assertNotContains(r, "Betreiber benachrichtigt")


class MedianTestCase(BaseTestCase):
    def test_it_takes_the_middle_of_a_histogram(self) -> None:
        self.assertIsNone(selectors.median_hours({}))
        self.assertEqual(selectors.median_hours({"5": 1}), 5)
        self.assertEqual(selectors.median_hours({"1": 2, "9": 1}), 1)
        self.assertEqual(selectors.median_hours({"1": 1, "3": 1, "100": 2}), 51.5)
