"""What scanning announces to the apps above it (campaign listens; scanning never imports it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after a Finding is stored and committed. kwargs: finding (Finding).
finding_recorded = Signal()

# Sent inside the transaction that made a provisional finding final, so what a receiver writes
# (a CaseEvent) is stored with the change or not at all. kwargs: finding (Finding, now final),
# previous_verdict (str: its provisional verdict).
# finding_confirmed: our canary received what the probe sent; the verdict is now confirmed-open.
finding_confirmed = Signal()
# finding_settled: no confirmation came by the deadline; the verdict is what the session alone
# supports, usually the provisional one unchanged.
finding_settled = Signal()
