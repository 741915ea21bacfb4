"""Letters as HTML e-mail and plain text (the PDF is made from the same HTML: letters/printing.py).

Template bodies are edited by staff, so they render in a sandbox (letters/sandbox.py) with a
context of plain strings, numbers and lists of dicts, never model instances. Only the trusted
layout (templates/letters/_layout.html) renders with Django's full engine.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import dateformat, formats, timezone, translation
from django.utils.safestring import mark_safe

from campaign.models import Case, Partner
from letters import render_budget
from letters.models import Letter, LetterKind, LetterTemplate
from letters.sandbox import sandbox_render
from scanning.models import OPEN_VERDICTS

SHIPPED_DIR = Path(settings.BASE_DIR) / "templates" / "letters"
# The base URL of the PDF's assets. It never resolves: the PDF's fetcher (letters/printing.py)
# answers for it from local files only.
ASSET_BASE = "https://letter-assets.invalid/"
SUBJECT_LINE = re.compile(r"^\s*\{#\s*subject:\s*(?P<subject>.*?)\s*#\}\s*$")

# --- Context ------------------------------------------------------------------------------------
KIND_BY_PROTOCOL = {
    "smtp": "smtp_relay",
    "http": "http_proxy",
    "socks4": "socks_proxy",
    "socks5": "socks_proxy",
}


def bcp47(language: str) -> str:
    """Django's lower-case code as an HTML lang attribute: zh-hant -> zh-Hant, pt-br -> pt-BR."""
    return translation.to_locale(language).replace("_", "-")


ABBREVIATED_MONTH = re.compile(r"(?<!\\)[NM]")


def local_date(value: date | None, language: str, country: str = "") -> str:
    """A date as written in `language`; with the partner's `country`, in that country's form
    of it (en + GB: 7 December 2026; en + US: December 7, 2026), the month spelled out."""
    if value is None:
        return ""
    with translation.override(language):
        if not country:
            return formats.date_format(value, "DATE_FORMAT")
        fmt = str(formats.get_format("DATE_FORMAT", lang=f"{language}-{country.lower()}"))
        return dateformat.format(value, ABBREVIATED_MONTH.sub("F", fmt))


def findings_context(case: Case, *, kind: str, language: str) -> list[dict[str, Any]]:
    latest: dict[int, Any] = {}
    for finding in case.findings.select_related("target").order_by("probed_at", "id"):
        latest[finding.target_id] = finding  # the newest finding per target wins
    rows = []
    for finding in sorted(latest.values(), key=lambda f: (f.target.ip, f.target.port)):
        if kind != LetterKind.FIXED and finding.verdict not in OPEN_VERDICTS:
            continue
        software = " ".join(p for p in (finding.software_family, finding.software_version) if p)
        rows.append(
            {
                "address": finding.target.ip,
                "port": finding.target.port,
                "kind": KIND_BY_PROTOCOL.get(finding.protocol, "smtp_relay"),
                "protocol": finding.protocol,
                "software": software,
                "seen": local_date(
                    timezone.localdate(finding.probed_at), language, case.partner.country
                ),
                "evidence": finding.evidence_level,  # strong, medium or weak
            }
        )
    return rows


def _partner_context(partner: Partner, language: str) -> dict[str, Any]:
    names = partner.localized(language)
    # The letterhead and the signature print the agency already: a title that only repeats it
    # would print the agency's name twice in one signature.
    title = names["signatory_title"]
    if title.strip().casefold() == names["agency"].strip().casefold():
        title = ""
    return {
        "agency": names["agency"],
        "country_name": names["country_name"],
        "signatory_name": names["signatory_name"],
        "signatory_title": title,
        "reply_to": partner.reply_to,
        "agency_website": partner.website,
    }


def case_context(
    case: Case, *, kind: str, language: str, remediation_url: str, today: date | None = None
) -> dict[str, Any]:
    """Everything a letter template may use: plain values only (that is the sandbox)."""
    today = today or timezone.localdate()
    owner = case.server_owner
    first_sent = (
        Letter.objects.filter(case=case, kind=LetterKind.INITIAL, sent_at__isnull=False)
        .order_by("sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )
    fixed_on = timezone.localdate(case.status_changed_at) if case.status == "fixed" else today
    return {
        **_partner_context(case.partner, language),
        "owner_name": str((owner.corrections or {}).get("name") or owner.name),
        "reference": case.reference,
        "campaign_name": case.campaign.name,
        "letter_date": local_date(today, language, case.partner.country),
        "findings": findings_context(case, kind=kind, language=language),
        "remediation_url": remediation_url,
        "first_letter_date": local_date(
            timezone.localdate(first_sent) if first_sent else None, language, case.partner.country
        ),
        "fixed_date": local_date(fixed_on, language, case.partner.country),
    }


def sample_context(
    partner: Partner, *, kind: str, language: str, remediation_url: str
) -> dict[str, Any]:
    """For previews: a sample case with every field filled, in the partner's names and dates."""
    today = timezone.localdate()
    seen = local_date(today - timedelta(days=2), language, partner.country)
    return {
        **_partner_context(partner, language),
        "owner_name": "Example Hosting Ltd.",
        "reference": f"SYS-{today.year}-000000",
        "campaign_name": "Secure Your Server",
        "letter_date": local_date(today, language, partner.country),
        "findings": [
            {
                "address": "192.0.2.25",
                "port": 25,
                "kind": "smtp_relay",
                "protocol": "smtp",
                "software": "Postfix",
                "seen": seen,
                "evidence": "strong",
            },
            {
                "address": "198.51.100.8",
                "port": 3128,
                "kind": "http_proxy",
                "protocol": "http",
                "software": "Squid 5.7",
                "seen": seen,
                "evidence": "medium",
            },
        ],
        "remediation_url": remediation_url,
        "first_letter_date": local_date(today - timedelta(days=21), language, partner.country),
        "fixed_date": local_date(today, language, partner.country),
    }


# --- Rendering ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateSource:
    subject: str
    body_html: str
    body_text: str = ""

    @classmethod
    def of(cls, template: LetterTemplate) -> TemplateSource:
        return cls(template.subject, template.body_html, template.body_text)


@dataclass
class RenderedLetter:
    language: str
    reference: str
    subject: str
    html: str  # the e-mail
    text: str  # its plain-text alternative
    pdf_html: str  # the same letter laid out for print
    context: dict[str, Any] = field(repr=False, default_factory=dict)


def parse_shipped(text: str) -> TemplateSource:
    """A shipped file: first line `{# subject: ... #}`, the rest the HTML body."""
    first, _, rest = text.partition("\n")
    match = SUBJECT_LINE.match(first)
    if not match:
        raise ValueError("the first line must be {# subject: ... #}")
    return TemplateSource(match["subject"], rest.strip() + "\n")


def shipped_path(language: str, kind: str) -> Path:
    return SHIPPED_DIR / language / f"{kind}.html"


def shipped_files() -> list[tuple[str, str, Path]]:
    """(language, kind, path) of every shipped template file, in a stable order."""
    found = []
    kinds = {k.value for k in LetterKind}
    for path in sorted(SHIPPED_DIR.glob("*/*.html")):
        if path.stem in kinds:
            found.append((path.parent.name, path.stem, path))
    return found


def qr_data_uri(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@lru_cache(maxsize=1)
def _email_css() -> str:
    path = finders.find("letters/letter.css")
    return Path(path).read_text(encoding="utf-8") if path else ""


def render_source(
    source: TemplateSource, *, context: dict[str, Any], partner: Partner, language: str
) -> RenderedLetter:
    with translation.override(language), render_budget.render_budget():
        subject = " ".join(sandbox_render(source.subject, context, autoescape=False).split())
        body = sandbox_render(source.body_html, context)
        layout = {
            "lang": bcp47(language),
            "subject": subject,
            "body": mark_safe(body),  # the sandbox escaped every value
            "agency": partner.localized(language)["agency"],
            "address_lines": [line for line in partner.address.splitlines() if line.strip()],
            "website": partner.website,
            "reference": context.get("reference", ""),
            "letter_date": context.get("letter_date", ""),
            "remediation_url": context.get("remediation_url", ""),
        }
        html = render_to_string(
            "letters/_layout.html", {**layout, "medium": "email", "css": _email_css()}
        )
        pdf_html = render_to_string(
            "letters/_layout.html",
            {
                **layout,
                "medium": "pdf",
                "letterhead_url": (
                    f"{ASSET_BASE}media/{partner.letterhead.name}" if partner.letterhead else ""
                ),
                "qr": qr_data_uri(layout["remediation_url"]) if layout["remediation_url"] else "",
            },
        )
        if source.body_text.strip():
            text = sandbox_render(source.body_text, context, autoescape=False).strip() + "\n"
        else:
            text = html_to_text(html)
    return RenderedLetter(
        language=language,
        reference=str(context.get("reference", "")),
        subject=subject,
        html=html,
        text=text,
        pdf_html=pdf_html,
        context=context,
    )


def approved_template(partner: Partner, *, kind: str, language: str) -> LetterTemplate | None:
    return LetterTemplate.objects.filter(
        partner=partner, kind=kind, language=language, status=LetterTemplate.Status.APPROVED
    ).first()


def render_case(
    case: Case,
    *,
    kind: str = LetterKind.INITIAL,
    language: str | None = None,
    source: TemplateSource,
    remediation_url: str,
) -> RenderedLetter:
    language = language or case.language
    context = case_context(case, kind=kind, language=language, remediation_url=remediation_url)
    return render_source(source, context=context, partner=case.partner, language=language)


def render_letter_record(letter: Letter, *, remediation_url: str) -> RenderedLetter:
    """The letter a Letter row stands for, from the template version chosen when it was queued."""
    template = letter.template or approved_template(
        letter.case.partner, kind=letter.kind, language=letter.language
    )
    if template is None:
        raise LookupError(
            f"No approved {letter.kind} template in {letter.language!r} for "
            f"{letter.case.partner.country}."
        )
    return render_case(
        letter.case,
        kind=letter.kind,
        language=letter.language,
        source=TemplateSource.of(template),
        remediation_url=remediation_url,
    )


# --- Plain text ---------------------------------------------------------------------------------
class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "section", "article", "header", "footer", "h1", "h2", "h3", "h4", "h5",
              "h6", "ul", "ol", "table", "tr", "address", "blockquote", "figure"}  # fmt: skip
    SKIP = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []
        self.link_text: list[str] = []
        self.cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
            self.cells = 0
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | " if self.cells else "\n")
            self.cells += 1
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append("")
        elif tag == "img" and self.skip == 0:
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self.href:
            href, text = self.href.pop(), self.link_text.pop()
            if href and not href.startswith(("mailto:", "#")) and href.strip() != text.strip():
                self.parts.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data)
        if self.link_text:
            self.link_text[-1] += text
        self.parts.append(text)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
