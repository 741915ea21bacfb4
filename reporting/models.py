"""Campaign figures per partner, computed by a periodic task so the dashboard reads a few rows."""

from __future__ import annotations

from django.db import models

from campaign.models import Partner


class PartnerFigures(models.Model):
    """One partner's aggregates (no partner: servers not yet attributed to any owner)."""

    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    figures = models.JSONField(default=dict)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "partner figures"

    def __str__(self) -> str:
        return f"figures for {self.partner or 'unattributed'} at {self.computed_at:%Y-%m-%d %H:%M}"
