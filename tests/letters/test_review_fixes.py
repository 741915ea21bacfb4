"""Defects found in review of the letters engine: each test failed before its fix."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from anymail.exceptions import AnymailRecipientsRefused
from anymail.signals import AnymailTrackingEvent, EventType
from django.conf import settings
from django.core import mail
from django.core.files.storage import FileSystemStorage
from django.test import override_settings

from campaign.models import Case, CaseEvent, Contact, Suppression
from campaign.services import case_transition
from letters import services
from letters.models import DeliveryEvent, Letter
from letters.tasks import send_letter
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template
from tests.letters.test_sending import flaky_post
from tests.letters.test_tracking import AUTH, SECRET, load


def hard_bounce(letter: Letter, bounce_id: int = 1) -> AnymailTrackingEvent:
    return AnymailTrackingEvent(
        event_type=EventType.BOUNCED,
        event_id=str(bounce_id),
        message_id=letter.esp_message_id,
        recipient=letter.recipient_email,
        metadata={"letter": str(letter.public_id)},
        esp_event={"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "ID": bounce_id},
    )


class ReviewFixesTestCase(BaseTestCase):
    def setUp(self) -> None:
        approved_template(self.alpha)
        self.owner = self.alpha_case.server_owner
        for position, kind, email in ((1, "network", "noc"), (2, "technical", "owner")):
            Contact.objects.create(
                server_owner=self.owner, position=position, kind=kind,
                email=f"{email}@alpha.example",
            )  # fmt: skip
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])

    def queue(self, *, execute: bool = True, **kwargs: Any) -> Letter:
        kwargs.setdefault("fresh", True)
        with self.captureOnCommitCallbacks(execute=execute):
            letter = services.letter_queue(case=self.alpha_case, actor=self.alpha_staff, **kwargs)
        letter.refresh_from_db()
        return letter

    def resend_action(self, user: Any = None) -> None:
        self.client.force_login(user or self.alpha_staff)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(
                "/admin/campaign/case/",
                {
                    "action": "resend_to_next_contact",
                    "_selected_action": [self.alpha_case.pk],
                    "post": "yes",
                },
            )

    # --- a second letter while the first is on its way ----------------------------------------
    def test_queueing_twice_before_the_first_is_sent_writes_once(self) -> None:
        # The case stays `ready` until the first letter is sent: a double click (or two staff)
        # must not write to the next contact as well.
        first = self.queue(execute=False)
        with self.assertRaises(services.LetterNotQueued):
            self.queue(execute=False)
        self.resend_action()
        self.assertEqual(list(Letter.objects.values_list("pk", flat=True)), [first.pk])

    def test_a_bounce_after_staff_already_resent_does_not_write_to_a_third_contact(self) -> None:
        first = self.queue()
        self.resend_action()  # staff move on to the network contact before the bounce arrives
        self.assertEqual(Letter.objects.count(), 2)
        with self.captureOnCommitCallbacks(execute=True):
            services.delivery_event_record(esp_name="Postmark", event=hard_bounce(first))
        first.refresh_from_db()
        self.assertEqual(first.status, Letter.Status.BOUNCED)
        self.assertEqual(
            sorted(Letter.objects.values_list("recipient_email", flat=True)),
            ["abuse@alpha.example", "noc@alpha.example"],
        )
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NOTIFIED)

    def test_a_bounce_while_the_next_letter_is_queued_does_not_call_for_review(self) -> None:
        Contact.objects.filter(email="owner@alpha.example").delete()
        first = self.queue()
        self.resend_action()
        Letter.objects.exclude(pk=first.pk).update(status=Letter.Status.QUEUED)  # still retrying
        with self.captureOnCommitCallbacks(execute=True):
            services.delivery_event_record(esp_name="Postmark", event=hard_bounce(first))
        self.alpha_case.refresh_from_db()
        # not "every contact bounced": the network contact is being written to
        self.assertEqual(self.alpha_case.status, Case.Status.NOTIFIED)

    def test_retrying_a_failed_letter_after_a_resend_does_not_write_twice(self) -> None:
        with flaky_post(AnymailRecipientsRefused("refused")):
            failed = self.queue()
        self.assertEqual(failed.status, Letter.Status.FAILED)
        self.resend_action()  # staff wrote to the next contact instead
        self.assertEqual([m.to for m in mail.outbox], [["noc@alpha.example"]])
        with self.captureOnCommitCallbacks(execute=True):
            self.assertFalse(services.letter_retry(letter=failed, actor=self.alpha_staff))
        self.assertEqual([m.to for m in mail.outbox], [["noc@alpha.example"]])

    # --- suppression and the case's state honoured at send time -------------------------------
    def test_an_owner_suppressed_after_queueing_gets_nothing(self) -> None:
        letter = self.queue(execute=False)
        Suppression.objects.create(
            partner=self.alpha, server_owner=self.owner, reason=Suppression.Reason.LEGAL_HOLD
        )
        send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertEqual(len(mail.outbox), 0)

    def test_a_letter_for_a_case_withdrawn_after_queueing_is_not_sent(self) -> None:
        letter = self.queue(execute=False)
        case_transition(case=self.alpha_case, to_status=Case.Status.WITHDRAWN, note="Not theirs.")
        send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertEqual(len(mail.outbox), 0)

    # --- sent means sent -----------------------------------------------------------------------
    def test_a_pdf_storage_error_after_sending_does_not_strand_the_letter(self) -> None:
        # A storage backend's own error (an object store's, say), not an OSError.
        with mock.patch.object(FileSystemStorage, "save", side_effect=RuntimeError("bucket gone")):
            letter = self.queue()
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.assertTrue(letter.pdf_sha256)
        self.assertTrue(self.alpha_case.events.filter(kind=CaseEvent.Kind.LETTER_SENT).exists())


@override_settings(
    ANYMAIL={**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}, ANYMAIL_WEBHOOK_ESPS=["postmark"]
)
class MalformedWebhookTestCase(BaseTestCase):
    """A malformed payload is stored (or ignored), never a 500 that the ESP retries forever."""

    def setUp(self) -> None:
        approved_template(self.alpha)
        with self.captureOnCommitCallbacks(execute=True):
            self.letter = services.letter_queue(case=self.alpha_case, fresh=True)
        self.letter.refresh_from_db()
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])

    def post(self, payload: dict) -> Any:
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                "/anymail/postmark/tracking/",
                data=json.dumps(payload),
                content_type="application/json",
                **AUTH,
            )

    def test_a_numeric_message_id_or_recipient_is_stored(self) -> None:
        payload = load("postmark_delivery")
        payload["Metadata"] = {"letter": str(self.letter.public_id)}
        payload["MessageID"], payload["Recipient"] = 12345, 67890
        response = self.post(payload)
        self.assertEqual(response.status_code, 200, response.content)
        event = DeliveryEvent.objects.get()
        self.assertEqual((event.message_id, event.letter), ("12345", self.letter))

    def test_an_unhashable_bounce_code_is_stored(self) -> None:
        payload = load("postmark_soft_bounce")
        payload["Metadata"] = {"letter": str(self.letter.public_id)}
        payload["TypeCode"] = [4096]
        response = self.post(payload)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(DeliveryEvent.objects.count(), 1)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)
