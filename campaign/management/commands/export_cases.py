from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign import exports
from campaign.models import Case, Partner


class Command(BaseCommand):
    help = "Export the case list of one partner (or all) as CSV, JSON or XLSX."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partner", metavar="CC", help="ISO 3166-1 alpha-2 code, e.g. GB")
        parser.add_argument("--format", choices=("csv", "json", "xlsx"), default="csv")
        parser.add_argument("--output", metavar="PATH", help="file to write (default: stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        cases = Case.objects.all()
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
        rows = exports.case_rows(cases)
        if fmt == "xlsx":
            with open(output, "wb") as out:
                exports.write_xlsx(rows, out)
            return
        lines = exports.csv_lines(rows) if fmt == "csv" else exports.json_lines(rows)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as out:
                out.writelines(lines)
        else:
            for line in lines:
                self.stdout.write(line, ending="")
