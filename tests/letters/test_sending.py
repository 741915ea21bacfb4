"""Queueing and sending: one letter per case and recipient, claimed before the ESP is called."""

from __future__ import annotations

import hashlib
import smtplib
import threading
from datetime import timedelta
from unittest import mock

import pytest
import requests
from anymail.backends import test as anymail_test
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.core import mail
from django.db import connection
from django.test import TransactionTestCase
from django.utils import timezone

from campaign.models import Case, CaseEvent, Contact, Suppression
from letters import links, services
from letters.models import Letter, RemediationLink
from letters.tasks import send_letter
from tests.base import BaseTestCase, make_world
from tests.letters.helpers import approved_template, pdf_text


def api_error(status: int) -> AnymailAPIError:
    response = requests.Response()
    response.status_code, response.reason, response._content = status, "Error", b"{}"
    return AnymailAPIError(f"ESP said {status}", status_code=status, response=response)


def flaky_post(*errors: Exception):
    """The test backend's post_to_esp, raising the given errors on the first calls."""
    original = anymail_test.EmailBackend.post_to_esp
    pending = list(errors)

    def post(self, payload, message):
        if pending:
            raise pending.pop(0)
        return original(self, payload, message)

    return mock.patch.object(anymail_test.EmailBackend, "post_to_esp", post)


class QueueTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.template = approved_template(self.alpha)
        self.alpha.reply_to = "sys@alpha.example"
        self.alpha.save()

    def queue(self, case: Case | None = None, **kwargs: object) -> Letter:
        with self.captureOnCommitCallbacks(execute=True):
            return services.letter_queue(
                case=case or self.alpha_case, actor=self.alpha_staff, fresh=True, **kwargs
            )

    def test_it_queues_and_sends_the_letter_once(self) -> None:
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            letter = services.letter_queue(case=self.alpha_case, actor=self.alpha_staff, fresh=True)
        self.assertEqual(len(callbacks), 1)  # the task is enqueued on commit, not before
        self.assertEqual(letter.status, Letter.Status.QUEUED)
        self.assertEqual(letter.recipient_email, "abuse@alpha.example")
        self.assertEqual(letter.template, self.template)
        queued = self.alpha_case.events.get(kind=CaseEvent.Kind.LETTER_QUEUED)
        self.assertEqual(queued.actor, self.alpha_staff)

        send_letter(letter.id)
        send_letter(letter.id)  # a redelivered task must not send again
        self.assertEqual(len(mail.outbox), 1)
        message = mail.outbox[0]
        self.assertEqual(message.metadata, {"letter": str(letter.public_id)})
        self.assertEqual(message.tags, ["advisory-letter"])
        self.assertEqual(message.to, ["abuse@alpha.example"])
        self.assertEqual(message.reply_to, ["sys@alpha.example"])
        self.assertFalse(message.track_opens)
        self.assertFalse(message.track_clicks)
        self.assertIn(self.alpha_case.reference, message.subject)
        html = message.alternatives[0]
        self.assertEqual(html[1], "text/html")
        (name, pdf, mimetype) = message.attachments[0]
        self.assertEqual((name, mimetype), (f"{self.alpha_case.reference}.pdf", "application/pdf"))

        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.assertEqual(letter.esp_message_id, "0")  # the test backend's id
        self.assertEqual(letter.pdf_sha256, hashlib.sha256(pdf).hexdigest())
        with letter.pdf.open("rb") as stored:
            self.assertEqual(stored.read(), pdf)
        self.addCleanup(letter.pdf.delete, save=False)

        link = RemediationLink.objects.get(letter=letter)
        url = [line for line in message.body.split() if "/r/" in line][0].strip("<>")
        self.assertIn(url, html[0])
        self.assertIn(url, pdf_text(pdf))
        token = url.rstrip("/").rsplit("/", 1)[1]
        self.assertNotIn(token, link.token_hash)
        self.assertEqual(links.remediation_link_find(token), link)
        self.assertIsNone(links.remediation_link_find(token + "x"))

        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NOTIFIED)
        self.assertEqual(self.alpha_case.events.filter(kind=CaseEvent.Kind.LETTER_SENT).count(), 1)

    def test_it_refuses_a_second_letter_while_the_first_is_on_its_way(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):  # queued, not yet sent: still `ready`
            services.letter_queue(case=self.alpha_case, fresh=True)
        with self.assertRaisesMessage(services.LetterNotQueued, "on its way already"):
            services.letter_queue(case=self.alpha_case, fresh=True)
        self.assertEqual(Letter.objects.count(), 1)

    def test_it_never_writes_the_same_letter_to_a_recipient_twice(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            first = services.letter_queue(case=self.alpha_case, fresh=True)
        Letter.objects.filter(pk=first.pk).update(status=Letter.Status.FAILED)  # not in flight
        with self.assertRaisesMessage(services.LetterNotQueued, "no usable contact left"):
            services.letter_queue(case=self.alpha_case, fresh=True)
        Contact.objects.create(
            server_owner=self.alpha_case.server_owner,
            position=5,
            kind=Contact.Kind.NETWORK,
            email="noc@alpha.example",
        )
        with self.captureOnCommitCallbacks(execute=False):
            second = services.letter_queue(case=self.alpha_case, fresh=True)
        self.assertEqual(first.recipient_email, "abuse@alpha.example")
        self.assertEqual(second.recipient_email, "noc@alpha.example")

    def test_the_next_contact_skips_a_suppressed_address_in_any_case(self) -> None:
        Contact.objects.create(
            server_owner=self.alpha_case.server_owner,
            position=5,
            kind=Contact.Kind.NETWORK,
            email="noc@alpha.example",
        )
        Suppression.objects.create(
            partner=self.alpha, email="Abuse@Alpha.EXAMPLE", reason=Suppression.Reason.OPT_OUT
        )
        self.assertTrue(services.email_is_suppressed("abuse@alpha.example", partner=self.alpha))
        self.assertEqual(services.letter_next_contact(self.alpha_case).email, "noc@alpha.example")
        self.assertEqual(self.queue().recipient_email, "noc@alpha.example")
        self.assertEqual([m.to for m in mail.outbox], [["noc@alpha.example"]])
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])

    def test_it_refuses_cases_that_are_not_ready_suppressed_or_without_a_template(self) -> None:
        reasons = {}
        for case in (self.beta_case,):  # German: no approved German template
            reasons[case.reference] = services.letter_queue_refusal(case, fresh=True)
        self.assertIn("no approved initial template", reasons[self.beta_case.reference])
        Suppression.objects.create(
            partner=self.alpha, email="abuse@alpha.example", reason=Suppression.Reason.OPT_OUT
        )
        self.assertIn("asked not to", services.letter_queue_refusal(self.alpha_case, fresh=True))
        Suppression.objects.all().delete()
        services.case_transition(case=self.alpha_case, to_status=Case.Status.NEEDS_REVIEW)
        self.assertIn("status", services.letter_queue_refusal(self.alpha_case, fresh=True))

    def test_the_admin_action_queues_ready_cases_and_reports_the_rest(self) -> None:
        self.client.force_login(self.regulator)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                "/admin/campaign/case/",
                {
                    "action": "queue_advisory_letter",
                    "_selected_action": [self.alpha_case.pk, self.beta_case.pk],
                    "post": "yes",  # the confirmation page's "Yes"
                },
                follow=True,
            )
        text = response.content.decode()
        self.assertIn("1 letter(s) queued", text)
        self.assertIn(self.beta_case.reference, text)
        self.assertIn("no approved initial template", text)
        self.assertEqual(len(mail.outbox), 1)

    def test_a_caseworker_of_another_partner_cannot_queue(self) -> None:
        self.client.force_login(self.beta_staff)
        self.client.post(
            "/admin/campaign/case/",
            {
                "action": "queue_advisory_letter",
                "_selected_action": [self.alpha_case.pk],
                "post": "yes",
            },
        )
        self.assertFalse(Letter.objects.exists())

    def test_resend_goes_to_the_next_contact(self) -> None:
        owner = self.alpha_case.server_owner
        Contact.objects.create(
            server_owner=owner, position=1, kind=Contact.Kind.NETWORK, email="noc@alpha.example"
        )
        self.queue()
        self.client.force_login(self.alpha_staff)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(
                "/admin/campaign/case/",
                {
                    "action": "resend_to_next_contact",
                    "_selected_action": [self.alpha_case.pk],
                    "post": "yes",
                },
            )
        self.assertEqual(
            [m.to for m in mail.outbox], [["abuse@alpha.example"], ["noc@alpha.example"]]
        )

    def test_it_requeues_a_transient_error_with_a_backoff_and_sends_when_due(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        with flaky_post(api_error(503), api_error(429)):
            send_letter(letter.id)
            letter.refresh_from_db()
            # Back in the outbox, not in the broker: nothing waits out a countdown in Redis.
            self.assertEqual(letter.status, Letter.Status.QUEUED)
            self.assertEqual(letter.attempts, 1)
            self.assertIsNotNone(letter.not_before)
            self.assertIn("503", letter.error)
            self.assertEqual(services.letters_dispatch().dispatched, 0)  # not due yet
            self.wait_out_the_backoff(letter)
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(services.letters_dispatch().dispatched, 1)
            letter.refresh_from_db()
            self.assertEqual((letter.status, letter.attempts), (Letter.Status.QUEUED, 2))
            self.wait_out_the_backoff(letter)
            with self.captureOnCommitCallbacks(execute=True):
                services.letters_dispatch()
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(RemediationLink.objects.filter(letter=letter).count(), 1)

    def wait_out_the_backoff(self, letter: Letter) -> None:
        Letter.objects.filter(pk=letter.pk).update(
            not_before=timezone.now() - timedelta(seconds=1),
            dispatched_at=timezone.now() - timedelta(minutes=5),  # out of the rate window
        )

    def test_it_tells_errors_that_surely_did_not_send_from_ones_that_may_have(self) -> None:
        error = AnymailAPIError("connection reset")  # no status: the request never completed
        self.assertTrue(services._is_transient(error))
        self.assertFalse(services._is_transient(api_error(400)))
        self.assertFalse(services._is_transient(AnymailRecipientsRefused()))
        # A reset or a timeout after connecting may come after the ESP accepted the message.
        self.assertEqual(services.send_error_kind(ConnectionResetError()), "ambiguous")
        self.assertEqual(services.send_error_kind(TimeoutError()), "ambiguous")
        self.assertEqual(services.send_error_kind(ConnectionRefusedError()), "transient")
        greylisted = smtplib.SMTPRecipientsRefused({"a@x.example": (451, b"4.7.1 try later")})
        self.assertEqual(services.send_error_kind(greylisted), "transient")
        gone = smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"5.1.1 no such user")})
        self.assertEqual(services.send_error_kind(gone), "permanent")
        busy = smtplib.SMTPSenderRefused(421, b"4.3.2 busy", "advisory@localhost")
        self.assertEqual(services.send_error_kind(busy), "transient")
        self.assertEqual(services.send_error_kind(smtplib.SMTPDataError(554, b"no")), "permanent")

    def test_a_transient_error_on_the_last_attempt_fails_the_letter(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        with flaky_post(api_error(503)):
            services.letter_send(letter_id=letter.id, last_attempt=True)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertIn("503", letter.error)

    def test_it_fails_a_letter_after_the_last_allowed_attempt(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        Letter.objects.filter(pk=letter.pk).update(attempts=7)  # LETTER_MAX_ATTEMPTS is 8
        with flaky_post(api_error(502)):
            services.letter_send(letter_id=letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertEqual(len(mail.outbox), 0)

    def test_a_transient_error_leaves_the_letter_queued_not_sending(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        with flaky_post(api_error(502)):
            services.letter_send(letter_id=letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.QUEUED)
        self.assertIsNone(letter.handed_at)
        self.assertEqual(letter.claimed_by, "")

    def test_refused_recipients_fail_the_letter_visibly(self) -> None:
        for error in (AnymailRecipientsRefused("refused"), api_error(422)):
            Letter.objects.all().delete()
            with flaky_post(error):
                letter = self.queue()
            letter.refresh_from_db()
            self.assertEqual(letter.status, Letter.Status.FAILED)
            self.assertTrue(letter.error)
            self.assertEqual(len(mail.outbox), 0)
        note = self.alpha_case.events.filter(kind=CaseEvent.Kind.NOTE).last()
        self.assertIn("failed", note.note)

    def test_a_failed_letter_can_be_retried(self) -> None:
        with flaky_post(AnymailRecipientsRefused("refused")):
            letter = self.queue()
        with self.captureOnCommitCallbacks(execute=True):
            self.assertTrue(services.letter_retry(letter=letter, actor=self.alpha_staff))
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.SENT)

    def test_a_recipient_suppressed_after_queueing_gets_nothing(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        Suppression.objects.create(
            partner=self.alpha, email="ABUSE@alpha.example", reason=Suppression.Reason.OPT_OUT
        )
        send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertEqual(len(mail.outbox), 0)

    def test_a_template_that_breaks_fails_before_anything_is_sent(self) -> None:
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        with mock.patch("letters.printing.letter_pdf", side_effect=RuntimeError("no fonts")):
            send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertIn("no fonts", letter.error)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)")
class ConcurrentSendTestCase(TransactionTestCase):
    def setUp(self) -> None:
        make_world(self)
        approved_template(self.alpha)

    def test_two_workers_racing_send_once(self) -> None:
        with mock.patch(
            "letters.services.queueing.dispatch_letters_task"
        ):  # the threads below are the workers
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                barrier.wait()
                services.letter_send(letter_id=letter.id)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        with self.settings(EMAIL_BACKEND="anymail.backends.test.EmailBackend"):
            threads = [threading.Thread(target=worker) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(mail.outbox), 1)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.SENT)
        self.assertEqual(
            CaseEvent.objects.filter(case=self.alpha_case, kind=CaseEvent.Kind.LETTER_SENT).count(),
            1,
        )
