from __future__ import annotations

import ast
import re
from pathlib import Path
from unittest import mock

from django.db import DatabaseError, IntegrityError, transaction

from campaign import services
from campaign.models import Campaign, Case, CaseEvent, Partner, ServerOwner
from tests.base import BaseTestCase

REPO = Path(__file__).resolve().parents[2]
APPS = ("api", "campaign", "config", "letters", "reporting", "scanning")


def case_status_writers() -> list[str]:
    """Every place in the apps that writes a case's status: a `status=` update on a Case
    queryset, or an assignment to `<...case...>.status` ("file:line in function")."""
    found = []
    for app in APPS:
        for path in sorted((REPO / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            where = {}
            for func in ast.walk(tree):
                if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    for node in ast.walk(func):
                        where[id(node)] = func.name  # the innermost function wins (walked last)
            for node in ast.walk(tree):
                writes = False
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    receiver = ast.unparse(node.func.value)
                    writes = (
                        node.func.attr in ("update", "bulk_update")
                        and re.search(r"\bCase\.objects\b", receiver) is not None
                        and (
                            any(k.arg == "status" for k in node.keywords)
                            or any("status" in ast.unparse(arg) for arg in node.args)
                        )
                    )
                elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        for el in target.elts if isinstance(target, ast.Tuple) else [target]:
                            if (
                                isinstance(el, ast.Attribute)
                                and el.attr == "status"
                                and "case" in ast.unparse(el.value).lower()
                            ):
                                writes = True
                if writes:
                    rel = path.relative_to(REPO)
                    found.append(f"{rel}:{node.lineno} in {where.get(id(node), '<module>')}")
    return found


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


def test_only_the_transition_service_writes_a_case_status() -> None:
    # Anything else would change a status without its CaseEvent (and without the checks).
    writers = [w.split(":", 1)[0] + " in " + w.rsplit(" in ", 1)[1] for w in case_status_writers()]
    assert writers == ["campaign/services/cases.py in case_transition"] * len(writers), writers
    assert writers, "the sweep found not even case_transition: it no longer sees the writes"


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
