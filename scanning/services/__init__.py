"""Scanning's state changes, by job: `environment` (exclusions, what probes read from settings),
`runs` (starting and dispatching scan runs), `batches` (probing a batch, storing its findings).
Every public name stays importable from `scanning.services`.
"""

from __future__ import annotations

from scanning.services.batches import (  # noqa: F401
    BatchReconcileReport,
    scan_batch_probe,
    scan_batches_reconcile,
)
from scanning.services.environment import (  # noqa: F401
    excluded_networks,
    exclusion_request,
    probe_environment,
    scan_limits,
)
from scanning.services.runs import (  # noqa: F401
    DISPATCH_CHUNK,
    RUN_CHUNK,
    scan_batches_stale,
    scan_run_dispatch,
    scan_run_requeue_stale,
    scan_run_start,
    scan_runs_needing_attention,
)
