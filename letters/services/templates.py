"""Letter templates: versions, the tone check, approval, and loading the shipped files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from campaign import selectors
from campaign.models import Partner
from campaign.selectors import AnyUser
from letters import rendering, sandbox, tone
from letters.models import LetterTemplate


class ApprovalRefused(Exception):
    pass


def _issue_dict(issue: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(issue) and not isinstance(issue, type):
        return {k: v for k, v in dataclasses.asdict(issue).items() if _jsonable(v)}
    if hasattr(issue, "_asdict"):
        return dict(issue._asdict())
    return {"problem": str(issue)}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def template_tone_problems(template: LetterTemplate) -> list[dict[str, Any]]:
    """The tone check's findings for a template. A safety gate fails closed: if the check cannot
    load, this raises rather than reporting "no problems"."""
    return [_issue_dict(issue) for issue in tone.tone_problems_for_template(template)]


@transaction.atomic
def template_new_version(
    *,
    partner: Partner,
    kind: str,
    language: str,
    subject: str,
    body_html: str,
    body_text: str = "",
    actor: AnyUser | None = None,
    source_path: str = "",
) -> LetterTemplate:
    """A new draft version; approved versions are never edited in place."""
    Partner.objects.select_for_update().filter(pk=partner.pk).first()  # serialise numbering
    last = LetterTemplate.objects.filter(partner=partner, kind=kind, language=language).aggregate(
        v=Max("version")
    )["v"]
    template = LetterTemplate(
        partner=partner,
        kind=kind,
        language=language,
        version=(last or 0) + 1,
        status=LetterTemplate.Status.DRAFT,
        subject=subject,
        body_html=body_html,
        body_text=body_text,
        source_path=source_path,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    template.tone_report = template_tone_problems(template)
    template.save()
    return template


def template_approval_refusal(template: LetterTemplate, actor: AnyUser) -> str | None:
    if not selectors.has_role(actor, "approver", template.partner):
        return f"Only an approver of {template.partner.country_name} can approve its templates" + (
            " (the lead's approvers approve only the lead's own)."
            if not template.partner.is_lead
            else "."
        )
    if template.status == LetterTemplate.Status.APPROVED:
        return "This version is already approved."
    # Four eyes: whoever wrote a version does not approve it (superusers included).
    if template.created_by_id is not None and template.created_by_id == actor.pk:
        return "You edited this version: another approver must approve it."
    for source in (template.subject, template.body_html, template.body_text):
        error = sandbox.sandbox_check(source)
        if error:
            return f"The template does not render in the sandbox: {error}"
    problems = template_tone_problems(template)
    if problems:
        template.tone_report = problems
        LetterTemplate.objects.filter(pk=template.pk).update(tone_report=problems)
        return f"The tone check found {len(problems)} problem(s); fix them in a new version."
    return None


@transaction.atomic
def template_approve(*, template: LetterTemplate, actor: AnyUser) -> LetterTemplate:
    template = (
        LetterTemplate.objects.select_for_update().select_related("partner").get(pk=template.pk)
    )
    refusal = template_approval_refusal(template, actor)
    if refusal:
        raise ApprovalRefused(refusal)
    slot = LetterTemplate.objects.filter(
        partner=template.partner, kind=template.kind, language=template.language
    )
    slot.filter(status=LetterTemplate.Status.APPROVED).update(status=LetterTemplate.Status.RETIRED)
    now = timezone.now()
    template.status = LetterTemplate.Status.APPROVED
    template.approved_by = actor  # type: ignore[assignment]
    template.approved_at = now
    template.tone_report = []
    template.save(update_fields=["status", "approved_by", "approved_at", "tone_report"])
    return template


@dataclass
class LoadReport:
    created: int = 0
    unchanged: int = 0
    approved: int = 0
    problems: list[str] = field(default_factory=list)


def templates_load_shipped(
    *,
    partners: QuerySet[Partner] | None = None,
    actor: AnyUser | None = None,
    approve_as: AnyUser | None = None,
) -> LoadReport:
    """Shipped files -> versions for every partner in each of its letter languages. An unchanged
    file adds nothing; a changed one adds a draft. `approve_as` approves the shipped version
    where a slot has no approved version yet (the demo)."""
    report = LoadReport()
    files: dict[str, list[tuple[str, str, rendering.TemplateSource]]] = {}
    for language, kind, path in rendering.shipped_files():
        rel = f"templates/letters/{language}/{kind}.html"
        try:
            source = rendering.parse_shipped(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            report.problems.append(f"{rel}: {exc}")
            continue
        files.setdefault(language, []).append((kind, rel, source))
    for partner in partners if partners is not None else Partner.objects.all():
        for language in partner.letter_languages:
            for kind, rel, source in files.get(language, []):
                slot = LetterTemplate.objects.filter(partner=partner, kind=kind, language=language)
                template = slot.filter(source_path=rel).order_by("-version").first()
                if template and (template.subject, template.body_html) == (
                    source.subject,
                    source.body_html,
                ):
                    report.unchanged += 1
                else:
                    template = template_new_version(
                        partner=partner,
                        kind=kind,
                        language=language,
                        subject=source.subject,
                        body_html=source.body_html,
                        actor=actor,
                        source_path=rel,
                    )
                    report.created += 1
                if approve_as is None:
                    continue
                if slot.filter(status=LetterTemplate.Status.APPROVED).exists():
                    continue
                try:
                    template_approve(template=template, actor=approve_as)
                    report.approved += 1
                except ApprovalRefused as exc:
                    report.problems.append(f"{partner.country} {rel}: {exc}")
    return report
