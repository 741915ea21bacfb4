"""What scanning announces to the apps above it (campaign listens; scanning never imports it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a Finding is stored and committed. kwargs: finding (Finding).
finding_recorded = Signal()
