"""The pieces of `make run`: migrations on an empty SQLite database, load_demo twice, the admin."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from campaign import demo

ROOT = Path(__file__).resolve().parent.parent


def manage(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_migrations_apply_on_empty_sqlite_and_the_demo_loads(tmp_path: Path) -> None:
    # What `make run` does on a fresh machine, in processes of their own: no DATABASE_URL, so
    # SQLite under VAR_DIR.
    manage(tmp_path, "migrate", "--noinput")
    assert (tmp_path / "db.sqlite3").exists()
    output = manage(tmp_path, "load_demo")
    assert "26 partners" in output
    assert "Admin login: admin / " in output


@pytest.mark.django_db
def test_the_demo_loads_twice_the_same() -> None:
    # `make run` loads the demo on every start: the second load changes nothing.
    first, second = io.StringIO(), io.StringIO()
    call_command("load_demo", stdout=first)
    call_command("load_demo", stdout=second)
    counts = re.search(r"Demo data: .*", first.getvalue())
    assert counts is not None and "26 partners" in counts.group(0)
    again = re.search(r"Demo data: .*", second.getvalue())
    assert again is not None and again.group(0) == counts.group(0)


@pytest.mark.django_db
def test_demo_admin_logs_in_and_sees_the_demo(client) -> None:
    call_command("load_demo", stdout=open(os.devnull, "w"))
    assert client.get("/admin/login/").status_code == 200
    assert client.login(username=demo.ADMIN_USERNAME, password=demo.ADMIN_PASSWORD)
    response = client.get("/admin/")
    assert response.status_code == 200
    response = client.get("/admin/campaign/case/")
    assert response.status_code == 200
    assert b"SYS-" in response.content


@pytest.mark.django_db
def test_demo_partner_staff_see_only_their_country(client) -> None:
    call_command("load_demo", stdout=open(os.devnull, "w"))
    assert client.login(username="gb-viewer", password=demo.DEMO_PASSWORD)
    response = client.get("/admin/campaign/case/")
    assert response.status_code == 200
    partners = {case.partner.country for case in response.context["cl"].result_list}
    assert partners == {"GB"}
