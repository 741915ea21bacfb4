"""`manage.py probe`: probe targets directly and print JSON Lines (keys in docs/probes.md)."""

from __future__ import annotations

from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scanning import services
from scanning.probes import cli
from scanning.probes.base import Limits


class Command(BaseCommand):
    help = "Probe HOST:PORT targets for open relays and proxies; prints one JSON line per result."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        env = services.probe_environment(limits=Limits())
        try:
            cli.run(options, env, stdout=cast(TextIO, self.stdout))  # writes like a file
        except cli.UsageError as exc:
            raise CommandError(str(exc), returncode=cli.EXIT_USAGE) from None
