from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign import exports
from campaign.models import Case, Partner


class Command(BaseCommand):
    help = (
        "Export the cases of one partner (or all), one row per case or per finding, as CSV, "
        "JSON Lines (IntelMQ field names) or XLSX."
    )
    # The system checks import every URL, view and admin module (PDF rendering, ESP clients):
    # seconds before the first byte and tens of MB an export never uses. `manage.py check`
    # and the deploy run them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partner", metavar="CC", help="ISO 3166-1 alpha-2 code, e.g. GB")
        parser.add_argument("--format", choices=exports.FORMATS, default="csv")
        parser.add_argument(
            "--shape",
            choices=exports.SHAPES,
            default="cases",
            help="one row per case (default) or one row per finding",
        )
        parser.add_argument("--output", metavar="PATH", help="file to write (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        cases = Case.objects.all()
        partner = None
        code = options["partner"]
        if code:
            wanted = code.strip().upper()
            partner = Partner.objects.filter(country=wanted).first()
            if partner is None:
                hint = " (the United Kingdom is GB)" if wanted == "UK" else ""
                raise CommandError(
                    f"--partner {code}: no partner with that country code{hint}.", returncode=2
                )
            cases = cases.filter(partner=partner)
        fmt, output = options["format"], options["output"]
        if fmt == "xlsx" and not output:
            raise CommandError(
                "--format xlsx needs --output PATH (it is a binary file).", returncode=2
            )
        export = exports.export_for(cases, shape=options["shape"], fmt=fmt, partner=partner)
        if output:
            # Written beside the target and renamed when complete: PATH is never a cut file.
            partial = f"{output}.part"
            try:
                with open(partial, "wb") as out:
                    for chunk in export.stream():
                        out.write(chunk)
                os.replace(partial, output)
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise
        else:
            binary = getattr(self.stdout._out, "buffer", None)
            for chunk in export.stream():
                if binary is not None:
                    binary.write(chunk)
                else:
                    self.stdout.write(chunk.decode(), ending="")
            if binary is not None:
                binary.flush()
        where = output or "stdout"
        self.stderr.write(f"{export.rows} {export.shape} rows written to {where}.")
