"""What campaign announces to the apps above it (letters listens; campaign never imports it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a re-probe verified every server of a case closed, once the case is committed as
# FIXED. kwargs: case (Case).
case_fixed = Signal()

# Sent by the schedule, inside its transaction, when a reminder is due and a fresh re-probe saw
# the server still open. kwargs: case (Case), note (str, why). A receiver queues the reminder
# letter and returns None, or returns why it could not (a str).
case_reminder_due = Signal()
