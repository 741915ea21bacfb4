"""Docker cannot run here; check instead that docker-compose.yml names real entry points and
only environment variables the settings read."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = {"web", "worker-scans", "worker-letters", "beat"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def variables_read_by_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text() + (
        ROOT / "config" / "env.py"
    ).read_text()
    return set(re.findall(r'env_\w+\(\s*"([A-Z_]+)"', source)) | set(
        re.findall(r'os\.environ(?:\.get)?\(?\[?\s*"([A-Z_]+)"', source)
    )


def test_it_runs_every_role_from_one_image() -> None:
    services = compose()["services"]
    assert {
        "web",
        "worker-scans",
        "worker-letters",
        "beat",
        "postgres",
        "redis",
        "mailcatcher",
    } <= set(services)
    assert {services[name]["image"] for name in APP_SERVICES} == {"secure-your-server:latest"}
    assert (ROOT / "Dockerfile").exists()


def test_every_command_names_a_real_entry_point() -> None:
    from config.celery import app

    queues = {q.name for q in app.conf.task_queues}
    for name in APP_SERVICES:
        command = compose()["services"][name]["command"]
        for part in re.split(r"&&", command.replace('sh -c "', "").rstrip('"')):
            argv = shlex.split(part.strip())
            if argv[0] == "celery":
                assert argv[1:3] == ["-A", "config"], name
                assert argv[3] in ("worker", "beat"), name
                if "-Q" in argv:
                    assert set(argv[argv.index("-Q") + 1].split(",")) <= queues, name
            elif argv[0] == "gunicorn":
                module, attr = argv[1].split(":")
                assert getattr(__import__(module, fromlist=[attr]), attr) is not None
            elif argv[:2] == ["python", "manage.py"]:
                from django.core.management import get_commands

                assert argv[2] in get_commands(), name
            else:
                raise AssertionError(f"{name}: unknown entry point {argv[0]}")


def test_every_queue_has_a_worker() -> None:
    from config.celery import app

    served: set[str] = set()
    for name in ("worker-scans", "worker-letters"):
        argv = shlex.split(compose()["services"][name]["command"])
        served |= set(argv[argv.index("-Q") + 1].split(","))
    assert served == {q.name for q in app.conf.task_queues}


def test_it_sets_only_variables_the_settings_read() -> None:
    known = variables_read_by_settings()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MAIL_ESP"} <= known
    for name in APP_SERVICES:
        env = compose()["services"][name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets {unknown}, which config/settings.py never reads"


def test_each_task_is_routed_to_exactly_one_queue() -> None:
    from config.celery import app

    queues = {q.name: q for q in app.amqp.queues.values()}
    bindings = [(q.exchange.name, q.routing_key) for q in queues.values()]
    assert len(set(bindings)) == len(bindings), f"queues share a binding: {bindings}"
    router = app.amqp.router
    for task, expected in (
        ("scanning.probe_batch", "scans"),
        ("letters.send_letter", "letters"),
        ("campaign.settle_case", "default"),
        ("sweeps.report_stuck_letters", "default"),
    ):
        route = router.route({}, task)
        assert route["queue"].name == expected, task
        receivers = [
            n
            for n, q in queues.items()
            if (q.exchange.name, q.routing_key)
            == (route["queue"].exchange.name, route["queue"].routing_key)
        ]
        assert receivers == [expected], f"{task} would land in {receivers}"


def test_it_keeps_the_queue_across_a_redis_restart() -> None:
    redis = compose()["services"]["redis"]
    assert "--appendonly yes" in redis["command"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"]


def test_workers_and_beat_restart_and_have_healthchecks() -> None:
    services = compose()["services"]
    for name in ("worker-scans", "worker-letters", "beat"):
        assert services[name]["restart"] in ("always", "unless-stopped"), name
        assert services[name]["healthcheck"]["test"], name
    beat_check = services["beat"]["healthcheck"]["test"]
    assert beat_check[1:5] == ["python", "manage.py", "health", "--check"]


def test_the_visibility_timeout_covers_the_longest_task_and_countdown() -> None:
    from django.conf import settings

    from letters.tasks import send_letter
    from scanning.tasks import probe_batch

    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if timeout is None:  # no Redis configured here: computed the same way when there is
        return
    longest = max(
        probe_batch.time_limit, send_letter.time_limit, *settings.SCAN_GREYLIST_RETRY_DELAYS
    )
    assert longest < timeout <= longest + 15 * 60  # not two hours of silence


def test_the_outbox_tasks_are_routed_and_scheduled() -> None:
    from django.conf import settings

    from config.celery import app

    router = app.amqp.router
    for task, expected in (
        ("letters.dispatch", "letters"),
        ("sweeps.reconcile", "default"),
        ("sweeps.reconcile_scans", "default"),
    ):
        assert router.route({}, task)["queue"].name == expected, task
        assert task in app.tasks, task
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"letters.dispatch", "sweeps.reconcile", "sweeps.reconcile_scans"} <= scheduled
