"""Every shipped template file goes through the real pipeline (sandbox, layout, plain text), and
every language prints a real PDF whose text holds the case reference and the link."""

from __future__ import annotations

from pathlib import Path

from letters import printing, rendering
from tests.base import BaseTestCase
from tests.letters.helpers import pdf_font_names, pdf_text, squash
from tests.letters.test_rendering import cjk_fonts_installed

URL = "http://127.0.0.1:8000/r/Shipped0Token/"
SHIPPED = rendering.shipped_files()
FACES = {"ja": "cjkjp", "ko": "cjkkr", "zh-hant": "cjktc"}


class ShippedRenderingTestCase(BaseTestCase):
    def test_every_language_ships_every_kind_of_letter(self) -> None:
        shipped = {(language, kind) for language, kind, _ in SHIPPED}
        languages = {language for language, _ in shipped}
        kinds = {kind for _, kind in shipped}
        self.assertGreaterEqual(len(languages), 17)
        self.assertEqual(shipped, {(lang, kind) for lang in languages for kind in kinds})

    def test_every_shipped_file_renders_html_and_text(self) -> None:
        for language, kind, path in SHIPPED:
            with self.subTest(f"{language}/{kind}"):
                letter = self.render(language, kind, path)
                self.assertIn(self.alpha_case.reference, letter.subject)
                self.assertIn(f'<html lang="{rendering.bcp47(language)}">', letter.html)
                for part in (letter.html, letter.text):
                    self.assertIn(URL, part)
                    self.assertIn(self.alpha_case.reference, part)
                self.assertNotIn("{{", letter.html)

    def test_every_language_prints_a_pdf_in_its_own_typeface(self) -> None:
        # One kind per language: the kinds of a language share the layout, the fonts and the
        # PDF path, and a PDF costs more than every other check here together.
        first_of_language: dict[str, tuple[str, str, Path]] = {}
        for language, kind, path in SHIPPED:
            first_of_language.setdefault(language, (language, kind, path))
        for language, kind, path in first_of_language.values():
            with self.subTest(f"{language}/{kind}"):
                pdf = printing.letter_pdf(self.render(language, kind, path))
                text = pdf_text(pdf)
                self.assertIn(self.alpha_case.reference, text)
                self.assertIn(URL, text.replace("\n", ""))
                if language in FACES and cjk_fonts_installed():
                    names = {squash(n) for n in pdf_font_names(pdf)}
                    self.assertTrue(any(FACES[language] in n for n in names), names)
                    others = set(FACES.values()) - {FACES[language]}
                    self.assertFalse(any(o in n for n in names for o in others), names)

    def render(self, language: str, kind: str, path: Path) -> rendering.RenderedLetter:
        source = rendering.parse_shipped(path.read_text(encoding="utf-8"))
        return rendering.render_case(
            self.alpha_case, kind=kind, language=language, source=source, remediation_url=URL
        )
