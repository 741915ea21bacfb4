from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def start_django(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(
        {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mongodb://localhost/x"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://root@localhost/x"),
        ("REDIS_URL", "http://localhost:6379"),
        ("DEBUG", "perhaps"),
        ("PUBLIC_BASE_URL", "ftp://example.org"),
        ("MAIL_ESP", "carrier-pigeon"),
        ("CANARY_DOMAIN", "canary.invalid"),
        ("CANARY_SMTP_ADDR", "localhost"),
        ("ANYMAIL_WEBHOOK_SECRET", "no-colon"),
        ("API_RATE_LIMIT", "lots"),
        ("FIGURES_REFRESH_SECONDS", "5"),
    ],
)
def test_a_bad_value_fails_at_start_up_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    result = start_django(tmp_path, **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr.splitlines()[-1]


def test_the_defaults_start_on_sqlite_under_var(tmp_path: Path) -> None:
    result = start_django(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_check_deploy_flags_the_dev_secret_key(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environment["VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "security.W009" in result.stderr + result.stdout
