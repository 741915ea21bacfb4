"""The case page as a workbench, letter PDFs through a partner-checked view, the queue
confirmation, previews and the owner's page for staff."""

from __future__ import annotations

from django.contrib.admin.models import LogEntry
from django.core import mail
from django.core.files.base import ContentFile
from django.utils import timezone

from campaign.models import Case, CaseEvent, Contact
from letters.models import Letter, RemediationLink
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template

MISSING = 987654321


class CaseWorkbenchTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.template = approved_template(self.alpha)
        owner = self.alpha_case.server_owner
        self.bounced = Contact.objects.create(
            server_owner=owner,
            position=1,
            kind=Contact.Kind.NETWORK,
            email="noc@alpha.example",
            bounced_at=timezone.now(),
        )
        Contact.objects.create(
            server_owner=owner, position=2, kind=Contact.Kind.TECHNICAL, email="tech@alpha.example"
        )

    def page(self, user=None, case: Case | None = None):
        self.client.force_login(user or self.alpha_staff)
        case = case or self.alpha_case
        return self.client.get(f"/admin/campaign/case/{case.pk}/change/")

    def sent_letter(self) -> Letter:
        letter = Letter.objects.create(
            case=self.alpha_case,
            kind="initial",
            language="en",
            template=self.template,
            recipient_email="abuse@alpha.example",
            status=Letter.Status.SENT,
            sent_at=timezone.now(),
        )
        letter.pdf.save("alpha.pdf", ContentFile(b"%PDF-1.7 alpha letter as sent"), save=True)
        self.addCleanup(letter.pdf.delete, save=False)
        return letter

    # --- item 7: one page to work from -------------------------------------------------------
    def test_it_lists_contacts_in_order_with_the_bounced_one_marked(self) -> None:
        html = self.page().content.decode()
        emails = ["abuse@alpha.example", "noc@alpha.example", "tech@alpha.example"]
        positions = [html.index(e) for e in emails]
        self.assertEqual(positions, sorted(positions))
        self.assertIn('<tr class="contact-bounced">', html)
        self.assertIn("<s>noc@alpha.example</s>", html)
        self.assertIn("Next letter goes here", html)

    def test_it_links_each_finding_to_its_transcript(self) -> None:
        finding = self.alpha_case.findings.get()
        response = self.page()
        self.assertContains(response, f"/admin/scanning/finding/{finding.pk}/change/")
        self.assertContains(response, "Confirmed open")  # the label, not the code

    def test_it_shows_the_deadline_and_what_it_is(self) -> None:
        Case.objects.filter(pk=self.alpha_case.pk).update(
            status=Case.Status.NOTIFIED, next_action_at=timezone.now() + timezone.timedelta(days=3)
        )
        response = self.page()
        self.assertContains(response, "a reminder goes out if the server is still open")

    def test_without_a_set_deadline_it_shows_the_campaigns(self) -> None:
        letter = self.sent_letter()
        Case.objects.filter(pk=self.alpha_case.pk).update(status=Case.Status.NOTIFIED)
        self.campaign.reminder_after_days = 10
        self.campaign.save()
        response = self.page()
        due = timezone.localtime(letter.sent_at + timezone.timedelta(days=10))
        self.assertContains(response, due.strftime("%Y-%m-%dT%H:%M"))
        self.assertContains(response, "by the campaign's schedule, from the first letter")

    def test_the_sent_pdf_opens_through_the_partner_checked_view(self) -> None:
        letter = self.sent_letter()
        response = self.page()
        url = f"/admin/letters/letter/{letter.pk}/pdf/"
        self.assertContains(response, url)
        self.assertNotContains(response, "/media/")
        pdf = self.client.get(url)
        self.assertEqual(pdf.status_code, 200)
        self.assertEqual(pdf["Content-Type"], "application/pdf")
        self.assertEqual(b"".join(pdf.streaming_content), b"%PDF-1.7 alpha letter as sent")
        self.assertIn("no-store", pdf["Cache-Control"])
        # The letter's own page links the same view, not MEDIA_URL.
        change = self.client.get(f"/admin/letters/letter/{letter.pk}/change/")
        self.assertContains(change, url)
        self.assertNotContains(change, "/media/")

    def test_beta_cannot_open_alphas_pdf(self) -> None:
        letter = self.sent_letter()
        self.client.force_login(self.beta_staff)
        theirs = self.client.get(f"/admin/letters/letter/{letter.pk}/pdf/")
        missing = self.client.get(f"/admin/letters/letter/{MISSING}/pdf/")
        self.assertEqual((theirs.status_code, missing.status_code), (404, 404))
        self.assertNotContains(theirs, "PDF-1.7", status_code=404)
        self.client.logout()
        anonymous = self.client.get(f"/admin/letters/letter/{letter.pk}/pdf/")
        self.assertEqual(anonymous.status_code, 302)
        self.assertIn("/admin/login/", anonymous["Location"])

    def test_a_letter_not_sent_has_no_pdf(self) -> None:
        letter = Letter.objects.create(
            case=self.alpha_case, kind="initial", language="en", recipient_email="a@alpha.example"
        )
        self.client.force_login(self.alpha_staff)
        self.assertEqual(
            self.client.get(f"/admin/letters/letter/{letter.pk}/pdf/").status_code, 404
        )

    def test_a_caseworker_gets_the_actions_that_fit_and_a_viewer_none(self) -> None:
        response = self.page()  # ready, nothing sent: queue, no resend, no "mark ready"
        self.assertContains(response, 'value="queue_advisory_letter"')
        self.assertNotContains(response, 'value="resend_to_next_contact"')
        self.assertNotContains(response, 'value="mark_ready"')
        self.assertContains(response, f"/admin/campaign/case/{self.alpha_case.pk}/owner-page/")
        self.sent_letter()
        Case.objects.filter(pk=self.alpha_case.pk).update(status=Case.Status.NOTIFIED)
        response = self.page()  # notified: resend to the next contact, a reminder preview
        self.assertNotContains(response, 'value="queue_advisory_letter"')
        self.assertContains(response, 'value="resend_to_next_contact"')
        self.assertContains(response, "Preview the reminder")
        Case.objects.filter(pk=self.alpha_case.pk).update(
            status=Case.Status.NEEDS_REVIEW, review_reason="Weak evidence only."
        )
        self.assertContains(self.page(), 'value="mark_ready"')
        beta_template = self.beta_case.partner.letter_templates.filter(status="approved")
        self.assertFalse(beta_template.exists())
        response = self.page(self.regulator, self.beta_case)  # ready, but no German template
        self.assertContains(response, 'disabled aria-describedby="why-queue_advisory_letter"')
        self.assertContains(response, "no approved initial template")
        viewer = self.alpha_staff.memberships.get()
        viewer.role = "viewer"
        viewer.save()
        response = self.page()
        self.assertNotContains(response, 'value="queue_advisory_letter"')
        self.assertContains(response, "a caseworker of its partner acts on it")

    # --- item 8: language, timeline, no "Save and add another" -------------------------------
    def test_language_is_a_choice_of_the_partners_languages(self) -> None:
        self.alpha.languages = ["en", "fr"]
        self.alpha.save()
        response = self.page()
        self.assertContains(response, '<select name="language"')
        self.assertContains(response, '<option value="fr">')
        self.assertNotContains(response, '<option value="de">')
        self.assertNotContains(response, "_addanother")
        data = {
            "language": "de",
            "review_reason": "",
            "next_action_at_0": "",
            "next_action_at_1": "",
        }
        response = self.client.post(f"/admin/campaign/case/{self.alpha_case.pk}/change/", data)
        self.assertEqual(response.status_code, 200)  # the form again, with the error
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.language, "en")
        data["language"] = "fr"
        response = self.client.post(f"/admin/campaign/case/{self.alpha_case.pk}/change/", data)
        self.assertEqual(response.status_code, 302)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.language, "fr")

    def test_the_timeline_reads_labels_not_status_codes(self) -> None:
        html = self.page().content.decode()
        timeline = html[html.index('id="wb-timeline"') :]
        self.assertIn("New → Ready", timeline)
        self.assertIn("192.0.2.10:25/smtp confirmed open", timeline)  # the note, in words
        self.assertNotIn(">new<", timeline)
        self.assertNotIn('class="original"', html)  # the inline's tiny per-row heading

    # --- item 9: a confirmation before anything is queued ------------------------------------
    def test_queueing_asks_first_and_lists_each_letter(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.post(
            "/admin/campaign/case/",
            {
                "action": "queue_advisory_letter",
                "_selected_action": [self.alpha_case.pk],
                "_case": self.alpha_case.pk,
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(Letter.objects.exists())  # nothing until "Yes"
        self.assertContains(response, self.alpha_case.reference)
        self.assertContains(response, "abuse@alpha.example")
        self.assertContains(response, "English (en)")
        self.assertContains(response, f"v{self.template.version}")
        self.assertContains(
            response, f"/admin/campaign/case/{self.alpha_case.pk}/letter/initial/pdf/"
        )
        self.assertContains(response, 'name="post" value="yes"')
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                "/admin/campaign/case/",
                {
                    "action": "queue_advisory_letter",
                    "_selected_action": [self.alpha_case.pk],
                    "_case": self.alpha_case.pk,
                    "post": "yes",
                },
            )
        self.assertRedirects(
            response,
            f"/admin/campaign/case/{self.alpha_case.pk}/change/",
            fetch_redirect_response=False,
        )
        letter = Letter.objects.get()
        self.assertEqual(letter.recipient_email, "abuse@alpha.example")
        self.assertEqual(len(mail.outbox), 1)
        entry = LogEntry.objects.get(object_id=str(self.alpha_case.pk))
        self.assertIn("abuse@alpha.example", entry.get_change_message())

    def test_the_confirmation_says_which_cases_will_not_go(self) -> None:
        self.client.force_login(self.regulator)
        response = self.client.post(
            "/admin/campaign/case/",
            {
                "action": "queue_advisory_letter",
                "_selected_action": [self.alpha_case.pk, self.beta_case.pk],
            },
        )
        self.assertContains(response, "no approved initial template")
        self.assertContains(response, "Yes, queue 1 letter")

    def test_mark_ready_from_the_case_page_returns_to_it(self) -> None:
        Case.objects.filter(pk=self.alpha_case.pk).update(
            status=Case.Status.NEEDS_REVIEW, review_reason="Weak evidence only."
        )
        self.client.force_login(self.alpha_staff)
        response = self.client.post(
            "/admin/campaign/case/",
            {
                "action": "mark_ready",
                "_selected_action": [self.alpha_case.pk],
                "_case": self.alpha_case.pk,
                "index": 0,
            },
        )
        self.assertRedirects(
            response,
            f"/admin/campaign/case/{self.alpha_case.pk}/change/",
            fetch_redirect_response=False,
        )
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.READY)
        self.assertTrue(LogEntry.objects.filter(object_id=str(self.alpha_case.pk)).exists())

    # --- previews ----------------------------------------------------------------------------
    def test_the_case_letter_preview_renders_this_case_with_a_placeholder_link(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get(
            f"/admin/campaign/case/{self.alpha_case.pk}/letter/initial/html/"
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Alpha Hosting")
        self.assertContains(response, "192.0.2.10")
        self.assertContains(response, "/r/preview/")
        self.assertIn("sandbox", response["Content-Security-Policy"])
        self.assertFalse(RemediationLink.objects.exists())

    def test_the_owners_page_for_staff_issues_no_token(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get(f"/admin/campaign/case/{self.alpha_case.pk}/owner-page/")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Staff preview of the owner")
        self.assertContains(response, "192.0.2.10")
        self.assertIn("script-src 'none'", response["Content-Security-Policy"])
        self.assertFalse(RemediationLink.objects.exists())
        self.assertFalse(
            self.alpha_case.events.filter(kind=CaseEvent.Kind.RECHECK_REQUESTED).exists()
        )

    def test_beta_cannot_preview_alphas_letter_or_page(self) -> None:
        self.client.force_login(self.beta_staff)
        for suffix in ("letter/initial/html/", "letter/initial/pdf/", "owner-page/"):
            with self.subTest(suffix=suffix):
                theirs = self.client.get(f"/admin/campaign/case/{self.alpha_case.pk}/{suffix}")
                missing = self.client.get(f"/admin/campaign/case/{MISSING}/{suffix}")
                self.assertEqual(theirs.status_code, 404)
                self.assertEqual(missing.status_code, 404)
                self.assertNotContains(theirs, "Alpha Hosting", status_code=404)
