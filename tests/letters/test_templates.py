"""Shipped files -> versioned templates; editing makes drafts; who may approve what."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

from django.contrib.auth.models import User
from django.core.management import call_command

from campaign.models import Membership
from letters import rendering, services
from letters.models import LetterTemplate
from tests.base import BaseTestCase
from tests.letters.helpers import BODY, SUBJECT, approved_template

ACCUSATORY = "<p>Running an open relay is a violation of the law and you may face a penalty.</p>"


class ShippedDir:
    """A temporary templates/letters/ with small files, standing in for the shipped ones."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.patch = mock.patch.object(rendering, "SHIPPED_DIR", self.root)

    def write(self, language: str, kind: str, subject: str = SUBJECT, body: str = BODY) -> None:
        path = self.root / language / f"{kind}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{{# subject: {subject} #}}\n{body}", encoding="utf-8")

    def __enter__(self) -> ShippedDir:
        self.patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.patch.stop()
        self.tmp.cleanup()


class LoadTemplatesTestCase(BaseTestCase):
    def test_it_loads_each_partners_languages_and_versions_changes(self) -> None:
        with ShippedDir() as shipped:
            for kind in ("initial", "reminder", "fixed"):
                shipped.write("en", kind)
                shipped.write("de", kind, body=BODY.replace("Dear", "Sehr geehrte"))
            shipped.write("fr", "initial")  # no partner here writes French
            call_command("load_templates", stdout=open("/dev/null", "w"))
            rows = LetterTemplate.objects.all()
            # lead and alpha write English, beta German: 3 partners x 3 kinds
            self.assertEqual(rows.count(), 9)
            self.assertEqual(set(rows.filter(partner=self.beta).values_list("language")), {("de",)})
            self.assertTrue(all(t.status == "draft" and t.version == 1 for t in rows))
            self.assertEqual(
                rows.get(partner=self.alpha, kind="initial").source_path,
                "templates/letters/en/initial.html",
            )

            call_command("load_templates", stdout=open("/dev/null", "w"))  # unchanged: nothing new
            self.assertEqual(LetterTemplate.objects.count(), 9)

            shipped.write("en", "initial", body=BODY + "<p>P.S.</p>")
            report = services.templates_load_shipped()
            self.assertEqual(report.created, 2)  # lead and alpha
            newest = LetterTemplate.objects.get(partner=self.alpha, kind="initial", version=2)
            self.assertEqual(newest.status, "draft")
            self.assertIn("P.S.", newest.body_html)

    def test_approve_as_approves_the_shipped_version_once(self) -> None:
        with ShippedDir() as shipped:
            shipped.write("en", "initial")
            report = services.templates_load_shipped(approve_as=self.regulator)
            self.assertEqual(report.approved, 2)
            approved = LetterTemplate.objects.filter(status="approved")
            self.assertEqual(approved.count(), 2)
            self.assertEqual({t.approved_by for t in approved}, {self.regulator})
            again = services.templates_load_shipped(approve_as=self.regulator)
            self.assertEqual((again.created, again.approved), (0, 0))

    def test_a_file_without_a_subject_line_is_reported_not_loaded(self) -> None:
        with ShippedDir() as shipped:
            (shipped.root / "en").mkdir()
            (shipped.root / "en" / "initial.html").write_text("<p>no subject</p>")
            report = services.templates_load_shipped()
        self.assertEqual(report.created, 0)
        self.assertIn("subject", report.problems[0])


class ApprovalTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.alpha_approver = User.objects.create_user("alpha-approver", is_staff=True)
        cls.beta_approver = User.objects.create_user("beta-approver", is_staff=True)
        cls.lead_approver = User.objects.create_user("lead-approver", is_staff=True)
        for user, partner in (
            (cls.alpha_approver, cls.alpha),
            (cls.beta_approver, cls.beta),
            (cls.lead_approver, cls.lead),
        ):
            Membership.objects.create(user=user, partner=partner, role=Membership.Role.APPROVER)

    def draft(self, partner: object = None, body: str = BODY) -> LetterTemplate:
        return services.template_new_version(
            partner=partner or self.alpha,
            kind="initial",
            language="en",
            subject=SUBJECT,
            body_html=body,
        )

    def test_an_approver_of_the_partner_approves_and_it_is_recorded(self) -> None:
        old = approved_template(self.alpha)
        draft = self.draft()
        services.template_approve(template=draft, actor=self.alpha_approver)
        draft.refresh_from_db()
        old.refresh_from_db()
        self.assertEqual(draft.status, "approved")
        self.assertEqual(draft.approved_by, self.alpha_approver)
        self.assertIsNotNone(draft.approved_at)
        self.assertEqual(old.status, "retired")

    def test_a_caseworker_is_refused(self) -> None:
        with self.assertRaises(services.ApprovalRefused):
            services.template_approve(template=self.draft(), actor=self.alpha_staff)

    def test_another_partners_approver_is_refused(self) -> None:
        with self.assertRaises(services.ApprovalRefused):
            services.template_approve(template=self.draft(), actor=self.beta_approver)

    def test_the_leads_approvers_approve_only_the_leads_templates(self) -> None:
        with self.assertRaises(services.ApprovalRefused):
            services.template_approve(template=self.draft(), actor=self.lead_approver)
        lead_draft = self.draft(self.lead)
        services.template_approve(template=lead_draft, actor=self.lead_approver)
        lead_draft.refresh_from_db()
        self.assertEqual(lead_draft.status, "approved")

    def test_a_template_failing_the_tone_check_cannot_be_approved(self) -> None:
        draft = self.draft(body=ACCUSATORY)
        self.assertTrue(draft.tone_report)  # checked when saved
        with self.assertRaises(services.ApprovalRefused) as refused:
            services.template_approve(template=draft, actor=self.alpha_approver)
        self.assertIn("tone", str(refused.exception))
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")

    def test_it_fails_closed_when_the_tone_check_cannot_run(self) -> None:
        # A broken or missing check must stop the save and the approval, never pass as clean.
        draft = self.draft()
        with mock.patch("letters.tone.tone_problems_for_template", side_effect=ImportError("x")):
            with self.assertRaises(ImportError):
                self.draft()
            with self.assertRaises(ImportError):
                services.template_approve(template=draft, actor=self.alpha_approver)
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")
        self.assertEqual(LetterTemplate.objects.count(), 1)

    def test_it_reads_each_supported_esps_bounces_from_its_own_table_entry(self) -> None:
        import config.settings as project_settings
        from letters.services import bounces

        esps = set(project_settings._ESP_BACKENDS)
        self.assertTrue(esps)
        self.assertEqual(esps - set(bounces.BOUNCE_READERS), set())

    def test_a_template_that_does_not_compile_in_the_sandbox_cannot_be_approved(self) -> None:
        draft = self.draft(body="{% load static %}<p>hi</p>")
        with self.assertRaises(services.ApprovalRefused):
            services.template_approve(template=draft, actor=self.alpha_approver)

    def test_editing_in_the_admin_saves_a_new_draft_and_keeps_the_approved_one(self) -> None:
        approved = approved_template(self.alpha)
        self.client.force_login(self.alpha_approver)
        url = f"/admin/letters/lettertemplate/{approved.pk}/change/"
        response = self.client.post(
            url, {"subject": SUBJECT, "body_html": BODY + "<p>Edited.</p>", "body_text": ""}
        )
        self.assertEqual(response.status_code, 302, getattr(response, "context", None))
        approved.refresh_from_db()
        self.assertEqual(approved.status, "approved")
        self.assertNotIn("Edited.", approved.body_html)
        new = LetterTemplate.objects.get(partner=self.alpha, version=approved.version + 1)
        self.assertEqual((new.status, new.created_by), ("draft", self.alpha_approver))
        self.assertIn("Edited.", new.body_html)

    def test_the_admin_approve_button_follows_the_rules(self) -> None:
        draft = self.draft()
        url = f"/admin/letters/lettertemplate/{draft.pk}/approve/"
        self.client.force_login(self.beta_approver)  # can't even see it
        self.assertEqual(self.client.post(url).status_code, 404)
        self.client.force_login(self.lead_approver)  # sees it, may not approve it
        self.client.post(url)
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")
        self.client.force_login(self.alpha_approver)
        self.assertEqual(self.client.get(url).status_code, 200)  # the approval page, first
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")
        self.assertEqual(self.client.post(url).status_code, 302)
        draft.refresh_from_db()
        self.assertEqual(draft.status, "approved")

    def test_the_preview_renders_html_and_pdf_on_a_sample_case(self) -> None:
        draft = self.draft()
        self.client.force_login(self.alpha_staff)
        base = f"/admin/letters/lettertemplate/{draft.pk}/preview/"
        html = self.client.get(base + "html/")
        self.assertEqual(html.status_code, 200)
        self.assertContains(html, "Example Hosting Ltd.")  # every field filled, no real owner
        self.assertNotContains(html, self.alpha_case.reference)
        self.assertIn("default-src 'none'", html["Content-Security-Policy"])
        pdf = self.client.get(base + "pdf/")
        self.assertEqual(pdf["Content-Type"], "application/pdf")
        self.assertTrue(pdf.content.startswith(b"%PDF-"))
        edited = self.client.post(base + "html/", {"subject": SUBJECT, "body_html": "<p>Live!</p>"})
        self.assertContains(edited, "Live!")
        page = self.client.get(f"/admin/letters/lettertemplate/{draft.pk}/change/")
        self.assertContains(page, "Approve version")
        self.client.force_login(self.beta_staff)
        self.assertEqual(self.client.get(base + "html/").status_code, 404)

    def test_the_preview_uses_a_sample_when_the_partner_has_no_case(self) -> None:
        draft = self.draft(self.lead)
        self.client.force_login(self.regulator)
        response = self.client.get(f"/admin/letters/lettertemplate/{draft.pk}/preview/text/")
        self.assertContains(response, "Example Hosting Ltd.")
