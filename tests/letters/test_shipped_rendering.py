"""Every shipped template file that exists goes through the real pipeline: sandbox, layout,
plain text and a real PDF whose text holds the case reference and the link."""

from __future__ import annotations

import pytest

from letters import printing, rendering
from tests.base import BaseTestCase
from tests.letters.helpers import pdf_font_names, pdf_text, squash
from tests.letters.test_rendering import cjk_fonts_installed

URL = "http://127.0.0.1:8000/r/Shipped0Token/"
SHIPPED = rendering.shipped_files()
FACES = {"ja": "cjkjp", "ko": "cjkkr", "zh-hant": "cjktc"}


class ShippedRenderingTestCase(BaseTestCase):
    def test_shipped_files_exist(self) -> None:
        if not SHIPPED:
            pytest.skip("no shipped templates yet under templates/letters/<lang>/")

    def test_every_shipped_file_renders_html_text_and_pdf(self) -> None:
        for language, kind, path in SHIPPED:
            with self.subTest(f"{language}/{kind}"):
                source = rendering.parse_shipped(path.read_text(encoding="utf-8"))
                letter = rendering.render_case(
                    self.alpha_case,
                    kind=kind,
                    language=language,
                    source=source,
                    remediation_url=URL,
                )
                self.assertIn(self.alpha_case.reference, letter.subject)
                self.assertIn(f'<html lang="{rendering.bcp47(language)}">', letter.html)
                for part in (letter.html, letter.text):
                    self.assertIn(URL, part)
                    self.assertIn(self.alpha_case.reference, part)
                self.assertNotIn("{{", letter.html)
                pdf = printing.letter_pdf(letter)
                text = pdf_text(pdf)
                self.assertIn(self.alpha_case.reference, text)
                self.assertIn(URL, text.replace("\n", ""))
                if language in FACES and cjk_fonts_installed():
                    names = {squash(n) for n in pdf_font_names(pdf)}
                    self.assertTrue(any(FACES[language] in n for n in names), names)
                    others = set(FACES.values()) - {FACES[language]}
                    self.assertFalse(any(o in n for n in names for o in others), names)
