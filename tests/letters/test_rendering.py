"""HTML, text and PDF of a case's letter; the sandbox staff templates render in."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.management import call_command
from django.core.management.base import CommandError
from django.template import TemplateSyntaxError

from letters import links, printing, rendering, sandbox
from letters.rendering import TemplateSource
from tests.base import BaseTestCase
from tests.conftest import require
from tests.letters.helpers import BODY, CJK, SUBJECT, pdf_font_names, pdf_text, squash

URL = "http://127.0.0.1:8000/r/Zq3token/"


def cjk_fonts_installed() -> bool:
    if not shutil.which("fc-list"):
        return False
    families = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True).stdout
    return all(f"Noto Sans CJK {region}" in families for region in ("JP", "KR", "TC"))


class RenderingTestCase(BaseTestCase):
    def render(self, language: str = "en", **kwargs: object) -> rendering.RenderedLetter:
        source = kwargs.pop("source", TemplateSource(SUBJECT, BODY))
        return rendering.render_case(
            self.alpha_case, language=language, source=source, remediation_url=URL, **kwargs
        )

    def test_it_renders_html_text_and_pdf_with_reference_findings_and_link(self) -> None:
        letter = self.render()
        reference = self.alpha_case.reference
        self.assertEqual(letter.subject, f"Securing your server ({reference})")
        self.assertIn('<html lang="en">', letter.html)
        for part in (letter.html, letter.text, letter.pdf_html):
            self.assertIn(reference, part)
            self.assertIn(URL, part)
            self.assertIn("192.0.2.10", part)
            self.assertIn("open mail relay", part)
        self.assertNotIn("<", letter.text)  # a real plain-text alternative, not HTML
        self.assertIn("Alpha Agency", letter.text)
        pdf = printing.letter_pdf(letter)
        self.assertTrue(pdf.startswith(b"%PDF-"))
        text = pdf_text(pdf)
        self.assertIn(reference, text)
        self.assertIn(URL, text)
        self.assertIn("192.0.2.10", text)
        self.assertIn("data:image/svg+xml;base64,", letter.pdf_html)  # the link's QR code

    def test_it_writes_bcp47_language_tags(self) -> None:
        self.assertEqual(rendering.bcp47("zh-hant"), "zh-Hant")
        self.assertEqual(rendering.bcp47("pt-br"), "pt-BR")
        self.assertEqual(rendering.bcp47("nb"), "nb")
        self.assertIn('<html lang="pt-BR">', self.render("pt-br").html)

    def test_it_localises_dates(self) -> None:
        context = rendering.case_context(
            self.alpha_case, kind="initial", language="de", remediation_url=URL
        )
        self.assertRegex(context["letter_date"], r"^\d{1,2}\. \w+ \d{4}$")
        self.assertEqual(context["findings"][0]["evidence"], "strong")

    def test_its_context_holds_plain_values_only(self) -> None:
        context = rendering.case_context(
            self.alpha_case, kind="initial", language="en", remediation_url=URL
        )

        def check(value: object) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    check(item)
            elif isinstance(value, list):
                for item in value:
                    check(item)
            else:
                self.assertIsInstance(value, str | int | float | bool | type(None))

        check(context)

    def test_the_plain_text_keeps_links_and_table_rows(self) -> None:
        text = rendering.html_to_text(
            '<p>See <a href="https://x.example/r/1/">the page</a>.</p>'
            "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>"
            "<style>p{}</style><ul><li>one</li><li>two</li></ul>"
        )
        self.assertIn("the page <https://x.example/r/1/>", text)
        self.assertIn("A | B", text)
        self.assertIn("1 | 2", text)
        self.assertIn("- one", text)
        self.assertNotIn("p{}", text)

    def test_the_letterhead_comes_through_the_static_only_fetcher(self) -> None:
        from django.core.files.base import ContentFile

        png = (  # a 1x1 PNG
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
            b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8"
            b"N\x00\x00\x00\x00IEND\xaeB`\x82"
        )
        self.alpha.letterhead.save("alpha.png", ContentFile(png), save=True)
        self.alpha_case.partner.refresh_from_db()
        self.addCleanup(self.alpha.letterhead.delete, save=False)
        letter = self.render()
        self.assertIn("media/letterheads/", letter.pdf_html)
        fetcher = printing._pdf_tools()[1]
        fetched = fetcher.fetch(f"{printing.ASSET_BASE}media/{self.alpha.letterhead.name}")
        self.assertEqual(fetched.read(), png)
        self.assertIn(b"/Image", printing.letter_pdf(letter))
        for url in (
            "http://127.0.0.1:8000/admin/",
            "file:///etc/passwd",
            f"{printing.ASSET_BASE}media/../../etc/passwd",
            f"{printing.ASSET_BASE}media/letters/2026/01/x.pdf",
        ):
            with self.assertRaises((ValueError, SuspiciousFileOperation)):
                fetcher.fetch(url)


@pytest.mark.skipif(not cjk_fonts_installed(), reason="fonts-noto-cjk missing")
class CJKFontTestCase(BaseTestCase):
    def render_pdf(self, language: str) -> bytes:
        subject, body = CJK[language]
        letter = rendering.render_case(
            self.alpha_case,
            language=language,
            source=TemplateSource(subject, body),
            remediation_url=URL,
        )
        self.assertIn(f'<html lang="{rendering.bcp47(language)}">', letter.pdf_html)
        return printing.letter_pdf(letter)

    def assert_face(self, language: str, wanted: str, unwanted: tuple[str, ...]) -> None:
        pdf = self.render_pdf(language)
        names = {squash(n) for n in pdf_font_names(pdf)}
        self.assertTrue(any(wanted in n for n in names), names)
        for other in unwanted:
            self.assertFalse(any(other in n for n in names), names)
        self.assertIn(self.alpha_case.reference, pdf_text(pdf))

    def test_japanese_gets_the_japanese_face(self) -> None:
        self.assert_face("ja", "cjkjp", ("cjktc", "cjkkr", "cjksc"))

    def test_korean_gets_the_korean_face(self) -> None:
        self.assert_face("ko", "cjkkr", ("cjkjp", "cjktc", "cjksc"))

    def test_traditional_chinese_gets_the_traditional_face_not_the_japanese(self) -> None:
        self.assert_face("zh-hant", "cjktc", ("cjkjp", "cjkkr", "cjksc"))


def test_cjk_fonts_are_installed() -> None:
    require(cjk_fonts_installed(), "fonts-noto-cjk missing: run scripts/system-deps.sh")


class SandboxTestCase(BaseTestCase):
    def context(self) -> dict:
        return rendering.case_context(
            self.alpha_case, kind="initial", language="en", remediation_url=URL
        )

    def test_models_are_out_of_reach(self) -> None:
        for source in (
            "{{ case.server_owner.partner }}",
            "{{ case }}{{ letter }}{{ settings.SECRET_KEY }}{{ request }}{{ user }}",
            "{{ findings.0.target.server_owner }}{{ findings.0.finding }}",
            "{% for f in findings %}{{ f.finding.transcript }}{{ f.target }}{% endfor %}",
        ):
            self.assertEqual(sandbox.sandbox_render(source, self.context()).strip(), "", source)

    def test_underscore_attributes_are_refused(self) -> None:
        with self.assertRaises(TemplateSyntaxError):
            sandbox.sandbox_render("{{ reference.__class__ }}", self.context())

    def test_no_library_can_be_loaded(self) -> None:
        for library in ("static", "i18n", "admin_urls", "log", "tz", "cache"):
            with self.assertRaises(TemplateSyntaxError, msg=library):
                sandbox.sandbox_render(f"{{% load {library} %}}", self.context())

    def test_no_other_template_can_be_reached(self) -> None:
        for source in (
            '{% include "admin/base.html" %}',
            '{% extends "letters/_layout.html" %}',
            "{% block body %}{% endblock %}",
            "{% debug %}",
            '{% url "admin:index" %}',
            "{% csrf_token %}",
            "{% autoescape off %}{{ owner_name }}{% endautoescape %}",
            "{{ owner_name|safe }}",
        ):
            with self.assertRaises(TemplateSyntaxError, msg=source):
                sandbox.sandbox_render(source, self.context())

    def test_untrusted_values_are_escaped(self) -> None:
        context = {**self.context(), "owner_name": "<script>alert(1)</script>"}
        out = sandbox.sandbox_render("<p>{{ owner_name }}</p>", context)
        self.assertEqual(out, "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")

    def test_missing_values_render_as_nothing(self) -> None:
        self.assertEqual(sandbox.sandbox_render("[{{ nope }}]", self.context()), "[]")


class RenderLetterCommandTestCase(BaseTestCase):
    def setUp(self) -> None:
        from tests.letters.helpers import approved_template

        approved_template(self.alpha)

    def test_it_writes_the_pdf(self) -> None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "letter.pdf"
            call_command("render_letter", self.alpha_case.reference, "--output", str(out))
            text = pdf_text(out.read_bytes())
        self.assertIn(self.alpha_case.reference, text)
        self.assertIn(links.PREVIEW_URL, text)

    def test_it_exits_2_on_an_unknown_reference_or_language(self) -> None:
        for args in (
            ["SYS-1999-000001", "--output", "/tmp/x.pdf"],
            [self.alpha_case.reference, "--language", "tlh", "--output", "/tmp/x.pdf"],
        ):
            with self.assertRaises(CommandError) as raised:
                call_command("render_letter", *args)
            self.assertEqual(raised.exception.returncode, 2)
