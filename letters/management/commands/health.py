from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from letters import health


class Command(BaseCommand):
    help = (
        "Queue depths, the oldest waiting work, stale claims and the last beat run, as JSON. "
        "Exit status 1 when something is stuck."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            choices=("all", "beat"),
            default="all",
            help="'beat': only whether the periodic jobs ran recently (beat's healthcheck).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"] == "beat":
            problem = health.beat_health()
            self.stdout.write(json.dumps({"beat": problem or "ok"}))
            if problem:
                raise CommandError(problem, returncode=1)
            return
        report = health.health_report()
        self.stdout.write(json.dumps(report, indent=2))
        if report["stuck"]:
            raise CommandError("; ".join(report["problems"]), returncode=1)
