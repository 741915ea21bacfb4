"""The PDF asset fetcher: no file under MEDIA_ROOT but letterheads, and no embedded attachments."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.test import SimpleTestCase, override_settings

from letters import printing, rendering
from letters.rendering import TemplateSource
from tests.base import BaseTestCase

SECRET = b"%PDF-1.7 another partner's letter"
PNG = (  # a 1x1 PNG
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8"
    b"N\x00\x00\x00\x00IEND\xaeB`\x82"
)


class MediaFixture:
    def make_media(self) -> Path:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        media = Path(folder.name)
        (media / "letters" / "2026").mkdir(parents=True)
        (media / "letters" / "2026" / "de.pdf").write_bytes(SECRET)
        (media / "letterheads").mkdir()
        (media / "letterheads" / "gb.png").write_bytes(PNG)
        override = override_settings(MEDIA_ROOT=str(media))
        override.enable()
        self.addCleanup(override.disable)
        return media


class AssetPathTestCase(MediaFixture, SimpleTestCase):
    def setUp(self) -> None:
        self.media = self.make_media()
        self.fetcher = printing._static_only_fetcher()

    def fetch(self, tail: str) -> bytes:
        return self.fetcher.fetch(printing.ASSET_BASE + tail).read()

    def test_it_refuses_an_encoded_dotdot_after_the_letterheads_prefix(self) -> None:
        for tail in (
            "media/letterheads/..%2Fletters%2F2026%2Fde.pdf",
            "media/letterheads/%2e%2e/letters/2026/de.pdf",
            "media/letterheads/%2E%2E%2Fletters/2026/de.pdf",
            "media/letterheads/%252e%252e%252Fletters/2026/de.pdf",
            "media/letterheads/..%5Cletters%5C2026%5Cde.pdf",
            "media/letterheads/.%2F..%2F.%2Fletters/2026/de.pdf",
            "media/letterheads//..//letters/2026/de.pdf",
            "media/letterheads/gb.png%00/../../letters/2026/de.pdf",
        ):
            with self.subTest(tail=tail), self.assertRaises(ValueError):
                self.fetch(tail)

    def test_it_refuses_a_letterhead_symlink_out_of_its_folder(self) -> None:
        os.symlink(self.media / "letters" / "2026" / "de.pdf", self.media / "letterheads" / "x.png")
        with self.assertRaises(ValueError):
            self.fetch("media/letterheads/x.png")

    def test_it_refuses_other_media_and_other_schemes(self) -> None:
        for url in (
            printing.ASSET_BASE + "media/letters/2026/de.pdf",
            "file://" + str(self.media / "letters" / "2026" / "de.pdf"),
            "http://127.0.0.1:8000/media/letters/2026/de.pdf",
        ):
            with self.subTest(url=url), self.assertRaises(ValueError):
                self.fetcher.fetch(url)

    def test_it_still_serves_a_letterhead_and_static_files(self) -> None:
        self.assertEqual(self.fetch("media/letterheads/gb.png"), PNG)
        self.assertIn(b"{", self.fetch("static/letters/letter.css"))


class AttachmentTestCase(MediaFixture, BaseTestCase):
    def setUp(self) -> None:
        self.make_media()

    def assert_nothing_embedded(self, pdf: bytes) -> None:
        self.assertTrue(pdf.startswith(b"%PDF"))
        self.assertNotIn(b"/EmbeddedFile", pdf)
        self.assertNotIn(b"/FileAttachment", pdf)

    def test_it_embeds_no_link_rel_attachment(self) -> None:
        html = (
            '<html><head><link rel="attachment" href="media/letterheads/gb.png">'
            '<link rel="attachment" href="static/letters/letter.css"></head>'
            "<body><p>Dear owner</p></body></html>"
        )
        self.assert_nothing_embedded(printing.html_to_pdf(html))

    def test_it_embeds_no_a_rel_attachment_from_a_staff_template(self) -> None:
        body = (
            "<p>Dear {{ owner_name }},</p>"
            '<p><a rel="attachment" href="media/letterheads/gb.png">evidence</a>'
            '<a rel="attachment" download="x.css" href="static/letters/letter.css">log</a></p>'
        )
        letter = rendering.render_case(
            self.alpha_case,
            source=TemplateSource("Subject", body),
            remediation_url="http://127.0.0.1:8000/r/token/",
        )
        self.assertIn('rel="attachment"', letter.pdf_html)  # the attempt reaches WeasyPrint
        self.assert_nothing_embedded(printing.letter_pdf(letter))
