"""The schedule's sweep over many open cases: the time to select, claim and hand out the due
ones, and the database time of a sweep with nothing due (it runs every few minutes).

BENCH_SCHEDULE_CASES open cases (default 100,000), a tenth of them due. Built with bulk inserts
and rolled back afterwards. The hand-out is counted, not published: the figure is the
database's side of the sweep (select with SKIP LOCKED, claim), without the broker.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta
from typing import Any


class _Rollback(Exception):
    pass


def run(cases: int | None = None) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from campaign import services, tasks
    from campaign.models import Campaign, Case, Partner

    default = "100000" if connection.vendor == "postgresql" else "10000"
    n = cases or int(os.environ.get("BENCH_SCHEDULE_CASES", default))
    due_n = n // 10
    result: dict[str, Any] = {}
    queued: list[int] = []
    real_task = tasks.advance_case_task

    class CountingTask:
        @staticmethod
        def delay(case_id: int) -> None:
            queued.append(case_id)

    try:
        with transaction.atomic():
            now = timezone.now()
            partner, _ = Partner.objects.get_or_create(
                country="ZX",
                defaults={"country_name": "Bench", "agency": "Bench", "languages": ["en"]},
            )
            campaign = Campaign.objects.create(slug="bench-schedule", name="Bench schedule")
            started = time.perf_counter()
            if connection.vendor == "postgresql":
                _insert_pg(connection, partner, campaign, n, due_n, now)
            else:
                _insert_orm(partner, campaign, n, due_n, now)
            build = time.perf_counter() - started
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE campaign_case")

            # Nothing due: every due case moved to tomorrow for the measurement.
            due_ids = list(
                Case.objects.filter(campaign=campaign, next_action_at__lte=now).values_list(
                    "id", flat=True
                )
            )
            Case.objects.filter(id__in=due_ids).update(next_action_at=now + timedelta(days=1))
            timings: list[float] = []
            queries = 0

            def timed(execute, sql, params, many, context):
                nonlocal queries
                t = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    timings.append(time.perf_counter() - t)
                    queries += 1

            tasks.advance_case_task = CountingTask
            idle_ms: list[float] = []
            with connection.execute_wrapper(timed):
                for _ in range(20):
                    timings.clear()
                    services.schedule_sweep(now=now)
                    idle_ms.append(sum(timings) * 1000)
            idle_queries = queries // 20
            server_ms = _server_ms(connection, services, now)
            Case.objects.filter(id__in=due_ids).update(next_action_at=now - timedelta(minutes=1))

            started = time.perf_counter()
            report = services.schedule_sweep(now=now)
            sweep = time.perf_counter() - started
            assert report.claimed == due_n == len(set(queued)), (report.claimed, due_n)
            result = {
                "open_cases": n,
                "due": due_n,
                "database": connection.vendor,
                "build_seconds": round(build, 1),
                "sweep_due_seconds": round(sweep, 2),
                "sweep_due_cases_per_second": round(due_n / sweep, 0),
                "sweep_idle_db_ms_median": round(statistics.median(idle_ms), 2),
                "sweep_idle_db_ms_max": round(max(idle_ms), 2),
                "sweep_idle_queries": idle_queries,
                # The server's own planning + execution time of the select, without the round
                # trip (which on a loaded machine is most of the wall time above).
                "sweep_idle_server_ms": server_ms,
                "enqueue": "counted, not published to a broker",
            }
            raise _Rollback
    except _Rollback:
        pass
    finally:
        tasks.advance_case_task = real_task
    return result


def _due_at(i: int, due_n: int, now: Any) -> Any:
    # The first tenth is due; the rest over the next weeks.
    return now - timedelta(minutes=1 + i) if i < due_n else now + timedelta(minutes=i)


def _insert_orm(partner: Any, campaign: Any, n: int, due_n: int, now: Any) -> None:
    from campaign.models import Case, NextAction, ServerOwner

    owners = ServerOwner.objects.bulk_create(
        (ServerOwner(name=f"Owner {i}", partner=partner, country="ZX") for i in range(n)),
        batch_size=5000,
    )
    Case.objects.bulk_create(
        (
            Case(
                reference=f"SYS-1999-{i:06d}",
                campaign=campaign,
                server_owner=owner,
                partner=partner,
                language="en",
                status=Case.Status.NOTIFIED,
                notified_at=now - timedelta(days=30),
                next_action=NextAction.REMINDER,
                next_action_at=_due_at(i, due_n, now),
            )
            for i, owner in enumerate(owners)
        ),
        batch_size=5000,
    )


def _insert_pg(connection: Any, partner: Any, campaign: Any, n: int, due_n: int, now: Any) -> None:
    """generate_series in the database: 100,000 rows in seconds, where the ORM takes minutes.
    Every other column takes the value a new model instance would have."""
    from campaign.models import Case, NextAction, ServerOwner

    def columns(instance: Any, computed: dict[str, str]) -> tuple[list[str], list[str], list]:
        names, exprs, params = [], [], []
        for f in instance._meta.concrete_fields:
            if f.primary_key:
                continue
            names.append(connection.ops.quote_name(f.column))
            if f.column in computed:
                exprs.append(computed[f.column])
            else:
                exprs.append("%s")
                params.append(f.get_db_prep_save(f.pre_save(instance, True), connection))
        return names, exprs, params

    owner = ServerOwner(name="", partner=partner, country="ZX")
    names, exprs, params = columns(owner, {"name": "'Owner ' || g"})
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ServerOwner._meta.db_table} ({', '.join(names)}) "
            f"SELECT {', '.join(exprs)} FROM generate_series(0, %s) AS g",
            [*params, n - 1],
        )
        case = Case(
            campaign=campaign,
            partner=partner,
            language="en",
            status=Case.Status.NOTIFIED,
            notified_at=now - timedelta(days=30),
            next_action=NextAction.REMINDER,
        )
        names, exprs, params = columns(
            case,
            {
                "reference": "'SYS-1999-' || lpad(o.i::text, 6, '0')",
                "server_owner_id": "o.id",
                "next_action_at": "CASE WHEN o.i < %s THEN %s - (o.i + 1) * interval '1 minute' "
                "ELSE %s + o.i * interval '1 minute' END",
            },
        )
        # The computed next_action_at's parameters sit where its column is in the list.
        position = names.index(connection.ops.quote_name("next_action_at"))
        before = sum(1 for e in exprs[:position] if e == "%s")
        params[before:before] = [due_n, now, now]
        cursor.execute(
            f"INSERT INTO {Case._meta.db_table} ({', '.join(names)}) "
            f"SELECT {', '.join(exprs)} FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 "
            f"AS i FROM {ServerOwner._meta.db_table} WHERE partner_id = %s) AS o",
            [*params, partner.pk],
        )


def _server_ms(connection: Any, services: Any, now: Any) -> float | None:
    if connection.vendor != "postgresql":
        return None
    due = (
        services.sweep._due_cases(now)
        .order_by("next_action_at", "id")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("id", flat=True)[: services.SWEEP_BATCH]
    )
    sql, params = due.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]
    return round(plan["Planning Time"] + plan["Execution Time"], 3)
