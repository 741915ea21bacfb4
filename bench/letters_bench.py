"""Letters per second in one process: rendered (HTML + PDF), WeasyPrint alone on the same HTML,
and sent through anymail's test backend (render, PDF, link, store, send, record).

Everything runs in one transaction that is rolled back, and PDFs go to a temporary MEDIA_ROOT,
so the benchmark leaves nothing behind in whatever database it is given.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from letters import printing


class _Rollback(Exception):
    pass


def run(letters: int | None = None) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import transaction
    from django.test import override_settings

    n = letters or int(os.environ.get("BENCH_LETTERS", "40"))
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as media,
        override_settings(MEDIA_ROOT=media, EMAIL_BACKEND="anymail.backends.test.EmailBackend"),
    ):
        try:
            with transaction.atomic():
                result = _measure(n)
                raise _Rollback
        except _Rollback:
            pass
    return result


def _world() -> tuple[Any, Any]:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from campaign.models import Campaign, Case, Contact, Partner, ServerOwner
    from letters import rendering
    from letters.models import LetterTemplate
    from scanning.models import Finding, Target

    now = timezone.now()
    user = User.objects.create_user("bench-letters-approver", is_superuser=True, is_staff=True)
    partner, _ = Partner.objects.get_or_create(
        country="ZZ",
        defaults={"country_name": "Benchland", "agency": "Bench Agency", "languages": ["en"]},
    )
    owner = ServerOwner.objects.create(name="Bench Hosting", partner=partner, country="ZZ")
    Contact.objects.create(server_owner=owner, position=0, kind="abuse", email="abuse@b.example")
    campaign = Campaign.objects.create(slug="bench-letters", name="Bench letters")
    case = Case.objects.create(
        reference=f"SYS-{now.year}-999999",
        campaign=campaign,
        server_owner=owner,
        partner=partner,
        language="en",
        status=Case.Status.READY,
    )
    for i, (protocol, port) in enumerate((("smtp", 25), ("http", 3128), ("socks5", 1080))):
        target = Target.objects.create(
            ip=f"192.0.2.{200 + i}", port=port, protocol=protocol, first_seen=now, last_seen=now
        )
        case.findings.add(
            Finding.objects.create(
                target=target,
                protocol=protocol,
                verdict="confirmed-open",
                evidence_level="strong",
                software_family="Postfix" if protocol == "smtp" else "",
                probed_at=now,
            )
        )
    path = rendering.shipped_path("en", "initial")
    if path.is_file():
        source = rendering.parse_shipped(path.read_text(encoding="utf-8"))
    else:
        source = rendering.TemplateSource(
            "Securing your server ({{ reference }})",
            "<p>Dear {{ owner_name }}</p>{% for f in findings %}<p>{{ f.address }}:{{ f.port }}"
            '</p>{% endfor %}<p><a href="{{ remediation_url }}">{{ remediation_url }}</a></p>',
        )
    template = LetterTemplate.objects.create(
        partner=partner,
        kind="initial",
        language="en",
        version=9999,
        status=LetterTemplate.Status.APPROVED,
        subject=source.subject,
        body_html=source.body_html,
        approved_by=user,
        approved_at=now,
    )
    return case, template


def _measure(n: int) -> dict[str, Any]:
    from django.utils import timezone
    from weasyprint import HTML

    from letters import links, rendering, services
    from letters.models import Letter

    case, template = _world()
    source = rendering.TemplateSource.of(template)
    url = links.PREVIEW_URL
    printing.letter_pdf(rendering.render_case(case, source=source, remediation_url=url))  # warm

    started = time.perf_counter()
    for _ in range(n):
        rendered = rendering.render_case(case, source=source, remediation_url=url)
    html_seconds = time.perf_counter() - started

    pdf_size = 0
    started = time.perf_counter()
    for _ in range(n):
        rendered = rendering.render_case(case, source=source, remediation_url=url)
        pdf_size = len(printing.letter_pdf(rendered))
    render_seconds = time.perf_counter() - started

    # WeasyPrint alone: the same HTML, its default fetcher and font setup, nothing of ours.
    html = rendered.pdf_html.replace(
        '<link rel="stylesheet" href="static/letters/letter.css">',
        f"<style>{rendering._email_css()}</style>",
    )
    started = time.perf_counter()
    for _ in range(n):
        HTML(string=html).write_pdf()
    weasy_seconds = time.perf_counter() - started

    now = timezone.now()
    ids = [
        Letter.objects.create(
            case=case,
            kind="initial",
            language="en",
            template=template,
            recipient_email=f"bench-{i}@b.example",
            status=Letter.Status.QUEUED,
            queued_at=now,
        ).id
        for i in range(n)
    ]
    started = time.perf_counter()
    for letter_id in ids:
        services.letter_send(letter_id=letter_id)
    send_seconds = time.perf_counter() - started
    sent = Letter.objects.filter(id__in=ids, status=Letter.Status.SENT).count()

    return {
        "letters": n,
        "template": (
            "templates/letters/en/initial.html"
            if rendering.shipped_path("en", "initial").is_file()
            else "built-in sample"
        ),
        "pdf_kib": round(pdf_size / 1024, 1),
        "html_letters_per_second": round(n / html_seconds, 1),
        "rendered_letters_per_second": round(n / render_seconds, 2),
        "weasyprint_alone_pdfs_per_second": round(n / weasy_seconds, 2),
        # >1: our shared FontConfiguration and image cache beat WeasyPrint's per-call defaults
        "rendered_vs_weasyprint_alone": round(weasy_seconds / render_seconds, 2),
        "sent_letters_per_second": round(sent / send_seconds, 2),
        "sent": sent,
        "backend": "anymail.backends.test.EmailBackend",
    }
