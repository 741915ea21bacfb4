"""Letter state changes, by job: templates, queueing, sending, tracking (bounces: per-ESP table).

Every public name stays importable from `letters.services`.
"""

from __future__ import annotations

# Names the single module used to expose, kept for callers written against it.
from campaign.services import (
    IllegalTransition,
    case_record_event,
    case_transition,
    owner_is_suppressed,
)
from letters import emails, links, rendering
from letters.services.bounces import BOUNCE_READERS, bounce_kind
from letters.services.outbox import (
    DispatchReport,
    LetterNotSettled,
    ReconcileReport,
    heartbeat_record,
    letter_requeue,
    letter_send_again,
    letter_settle_sent,
    letters_dispatch,
    letters_due,
    letters_needing_attention,
    outbox_reconcile,
    partner_in_sending_window,
)
from letters.services.queueing import (
    IN_FLIGHT,
    LIVE,
    QUEUEABLE,
    STUCK_AFTER,
    LetterNotQueued,
    address_problem,
    email_is_suppressed,
    letter_next_contact,
    letter_queue,
    letter_queue_refusal,
    letter_retry,
    letters_stuck,
)
from letters.services.sending import (
    _is_transient,
    letter_mark_sent,
    letter_send,
    letter_settle_expired,
    send_error_kind,
)
from letters.services.templates import (
    ApprovalRefused,
    LoadReport,
    template_approval_refusal,
    template_approve,
    template_new_version,
    template_tone_problems,
    templates_load_shipped,
)
from letters.services.tracking import delivery_event_record, esp_slug, stable_event_id
from letters.tasks import TransientSendError, dispatch_letters_task, send_letter_task

__all__ = [
    "ApprovalRefused",
    "BOUNCE_READERS",
    "DispatchReport",
    "IN_FLIGHT",
    "IllegalTransition",
    "LIVE",
    "LetterNotQueued",
    "LetterNotSettled",
    "LoadReport",
    "QUEUEABLE",
    "ReconcileReport",
    "STUCK_AFTER",
    "TransientSendError",
    "_is_transient",
    "address_problem",
    "bounce_kind",
    "case_record_event",
    "case_transition",
    "delivery_event_record",
    "dispatch_letters_task",
    "email_is_suppressed",
    "emails",
    "esp_slug",
    "heartbeat_record",
    "letter_mark_sent",
    "letter_next_contact",
    "letter_queue",
    "letter_queue_refusal",
    "letter_requeue",
    "letter_retry",
    "letter_send",
    "letter_send_again",
    "letter_settle_expired",
    "letter_settle_sent",
    "letters_dispatch",
    "letters_due",
    "letters_needing_attention",
    "letters_stuck",
    "links",
    "outbox_reconcile",
    "owner_is_suppressed",
    "partner_in_sending_window",
    "rendering",
    "send_error_kind",
    "send_letter_task",
    "stable_event_id",
    "template_approval_refusal",
    "template_approve",
    "template_new_version",
    "template_tone_problems",
    "templates_load_shipped",
]
