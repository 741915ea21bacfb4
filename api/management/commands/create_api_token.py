"""`manage.py create_api_token USERNAME [--name NAME]`: prints a new API token, once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api import services


class Command(BaseCommand):
    help = "Create an API token for a staff user and print it (it is stored only as a digest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            _, raw = services.api_token_create(user=user, name=name or "command line")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(raw)
