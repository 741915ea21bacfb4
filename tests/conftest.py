from __future__ import annotations

import os

import pytest

from config.celery import app as celery_app

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, why: str) -> None:
    """Skip a test whose real component is missing here, saying why; in CI, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(autouse=True)
def _eager_celery_and_test_mail(request: pytest.FixtureRequest, settings) -> None:  # type: ignore[no-untyped-def]
    # Unit tests run tasks in-process; the integration suite turns this off to use a real worker.
    eager = request.node.get_closest_marker("integration") is None
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = eager
    celery_app.conf.task_eager_propagates = True
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    # Attribution asks public DNS and RDAP: off unless a test serves them from loopback.
    settings.ATTRIBUTE_AFTER_SCAN = False
    # Tests sign staff in with force_login, which skips the password form and its second step;
    # tests/security/test_accounts.py turns this on and signs in as a person would.
    settings.MFA_REQUIRED = False
    yield
    celery_app.conf.task_always_eager = previous
