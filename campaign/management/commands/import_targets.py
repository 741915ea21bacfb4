from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign.intake import services
from campaign.intake.parsers import FORMATS
from campaign.models import Campaign, ImportBatch


class Command(BaseCommand):
    help = (
        "Import suspect servers from a CSV file, a Shadowserver report or spam samples "
        "(.eml, mbox). Exit 1 when the file is rejected as a whole, 2 on bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument(
            "--format", choices=FORMATS, default=None, help="Guessed from the file when omitted."
        )
        parser.add_argument("--campaign", metavar="SLUG", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        path: str = options["path"]
        if not os.path.isfile(path):
            raise CommandError(f"{path}: no such file.", returncode=2)
        campaign = None
        if options["campaign"]:
            campaign = Campaign.objects.filter(slug=options["campaign"]).first()
            if campaign is None:
                known = ", ".join(Campaign.objects.values_list("slug", flat=True)[:20]) or "none"
                raise CommandError(
                    f"No campaign with slug {options['campaign']!r} (known: {known}).",
                    returncode=2,
                )
        batch = services.import_file(
            path_or_file=path,
            file_name=os.path.basename(path),
            format=options["format"],
            campaign=campaign,
            actor=None,
        )
        if batch.status == ImportBatch.Status.FAILED and not batch.rows_total:
            raise CommandError(f"Rejected: {batch.failure}", returncode=1)
        self.stdout.write(
            f"{batch.file_name} ({batch.format}): {batch.rows_total} rows, "
            f"{batch.rows_kept} kept, {batch.rows_rejected} rejected; "
            f"{batch.targets.count()} targets (import batch {batch.id})."
        )
        for error in batch.errors:
            line = error.get("line")
            self.stdout.write(f"line {line}: {error['reason']}" if line else error["reason"])
        if batch.status == ImportBatch.Status.FAILED:
            raise CommandError(batch.failure, returncode=1)
