"""Template editing and approval in the admin; previews; partner names and dates in letters."""

from __future__ import annotations

from datetime import date

from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User

from campaign.models import Membership
from letters import links, rendering, services
from letters.models import LetterTemplate
from tests.base import BaseTestCase
from tests.letters.helpers import BODY, SUBJECT, approved_template

ACCUSATORY = "<p>Hello.</p>\n<p>Running an open relay is a violation of the law.</p>"


class TemplateAdminTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.writer = User.objects.create_user("alpha-writer", is_staff=True)
        cls.checker = User.objects.create_user("alpha-checker", is_staff=True)
        for user in (cls.writer, cls.checker):
            Membership.objects.create(user=user, partner=cls.alpha, role=Membership.Role.APPROVER)
        cls.alpha.signatory_name = "Sam Example"
        cls.alpha.signatory_title = "Head of Outreach"
        cls.alpha.reply_to = "sys@alpha.example"
        cls.alpha.save()

    def draft(self, body: str = BODY, actor: User | None = None, kind: str = "initial"):
        return services.template_new_version(
            partner=self.alpha,
            kind=kind,
            language="en",
            subject=SUBJECT,
            body_html=body,
            actor=actor,
        )

    def change_url(self, template: LetterTemplate) -> str:
        return f"/admin/letters/lettertemplate/{template.pk}/change/"

    def test_save_and_continue_opens_the_new_version(self) -> None:
        approved = approved_template(self.alpha)
        self.client.force_login(self.writer)
        response = self.client.post(
            self.change_url(approved),
            {"subject": SUBJECT, "body_html": BODY + "<p>More.</p>", "_continue": "1"},
        )
        new = LetterTemplate.objects.get(partner=self.alpha, version=approved.version + 1)
        self.assertRedirects(response, self.change_url(new), fetch_redirect_response=False)
        page = self.client.get(response["Location"])
        self.assertContains(page, "More.")

    def test_the_tone_report_reads_as_sentences_and_approval_waits(self) -> None:
        draft = self.draft(ACCUSATORY, actor=self.writer)
        self.client.force_login(self.checker)
        page = self.client.get(self.change_url(draft))
        self.assertContains(page, "Line 2 of the HTML body: “violation”")
        self.assertNotContains(page, '{"line"')  # no raw JSON
        self.assertContains(page, 'value="Approve version 1…" disabled')
        self.assertContains(page, "The tone check found 1 problem(s)")
        self.assertNotContains(page, f"/admin/letters/lettertemplate/{draft.pk}/approve/")

    def test_a_clean_draft_offers_the_approval_page(self) -> None:
        draft = self.draft(actor=self.writer)
        self.client.force_login(self.checker)
        page = self.client.get(self.change_url(draft))
        self.assertContains(page, f"/admin/letters/lettertemplate/{draft.pk}/approve/")
        self.assertNotContains(page, 'disabled aria-describedby="approval-refusal"')

    def test_an_approver_cannot_approve_a_version_they_edited(self) -> None:
        draft = self.draft(actor=self.writer)
        with self.assertRaises(services.ApprovalRefused) as refused:
            services.template_approve(template=draft, actor=self.writer)
        self.assertIn("another approver", str(refused.exception))
        self.client.force_login(self.writer)
        self.client.post(f"/admin/letters/lettertemplate/{draft.pk}/approve/")
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")
        services.template_approve(template=draft, actor=self.checker)
        draft.refresh_from_db()
        self.assertEqual((draft.status, draft.approved_by), ("approved", self.checker))

    def test_the_approval_page_shows_a_diff_against_the_approved_version(self) -> None:
        approved = approved_template(self.alpha)
        draft = self.draft(BODY.replace("Check the fix here", "Please check the fix here"))
        self.client.force_login(self.checker)
        page = self.client.get(f"/admin/letters/lettertemplate/{draft.pk}/approve/")
        self.assertContains(page, f"approved v{approved.version}")
        self.assertContains(page, f"this version (v{draft.version})")
        self.assertRegex(page.content.decode(), r'class="diff_(add|chg)">[^<]*Please')
        self.assertContains(page, "Changes to the subject")
        self.assertContains(page, "Unchanged.")  # the subject
        draft.refresh_from_db()
        self.assertEqual(draft.status, "draft")  # looking approves nothing
        self.client.post(f"/admin/letters/lettertemplate/{draft.pk}/approve/")
        draft.refresh_from_db()
        self.assertEqual(draft.status, "approved")
        entry = LogEntry.objects.get(object_id=str(draft.pk))  # shows in "Recent actions"
        self.assertEqual(entry.get_change_message(), f"Approved version {draft.version}.")

    def test_beta_cannot_open_alphas_approval_page(self) -> None:
        draft = self.draft()
        self.client.force_login(self.beta_staff)
        url = f"/admin/letters/lettertemplate/{draft.pk}/approve/"
        self.assertEqual(self.client.get(url).status_code, 404)
        self.assertEqual(
            self.client.get("/admin/letters/lettertemplate/987654321/approve/").status_code, 404
        )

    def test_a_reminder_preview_has_every_field_filled(self) -> None:
        draft = self.draft(
            "<p>On {{ first_letter_date }} we wrote to you about {{ reference }}.</p>",
            kind="reminder",
        )
        self.client.force_login(self.alpha_staff)
        html = self.client.get(f"/admin/letters/lettertemplate/{draft.pk}/preview/html/")
        self.assertNotContains(html, "On  we wrote")
        self.assertNotContains(html, "On we wrote")
        self.assertRegex(html.content.decode(), r"On \d{1,2} [A-Z][a-z]+ \d{4} we wrote")

    def test_a_field_that_would_print_nothing_is_flagged(self) -> None:
        self.alpha.signatory_name = ""
        self.alpha.save()
        draft = self.draft("<p>{{ signatory_name }}, {{ ower_name }}, {{ owner_name }}</p>")
        self.client.force_login(self.alpha_staff)
        page = self.client.get(self.change_url(draft))
        self.assertContains(page, "{{ signatory_name }} would print nothing")
        self.assertContains(page, "{{ ower_name }} is not a field letters have")
        self.assertNotContains(page, "{{ owner_name }} would")


class LetterNamesAndDatesTestCase(BaseTestCase):
    def test_dates_follow_the_partners_country(self) -> None:
        day = date(2026, 12, 7)
        self.assertEqual(rendering.local_date(day, "en", "GB"), "7 December 2026")
        self.assertEqual(rendering.local_date(day, "en", "US"), "December 7, 2026")
        self.assertEqual(rendering.local_date(day, "de", "DE"), "7. Dezember 2026")
        self.assertEqual(rendering.local_date(day, "ja", "JP"), "2026年12月7日")

    def test_a_uk_letter_is_dated_the_uk_way(self) -> None:
        context = rendering.case_context(
            self.alpha_case,
            kind="initial",
            language="en",
            remediation_url=links.PREVIEW_URL,
            today=date(2026, 12, 7),
        )
        self.assertEqual(context["letter_date"], "7 December 2026")

    def test_a_japanese_letter_prints_the_partners_japanese_names(self) -> None:
        self.alpha.languages = ["ja", "en"]
        self.alpha.agency = "Alpha Agency"
        self.alpha.signatory_title = "Alpha Agency"  # only repeats the agency
        self.alpha.names = {"ja": {"agency": "アルファ庁", "signatory_title": "広報室長"}}
        self.alpha.full_clean()
        self.alpha.save()
        ja = rendering.sample_context(
            self.alpha, kind="initial", language="ja", remediation_url=links.PREVIEW_URL
        )
        self.assertEqual((ja["agency"], ja["signatory_title"]), ("アルファ庁", "広報室長"))
        en = rendering.sample_context(
            self.alpha, kind="initial", language="en", remediation_url=links.PREVIEW_URL
        )
        self.assertEqual(en["agency"], "Alpha Agency")
        self.assertEqual(en["signatory_title"], "")  # not the agency a second time
        source = rendering.TemplateSource("件名", "<p>{{ agency }}</p>")
        rendered = rendering.render_source(source, context=ja, partner=self.alpha, language="ja")
        self.assertIn('<div class="agency">アルファ庁</div>', rendered.html)
        self.assertNotIn("Alpha Agency", rendered.html)

    def test_names_for_an_unknown_language_or_key_are_refused(self) -> None:
        from django.core.exceptions import ValidationError

        for names in ({"xx": {"agency": "X"}}, {"ja": {"agnecy": "X"}}, {"ja": "X"}):
            with self.subTest(names=names), self.assertRaises(ValidationError):
                self.alpha.names = names
                self.alpha.full_clean()
