from __future__ import annotations

from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command

from campaign.models import ImportBatch
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.intake.helpers import FIXTURES
from tests.commandline import manage

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> str:
    out = StringIO()
    call_command("import_targets", *args, stdout=out)
    return out.getvalue()


class ImportTargetsCommandTestCase(BaseTestCase):
    def test_it_prints_counts_and_rejected_lines(self) -> None:
        output = _run(str(FIXTURES / "malformed.csv"), "--campaign", "wave-1")
        batch = ImportBatch.objects.get()
        self.assertEqual(batch.campaign, self.campaign)
        self.assertIn(
            f"malformed.csv (csv): 10 rows, 2 kept, 8 rejected; 2 targets (import batch "
            f"{batch.id}).",
            output,
        )
        self.assertIn("line 5: port 70000 out of range 1-65535\n", output)
        self.assertIn("line 7: undecodable bytes (the file must be UTF-8)\n", output)

    def test_format_is_taken_from_the_option(self) -> None:
        output = _run(
            str(FIXTURES / "2026-11-20-scan_socks-example_org-asn.csv"),
            "--format",
            "shadowserver",
        )
        self.assertIn("(shadowserver): 4 rows, 3 kept, 1 rejected", output)

    def test_a_rejected_file_exits_1_and_says_why(self) -> None:
        before = Target.objects.count()
        with self.assertRaises(CommandError) as caught:
            _run(str(FIXTURES / "samples.mbox"), "--format", "csv")
        self.assertEqual(caught.exception.returncode, 1)
        self.assertIn("Rejected: samples.mbox is an mbox", str(caught.exception))
        self.assertEqual(Target.objects.count(), before)
        self.assertEqual(ImportBatch.objects.get().status, ImportBatch.Status.FAILED)

    def test_bad_arguments_exit_2(self) -> None:
        with self.assertRaises(CommandError) as caught:
            _run(str(FIXTURES / "targets.csv"), "--campaign", "no-such-wave")
        self.assertEqual(caught.exception.returncode, 2)
        self.assertIn("no-such-wave", str(caught.exception))
        with self.assertRaises(CommandError) as caught:
            _run(str(FIXTURES / "missing.csv"))
        self.assertEqual(caught.exception.returncode, 2)
        self.assertFalse(ImportBatch.objects.exists())


def test_the_command_line_exits_2_on_bad_arguments() -> None:
    # No database is touched before the arguments are checked: this test has no database access,
    # so a query would raise instead of exiting 2.
    for args, says in (
        (["no-such-file.csv"], "no such file"),
        ([str(FIXTURES / "targets.csv"), "--format", "pdf"], "invalid choice"),
    ):
        done = manage("import_targets", *args)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr
