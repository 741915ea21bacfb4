"""`manage.py campaign_tick`: one pass of the campaign's schedule in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign import services


class Command(BaseCommand):
    help = (
        "Run one sweep of the schedule here (what the beat's sweep does every few minutes): "
        "re-probes, reminders, escalation and closing of the cases that are due, one line per "
        "case. Safe to run twice at once: each case is claimed by one sweep."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-cases", type=int, default=None, help="Act on at most this many cases."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["max_cases"]
        if limit is not None and limit < 1:
            raise CommandError("--max-cases must be at least 1.", returncode=2)
        report = services.schedule_sweep(inline=True, max_cases=limit)
        for line in report.lines:
            self.stdout.write(line)
        steps = len(report.lines)
        self.stdout.write(f"campaign_tick: {report.claimed} case(s) due, {steps} step(s).")
