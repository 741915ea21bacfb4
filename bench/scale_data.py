"""The `scale` section's data set, built set-based on PostgreSQL in a database of its own.

N targets (BENCH_SCALE, default 100,000), one finding each, N/10 owners and as many cases spread
over the 26 demo partners, an attribution per target, contacts, a short case history. Owner 0
has 10,000 servers (or N/10 when N is small) and its case as many findings: the pages that once
listed every row of such an owner are measured on it. The database is kept between runs and
rebuilt only when N changes.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection, connections

from campaign.demo import PARTNERS, TIME_ZONES

CAMPAIGN_SLUG = "bench-scale"


def use_scale_database() -> str:
    """Point the default connection at `<db>_scale`, creating and migrating it if needed."""
    return use_bench_database("_scale")


def use_bench_database(suffix: str) -> str:
    """Point the default connection at `<db><suffix>`, a database of the bench's own, creating
    and migrating it if needed; returns its name."""
    from django.core.management import call_command

    default = connections["default"]
    base = default.settings_dict["NAME"]
    name = base if base.endswith(suffix) else f"{base}{suffix}"[:63]
    with default.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    default.close()
    default.settings_dict["NAME"] = name
    call_command("migrate", "--noinput", verbosity=0)
    return name


def built_size() -> int | None:
    from campaign.models import Campaign

    label = Campaign.objects.filter(slug=CAMPAIGN_SLUG).values_list("name", flat=True).first()
    size = (label or "").rsplit(" ", 1)[-1]
    return int(size) if size.isdigit() else None


def build(n: int) -> dict[str, Any]:
    """Empty the app tables and fill them for N targets; returns counts and seconds."""
    from django.contrib.auth.models import User

    from campaign.models import Campaign, CaseSequence, Membership, Partner

    started = time.perf_counter()
    owners = max(n // 10, 30)
    big = min(10_000, max(n // 10, 1))  # owner 0's servers
    with connection.cursor() as c:
        tables = [
            "campaign_case_findings",
            "campaign_caseevent",
            "campaign_case",
            "campaign_attribution",
            "campaign_contact",
            "campaign_suppression",
            "campaign_serverowner",
            "campaign_importbatch_targets",
            "campaign_importbatch",
            "campaign_campaign_scan_runs",
            "campaign_campaign",
            "scanning_scanbatch",
            "scanning_scanrun_targets",
            "scanning_scanrun",
            "scanning_finding",
            "scanning_target",
            "campaign_casesequence",
        ]
        c.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    for country, name, agency, languages in PARTNERS:
        Partner.objects.update_or_create(
            country=country,
            defaults={
                "country_name": name,
                "agency": agency,
                "languages": languages,
                "is_lead": country == "US",
                "time_zone": TIME_ZONES.get(country, "UTC"),
            },
        )
    admin, _ = User.objects.get_or_create(username="bench-admin", defaults={"is_staff": True})
    admin.is_superuser = admin.is_staff = True
    admin.save()
    gb, _ = User.objects.get_or_create(username="bench-gb", defaults={"is_staff": True})
    Membership.objects.get_or_create(
        user=gb, partner=Partner.objects.get(country="GB"), defaults={"role": "caseworker"}
    )
    campaign = Campaign.objects.create(slug=CAMPAIGN_SLUG, name="Bench scale (building)")
    params = {"n": n, "owners": owners, "big": big, "campaign": campaign.pk}
    with connection.cursor() as c:
        for statement in _STATEMENTS:
            c.execute(statement, params)
        # Statistics for the planner, and the visibility map that lets index-only scans skip
        # the table: what autovacuum gives a database that has lived a while.
        c.execute("VACUUM ANALYZE")
    CaseSequence.objects.update_or_create(year=2026, defaults={"last": owners})
    Campaign.objects.filter(pk=campaign.pk).update(name=f"Bench scale {n}")  # complete
    return {
        "targets": n,
        "findings": n,
        "owners": owners,
        "cases": owners,
        "biggest_owner_servers": big,
        "build_seconds": round(time.perf_counter() - started, 1),
    }


# Target i belongs to owner 0 while i < big, then round-robin over the others. Partners by owner.
_OWNER_OF = "(CASE WHEN i < %(big)s THEN 0 ELSE 1 + (i %% (%(owners)s - 1)) END)"
_STATEMENTS = [
    """
    INSERT INTO campaign_serverowner (id, name, rdap_handle, country, partner_id,
        preferred_language, corrections, notes, created_at, updated_at)
    SELECT i + 1, 'Owner ' || i || CASE i %% 3 WHEN 0 THEN ' Hosting' WHEN 1 THEN ' Telecom'
           ELSE ' Networks' END, 'ORG-' || i, p.country, p.id, '', '{}', '', now(), now()
    FROM generate_series(0, %(owners)s - 1) AS i
    JOIN (SELECT id, country, row_number() OVER (ORDER BY country) - 1 AS k
          FROM campaign_partner) p ON p.k = i %% 26
    """,
    "SELECT setval('campaign_serverowner_id_seq', %(owners)s)",
    """
    INSERT INTO campaign_contact (server_owner_id, position, kind, email, source, bounced_at)
    SELECT o.id, 0, 'abuse', 'abuse' || o.id || '@owner' || o.id || '.example', 'rdap',
        NULL::timestamptz
    FROM campaign_serverowner o
    UNION ALL
    SELECT o.id, 1, 'network', 'noc' || o.id || '@owner' || o.id || '.example', 'rdap',
        NULL::timestamptz
    FROM campaign_serverowner o WHERE o.id %% 3 = 0
    """,
    f"""
    INSERT INTO scanning_target (id, ip, port, protocol, hostname, asn, geo_country, first_seen,
        last_seen, sources, source_data, created_at)
    SELECT i + 1, '10.0.0.0'::inet + i, (ARRAY[25, 3128, 1080])[1 + i %% 3],
        (ARRAY['smtp', 'http', 'socks5'])[1 + i %% 3], 'host' || i || '.example',
        64496 + ({_OWNER_OF}) %% 5000, o.country,
        now() - ((i %% 90) || ' days')::interval, now() - ((i %% 7) || ' days')::interval,
        '["bench"]', '{{}}', now()
    FROM generate_series(0, %(n)s - 1) AS i
    JOIN campaign_serverowner o ON o.id = {_OWNER_OF} + 1
    """,
    "SELECT setval('scanning_target_id_seq', %(n)s)",
    """
    INSERT INTO campaign_attribution (target_id, server_owner_id, reverse_dns, network_cidr,
        network_name, registrant_country, abuse_email, asn, rdap_source, error, attributed_at)
    SELECT t.id, o.id, t.hostname, host(t.ip) || '/24', 'NET-' || o.id, o.country,
        'abuse' || o.id || '@owner' || o.id || '.example', t.asn, '', '', now()
    FROM scanning_target t
    JOIN campaign_serverowner o ON o.id = (
        CASE WHEN t.id - 1 < %(big)s THEN 0 ELSE 1 + ((t.id - 1) %% (%(owners)s - 1)) END) + 1
    """,
    """
    INSERT INTO scanning_finding (target_id, scan_run_id, protocol, transport, transport_status,
        verdict, evidence_level, reasons, software_family, software_version, software_source,
        reverse_dns, duration_ms, retry_after, token, details, transcript, catalogue_version,
        probed_at, final)
    SELECT t.id, NULL, t.protocol, 'plain', 'success',
        (ARRAY['confirmed-open', 'confirmed-open', 'confirmed-open', 'confirmed-open',
               'likely-open', 'likely-open', 'likely-open-weak', 'closed', 'auth-required',
               'inconclusive'])[1 + t.id %% 10],
        (ARRAY['strong', 'strong', 'strong', 'strong', 'medium', 'medium', 'weak', 'none',
               'none', 'none'])[1 + t.id %% 10],
        '[]',
        CASE t.protocol WHEN 'smtp' THEN (ARRAY['Postfix', 'Exim', 'Sendmail'])[1 + t.id %% 3]
             WHEN 'http' THEN (ARRAY['Squid', 'tinyproxy', 'nginx'])[1 + t.id %% 3]
             ELSE (ARRAY['Dante', '3proxy', ''])[1 + t.id %% 3] END,
        '', 'banner', t.hostname, 100 + t.id %% 900, NULL, md5(t.id::text), '{}',
        jsonb_build_array(
            jsonb_build_object('t_ms', 0, 'direction', '<', 'text', '220 ' || t.hostname),
            jsonb_build_object('t_ms', 3, 'direction', '>', 'text', 'EHLO scanner.example'),
            jsonb_build_object('t_ms', 9, 'direction', '<', 'text', '250 OK')),
        '', t.first_seen + interval '1 hour', true
    FROM scanning_target t
    """,
    """
    INSERT INTO campaign_case (reference, campaign_id, server_owner_id, partner_id, language,
        status, review_reason, remediation_token_hash, opened_at, status_changed_at,
        next_action_at, next_action, attention, attention_at, attention_note)
    SELECT 'SYS-2026-' || lpad(o.id::text, 6, '0'), %(campaign)s, o.id, o.partner_id, 'en',
        s.status, CASE WHEN s.status = 'needs_review' THEN 'no usable contact' ELSE ''
        END, '', now() - ((o.id %% 80) || ' days')::interval,
        now() - ((o.id %% 20) || ' days')::interval,
        CASE WHEN o.id %% 10 IN (1, 2, 3) THEN now() + ((o.id %% 30) || ' days')::interval END,
        CASE WHEN o.id %% 10 IN (1, 2, 3) THEN 'reminder' ELSE '' END,
        CASE s.status WHEN 'needs_review' THEN 'review' WHEN 'escalated' THEN 'escalated'
             ELSE '' END,
        CASE WHEN s.status IN ('needs_review', 'escalated') THEN now() END, ''
    FROM campaign_serverowner o
    CROSS JOIN LATERAL (SELECT (ARRAY['ready', 'notified', 'notified', 'reminded', 'escalated',
        'fixed', 'fixed', 'needs_review', 'unresponsive', 'new'])[1 + o.id %% 10] AS status) s
    """,
    """
    INSERT INTO campaign_case_findings (case_id, finding_id)
    SELECT c.id, f.id
    FROM scanning_finding f
    JOIN campaign_attribution a ON a.target_id = f.target_id
    JOIN campaign_case c ON c.server_owner_id = a.server_owner_id
    """,
    """
    INSERT INTO campaign_caseevent (case_id, at, actor_id, actor_label, kind, from_status,
        to_status, note, data)
    SELECT c.id, c.opened_at + (e.k || ' days')::interval, NULL, 'system', e.kind, e.f, e.t,
        '', CASE WHEN e.kind LIKE 'letter%%' THEN jsonb_build_object('letter', md5(c.id::text))
                 ELSE '{}'::jsonb END
    FROM campaign_case c
    CROSS JOIN (VALUES (0, 'opened', '', 'new'),
                       (1, 'letter_queued', 'ready', 'ready'),
                       (1, 'letter_sent', 'ready', 'ready'),
                       (1, 'status_changed', 'ready', 'notified'),
                       (2, 'letter_delivered', 'notified', 'notified')) AS e(k, kind, f, t)
    WHERE c.status NOT IN ('new', 'needs_review', 'ready') OR e.kind = 'opened'
    """,
]
