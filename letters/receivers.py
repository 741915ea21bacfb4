"""anymail's tracking signal -> one DeliveryEvent, applied once."""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver

from campaign.models import Case, CaseEvent
from campaign.services import case_record_event
from campaign.signals import case_fixed, case_reminder_due


@receiver(tracking, dispatch_uid="letters.tracking")
def on_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    from letters import services

    services.delivery_event_record(esp_name=esp_name, event=event)


@receiver(case_fixed, dispatch_uid="letters.case_fixed")
def on_case_fixed(sender: Any, case: Case, **kwargs: Any) -> None:
    """A re-probe verified the case fixed: thank the case's current contact."""
    from letters import services
    from letters.models import LetterKind

    try:
        services.letter_queue(case=case, kind=LetterKind.FIXED, actor_label="re-probe")
    except services.LetterNotQueued as refusal:  # no template or contact: staff see why
        case_record_event(
            case=case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="re-probe",
            note=f"No “fixed” letter: {refusal}",
        )


@receiver(case_reminder_due, dispatch_uid="letters.case_reminder_due")
def on_case_reminder_due(sender: Any, case: Case, note: str, **kwargs: Any) -> str | None:
    """The schedule saw the server still open at the reminder date: the reminder letter."""
    from letters import services
    from letters.models import LetterKind

    try:
        services.letter_queue(
            case=case, kind=LetterKind.REMINDER, actor_label="schedule", note=note
        )
    except services.LetterNotQueued as refusal:
        return str(refusal)
    return None
