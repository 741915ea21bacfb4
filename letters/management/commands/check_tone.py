"""`python manage.py check_tone [--language LL] [PATH ...]`: the accusatory wording check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from letters import tone

TEMPLATE_SUFFIXES = {".html", ".htm", ".txt"}


class Command(BaseCommand):
    help = (
        "Check letter templates for accusatory or legal-threat wording: the given files (a folder"
        ' means the templates under it), or every stored template. Prints path:line: "phrase"'
        " (reason) per passage; exit 1 if any, 2 if a file's language is unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--language",
            help="Language code (e.g. de, pt-br); default: the <lang>/ folder in each path.",
        )
        parser.add_argument("paths", nargs="*", metavar="PATH")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        language = options["language"]
        if language is not None:
            try:
                language = tone.normalize_language(language)
            except tone.UnknownLanguage as exc:
                raise CommandError(str(exc), returncode=2) from exc
        if options["paths"]:
            found = self._check_files(options["paths"], language)
        else:
            found = self._check_stored(language)
        if found:
            raise CommandError(f"{found} accusatory passage(s) found", returncode=1)

    def _check_files(self, paths: list[str], language: str | None) -> int:
        # Resolve every language before checking anything: a partial report would read as a pass.
        plan: list[tuple[Path, str]] = []
        missing = []
        for path, named in self._expand(paths):
            lang = language or tone.language_from_path(path)
            if lang is not None:
                plan.append((path, lang))
            elif named:
                missing.append(str(path))
            elif self.verbosity >= 2:
                # Shared layouts and partials in a walked folder are not letters of a language.
                self.stderr.write(f"skipped (no <lang>/ folder): {path}")
        if missing:
            raise CommandError(
                "no language for "
                + ", ".join(missing)
                + ": pass --language or put the file under a <lang>/ folder (e.g. de/initial.html)",
                returncode=2,
            )
        found = 0
        for path, lang in plan:
            try:
                issues = tone.check_file(path, lang)
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"{path}: cannot read: {exc}", returncode=2) from exc
            found += self._report(str(path), issues)
        return found

    def _expand(self, paths: list[str]) -> list[tuple[Path, bool]]:
        """Files to check, each with whether it was named on the command line."""
        files: list[tuple[Path, bool]] = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEMPLATE_SUFFIXES)
                files.extend((p, False) for p in found)
            elif path.is_file():
                files.append((path, True))
            else:
                raise CommandError(f"{raw}: no such file or folder", returncode=2)
        return files

    def _check_stored(self, language: str | None) -> int:
        from letters.models import LetterTemplate

        templates = LetterTemplate.objects.select_related("partner").order_by("id")
        if language is not None:
            templates = templates.filter(language=language)
        found = 0
        for template in templates:
            name = f"template:{template.id}:{template.partner.country}/{template.kind}"
            try:
                issues = tone.tone_problems_for_template(template)
            except tone.UnknownLanguage as exc:
                raise CommandError(f"{name}/{template.language}: {exc}", returncode=2) from exc
            for field in ("subject", "body_html", "body_text"):
                pseudo_path = f"{name}/{template.language}/{field}"
                found += self._report(pseudo_path, [i for i in issues if i.field == field])
        return found

    def _report(self, path: str, issues: list[tone.ToneIssue]) -> int:
        for issue in issues:
            self.stdout.write(f'{path}:{issue.line}: "{issue.phrase}" ({issue.reason})')
        return len(issues)
