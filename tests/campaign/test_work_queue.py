"""The work queue: what needs a person, scoped to the user's partners, cleared in one click."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core import mail

from campaign import services
from campaign.models import Attention, Case, CaseEvent, Membership
from letters.models import Letter, LetterKind
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template

URL = "/admin/campaign/case/work-queue/"


class WorkQueueTestCase(BaseTestCase):
    def test_it_lists_only_the_users_partners_items_with_their_reason(self) -> None:
        services.case_correction(case=self.alpha_case, kind="not_mine")
        services.case_correction(case=self.beta_case, kind="not_mine")
        self.client.force_login(self.alpha_staff)
        page = self.client.get(URL)
        self.assertContains(page, self.alpha_case.reference)
        self.assertContains(page, "The recipient says this is not their server.")
        self.assertNotContains(page, self.beta_case.reference)
        self.assertContains(page, 'id="work-queue-count">1<')
        # The count in every admin page's header.
        self.assertContains(self.client.get("/admin/"), 'id="work-queue-count">1<')
        self.client.force_login(self.regulator)  # the lead sees every partner's
        self.assertContains(self.client.get(URL), self.beta_case.reference)

    def test_it_clears_an_item_in_one_click(self) -> None:
        services.case_correction(case=self.alpha_case, kind="not_mine")
        self.client.force_login(self.alpha_staff)
        response = self.client.post(URL, {"case": self.alpha_case.pk, "action": "withdraw"})
        self.assertEqual(response.status_code, 302)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.WITHDRAWN)
        self.assertEqual(self.alpha_case.attention, "")
        event = CaseEvent.objects.filter(case=self.alpha_case).last()
        assert event is not None
        self.assertEqual((event.actor, event.to_status), (self.alpha_staff, "withdrawn"))
        self.assertContains(self.client.get(URL), "Nothing needs your attention today.")

    def test_another_partner_cannot_act_on_an_item(self) -> None:
        services.case_correction(case=self.alpha_case, kind="not_mine")
        self.client.force_login(self.beta_staff)
        self.client.post(URL, {"case": self.alpha_case.pk, "action": "withdraw"})
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NEEDS_REVIEW)
        self.assertEqual(self.alpha_case.attention, Attention.NOT_MINE)

    def test_a_viewer_reads_but_cannot_act(self) -> None:
        viewer = User.objects.create_user("alpha-viewer", is_staff=True)
        Membership.objects.create(user=viewer, partner=self.alpha, role="viewer")
        services.case_correction(case=self.alpha_case, kind="not_mine")
        self.client.force_login(viewer)
        self.assertContains(self.client.get(URL), self.alpha_case.reference)
        response = self.client.post(URL, {"case": self.alpha_case.pk, "action": "withdraw"})
        self.assertEqual(response.status_code, 403)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NEEDS_REVIEW)

    def test_it_writes_to_the_address_the_owner_gave(self) -> None:
        approved_template(self.alpha)
        services.case_correction(
            case=self.alpha_case, kind="other_contact", email="noc@alpha.example"
        )
        self.client.force_login(self.alpha_staff)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(URL, {"case": self.alpha_case.pk, "action": "write_given_contact"})
        first = self.alpha_case.server_owner.contacts.order_by("position").first()
        assert first is not None
        self.assertEqual(first.email, "noc@alpha.example")
        letter = Letter.objects.get(case=self.alpha_case)
        self.assertEqual(letter.recipient_email, "noc@alpha.example")
        self.assertEqual([m.to for m in mail.outbox], [["noc@alpha.example"]])
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NOTIFIED)
        self.assertEqual(self.alpha_case.attention, "")

    def test_it_retries_a_failed_letter(self) -> None:
        approved_template(self.alpha)
        letter = Letter.objects.create(
            case=self.alpha_case,
            kind=LetterKind.INITIAL,
            language="en",
            recipient_email="abuse@alpha.example",
            status=Letter.Status.FAILED,
        )
        services.case_attention_set(
            case=self.alpha_case, attention=Attention.LETTER_FAILED, note="ESP said no"
        )
        self.client.force_login(self.alpha_staff)
        self.assertContains(self.client.get(URL), "ESP said no")
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(URL, {"case": self.alpha_case.pk, "action": "retry_letter"})
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.attention, "")

    def test_an_approver_pauses_the_partners_automation_and_a_caseworker_cannot(self) -> None:
        self.client.force_login(self.alpha_staff)
        self.assertNotContains(self.client.get(URL), 'name="pause_partner"')
        self.client.post(URL, {"pause_partner": self.alpha.pk})
        self.alpha.refresh_from_db()
        self.assertFalse(self.alpha.automation_paused)
        approver = User.objects.create_user("alpha-approver", is_staff=True)
        Membership.objects.create(user=approver, partner=self.alpha, role="approver")
        self.client.force_login(approver)
        self.client.post(URL, {"pause_partner": self.beta.pk})  # not theirs
        self.client.post(URL, {"pause_partner": self.alpha.pk})
        self.alpha.refresh_from_db()
        self.beta.refresh_from_db()
        self.assertTrue(self.alpha.automation_paused)
        self.assertFalse(self.beta.automation_paused)

    def test_sending_to_review_from_the_case_list_keeps_a_reason(self) -> None:
        self.client.force_login(self.alpha_staff)
        self.client.post(
            "/admin/campaign/case/",
            {"action": "mark_needs_review", "_selected_action": [self.alpha_case.pk]},
        )
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NEEDS_REVIEW)
        self.assertEqual(self.alpha_case.review_reason, "Sent to review by alpha.")
        self.assertContains(self.client.get(URL), "Sent to review by alpha.")

    def test_the_case_page_says_what_the_schedule_will_do(self) -> None:
        services.case_transition(case=self.alpha_case, to_status=Case.Status.NOTIFIED)
        self.client.force_login(self.alpha_staff)
        page = self.client.get(f"/admin/campaign/case/{self.alpha_case.pk}/change/")
        self.alpha_case.refresh_from_db()
        self.assertContains(page, self.alpha_case.next_action_label)
        self.assertTrue(self.alpha_case.next_action_label.startswith("re-probe on "))
        self.assertNotContains(page, "a reminder follows")
