from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaign.models import Case
from letters import links, printing, rendering
from letters.models import LetterKind, LetterTemplate


class Command(BaseCommand):
    help = "Write the PDF that a case's letter would have (approved template, else the newest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("reference", help="Case reference, e.g. SYS-2026-000001")
        parser.add_argument("--language", help="Django language code (default: the case's)")
        parser.add_argument(
            "--kind", choices=[k.value for k in LetterKind], default=LetterKind.INITIAL.value
        )
        parser.add_argument("--output", required=True, help="Where to write the PDF")

    def handle(self, *args: Any, **options: Any) -> None:
        case = (
            Case.objects.select_related("partner", "server_owner", "campaign")
            .filter(reference=options["reference"].strip().upper())
            .first()
        )
        if case is None:
            raise CommandError(f"No case with reference {options['reference']!r}.", returncode=2)
        language = (options["language"] or case.language).lower()
        known = {code for code, _ in settings.LANGUAGES}
        if language not in known:
            raise CommandError(
                f"Unknown language {language!r}; one of: {', '.join(sorted(known))}.",
                returncode=2,
            )
        kind = options["kind"]
        source, origin = self.template_source(case, kind, language)
        if source is None:
            raise CommandError(
                f"No {kind} letter in {language!r}: no stored template for "
                f"{case.partner.country} and no shipped file {origin}.",
                returncode=2,
            )
        rendered = rendering.render_case(
            case, kind=kind, language=language, source=source, remediation_url=links.PREVIEW_URL
        )
        pdf = printing.letter_pdf(rendered)
        output = Path(options["output"])
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(pdf)
        self.stdout.write(f"{output}: {case.reference} {kind}/{language} from {origin}")

    def template_source(
        self, case: Case, kind: str, language: str
    ) -> tuple[rendering.TemplateSource | None, str]:
        slot = LetterTemplate.objects.filter(partner=case.partner, kind=kind, language=language)
        template = slot.filter(status=LetterTemplate.Status.APPROVED).first()
        if template is None:
            template = slot.order_by("-version").first()
        if template is not None:
            return rendering.TemplateSource.of(template), (
                f"template v{template.version} ({template.status})"
            )
        path = rendering.shipped_path(language, kind)
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            return rendering.parse_shipped(text), str(path.relative_to(settings.BASE_DIR))
        return None, str(path.relative_to(settings.BASE_DIR))
