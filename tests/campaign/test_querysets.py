"""One source for "active suppression" and "current campaign"."""

from __future__ import annotations

from datetime import date, timedelta

from django.utils import timezone

from campaign.models import Campaign, Suppression
from tests.base import BaseTestCase


class QuerySetTestCase(BaseTestCase):
    def test_it_finds_the_suppressions_is_active_says_are_in_force(self) -> None:
        now = timezone.now()
        rows = [
            Suppression.objects.create(partner=self.alpha, email=f"{i}@x.example", **kw)
            for i, kw in enumerate(
                ({}, {"expires_at": now + timedelta(days=1)}, {"expires_at": now - timedelta(1)})
            )
        ]
        self.assertEqual(set(Suppression.objects.active()), {s for s in rows if s.is_active()})
        later = now + timedelta(days=2)
        self.assertEqual(set(Suppression.objects.active(later)), {rows[0]})
        self.assertEqual({s for s in rows if s.is_active(later)}, {rows[0]})

    def test_it_scopes_suppressions_to_the_partner_and_the_global_ones(self) -> None:
        own = Suppression.objects.create(partner=self.alpha, email="a@x.example")
        other = Suppression.objects.create(partner=self.beta, email="b@x.example")
        everyone = Suppression.objects.create(email="c@x.example")
        self.assertEqual(set(Suppression.objects.affecting(self.alpha)), {own, everyone})
        self.assertEqual(set(Suppression.objects.affecting(self.beta.pk)), {other, everyone})

    def test_the_current_campaign_is_the_active_one_that_started_last(self) -> None:
        Campaign.objects.update(is_active=False)
        self.assertIsNone(Campaign.objects.current())
        older = Campaign.objects.create(slug="a", name="A", starts_on=date(2026, 1, 1))
        newer = Campaign.objects.create(slug="b", name="B", starts_on=date(2026, 6, 1))
        Campaign.objects.create(slug="c", name="C", starts_on=date(2026, 9, 1), is_active=False)
        self.assertEqual(Campaign.objects.current(), newer)
        newer.is_active = False
        newer.save()
        self.assertEqual(Campaign.objects.current(), older)
