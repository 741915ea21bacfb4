from __future__ import annotations

from pathlib import Path

from campaign.intake import services
from campaign.models import Campaign, ImportBatch

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "intake"


def run_import(
    name: str,
    *,
    format: str | None = None,
    campaign: Campaign | None = None,
    own_domains: list[str] | None = None,
) -> ImportBatch:
    return services.import_file(
        path_or_file=FIXTURES / name,
        file_name=name,
        format=format,
        campaign=campaign,
        actor=None,
        own_domains=own_domains,
    )
