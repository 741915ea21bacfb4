"""The beat's side of the schedule: its entry, its queue, and the task that sweeps."""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.utils import timezone

from campaign import services, tasks
from campaign.models import Campaign, Case, CaseEvent
from config.celery import app
from tests.base import BaseTestCase


class ScheduleBeatTestCase(BaseTestCase):
    def test_it_runs_the_sweep_every_few_minutes_on_the_default_queue(self) -> None:
        entry = settings.CELERY_BEAT_SCHEDULE["campaign-schedule-sweep"]
        self.assertEqual(entry["task"], "campaign.schedule_sweep")
        self.assertLessEqual(entry["schedule"], 10 * 60)
        self.assertLess(entry["options"]["expires"], entry["schedule"])
        for name in ("campaign.schedule_sweep", "campaign.advance_case"):
            route = app.amqp.router.route({}, name)
            self.assertEqual(route["queue"].name, "default", name)

    def test_the_beats_sweep_hands_each_due_case_to_a_task(self) -> None:
        services.case_transition(case=self.alpha_case, to_status=Case.Status.NOTIFIED)
        services.campaign_end(campaign=self.campaign)
        self.assertEqual(tasks.schedule_sweep(), 2)  # both cases (Celery runs eagerly here)
        self.alpha_case.refresh_from_db()
        self.beta_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.UNRESPONSIVE)
        self.assertEqual(self.beta_case.status, Case.Status.WITHDRAWN)
        event = CaseEvent.objects.filter(case=self.alpha_case).last()
        assert event is not None
        self.assertEqual(event.actor_label, "schedule")
        self.assertIn("the campaign ended on", event.note)
        self.assertEqual(tasks.schedule_sweep(), 0)  # nothing left to do, nothing done twice

    def test_the_lead_changing_an_interval_plans_the_open_cases_again(self) -> None:
        services.case_transition(case=self.alpha_case, to_status=Case.Status.NOTIFIED)
        self.alpha_case.refresh_from_db()
        assert self.alpha_case.notified_at is not None
        self.client.force_login(self.regulator)
        data = {
            "slug": self.campaign.slug,
            "name": self.campaign.name,
            "starts_on": self.campaign.starts_on.isoformat(),
            "ends_on": "",
            "reprobe_after_days": 3,
            "reminder_after_days": 21,
            "final_deadline_days": 60,
            "unresponsive_after_days": 30,
            "is_active": "on",
        }
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                f"/admin/campaign/campaign/{self.campaign.pk}/change/", data
            )
        self.assertEqual(response.status_code, 302, getattr(response, "context", None))
        self.alpha_case.refresh_from_db()
        self.assertEqual(
            self.alpha_case.next_action_at, self.alpha_case.notified_at + timedelta(days=3)
        )

    def test_a_case_waiting_for_a_person_says_so_and_when_the_campaign_ends(self) -> None:
        Campaign.objects.filter(pk=self.campaign.pk).update(ends_on=date(2027, 5, 7))
        self.beta_case.refresh_from_db()  # ready: a person queues the letter
        services.case_reschedule(case=self.beta_case)
        self.assertEqual(
            self.beta_case.next_action_label,
            "queue the advisory letter; closed at the campaign's end on 7 May",
        )

    def test_health_names_cases_long_overdue_on_the_schedule(self) -> None:
        from letters.health import health_report

        services.case_transition(case=self.alpha_case, to_status=Case.Status.NOTIFIED)
        self.assertEqual(health_report()["schedule"]["cases_overdue"], 0)
        Case.objects.filter(pk=self.alpha_case.pk).update(
            next_action_at=timezone.now() - timedelta(hours=2)
        )
        report = health_report()
        self.assertEqual(report["schedule"]["cases_overdue"], 1)
        self.assertIn(
            "1 case(s) overdue on the schedule (is its sweep running?)", report["problems"]
        )
        tasks.schedule_sweep()  # the sweep acts (here: plans it again, as it is not due yet)
        self.assertEqual(health_report()["schedule"]["cases_overdue"], 0)
