from __future__ import annotations

from celery import shared_task


@shared_task(name="reporting.refresh_figures")
def refresh_figures() -> int:
    """Recompute the dashboard's and /results/'s figures for every partner."""
    from reporting import services

    return services.figures_refresh()
