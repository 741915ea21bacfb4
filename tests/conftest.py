from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.test import override_settings

from config.celery import app as celery_app

IN_CI = os.environ.get("CI", "").lower() == "true"

# Tests that share one fixed resource (marked peers or integration: real servers on fixed
# 127.0.x.y addresses, workers consuming one Redis database) run in a serial pass of their own:
# `make test` runs them after the rest, with -n 0.


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    # PBKDF2 is most of what building users costs; tests check roles and scoping, not hashing.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


def require(available: bool, why: str) -> None:
    """Skip a test whose real component is missing here, saying why; in CI, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session", autouse=True)
def _compiled_catalogues() -> None:
    # The pages are tested in every language from the committed .po files, however they were
    # installed: compile whatever changed since the last run.
    from letters import i18n

    i18n.compile_all()


@pytest.fixture(autouse=True)
def _eager_celery_and_test_mail(request: pytest.FixtureRequest, settings) -> None:
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
    # A cache of its own per test (rate-limit counts): no test inherits another's, nor the
    # developer's Redis.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        }
    }
    yield
    celery_app.conf.task_always_eager = previous
