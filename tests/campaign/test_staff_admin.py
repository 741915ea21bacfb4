"""The admin as staff use it: the case list, attribution jobs, imports, scan runs, campaigns."""

from __future__ import annotations

from unittest import mock

from django.contrib.admin.models import LogEntry
from django.test import override_settings

from campaign.attribution import services as attribution_services
from campaign.models import AttributionJob, Campaign, ImportBatch, Membership
from scanning.models import ScanRun, Target
from tests.base import BaseTestCase

MISSING = 987654321


class CaseListTestCase(BaseTestCase):
    def results(self, user, q: str) -> set[str]:
        self.client.force_login(user)
        response = self.client.get("/admin/campaign/case/", {"q": q})
        self.assertEqual(response.status_code, 200)
        return {case.reference for case in response.context["cl"].result_list}

    def test_it_finds_cases_by_ip_cidr_and_as_number(self) -> None:
        Target.objects.filter(ip="192.0.2.10").update(asn=64500)
        alpha, beta = self.alpha_case.reference, self.beta_case.reference
        self.assertEqual(self.results(self.regulator, "192.0.2.10"), {alpha})
        self.assertEqual(self.results(self.regulator, "192.0.2.0/24"), {alpha})
        self.assertEqual(self.results(self.regulator, "198.51.100.0/22"), {beta})
        self.assertEqual(self.results(self.regulator, "AS64500"), {alpha})
        self.assertEqual(self.results(self.regulator, "as 64500"), {alpha})
        self.assertEqual(self.results(self.regulator, "203.0.113.0/24"), set())

    def test_beta_finds_nothing_by_alphas_address(self) -> None:
        self.assertEqual(self.results(self.beta_staff, "192.0.2.10"), set())
        self.assertEqual(self.results(self.beta_staff, "0.0.0.0/0"), {self.beta_case.reference})

    def test_the_list_is_compact(self) -> None:
        self.client.force_login(self.regulator)
        html = self.client.get("/admin/campaign/case/").content.decode()
        self.assertIn(f'<span class="case-ref">{self.alpha_case.reference}</span>', html)
        self.assertIn('<abbr title="Alphaland">GB</abbr> · <abbr title="English">en</abbr>', html)
        self.assertIn('class="status-badge status-ready"', html)


class CampaignAdminTestCase(BaseTestCase):
    def test_partner_staff_see_their_own_case_count(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get("/admin/campaign/campaign/")
        campaign = response.context["cl"].result_list[0]
        self.assertEqual(campaign.visible_cases, 1)  # not the campaign's 2
        self.client.force_login(self.regulator)
        response = self.client.get("/admin/campaign/campaign/")
        self.assertEqual(response.context["cl"].result_list[0].visible_cases, 2)

    def test_only_lead_approvers_change_dates_and_is_active(self) -> None:
        url = f"/admin/campaign/campaign/{self.campaign.pk}/change/"
        self.client.force_login(self.lead_staff)  # a lead caseworker
        response = self.client.get(url)
        self.assertNotContains(response, 'name="starts_on"')
        self.assertNotContains(response, 'name="is_active"')
        self.assertContains(response, 'name="name"')
        Membership.objects.filter(user=self.lead_staff).update(role=Membership.Role.APPROVER)
        response = self.client.get(url)
        self.assertContains(response, 'name="starts_on"')
        self.assertContains(response, 'name="is_active"')

    def test_a_lead_caseworker_cannot_end_the_campaign_by_posting(self) -> None:
        self.client.force_login(self.lead_staff)
        self.client.post(
            f"/admin/campaign/campaign/{self.campaign.pk}/change/",
            {
                "slug": "wave-1",
                "name": "Wave 1",
                "reminder_after_days": 21,
                "final_deadline_days": 60,
                "is_active": "",
                "ends_on": "2000-01-01",
            },
        )
        self.campaign.refresh_from_db()
        self.assertTrue(self.campaign.is_active)
        self.assertIsNone(self.campaign.ends_on)


class AttributionJobTestCase(BaseTestCase):
    def test_run_attribution_lands_on_a_job_record(self) -> None:
        target = self.alpha_case.findings.get().target
        self.client.force_login(self.alpha_staff)
        with self.captureOnCommitCallbacks(execute=False) as queued:
            response = self.client.post(
                "/admin/scanning/target/",
                {"action": "run_attribution", "_selected_action": [target.pk], "index": 0},
            )
        job = AttributionJob.objects.get()
        self.assertRedirects(
            response,
            f"/admin/campaign/attributionjob/{job.pk}/change/",
            fetch_redirect_response=False,
        )
        self.assertEqual((job.started_by, job.target_ids), (self.alpha_staff, [target.pk]))
        self.assertEqual(len(queued), 1)
        self.assertTrue(LogEntry.objects.filter(object_id=str(job.pk)).exists())
        page = self.client.get(f"/admin/campaign/attributionjob/{job.pk}/change/")
        self.assertContains(page, "Waiting for a worker.")
        self.assertContains(page, 'http-equiv="refresh"')

    def test_the_worker_records_counts_and_errors_per_target(self) -> None:
        target = self.alpha_case.findings.get().target
        job = AttributionJob.objects.create(target_ids=[target.pk], targets_total=1)

        def failing(target, campaign, limited):
            attribution = target.attribution
            attribution.error = "rate_limited: RDAP answered 429"
            return attribution_services.TargetResult(target, attribution, None, "rate_limited")

        with mock.patch.object(attribution_services, "target_attribute", failing):
            attribution_services.attribution_job_run(job_id=job.pk)
            self.assertIsNone(attribution_services.attribution_job_run(job_id=job.pk))  # once
        job.refresh_from_db()
        self.assertEqual(job.status, AttributionJob.Status.DONE)
        self.assertEqual(job.error_count, 1)
        self.assertEqual(job.counts["rate_limited"], 1)
        self.client.force_login(self.regulator)
        page = self.client.get(f"/admin/campaign/attributionjob/{job.pk}/change/")
        self.assertContains(page, "<td>192.0.2.10:25/smtp</td><td>rate_limited: RDAP answered 429")
        self.assertNotContains(page, "<textarea")
        listing = self.client.get("/admin/campaign/attributionjob/", {"errors": "yes"})
        self.assertEqual(list(listing.context["cl"].result_list), [job])
        listing = self.client.get("/admin/campaign/attributionjob/", {"errors": "no"})
        self.assertEqual(list(listing.context["cl"].result_list), [])

    def test_beta_cannot_see_alphas_job(self) -> None:
        job = AttributionJob.objects.create(
            target_ids=[1], targets_total=1, started_by=self.alpha_staff
        )
        self.client.force_login(self.beta_staff)
        listing = self.client.get("/admin/campaign/attributionjob/")
        self.assertEqual(list(listing.context["cl"].result_list), [])
        theirs = self.client.get(f"/admin/campaign/attributionjob/{job.pk}/change/")
        missing = self.client.get(f"/admin/campaign/attributionjob/{MISSING}/change/")
        self.assertEqual(theirs.status_code, missing.status_code)
        self.assertEqual(theirs.get("Location"), missing.get("Location"))


class ImportAndScanRecordsTestCase(BaseTestCase):
    def test_import_batches_filter_on_rejected_rows_and_show_the_first(self) -> None:
        bad = ImportBatch.objects.create(
            file_name="bad.csv",
            format="csv",
            status="done",
            rows_rejected=2,
            errors=[{"line": 3, "reason": "port 70000 is out of range"}],
        )
        ImportBatch.objects.create(file_name="good.csv", format="csv", status="done")
        self.client.force_login(self.regulator)
        response = self.client.get("/admin/campaign/importbatch/", {"rejected": "yes"})
        self.assertEqual(list(response.context["cl"].result_list), [bad])
        self.assertContains(response, "line 3: port 70000 is out of range (+1 more)")
        self.assertContains(self.client.get("/admin/"), "Import batches")

    def test_a_failed_job_counts_as_having_problems_even_with_nothing_counted(self) -> None:
        # One yes/no filter serves imports and attribution runs: a count, or a failed job.
        failed = ImportBatch.objects.create(file_name="x.csv", format="csv", status="failed")
        rejected = ImportBatch.objects.create(
            file_name="bad.csv", format="csv", status="done", rows_rejected=1
        )
        clean = ImportBatch.objects.create(file_name="good.csv", format="csv", status="done")
        crashed = AttributionJob.objects.create(status="failed", started_by=self.lead_staff)
        erred = AttributionJob.objects.create(
            status="done", error_count=3, started_by=self.lead_staff
        )
        fine = AttributionJob.objects.create(status="done", started_by=self.lead_staff)
        self.client.force_login(self.regulator)

        def listed(url: str, **params: str) -> set[int]:
            response = self.client.get(url, params)
            return {row.pk for row in response.context["cl"].result_list}

        imports, jobs = "/admin/campaign/importbatch/", "/admin/campaign/attributionjob/"
        self.assertEqual(listed(imports, rejected="yes"), {failed.pk, rejected.pk})
        self.assertEqual(listed(imports, rejected="no"), {clean.pk})
        self.assertEqual(listed(jobs, errors="yes"), {crashed.pk, erred.pk})
        self.assertEqual(listed(jobs, errors="no"), {fine.pk})

    @override_settings(SCAN_ALLOW_PRIVATE=False)
    def test_a_finished_scan_run_is_read_only_and_says_who_and_why(self) -> None:
        run = ScanRun.objects.create(
            label="wave",
            status=ScanRun.Status.FINISHED,
            requested_by=self.lead_staff,
            verdict_counts={"refused": 1},
            refusals=[{"target": "10.0.0.1:25", "reason": "private"}],
        )
        self.client.force_login(self.lead_staff)
        page = self.client.get(f"/admin/scanning/scanrun/{run.pk}/change/")
        self.assertContains(page, "<td>10.0.0.1:25</td><td>private</td>")
        self.assertContains(page, "lead")  # who started it
        self.assertNotContains(page, 'name="label"')
        self.assertNotContains(page, 'name="_save"')
        self.client.post(f"/admin/scanning/scanrun/{run.pk}/change/", {"label": "renamed"})
        run.refresh_from_db()
        self.assertEqual(run.label, "wave")

    def test_case_sequences_have_no_admin_page(self) -> None:
        self.client.force_login(self.regulator)
        self.assertEqual(self.client.get("/admin/campaign/casesequence/").status_code, 404)
        self.assertNotContains(self.client.get("/admin/"), "Case sequences")


class CampaignModelNamesTestCase(BaseTestCase):
    def test_plural_names_read_as_english(self) -> None:
        from django.apps import apps

        plurals = {m._meta.verbose_name_plural for m in apps.get_models()}
        self.assertIn("import batches", plurals)
        self.assertIn("scan batches", plurals)
        self.assertFalse([p for p in plurals if str(p).endswith(("chs", "xs", "ys"))], plurals)
        self.assertEqual(Campaign._meta.verbose_name_plural, "campaigns")


class MenusByRoleTestCase(BaseTestCase):
    def menu(self, user) -> set[str]:
        self.client.force_login(user)
        response = self.client.get("/admin/campaign/case/")
        return {
            str(model["name"])
            for app in response.context["available_apps"]
            for model in app["models"]
        }

    def test_partner_staff_see_what_they_use(self) -> None:
        Membership.objects.filter(user=self.alpha_staff).update(role=Membership.Role.VIEWER)
        menu = self.menu(self.alpha_staff)
        self.assertIn("Cases", menu)
        for hidden in (
            "Case events",
            "Remediation links",
            "Delivery events",
            "Attribution jobs",
            "Import batches",
            "Periodic tasks",
            "Case number sequences",
        ):
            self.assertNotIn(hidden, menu)
        # Out of the menu, not out of reach: the case page links its records.
        event = self.alpha_case.events.first()
        page = self.client.get(f"/admin/campaign/caseevent/{event.pk}/change/")
        self.assertEqual(page.status_code, 200)

    def test_caseworkers_see_attribution_jobs_and_the_lead_sees_the_records(self) -> None:
        self.assertIn("Attribution jobs", self.menu(self.alpha_staff))
        lead = self.menu(self.lead_staff)
        self.assertTrue({"Case events", "Remediation links", "Delivery events"} <= lead)
