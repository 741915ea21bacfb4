"""ESP tracking webhooks, posted to anymail's real URLs with recorded payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from unittest import mock

from django.conf import settings
from django.core import mail
from django.db import OperationalError
from django.test import override_settings

from campaign.models import Case, CaseEvent, Contact, Suppression
from letters import services
from letters.models import DeliveryEvent, Letter, LetterKind
from letters.services import tracking
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SECRET = "anymail-hook:s3cret-pass"
MAILGUN_KEY = "mailgun-test-signing-key"
AUTH = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}
FORGED = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"anymail-hook:guess").decode()}


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def mailgun_sign(payload: dict, key: str = MAILGUN_KEY) -> dict:
    block = payload["signature"]
    block["signature"] = hmac.new(
        key.encode(), f"{block['timestamp']}{block['token']}".encode(), hashlib.sha256
    ).hexdigest()
    return payload


@override_settings(
    ANYMAIL={
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    },
    ANYMAIL_WEBHOOK_ESPS=["postmark", "mailgun", "amazon_ses", "sendgrid"],
)
class TrackingTestCase(BaseTestCase):
    def setUp(self) -> None:
        approved_template(self.alpha)
        self.owner = self.alpha_case.server_owner
        self.network = Contact.objects.create(
            server_owner=self.owner, position=1, kind="network", email="noc@alpha.example"
        )
        with self.captureOnCommitCallbacks(execute=True):
            self.letter = services.letter_queue(case=self.alpha_case, fresh=True)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])
        self.email = self.letter.recipient_email
        self.uuid = str(self.letter.public_id)

    # --- payloads, pointed at the letter under test ------------------------------------------
    def postmark(self, name: str, *, metadata: bool = True) -> dict:
        payload = load(name)
        payload["Metadata"] = {"letter": self.uuid} if metadata else {}
        payload["MessageID"] = self.letter.esp_message_id
        payload["Email" if "Email" in payload else "Recipient"] = self.email
        return payload

    def mailgun(self, name: str) -> dict:
        payload = load(name)
        data = payload["event-data"]
        data["user-variables"] = {"letter": self.uuid}
        data["recipient"] = data["message"]["headers"]["to"] = self.email
        return mailgun_sign(payload)

    def ses(self, name: str) -> dict:
        sns = load(name)
        message = json.loads(sns["Message"])
        message["mail"]["destination"] = [self.email]
        message["mail"]["headers"] = [
            {"name": "X-Metadata", "value": json.dumps({"letter": self.uuid})}
        ]
        for key in ("bounce", "complaint"):
            if key in message:
                field = "bouncedRecipients" if key == "bounce" else "complainedRecipients"
                for recipient in message[key][field]:
                    recipient["emailAddress"] = self.email
        if "delivery" in message:
            message["delivery"]["recipients"] = [self.email]
        sns["Message"] = json.dumps(message)
        return sns

    def post(self, esp: str, payload: Any, auth: dict | None = None) -> Any:
        headers = dict(AUTH if auth is None else auth)
        content_type = "application/json"
        if esp == "amazon_ses":
            content_type = "text/plain; charset=UTF-8"  # SNS posts JSON as text/plain
            headers["HTTP_X_AMZ_SNS_MESSAGE_ID"] = payload["MessageId"]
            headers["HTTP_X_AMZ_SNS_MESSAGE_TYPE"] = payload["Type"]
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                f"/anymail/{esp}/tracking/",
                data=json.dumps(payload),
                content_type=content_type,
                **headers,
            )

    def assert_posted(self, esp: str, payload: Any) -> None:
        response = self.post(esp, payload)
        self.assertEqual(response.status_code, 200, response.content)

    # --- delivered ----------------------------------------------------------------------------
    def test_delivered_from_each_esp_marks_the_letter_delivered(self) -> None:
        for esp, payload in (
            ("postmark", lambda: self.postmark("postmark_delivery")),
            ("mailgun", lambda: self.mailgun("mailgun_delivered")),
            ("amazon_ses", lambda: self.ses("amazon_ses_delivery")),
        ):
            Letter.objects.filter(pk=self.letter.pk).update(status=Letter.Status.SENT)
            self.assert_posted(esp, payload())
            self.letter.refresh_from_db()
            self.assertEqual(self.letter.status, Letter.Status.DELIVERED, esp)
            event = DeliveryEvent.objects.get(esp=esp)
            self.assertEqual((event.letter, event.event_type), (self.letter, "delivered"))
        self.assertEqual(
            self.alpha_case.events.filter(kind=CaseEvent.Kind.LETTER_DELIVERED).count(), 3
        )

    def test_sendgrid_events_are_recorded_and_applied(self) -> None:
        events = load("sendgrid_events")
        for event in events:
            event["email"], event["letter"] = self.email, self.uuid
        self.assert_posted("sendgrid", events)
        self.assertEqual(DeliveryEvent.objects.filter(esp="sendgrid").count(), 2)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.BOUNCED)
        bounce = DeliveryEvent.objects.get(esp="sendgrid", event_type="bounced")
        self.assertEqual(
            (bounce.event_id, bounce.bounce_kind), ("6g4ZI7SA-xmRDv57GoPIPw==", "hard")
        )

    def test_it_matches_by_message_id_when_metadata_is_missing(self) -> None:
        self.assert_posted("postmark", self.postmark("postmark_delivery", metadata=False))
        self.assertEqual(DeliveryEvent.objects.get().letter, self.letter)

    def test_an_event_for_no_letter_of_ours_is_stored_unmatched(self) -> None:
        self.assert_posted("postmark", load("postmark_delivery"))
        self.assertIsNone(DeliveryEvent.objects.get().letter)

    # --- bounces ------------------------------------------------------------------------------
    def assert_hard_bounce_moves_on(self, esp: str, payload: dict) -> None:
        self.assert_posted(esp, payload)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.BOUNCED)
        event = DeliveryEvent.objects.get(esp=esp)
        self.assertEqual(event.bounce_kind, "hard")
        contact = Contact.objects.get(server_owner=self.owner, email=self.email)
        self.assertIsNotNone(contact.bounced_at)
        nxt = Letter.objects.exclude(pk=self.letter.pk).get()
        self.assertEqual(nxt.recipient_email, "noc@alpha.example")
        self.assertEqual(nxt.status, Letter.Status.SENT)  # queued and (eagerly) sent
        self.assertEqual([m.to for m in mail.outbox][-1], ["noc@alpha.example"])
        self.assertTrue(self.alpha_case.events.filter(kind=CaseEvent.Kind.LETTER_BOUNCED).exists())

    def test_a_postmark_hard_bounce_queues_the_next_contact(self) -> None:
        self.assert_hard_bounce_moves_on("postmark", self.postmark("postmark_bounce"))

    def test_a_mailgun_permanent_failure_queues_the_next_contact(self) -> None:
        self.assert_hard_bounce_moves_on("mailgun", self.mailgun("mailgun_failed_permanent"))

    def test_an_ses_permanent_bounce_queues_the_next_contact(self) -> None:
        self.assert_hard_bounce_moves_on("amazon_ses", self.ses("amazon_ses_bounce"))

    def test_a_hard_bounced_address_gets_no_later_letter_of_any_kind(self) -> None:
        self.assert_hard_bounce_moves_on("postmark", self.postmark("postmark_bounce"))
        approved_template(self.alpha, kind=LetterKind.REMINDER)
        self.alpha_case.refresh_from_db()
        with self.captureOnCommitCallbacks(execute=True):
            reminder = services.letter_queue(case=self.alpha_case, kind=LetterKind.REMINDER)
        self.assertEqual(reminder.recipient_email, "noc@alpha.example")
        self.assertNotIn([self.email], [m.to for m in mail.outbox][1:])

    def test_soft_bounces_are_recorded_only(self) -> None:
        self.assert_posted("postmark", self.postmark("postmark_soft_bounce"))
        self.assert_posted("mailgun", self.mailgun("mailgun_failed_temporary"))
        self.assert_posted("amazon_ses", self.ses("amazon_ses_soft_bounce"))
        kinds = set(DeliveryEvent.objects.values_list("esp", "bounce_kind"))
        self.assertEqual(kinds, {("postmark", "soft"), ("mailgun", "soft"), ("amazon_ses", "soft")})
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)
        self.assertEqual(Letter.objects.count(), 1)
        self.assertFalse(Contact.objects.filter(bounced_at__isnull=False).exists())

    def test_when_every_contact_bounced_the_case_needs_review(self) -> None:
        self.assert_posted("postmark", self.postmark("postmark_bounce"))
        second = Letter.objects.exclude(pk=self.letter.pk).get()
        self.letter, self.email, self.uuid = second, second.recipient_email, str(second.public_id)
        payload = self.postmark("postmark_bounce")
        payload["ID"] += 1
        self.assert_posted("postmark", payload)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NEEDS_REVIEW)
        self.assertIn("Every contact bounced", self.alpha_case.review_reason)
        self.assertEqual(Letter.objects.count(), 2)

    # --- complaints ---------------------------------------------------------------------------
    def test_a_complaint_suppresses_the_address(self) -> None:
        for esp, payload in (
            ("postmark", self.postmark("postmark_spam_complaint")),
            ("amazon_ses", self.ses("amazon_ses_complaint")),
        ):
            self.assert_posted(esp, payload)
        suppression = Suppression.objects.get(email=self.email)
        self.assertEqual(suppression.reason, Suppression.Reason.COMPLAINT)
        self.assertEqual(suppression.partner, self.alpha)
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.COMPLAINED)
        self.assertTrue(services.email_is_suppressed(self.email, partner=self.alpha))

    # --- once, and only from the ESP ----------------------------------------------------------
    def test_a_duplicate_is_stored_and_applied_once(self) -> None:
        for _ in range(2):
            self.assert_posted("postmark", self.postmark("postmark_bounce"))
            self.assert_posted("postmark", self.postmark("postmark_delivery"))  # no ESP id
            self.assert_posted("mailgun", self.mailgun("mailgun_failed_permanent"))
            self.assert_posted("amazon_ses", self.ses("amazon_ses_bounce"))
        self.assertEqual(DeliveryEvent.objects.count(), 4)
        self.assertTrue(
            DeliveryEvent.objects.get(esp="postmark", event_type="delivered").event_id.startswith(
                "sha256:"
            )
        )
        self.assertEqual(Letter.objects.count(), 2)  # one next-contact letter, not three
        self.assertEqual(
            self.alpha_case.events.filter(kind=CaseEvent.Kind.LETTER_BOUNCED).count(), 1
        )

    def test_forged_webhooks_are_rejected(self) -> None:
        response = self.post("postmark", self.postmark("postmark_bounce"), auth=FORGED)
        self.assertEqual(response.status_code, 400)
        response = self.post("postmark", self.postmark("postmark_bounce"), auth={})
        self.assertEqual(response.status_code, 400)
        forged = mailgun_sign(self.mailgun("mailgun_failed_permanent"), key="not-the-key")
        self.assertEqual(self.post("mailgun", forged).status_code, 400)
        self.assertEqual(
            self.post("amazon_ses", self.ses("amazon_ses_bounce"), FORGED).status_code, 400
        )
        self.assertEqual(
            self.post("amazon_ses", self.ses("amazon_ses_bounce"), {}).status_code, 401
        )
        self.assertFalse(DeliveryEvent.objects.exists())
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.SENT)

    def test_a_transient_database_error_makes_the_esp_retry(self) -> None:
        with (
            mock.patch.object(
                tracking, "_apply_delivery_event", side_effect=OperationalError("deadlock")
            ),
            self.assertRaises(OperationalError),
        ):
            self.post("postmark", self.postmark("postmark_bounce"))
        self.assertFalse(DeliveryEvent.objects.exists())  # nothing half-stored: the retry applies
        self.assert_posted("postmark", self.postmark("postmark_bounce"))
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, Letter.Status.BOUNCED)

    def test_a_bug_is_logged_and_the_event_kept_without_a_retry_storm(self) -> None:
        with (
            mock.patch.object(tracking, "_apply_delivery_event", side_effect=ValueError("bug")),
            self.assertLogs("letters.services", "ERROR"),
        ):
            self.assert_posted("postmark", self.postmark("postmark_bounce"))
        self.assertIn("NOT APPLIED", DeliveryEvent.objects.get().description)

    def test_the_letter_and_case_show_the_event_history(self) -> None:
        self.assert_posted("postmark", self.postmark("postmark_delivery"))
        self.client.force_login(self.alpha_staff)
        page = self.client.get(f"/admin/letters/letter/{self.letter.pk}/change/")
        self.assertContains(page, "Test delivery webhook details")  # the event inline
        page = self.client.get(f"/admin/campaign/case/{self.alpha_case.pk}/change/")
        self.assertContains(page, "Letter delivered")
        self.assertContains(page, self.email)
