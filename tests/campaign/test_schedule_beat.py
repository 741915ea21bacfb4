"""The beat's side of the schedule: its entry, its queue, and the task that sweeps."""

from __future__ import annotations

from django.conf import settings

from campaign import services, tasks
from campaign.models import Case, CaseEvent
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
