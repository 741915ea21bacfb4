from __future__ import annotations

from io import StringIO

from django.core.management import CommandError, call_command

from campaign.models import Attribution
from tests.campaign.attribution.base import AttributionTestCase


class AttributeCommandTestCase(AttributionTestCase):
    def run_command(self, *args: str) -> tuple[list[str], str]:
        out, err = StringIO(), StringIO()
        call_command("attribute", *args, stdout=out, stderr=err)
        return out.getvalue().splitlines(), err.getvalue()

    def test_it_prints_one_line_per_target(self) -> None:
        self.make_target("192.0.2.77")
        self.make_target("198.51.100.20")
        self.make_target("203.0.113.30")
        lines, err = self.run_command("192.0.2.77", "198.51.100.20", "203.0.113.30", "192.0.2.5")
        self.assertEqual(
            lines,
            [
                "192.0.2.77\tExample Networks LLC\tabuse@example.net\tUS\tUS",
                "198.51.100.20\tExample Hosting GmbH\tabuse@example-hosting.de\tDE\tDE",
                "203.0.113.30\tEXAMPLE-JP\tabuse@example.jp\tJP\tUS (triage)",
            ],
        )
        self.assertIn("192.0.2.5: no such target", err)
        self.assertIn("3 target(s): 3 attributed, 0 error(s)", err)

    def test_without_ips_it_takes_open_unowned_targets(self) -> None:
        self.make_target("2001:db8:1::5")
        self.make_target("2001:db8:2::7", verdict="closed")  # nothing open: not taken
        lines, _ = self.run_command()
        self.assertEqual(
            lines, ["2001:db8:1::5\tExemplo Telecom Ltda\tabuse@exemplo.com.br\tBR\tBR"]
        )
        lines, _ = self.run_command()
        self.assertEqual(lines, [])  # owned now

    def test_errors_are_printed_on_the_line(self) -> None:
        self.make_target("203.0.113.200")
        lines, err = self.run_command("203.0.113.200")
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r"^203\.0\.113\.200\t-\t-\t-\t-\terror: timeout: ")
        self.assertIn("1 error(s) (0 rate-limited, 1 timed out)", err)
        self.assertTrue(Attribution.objects.get(target__ip="203.0.113.200").error)

    def test_a_bad_ip_is_refused(self) -> None:
        with self.assertRaises(CommandError):
            self.run_command("not-an-ip")
