"""`manage.py check --deploy` in the documented compose deployment: TLS in front, nothing plain.

Docker does not run here: the compose file's own environment for `web` is handed to Django, and
the proxy's wiring (compose service, Caddyfile, gunicorn's port) is checked as text.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SHOWN = (
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: object, given: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message}, with `given` standing in for .env."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match["name"], match["kind"], match["rest"]
        if name in given:
            return given[name]
        if kind == "?":
            raise AssertionError(f"docker-compose.yml requires {name}: {rest}")
        return rest

    return re.sub(r"\$\{(?P<name>\w+):?(?P<kind>[-?])(?P<rest>[^}]*)\}", one, str(value))


def web_environment(tmp_path: Path, **given: str) -> dict[str, str]:
    # A deployer's .env holds SECRET_KEY (the compose file refuses to start without it).
    given = {"SECRET_KEY": secrets.token_urlsafe(50), **given}
    declared = compose()["services"]["web"]["environment"]
    # Only the machine's basics: nothing the test session itself set (the browser tests allow
    # Django's async-unsafe calls for Playwright, which check --deploy rightly flags).
    inherited = ("DATABASE_", "REDIS_", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update({name: interpolate(value, given) for name, value in declared.items()})
    env["VAR_DIR"] = str(tmp_path)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def shown_settings(env: dict[str, str]) -> dict[str, object]:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {SETTINGS_SHOWN!r}}}))"
    )
    env = {**env, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_passes_check_deploy_with_the_compose_files_environment(tmp_path: Path) -> None:
    result = manage(web_environment(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_it_fails_check_deploy_for_a_plain_http_deployment(tmp_path: Path) -> None:
    # The same check the test above passes is a real gate: plain http trips it.
    env = web_environment(tmp_path, PUBLIC_BASE_URL="http://localhost:8000")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, warning


def test_it_sends_cookies_only_over_tls_and_pins_https_in_the_compose_deployment(
    tmp_path: Path,
) -> None:
    shown = shown_settings(web_environment(tmp_path))
    assert shown["SECURE_SSL_REDIRECT"] is True
    assert shown["SECURE_HSTS_SECONDS"] >= 365 * 24 * 60 * 60
    assert shown["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert shown["SESSION_COOKIE_SECURE"] is True and shown["CSRF_COOKIE_SECURE"] is True
    assert shown["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_it_trusts_x_forwarded_proto_only_behind_the_proxy(tmp_path: Path) -> None:
    env = web_environment(tmp_path)
    del env["BEHIND_TLS_PROXY"]
    # Without the proxy a client could claim https with a header of its own.
    assert shown_settings(env)["SECURE_PROXY_SSL_HEADER"] is None


@pytest.mark.parametrize("name", ["web", "worker-scans", "worker-letters", "beat", "postgres"])
def test_it_publishes_no_plain_port_but_the_proxys(name: str) -> None:
    assert "ports" not in compose()["services"][name], f"{name} is reachable around the proxy"


def test_it_puts_a_pinned_caddy_with_tls_in_front_of_gunicorn() -> None:
    services = compose()["services"]
    proxy = services["proxy"]
    assert re.fullmatch(r"caddy:\d+\.\d+\.\d+(-alpine)?", proxy["image"]), proxy["image"]
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    mounts = dict(v.split(":", 1) for v in proxy["volumes"] if v.startswith("./"))
    source = next(s for s, target in mounts.items() if target.startswith("/etc/caddy/Caddyfile"))
    lines = (ROOT / source).read_text().splitlines()
    text = "\n".join(line.split("#", 1)[0] for line in lines)  # directives, not comments
    assert re.search(r"^\s*tls \{\$CADDY_TLS:internal\}\s*$", text, re.M)
    upstream = re.search(r"^\s*reverse_proxy web:(\d+)\s*$", text, re.M)
    assert upstream, "the Caddyfile does not proxy to the web service"
    bind = re.search(r"--bind 0\.0\.0\.0:(\d+)", services["web"]["command"])
    assert bind and bind[1] == upstream[1], "Caddy and gunicorn disagree on the port"
    assert interpolate(proxy["environment"]["CADDY_TLS"], {}) == "internal"
    assert upstream[1] in [str(p) for p in services["web"]["expose"]]
