from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign.models import Partner
from letters import services


class Command(BaseCommand):
    help = (
        "Load the shipped letter templates (templates/letters/<lang>/<kind>.html) as versioned "
        "drafts for every partner in each of its letter languages. Unchanged files add nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--partner", action="append", default=[], help="ISO code; repeatable")
        parser.add_argument(
            "--approve-as",
            metavar="USERNAME",
            help="Approve the shipped version where nothing is approved yet, as this user",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        partners = Partner.objects.all()
        if options["partner"]:
            codes = [code.upper() for code in options["partner"]]
            partners = partners.filter(country__in=codes)
            missing = set(codes) - set(partners.values_list("country", flat=True))
            if missing:
                raise CommandError(
                    f"Unknown partner(s): {', '.join(sorted(missing))}.", returncode=2
                )
        approver = None
        if options["approve_as"]:
            approver = get_user_model().objects.filter(username=options["approve_as"]).first()
            if approver is None:
                raise CommandError(f"No user {options['approve_as']!r}.", returncode=2)
        report = services.templates_load_shipped(partners=partners, approve_as=approver)
        for problem in report.problems:
            self.stderr.write(problem)
        self.stdout.write(
            f"Letter templates: {report.created} new version(s), {report.unchanged} unchanged, "
            f"{report.approved} approved."
        )
