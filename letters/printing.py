"""Letters as PDF, with WeasyPrint: our layout, the partner's letterhead, fonts for every
language, and nothing fetched from anywhere but our own static files and letterheads."""

from __future__ import annotations

import logging
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.staticfiles import finders

from letters.rendering import ASSET_BASE, RenderedLetter

logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # a line per step otherwise


def asset_path(url: str) -> Path | None:
    """The local file an asset URL names, or None: our static files and partners' letterheads.

    The path is decoded and checked segment by segment before it is joined, then resolved (which
    follows symlinks) and checked again against its folder, so an encoded `..` (`%2e%2e`, `%2F`)
    after the allowed prefix can never step out to another partner's letters under MEDIA_ROOT.
    """
    rel = url.split("?", 1)[0].split("#", 1)[0]
    if not rel.startswith(ASSET_BASE):
        return None
    rel = unquote(rel.removeprefix(ASSET_BASE))
    segments = rel.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\x00" in part or "%" in part
           for part in segments):  # fmt: skip
        return None
    if segments[0] == "static":
        found = finders.find("/".join(segments[1:]))
        return Path(found) if isinstance(found, str) else None
    if segments[:2] == ["media", "letterheads"] and len(segments) > 2:
        folder = (Path(settings.MEDIA_ROOT) / "letterheads").resolve()
        path = folder.joinpath(*segments[2:]).resolve()
        return path if path.is_relative_to(folder) else None
    return None


def _static_only_fetcher() -> Any:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class StaticOnlyFetcher(URLFetcher):
        """Serves our static files, partners' letterheads and data: URIs; nothing else, ever."""

        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            path = asset_path(url)
            if path is None or not path.is_file():
                raise ValueError(f"letters fetch only local assets, not {url!r}")
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": kind})

    return StaticOnlyFetcher()


@lru_cache(maxsize=1)
def _pdf_tools() -> tuple[Any, Any]:
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration(), _static_only_fetcher()


_IMAGE_CACHE: dict[str, Any] = {}  # letterheads and CSS images, shared across letters


def html_to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    font_config, fetcher = _pdf_tools()
    if len(_IMAGE_CACHE) > 64:  # each QR code is a new data: URI; keep the cache small
        _IMAGE_CACHE.clear()
    document = HTML(string=html, base_url=ASSET_BASE, url_fetcher=fetcher).render(
        font_config=font_config, cache=_IMAGE_CACHE
    )
    # A letter embeds no files: drop <link rel=attachment> and <a rel=attachment> before
    # WeasyPrint fetches them into the PDF.
    document.metadata.attachments = []
    for page in document.pages:
        page.links = [link for link in page.links if link[0] != "attachment"]
    return document.write_pdf()


def letter_pdf(rendered: RenderedLetter) -> bytes:
    return html_to_pdf(rendered.pdf_html)
