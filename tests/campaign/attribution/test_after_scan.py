"""A scan that finds an open server of unknown owner attributes it and opens the case."""

from __future__ import annotations

from django.test import override_settings

from campaign.models import Case
from scanning.models import Finding
from scanning.signals import finding_recorded
from tests.campaign.attribution.base import AttributionTestCase


class AttributeAfterScanTestCase(AttributionTestCase):
    @override_settings(ATTRIBUTE_AFTER_SCAN=True)
    def test_an_open_finding_of_unknown_owner_is_attributed_into_a_case(self) -> None:
        target = self.make_target("192.0.2.77")
        finding = Finding.objects.get(target=target)
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=finding)
        case = Case.objects.get(findings=finding)
        self.assertEqual(case.server_owner.attributions.get().target, target)
        self.assertTrue(self.arin.hits)

    @override_settings(ATTRIBUTE_AFTER_SCAN=True)
    def test_a_closed_finding_asks_no_registry(self) -> None:
        target = self.make_target("192.0.2.78", verdict="closed")
        with self.captureOnCommitCallbacks(execute=True):
            finding_recorded.send(sender=Finding, finding=Finding.objects.get(target=target))
        self.assertFalse(self.arin.hits)
        self.assertFalse(Case.objects.filter(findings__target=target).exists())
