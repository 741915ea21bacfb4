"""Staff flows in headless Chromium on the demo data, at a 1,366 px laptop and a 390 px phone:
the case list, the case page as a workbench, queueing with a confirmation, the sent PDF,
the owner's page for staff, template approval, and an attribution job. Screenshots go to
var/screenshots/ (admin-cases-1366.png is the README's docs/screenshot.png)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from campaign import demo
from campaign.models import AttributionJob, Case
from letters.models import Letter, LetterTemplate
from letters.services import template_new_version
from tests.browser.test_admin_in_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


def load_demo() -> None:
    call_command("load_demo", verbosity=0, stdout=open("/dev/null", "w"))


@pytest.fixture
def sized(browser):
    contexts = []

    def open_page(size: str):
        width, height = SIZES[size]
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def uk_case() -> Case:
    return Case.objects.get(server_owner__name="Thames Valley Hosting Ltd")


def test_the_case_list_fits_a_laptop_and_finds_by_network(sized, live_server, screenshot_dir):
    load_demo()
    for size in SIZES:
        page = sized(size)
        log_in(page, live_server, "lead-caseworker", demo.DEMO_PASSWORD)
        page.goto(f"{live_server.url}/admin/campaign/case/")
        page.screenshot(path=str(screenshot_dir / f"staff-case-list-{size}.png"), full_page=True)
        if size == "laptop":
            page.screenshot(path=str(screenshot_dir / "admin-cases-1366.png"))
            # Every column, the last one included, shows without scrolling the list sideways.
            shown = page.locator("#changelist .results").bounding_box()
            assert shown is not None
            for column in ("column-status_badge", "column-finding_count", "column-opened_on"):
                box = page.locator(f"#result_list th.{column}").bounding_box()
                assert box is not None
                assert box["x"] + box["width"] <= shown["x"] + shown["width"] + 1, column
            # The date on one line: its text makes a single line box, however tall the row is.
            lines = page.locator("#result_list td.field-opened_on").first.evaluate(
                "el => { const r = document.createRange(); r.selectNodeContents(el);"
                " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size }"
            )
            assert lines == 1
            reference = page.locator("#result_list .case-ref").first.bounding_box()
            assert reference is not None and reference["height"] < 24  # one line
    page = sized("laptop")
    log_in(page, live_server, "lead-caseworker", demo.DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/campaign/case/?q=192.0.2.0/26")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "Thames Valley Hosting Ltd" in page.locator("#result_list").inner_text()


def test_a_caseworker_works_a_case_from_its_page(sized, live_server, screenshot_dir):
    load_demo()
    case = uk_case()
    url = f"{live_server.url}/admin/campaign/case/{case.pk}/change/"
    page = sized("phone")
    log_in(page, live_server, "gb-caseworker", demo.DEMO_PASSWORD)
    page.goto(url)
    page.screenshot(path=str(screenshot_dir / "staff-case-page-phone.png"), full_page=True)
    page = sized("laptop")
    log_in(page, live_server, "gb-caseworker", demo.DEMO_PASSWORD)
    page.goto(url)
    page.screenshot(path=str(screenshot_dir / "staff-case-page-laptop.png"), full_page=True)
    contacts = page.locator("section[aria-labelledby=wb-contacts]").inner_text()
    assert contacts.index("abuse@thames-hosting.example") < contacts.index(
        "noc@thames-hosting.example"
    )
    assert "Next letter goes here" in contacts
    assert (
        page.locator("section[aria-labelledby=wb-findings] a", has_text="Transcript").count() == 2
    )
    assert page.locator("button[value=resend_to_next_contact]").count() == 0  # nothing sent yet

    # Queue: a confirmation page first, listing the letter; nothing is sent before "Yes".
    page.click("button[value=queue_advisory_letter]")
    page.wait_for_selector("#queue-list")
    listing = page.locator("#queue-list").inner_text()
    assert "abuse@thames-hosting.example" in listing and "English (en)" in listing
    assert not Letter.objects.exists()
    page.screenshot(
        path=str(screenshot_dir / "staff-queue-confirmation-laptop.png"), full_page=True
    )
    with page.expect_navigation():
        page.click("input[type=submit][value^='Yes, queue']")
    assert page.url.endswith(f"/admin/campaign/case/{case.pk}/change/")
    letter = Letter.objects.get()
    try:
        assert letter.status == Letter.Status.SENT  # eager worker, anymail's test backend
        letters = page.locator("section[aria-labelledby=wb-letters]")
        assert "Sent" in letters.inner_text()
        assert page.locator("button[value=queue_advisory_letter]").count() == 0  # notified now
        assert page.locator("button[value=resend_to_next_contact]").is_enabled()
        page.screenshot(path=str(screenshot_dir / "staff-case-sent-laptop.png"), full_page=True)
        # The PDF as sent opens from the case page, through the partner-checked view.
        response = page.request.get(f"{live_server.url}/admin/letters/letter/{letter.pk}/pdf/")
        assert response.status == 200
        assert response.body().startswith(b"%PDF-")
        assert response.headers["content-type"] == "application/pdf"
        other = sized("laptop")
        log_in(other, live_server, "de-caseworker", demo.DEMO_PASSWORD)
        denied = other.request.get(f"{live_server.url}/admin/letters/letter/{letter.pk}/pdf/")
        assert denied.status == 404
    finally:
        letter.refresh_from_db()
        if letter.pdf:
            letter.pdf.delete(save=False)


def test_staff_see_the_owners_page_as_the_owner_does(sized, live_server, screenshot_dir):
    load_demo()
    case = uk_case()
    for size in SIZES:
        page = sized(size)
        log_in(page, live_server, "gb-viewer", demo.DEMO_PASSWORD)
        page.goto(f"{live_server.url}/admin/campaign/case/{case.pk}/change/")
        assert page.locator("button[value=queue_advisory_letter]").count() == 0  # a viewer
        page.goto(f"{live_server.url}/admin/campaign/case/{case.pk}/owner-page/")
        assert "Staff preview of the owner" in page.locator("body").inner_text()
        assert "192.0.2.10" in page.locator("body").inner_text()
        page.screenshot(path=str(screenshot_dir / f"staff-owner-page-{size}.png"), full_page=True)


def test_an_approver_reviews_a_draft_with_its_diff(sized, live_server, screenshot_dir):
    load_demo()
    from django.contrib.auth.models import User

    approved = LetterTemplate.objects.get(
        partner__country="GB", kind="initial", language="en", status="approved"
    )
    draft = template_new_version(
        partner=approved.partner,
        kind="initial",
        language="en",
        subject=approved.subject,
        body_html=approved.body_html.replace(
            "Dear Sir or Madam,", "Dear Sir or Madam,</p>\n<p>This is a violation of the law."
        ),
        actor=User.objects.get(username="gb-caseworker"),
    )
    page = sized("laptop")
    log_in(page, live_server, "gb-approver", demo.DEMO_PASSWORD)
    page.goto(f"{live_server.url}/admin/letters/lettertemplate/{draft.pk}/change/")
    assert "“violation”" in page.locator(".tone-report").inner_text()
    assert page.locator("input[value^='Approve version']").is_disabled()
    page.wait_for_load_state("networkidle")  # the preview frame
    page.screenshot(path=str(screenshot_dir / "staff-template-tone-laptop.png"), full_page=True)
    clean = template_new_version(
        partner=approved.partner,
        kind="initial",
        language="en",
        subject=approved.subject,
        body_html=approved.body_html.replace("Kind regards,", "With kind regards,"),
        actor=User.objects.get(username="gb-caseworker"),
    )
    for size in SIZES:
        page = sized(size)
        log_in(page, live_server, "gb-approver", demo.DEMO_PASSWORD)
        page.goto(f"{live_server.url}/admin/letters/lettertemplate/{clean.pk}/approve/")
        assert page.locator("table.diff").count() == 1
        page.screenshot(
            path=str(screenshot_dir / f"staff-template-approve-{size}.png"), full_page=True
        )
    with page.expect_navigation():
        page.click("input[type=submit][value^='Approve version']")
    clean.refresh_from_db()
    assert clean.status == "approved"


def test_an_attribution_job_reads_its_errors(sized, live_server, screenshot_dir):
    load_demo()
    from django.contrib.auth.models import User
    from django.utils import timezone

    job = AttributionJob.objects.create(
        status=AttributionJob.Status.DONE,
        started_by=User.objects.get(username="lead-caseworker"),
        target_ids=[1, 2, 3],
        targets_total=3,
        counts={"attributed": 1, "errors": 2, "rate_limited": 1, "timeouts": 1, "cases": 1},
        errors=[
            {"target": "192.0.2.70:1080/socks5", "error": "rate_limited: RDAP answered 429"},
            {"target": "198.51.100.7:25/smtp", "error": "timeout: no answer in 15 s"},
        ],
        error_count=2,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    for size in SIZES:
        page = sized(size)
        log_in(page, live_server, "lead-caseworker", demo.DEMO_PASSWORD)
        page.goto(f"{live_server.url}/admin/campaign/attributionjob/{job.pk}/change/")
        assert "rate_limited: RDAP answered 429" in page.locator("table.job-errors").inner_text()
        assert page.locator("textarea").count() == 0
        page.screenshot(
            path=str(screenshot_dir / f"staff-attribution-job-{size}.png"), full_page=True
        )
