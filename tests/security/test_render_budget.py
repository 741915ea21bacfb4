"""Staff-edited templates that would burn a CPU for hours: stopped, in previews and in workers."""

from __future__ import annotations

import itertools
from unittest import mock

from django.test import override_settings

from letters import render_budget, rendering, services
from letters.models import Letter
from tests.base import BaseTestCase
from tests.letters.helpers import BODY, SUBJECT, approved_template

LONG = "x" * 300
# The reproduction from the report: nested loops over a few hundred characters (300**4 passes).
NESTED = (
    "{% with s='" + LONG + "' %}"
    "{% for a in s %}{% for b in s %}{% for c in s %}{% for d in s %}.{% endfor %}{% endfor %}"
    "{% endfor %}{% endfor %}{% endwith %}"
)
# Small enough to finish without a budget (90,000 passes), over a budget of 10,000.
TWO_DEEP = (
    "{% with s='"
    + LONG
    + "' %}{% for a in s %}{% for b in s %}.{% endfor %}{% endfor %}{% endwith %}"
)


class PreviewBudgetTestCase(BaseTestCase):
    def setUp(self) -> None:
        draft = services.template_new_version(
            partner=self.alpha, kind="initial", language="en", subject=SUBJECT, body_html=BODY
        )
        self.url = f"/admin/letters/lettertemplate/{draft.pk}/preview/"
        self.client.force_login(self.alpha_staff)

    def preview(self, body: str, fmt: str = "html") -> tuple[int, str]:
        response = self.client.post(f"{self.url}{fmt}/", {"subject": SUBJECT, "body_html": body})
        return response.status_code, response.content.decode()

    # A generous clock, so the loop budget (what this test is about) is what stops it even on a
    # busy machine; the clock has its own test.
    @override_settings(LETTER_RENDER_SECONDS=600)
    def test_it_stops_nested_loops_over_a_long_string_in_the_preview(self) -> None:
        status, text = self.preview(NESTED)
        self.assertEqual(status, 400)
        self.assertIn("loops more than 100000 times", text)

    @override_settings(LETTER_RENDER_MAX_ITERATIONS=10_000)
    def test_it_counts_every_pass_of_nested_loops(self) -> None:
        status, text = self.preview(TWO_DEEP, "text")
        self.assertEqual(status, 400)
        self.assertIn("loops more than 10000 times", text)

    def test_it_refuses_floatformat_with_a_huge_precision(self) -> None:
        for body in ('{{ 1|floatformat:"100000" }}', '{{ 1|floatformat:"-99999999999g" }}'):
            with self.subTest(body=body):
                status, text = self.preview(body, "text")
                self.assertEqual(status, 400)
                self.assertIn("floatformat filter accepts at most 20", text)

    def test_it_refuses_padding_and_formats_that_write_megabytes(self) -> None:
        for body, name in (
            ('{{ "x"|rjust:"5000000" }}', "rjust"),
            ('{{ "x"|ljust:"5000000" }}', "ljust"),
            ('{{ "x"|center:"5000000" }}', "center"),
            ('{{ 1|stringformat:".5000000f" }}', "stringformat"),
            ('{{ 1|stringformat:"5000000d" }}', "stringformat"),
        ):
            with self.subTest(body=body):
                status, text = self.preview(body, "text")
                self.assertEqual(status, 400)
                self.assertIn(f"{name} filter accepts at most", text)

    @override_settings(LETTER_RENDER_MAX_CHARS=50_000)
    def test_it_stops_a_loop_that_writes_too_much(self) -> None:
        body = (
            "{% with s='" + LONG + "' %}{% for a in s %}" + "y" * 500 + "{% endfor %}{% endwith %}"
        )
        status, text = self.preview(body, "text")
        self.assertEqual(status, 400)
        self.assertIn("writes more than 50000 characters", text)

    def test_it_stops_at_the_deadline(self) -> None:
        clock = itertools.count(start=1000.0, step=0.5)  # every look at the clock: half a second
        with mock.patch.object(render_budget, "monotonic", lambda: next(clock)):
            status, text = self.preview(TWO_DEEP, "text")
        self.assertEqual(status, 400)
        self.assertIn("took more than 5 seconds", text)

    def test_an_ordinary_template_still_previews(self) -> None:
        status, text = self.preview(
            BODY + '{% for f in findings %}{{ f.port|floatformat:"2" }}{{ f.port|rjust:"8" }}'
            "{% endfor %}",
            "text",
        )
        self.assertEqual(status, 200, text)
        self.assertIn("25.00", text)


class WorkerBudgetTestCase(BaseTestCase):
    def test_it_fails_the_worker_render_with_a_clear_error(self) -> None:
        approved_template(self.alpha, body=NESTED)
        self.addCleanup(lambda: [x.pdf.delete(save=False) for x in Letter.objects.all()])
        with self.captureOnCommitCallbacks(execute=True):
            letter = services.letter_queue(case=self.alpha_case, fresh=True)
        letter.refresh_from_db()
        self.assertEqual(letter.status, Letter.Status.FAILED)
        self.assertIn("RenderBudgetExceeded", letter.error)
        self.assertIn("loops more than", letter.error)

    def test_the_budget_covers_the_subject_and_text_too(self) -> None:
        source = rendering.TemplateSource(
            '{{ 1|floatformat:"500" }}', BODY, '{{ 1|floatformat:"500" }}'
        )
        with self.assertRaises(render_budget.RenderBudgetExceeded):
            rendering.render_case(self.alpha_case, source=source, remediation_url="http://x/")
