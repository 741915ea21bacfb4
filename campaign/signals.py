"""What campaign announces to the apps above it (letters listens; campaign never imports it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a re-probe verified every server of a case closed, once the case is committed as
# FIXED. kwargs: case (Case).
case_fixed = Signal()
