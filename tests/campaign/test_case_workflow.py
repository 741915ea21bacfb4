from __future__ import annotations

from unittest import mock

from django.db import DatabaseError, IntegrityError, transaction

from campaign import services
from campaign.models import Campaign, Case, CaseEvent, Partner, ServerOwner
from tests.base import BaseTestCase


class CaseTransitionTestCase(BaseTestCase):
    def test_it_opens_cases_ready_with_a_reference_and_events(self) -> None:
        case = self.alpha_case
        self.assertRegex(case.reference, r"^SYS-\d{4}-\d{6}$")
        self.assertEqual(case.status, Case.Status.READY)
        kinds = list(case.events.values_list("kind", flat=True))
        self.assertEqual(kinds[:2], [CaseEvent.Kind.OPENED, CaseEvent.Kind.FINDING_ADDED])
        self.assertIn(CaseEvent.Kind.STATUS_CHANGED, kinds)

    def test_it_numbers_cases_in_sequence(self) -> None:
        a = int(self.alpha_case.reference[-6:])
        b = int(self.beta_case.reference[-6:])
        self.assertEqual(b, a + 1)

    def test_it_writes_an_event_with_the_actor(self) -> None:
        services.case_transition(
            case=self.alpha_case,
            to_status=Case.Status.NOTIFIED,
            actor=self.alpha_staff,
            note="sent by hand",
        )
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.NOTIFIED)
        event = self.alpha_case.events.latest("id")
        self.assertEqual(
            (event.from_status, event.to_status, event.actor),
            ("ready", "notified", self.alpha_staff),
        )

    def test_an_illegal_transition_raises_and_writes_nothing(self) -> None:
        before = CaseEvent.objects.count()
        with self.assertRaises(services.IllegalTransition):
            services.case_transition(
                case=self.alpha_case, to_status=Case.Status.REMINDED, actor=self.alpha_staff
            )
        self.alpha_case.refresh_from_db()
        self.assertEqual(self.alpha_case.status, Case.Status.READY)
        self.assertEqual(CaseEvent.objects.count(), before)

    def test_a_status_change_whose_event_cannot_be_written_does_not_happen(self) -> None:
        # The status and its CaseEvent are one transaction: no status without its audit row.
        with (
            mock.patch.object(CaseEvent.objects, "create", side_effect=DatabaseError("disk full")),
            self.assertRaises(DatabaseError),
        ):
            services.case_transition(case=self.alpha_case, to_status=Case.Status.NOTIFIED)
        stored = Case.objects.get(pk=self.alpha_case.pk)
        self.assertEqual(stored.status, Case.Status.READY)
        self.assertIsNone(stored.notified_at)

    def test_a_stale_status_in_memory_does_not_pass_the_check(self) -> None:
        stale = Case.objects.get(pk=self.alpha_case.pk)
        services.case_transition(case=self.alpha_case, to_status=Case.Status.WITHDRAWN)
        # `stale` still says READY; the service must re-read the row and refuse READY -> NOTIFIED.
        with self.assertRaises(services.IllegalTransition):
            services.case_transition(case=stale, to_status=Case.Status.NOTIFIED)


class ConstraintsTestCase(BaseTestCase):
    def test_one_case_per_owner_and_campaign(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            Case.objects.create(
                reference="SYS-2026-999999",
                campaign=self.campaign,
                server_owner=self.alpha_case.server_owner,
                partner=self.alpha,
                language="en",
            )

    def test_case_reference_format_is_enforced(self) -> None:
        owner = ServerOwner.objects.create(name="X", partner=self.alpha)
        with self.assertRaises(IntegrityError), transaction.atomic():
            Case.objects.create(
                reference="CASE-1",
                campaign=self.campaign,
                server_owner=owner,
                partner=self.alpha,
                language="en",
            )

    def test_only_one_lead_partner(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            Partner.objects.create(
                country="FR", country_name="France", agency="X", languages=["fr"], is_lead=True
            )

    def test_partner_country_must_be_iso_alpha2(self) -> None:
        with self.assertRaises(IntegrityError), transaction.atomic():
            Partner.objects.create(country="uk", country_name="UK", agency="X", languages=["en"])

    def test_campaign_cannot_end_before_it_starts(self) -> None:
        import datetime

        with self.assertRaises(IntegrityError), transaction.atomic():
            Campaign.objects.create(
                slug="bad",
                name="Bad",
                starts_on=datetime.date(2026, 5, 1),
                ends_on=datetime.date(2026, 4, 1),
            )

    def test_a_finding_on_a_fixed_case_reopens_it(self) -> None:
        case = self.alpha_case
        services.case_transition(case=case, to_status=Case.Status.FIXED)
        finding = case.findings.get()
        finding.pk = None
        finding.save()
        services.case_add_finding(campaign=self.campaign, owner=case.server_owner, finding=finding)
        case.refresh_from_db()
        self.assertEqual(case.status, Case.Status.NEEDS_REVIEW)
        self.assertTrue(case.events.filter(kind=CaseEvent.Kind.REOPENED).exists())
