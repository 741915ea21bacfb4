"""Every change to partners' cases goes through here, with its CaseEvent in the same transaction.

By job: `cases` (state, findings, the work queue), `owner_requests` (what owners ask for on their
page), `sweep` (the schedule). Every name stays importable from `campaign.services`.
"""

from __future__ import annotations

from campaign.services.cases import (  # noqa: F401
    WEAK_EVIDENCE_ONLY,
    IllegalTransition,
    case_add_finding,
    case_attention_clear,
    case_attention_set,
    case_finding_revised,
    case_language,
    case_record_event,
    case_settle,
    case_transition,
    next_case_reference,
    owner_is_suppressed,
    owner_triage_reason,
)
from campaign.services.owner_requests import (  # noqa: F401
    CORRECTION_REASONS,
    RECHECKABLE_STATUSES,
    RecheckRateLimited,
    case_apply_recheck_result,
    case_correction,
    case_last_recheck,
    case_opt_out,
    case_reprobe_start,
    case_request_recheck,
    case_target_ids,
)
from campaign.services.sweep import (  # noqa: F401
    SCHEDULE_ACTOR,
    STEPS,
    SWEEP_BATCH,
    SWEEP_LEASE,
    NotAllowed,
    SweepReport,
    campaign_end,
    campaign_reschedule,
    case_advance,
    case_reprobe_seen,
    case_reschedule,
    cases_overdue,
    partner_set_automation_paused,
    schedule_sweep,
)
