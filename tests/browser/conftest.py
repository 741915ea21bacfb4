"""Headless Chromium (Debian's, driven by Playwright) against Django's live server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread,
# and the probe tests' asyncio.run() would fail while it is alive.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(
        Path(CHROMIUM).exists() or bool(shutil.which("chromium")),
        f"headless Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
    )
    # Playwright's sync API runs its own event loop; Django must allow ORM calls from this thread.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-domain-reliability",
                "--no-pings",
                "--disable-breakpad",
                "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,"
                "MediaRouter,CertificateTransparencyComponentUpdater",
                # Pages under test use IP literals; any name Chromium looks up on its own
                # (accounts, autofill) resolves to nothing instead of asking the network.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
