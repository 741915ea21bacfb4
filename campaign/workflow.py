"""Which case status may follow which. `services.case_transition` is the only writer of status."""

from __future__ import annotations

from campaign.models import Case

S = Case.Status

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.NEW: frozenset({S.NEEDS_REVIEW, S.READY, S.SUPPRESSED, S.WITHDRAWN, S.FIXED}),
    S.NEEDS_REVIEW: frozenset({S.READY, S.SUPPRESSED, S.WITHDRAWN, S.NEW, S.FIXED, S.ESCALATED}),
    S.READY: frozenset({S.NOTIFIED, S.NEEDS_REVIEW, S.SUPPRESSED, S.WITHDRAWN, S.FIXED}),
    S.NOTIFIED: frozenset(
        {
            S.REMINDED,
            S.ESCALATED,
            S.FIXED,
            S.UNRESPONSIVE,
            S.NEEDS_REVIEW,
            S.SUPPRESSED,
            S.WITHDRAWN,
        }
    ),
    S.REMINDED: frozenset(
        {S.ESCALATED, S.FIXED, S.UNRESPONSIVE, S.NEEDS_REVIEW, S.SUPPRESSED, S.WITHDRAWN}
    ),
    S.ESCALATED: frozenset({S.FIXED, S.UNRESPONSIVE, S.NEEDS_REVIEW, S.WITHDRAWN, S.SUPPRESSED}),
    # A new open finding reopens a fixed case; it needs review before another letter.
    S.FIXED: frozenset({S.NEEDS_REVIEW, S.READY}),
    S.UNRESPONSIVE: frozenset({S.FIXED, S.NEEDS_REVIEW}),
    S.WITHDRAWN: frozenset({S.NEEDS_REVIEW}),
    S.SUPPRESSED: frozenset({S.NEEDS_REVIEW, S.READY}),
}

# Statuses in which the case is over; a new open finding reopens it rather than joining silently.
CLOSED_STATUSES = frozenset({S.FIXED, S.UNRESPONSIVE, S.WITHDRAWN})


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in ALLOWED_TRANSITIONS.get(from_status, frozenset())
