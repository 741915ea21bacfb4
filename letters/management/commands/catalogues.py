"""`manage.py catalogues update|compile|check`: the gettext catalogues under locale/."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from letters import i18n


class Command(BaseCommand):
    help = (
        "update: add new messages of the public pages to every language's catalogue; "
        "compile: write the .mo files; check: exit 1 when a message is missing or untranslated."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("update", "compile", "check"))
        parser.add_argument("--force", action="store_true", help="compile even when up to date")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "update":
            for language in i18n.update():
                self.stdout.write(f"updated {i18n.po_path(language)}")
        elif action == "compile":
            written = i18n.compile_all(force=options["force"])
            self.stdout.write(f"compiled {len(written)} catalogue(s)")
        else:
            problems = i18n.check()
            for problem in problems:
                self.stderr.write(str(problem))
            if problems:
                raise CommandError(f"{len(problems)} problem(s) in the catalogues")
            self.stdout.write("every catalogue is complete")
