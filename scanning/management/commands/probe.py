"""`manage.py probe`: probe targets directly and print JSON Lines (BRIEF.md names everything)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scanning.probes import cli


class Command(BaseCommand):
    help = "Probe HOST:PORT targets for open relays and proxies; prints one JSON line per result."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        from scanning.hitstore import DatabaseHitStore

        env = cli.ProbeEnvironment(
            scanner_name=settings.SCANNER_NAME,
            public_base_url=settings.PUBLIC_BASE_URL,
            contact=getattr(settings, "SCANNER_CONTACT_EMAIL", None) or None,
            canary_domain=settings.CANARY_DOMAIN,
            canary_http_addr=settings.CANARY_HTTP_ADDR,
            canary_tls_addr=settings.CANARY_TLS_ADDR,
            canary_smtp_addr=settings.CANARY_SMTP_ADDR,
            canary_selfcheck_addr=getattr(settings, "CANARY_SELFCHECK_ADDR", None),
            canary_secret=settings.CANARY_SECRET,
            deployed_hits=DatabaseHitStore,
        )
        try:
            cli.run(options, env, stdout=self.stdout)
        except cli.UsageError as exc:
            raise CommandError(str(exc), returncode=cli.EXIT_USAGE) from None
