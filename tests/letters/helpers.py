"""Small fixture templates for the letter tests (the shipped ones are tested on their own)."""

from __future__ import annotations

import re
from io import BytesIO

from django.contrib.auth.models import User
from django.db.models import Max
from django.utils import timezone, translation

from campaign.models import Partner
from letters.models import LetterTemplate

SUBJECT = "Securing your server ({{ reference }})"
BODY = """<p>Dear {{ owner_name }},</p>
<table class="findings">{% for f in findings %}<tr><td>{{ f.address }}</td><td>{{ f.port }}</td>
<td>{% if f.kind == "smtp_relay" %}open mail relay{% else %}open proxy{% endif %}</td>
<td>{{ f.seen }}</td></tr>{% endfor %}</table>
<p>Check the fix here: <a href="{{ remediation_url }}">{{ remediation_url }}</a></p>
<p>{{ signatory_name }}, {{ agency }} ({{ country_name }})</p>
"""
# Han characters whose shapes differ between Japanese, Korean and Traditional Chinese fonts.
CJK = {
    "ja": ("サーバーの設定について（{{ reference }}）",
           "<p>{{ owner_name }} 様</p><p>サーバーの設定を確認してください。骨、直、過。</p>"
           '<p><a href="{{ remediation_url }}">{{ remediation_url }}</a></p>'),
    "ko": ("서버 설정 안내 ({{ reference }})",
           "<p>{{ owner_name }} 귀하</p><p>서버 설정을 확인해 주십시오. 骨 直 過.</p>"
           '<p><a href="{{ remediation_url }}">{{ remediation_url }}</a></p>'),
    "zh-hant": ("關於您的伺服器設定（{{ reference }}）",
                "<p>{{ owner_name }} 您好：</p><p>請檢查伺服器的設定。骨、直、過。</p>"
                '<p><a href="{{ remediation_url }}">{{ remediation_url }}</a></p>'),
}  # fmt: skip


def approved_template(
    partner: Partner,
    *,
    language: str = "en",
    kind: str = "initial",
    subject: str = SUBJECT,
    body: str = BODY,
) -> LetterTemplate:
    approver = User.objects.filter(is_superuser=True).first()
    slot = LetterTemplate.objects.filter(partner=partner, kind=kind, language=language)
    slot.filter(status="approved").update(status="retired")
    return LetterTemplate.objects.create(
        partner=partner,
        kind=kind,
        language=language,
        version=(slot.aggregate(v=Max("version"))["v"] or 0) + 1,
        status=LetterTemplate.Status.APPROVED,
        subject=subject,
        body_html=body,
        approved_by=approver,
        approved_at=timezone.now(),
    )


def pdf_text(pdf: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)


def pdf_font_names(pdf: bytes) -> set[str]:
    """Every embedded font's /FontDescriptor /FontName, subset prefix dropped, e.g.
    'Noto-Sans-CJK-TC'."""
    from pypdf import PdfReader

    names = set()
    for page in PdfReader(BytesIO(pdf)).pages:
        fonts = page["/Resources"].get("/Font", {})
        for ref in fonts.values():
            font = ref.get_object()
            for descendant in font.get("/DescendantFonts", []):
                descriptor = descendant.get_object().get("/FontDescriptor")
                if descriptor:
                    names.add(str(descriptor.get_object()["/FontName"]))
            if "/FontDescriptor" in font:
                names.add(str(font["/FontDescriptor"].get_object()["/FontName"]))
    return {re.sub(r"^/?[A-Z]{6}\+", "", name.lstrip("/")) for name in names}


def squash(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


class PageText:
    """The public pages' texts in one language, looked up by their English message."""

    def __init__(self, language: str) -> None:
        self.language = language

    def __call__(self, msgid: str, **values: object) -> str:
        with translation.override(self.language):
            text = translation.gettext(msgid)
        return text % values if values else text

    def plural(self, singular: str, plural: str, n: int, **values: object) -> str:
        with translation.override(self.language):
            return translation.ngettext(singular, plural, n) % values

    def status(self, status: str) -> str:
        from letters.owner_page import CASE_STATUS_TEXT

        with translation.override(self.language):
            return str(CASE_STATUS_TEXT[status])
