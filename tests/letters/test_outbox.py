"""The outbox: leases on claims, the reconciler, the dispatcher's rate and sending window, and
what a person settles in the admin."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from io import StringIO
from unittest import mock

from anymail.signals import AnymailTrackingEvent
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from campaign.models import CaseEvent, Contact, Suppression
from letters import printing, services
from letters.models import DeliveryEvent, Heartbeat, Letter
from letters.services import sending
from letters.tasks import send_letter
from tests.base import BaseTestCase
from tests.letters.helpers import approved_template

S = Letter.Status


class OutboxTestCase(BaseTestCase):
    def setUp(self) -> None:
        approved_template(self.alpha)

    def queued(self) -> Letter:
        with self.captureOnCommitCallbacks(execute=False):
            return services.letter_queue(case=self.alpha_case, fresh=True)

    def expire(self, letter: Letter, **values: object) -> None:
        Letter.objects.filter(pk=letter.pk).update(
            lease_until=timezone.now() - timedelta(seconds=1), **values
        )

    # --- leases and takeovers --------------------------------------------------------------
    def test_it_takes_over_an_expired_claim_that_never_reached_the_esp(self) -> None:
        letter = self.queued()
        Letter.objects.filter(pk=letter.pk).update(status=S.SENDING, claimed_by="dead-worker")
        send_letter(letter.id)  # a live claim by another worker: nothing happens
        self.assertEqual(len(mail.outbox), 0)
        self.expire(letter)
        send_letter(letter.id)  # the redelivered task takes the expired claim over
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)
        self.assertEqual(len(mail.outbox), 1)

    def test_a_redelivered_task_takes_over_its_own_claim(self) -> None:
        letter = self.queued()
        Letter.objects.filter(pk=letter.pk).update(
            status=S.SENDING, claimed_by="task-1", lease_until=timezone.now() + timedelta(hours=1)
        )
        services.letter_send(letter_id=letter.id, claim="task-1")
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)

    def test_it_never_sends_again_a_letter_handed_to_the_esp(self) -> None:
        letter = self.queued()
        Letter.objects.filter(pk=letter.pk).update(
            status=S.SENDING, claimed_by="task-1", handed_at=timezone.now()
        )
        self.expire(letter)
        services.letter_send(letter_id=letter.id, claim="task-1")  # even its own task
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.UNKNOWN)
        self.assertEqual(len(mail.outbox), 0)
        note = self.alpha_case.events.filter(kind=CaseEvent.Kind.NOTE).last()
        self.assertIn("A person decides", note.note)

    def test_a_worker_whose_claim_was_taken_over_while_rendering_does_not_send(self) -> None:
        letter = self.queued()
        real_pdf = printing.letter_pdf

        def slow_render(*args: object, **kwargs: object) -> bytes:
            # The lease ran out while this worker rendered; another worker took the letter over.
            Letter.objects.filter(pk=letter.pk).update(
                claimed_by="other-worker", lease_until=timezone.now() + timedelta(minutes=5)
            )
            return real_pdf(*args, **kwargs)

        with mock.patch("letters.printing.letter_pdf", slow_render):
            services.letter_send(letter_id=letter.id, claim="slow-worker")
        self.assertEqual(len(mail.outbox), 0)  # the other worker sends it, once
        letter.refresh_from_db()
        self.assertEqual((letter.status, letter.claimed_by), (S.SENDING, "other-worker"))
        self.assertIsNone(letter.handed_at)

    def test_it_settles_a_handed_letter_from_the_esps_tracking_event(self) -> None:
        letter = self.queued()
        Letter.objects.filter(pk=letter.pk).update(status=S.SENDING, handed_at=timezone.now())
        self.expire(letter)
        DeliveryEvent.objects.create(esp="postmark", event_id="e1", event_type="deferred",
                                     letter=letter)  # fmt: skip
        report = services.outbox_reconcile()
        self.assertEqual(report.settled_sent, 1)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)
        self.assertEqual(len(mail.outbox), 0)
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, "notified")

    def test_the_reconciler_requeues_claims_that_expired_before_the_hand_off(self) -> None:
        letter = self.queued()
        Letter.objects.filter(pk=letter.pk).update(status=S.SENDING, claimed_by="dead")
        self.expire(letter)
        with self.captureOnCommitCallbacks(execute=True):
            report = services.outbox_reconcile()
        self.assertEqual(report.requeued, 1)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)  # the doorbell rang: dispatched and sent
        self.assertEqual(len(mail.outbox), 1)
        self.assertTrue(Heartbeat.objects.filter(name="reconcile").exists())

    def test_a_database_error_at_claim_time_retries_the_task(self) -> None:
        letter = self.queued()
        real_claim = sending._claim
        calls = []

        def flaky(*args: object) -> bool:
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError("server closed the connection unexpectedly")
            return real_claim(*args)

        from config.celery import app as celery_app

        propagates = celery_app.conf.task_eager_propagates
        celery_app.conf.task_eager_propagates = False
        self.addCleanup(setattr, celery_app.conf, "task_eager_propagates", propagates)
        with mock.patch.object(sending, "_claim", flaky):
            result = send_letter.apply(args=[letter.id])
        self.assertTrue(result.successful(), result.traceback)
        self.assertEqual(len(calls), 2)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)

    def test_a_send_that_reports_nothing_sent_is_not_sent(self) -> None:
        letter = self.queued()
        with mock.patch("anymail.message.AnymailMessage.send", return_value=0):
            send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.FAILED)
        self.assertIn("0 messages", letter.error)

    def test_a_render_cut_off_by_the_time_limit_is_tried_again_not_failed(self) -> None:
        from celery.exceptions import SoftTimeLimitExceeded

        letter = self.queued()
        with mock.patch("letters.printing.letter_pdf", side_effect=SoftTimeLimitExceeded()):
            send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.QUEUED)
        self.assertIsNotNone(letter.not_before)
        self.assertEqual(len(mail.outbox), 0)

    def test_an_ambiguous_send_error_leaves_the_letter_to_a_person(self) -> None:
        letter = self.queued()
        with mock.patch("anymail.message.AnymailMessage.send", side_effect=TimeoutError("read")):
            send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.UNKNOWN)

    def test_a_database_blip_while_recording_the_send_does_not_lose_it(self) -> None:
        letter = self.queued()
        real = sending.letter_mark_sent
        calls = []

        def flaky(**kwargs: object) -> bool:
            calls.append(1)
            if len(calls) == 1:
                raise OperationalError("terminating connection due to administrator command")
            return real(**kwargs)

        with (
            mock.patch.object(sending, "letter_mark_sent", flaky),
            mock.patch.object(sending.time, "sleep"),
            mock.patch.object(sending.connection, "close"),  # the test's transaction stays
        ):
            send_letter(letter.id)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.SENT)
        self.assertEqual(len(mail.outbox), 1)

    # --- refused at queue time ---------------------------------------------------------------
    def test_it_refuses_an_empty_or_invalid_recipient_at_queue_time(self) -> None:
        Contact.objects.filter(server_owner=self.alpha_case.server_owner).update(email="")
        refusal = services.letter_queue_refusal(self.alpha_case, fresh=True)
        self.assertIn("the address is empty", refusal)
        Contact.objects.filter(server_owner=self.alpha_case.server_owner).update(email="not-mail")
        with self.assertRaises(services.LetterNotQueued) as refused:
            services.letter_queue(case=self.alpha_case, fresh=True)
        self.assertIn("not a valid e-mail address", str(refused.exception))
        self.assertFalse(Letter.objects.exists())

    def test_a_blank_address_does_not_match_owner_level_suppressions(self) -> None:
        Suppression.objects.create(
            partner=self.beta,
            server_owner=self.beta_case.server_owner,
            email="",
            reason=Suppression.Reason.OPT_OUT,
        )
        self.assertFalse(services.email_is_suppressed("", partner=self.beta))
        self.assertFalse(services.email_is_suppressed("  ", partner=self.beta))

    # --- the dispatcher ----------------------------------------------------------------------
    def many(self, count: int, case: object = None) -> list[Letter]:
        case = case or self.alpha_case
        now = timezone.now()
        start = Letter.objects.count()
        return [
            Letter.objects.create(
                case=case,
                language="en",
                recipient_email=f"n{start + i}@example.org",
                status=S.QUEUED,
                queued_at=now + timedelta(microseconds=i),
            )
            for i in range(count)
        ]

    @override_settings(LETTER_RATE_PER_MINUTE=3)
    def test_the_dispatcher_keeps_to_the_rate(self) -> None:
        letters = self.many(5)
        with mock.patch("letters.services.outbox.send_letter_task") as task:
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(services.letters_dispatch().dispatched, 3)
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(services.letters_dispatch().dispatched, 0)  # this minute is full
            sent = [c.args[0] for c in task.delay.call_args_list]
            self.assertEqual(sent, [letter.id for letter in letters[:3]])  # oldest first
            later = timezone.now() + timedelta(seconds=61)
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(services.letters_dispatch(now=later).dispatched, 2)

    @override_settings(LETTER_RATE_PER_MINUTE=100)
    def test_a_partners_own_rate_and_window_hold_only_its_letters(self) -> None:
        self.alpha.letters_per_minute = 1
        self.alpha.save()
        self.many(3)
        self.many(2, case=self.beta_case)
        with mock.patch("letters.services.outbox.send_letter_task"):
            report = services.letters_dispatch()
        self.assertEqual(report.dispatched, 3)  # one of alpha's, both of beta's
        self.assertEqual(
            Letter.objects.filter(case=self.alpha_case, dispatched_at__isnull=False).count(), 1
        )
        self.beta.time_zone = "Europe/Berlin"
        self.beta.sending_window_start, self.beta.sending_window_end = dt.time(9), dt.time(17)
        self.beta.save()
        self.many(1, case=self.beta_case)
        night = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)  # 03:00 in Berlin
        day = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)  # 11:00 in Berlin
        self.assertFalse(services.partner_in_sending_window(self.beta, night))
        self.assertTrue(services.partner_in_sending_window(self.beta, day))
        Letter.objects.update(dispatched_at=None, lease_until=None)
        with mock.patch("letters.services.outbox.send_letter_task"):
            report = services.letters_dispatch(now=night)
        self.assertEqual(report.outside_window, ["DE"])
        self.assertFalse(Letter.objects.filter(case=self.beta_case, dispatched_at=night).exists())

    def test_a_window_across_midnight(self) -> None:
        self.alpha.sending_window_start, self.alpha.sending_window_end = dt.time(22), dt.time(6)
        self.alpha.save()
        at = dt.datetime(2026, 12, 8, 23, 0, tzinfo=dt.UTC)
        self.assertTrue(services.partner_in_sending_window(self.alpha, at))
        self.assertFalse(services.partner_in_sending_window(self.alpha, at.replace(hour=12)))

    def test_a_dispatched_letter_whose_task_was_lost_is_dispatched_again(self) -> None:
        letter = self.many(1)[0]
        later = timezone.now() + timedelta(minutes=6)
        with (
            mock.patch("letters.services.outbox.send_letter_task") as task,
            self.captureOnCommitCallbacks(execute=True),
        ):
            services.letters_dispatch()
            self.assertEqual(services.letters_dispatch().dispatched, 0)  # its lease runs
            self.assertEqual(services.letters_dispatch(now=later).dispatched, 1)
        letter.refresh_from_db()
        self.assertEqual(letter.status, S.QUEUED)
        self.assertEqual(task.delay.call_count, 2)


class SettleInAdminTestCase(BaseTestCase):
    def setUp(self) -> None:
        approved_template(self.alpha)
        with self.captureOnCommitCallbacks(execute=False):
            self.letter = services.letter_queue(case=self.alpha_case, fresh=True)
        Letter.objects.filter(pk=self.letter.pk).update(status=S.UNKNOWN)

    def post(self, action: str) -> object:
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                "/admin/letters/letter/",
                {"action": action, "_selected_action": [self.letter.pk]},
                follow=True,
            )

    def test_it_counts_letters_needing_attention_for_their_partner_only(self) -> None:
        self.client.force_login(self.alpha_staff)
        response = self.client.get("/admin/letters/letter/")
        self.assertContains(response, "1 letter needs attention")
        response = self.client.get("/admin/letters/letter/?attention=yes")
        self.assertContains(response, self.alpha_case.reference)
        self.client.force_login(self.beta_staff)
        response = self.client.get("/admin/letters/letter/")
        self.assertNotContains(response, "needs attention (the oldest")
        self.assertNotContains(response, self.alpha_case.reference)

    def test_mark_sent_is_recorded_as_a_case_event(self) -> None:
        self.client.force_login(self.alpha_staff)
        self.post("mark_sent")
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, S.SENT)
        event = self.alpha_case.events.get(kind=CaseEvent.Kind.LETTER_SENT)
        self.assertEqual(event.actor, self.alpha_staff)
        self.assertEqual(len(mail.outbox), 0)

    def test_send_again_sends_it_once_more_and_records_who_decided(self) -> None:
        self.client.force_login(self.alpha_staff)
        self.post("send_again")
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, S.SENT)
        self.assertEqual(len(mail.outbox), 1)
        self.assertTrue(
            self.alpha_case.events.filter(
                kind=CaseEvent.Kind.LETTER_QUEUED, actor=self.alpha_staff
            ).exists()
        )

    def test_another_partners_caseworker_cannot_settle_it(self) -> None:
        self.client.force_login(self.beta_staff)
        self.post("mark_sent")
        self.letter.refresh_from_db()
        self.assertEqual(self.letter.status, S.UNKNOWN)

    def test_a_new_letter_waits_until_the_unknown_one_is_settled(self) -> None:
        refusal = services.letter_queue_refusal(self.alpha_case)
        self.assertIn("on its way already", refusal)


class HealthTestCase(BaseTestCase):
    def test_it_exits_non_zero_when_a_claim_is_left_unrepaired(self) -> None:
        approved_template(self.alpha)
        now = timezone.now()
        Heartbeat.objects.create(name="reconcile", at=now)
        Heartbeat.objects.create(name="dispatch", at=now)
        out = StringIO()
        call_command("health", stdout=out)
        self.assertIn('"stuck": false', out.getvalue())
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        Letter.objects.filter(pk=letter.pk).update(
            status=S.SENDING, lease_until=now - timedelta(minutes=10)
        )
        with self.assertRaises(CommandError) as failed:
            call_command("health", stdout=StringIO())
        self.assertEqual(failed.exception.returncode, 1)
        self.assertIn("not being repaired", str(failed.exception))
        response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json()["stale_claims"]["letters_sending"], 1)
        self.assertNotIn("SECRET", response.content.decode())
        self.assertEqual(self.client.get("/healthz?live").status_code, 200)

    def test_beat_check_fails_when_the_reconciler_stopped(self) -> None:
        Heartbeat.objects.create(name="reconcile", at=timezone.now() - timedelta(hours=1))
        Heartbeat.objects.create(name="dispatch", at=timezone.now())
        with self.assertRaises(CommandError) as failed:
            call_command("health", "--check", "beat", stdout=StringIO())
        self.assertIn("reconcile last ran", str(failed.exception))


class TrackingEventTestCase(BaseTestCase):
    def test_an_event_for_an_unknown_letter_is_kept(self) -> None:
        # Settling "unknown" looks for events by letter: they must be stored against it.
        approved_template(self.alpha)
        with self.captureOnCommitCallbacks(execute=False):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        Letter.objects.filter(pk=letter.pk).update(status=S.UNKNOWN)
        event = AnymailTrackingEvent(
            event_type="delivered",
            message_id="m1",
            event_id="ev-1",
            metadata={"letter": str(letter.public_id)},
            esp_event={},
        )
        record = services.delivery_event_record(esp_name="Postmark", event=event)
        self.assertEqual(record.letter_id, letter.pk)
