"""Upsert suspects into Target, one chunk per transaction, merging into existing rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from campaign.intake.records import Suspect
from campaign.models import ImportBatch
from scanning.models import Target

Key = tuple[str, int, str]
UPDATE_FIELDS = [
    "hostname",
    "asn",
    "geo_country",
    "first_seen",
    "last_seen",
    "sources",
    "source_data",
]


def _merge_sources(old: list[str], new: list[str]) -> list[str]:
    return old + [s for s in new if s not in old]


def _merge(target: Target, suspect: Suspect, seen: datetime) -> None:
    target.first_seen = min(target.first_seen, seen)
    target.last_seen = max(target.last_seen, seen)
    if suspect.hostname:
        target.hostname = suspect.hostname
    if suspect.asn is not None:
        target.asn = suspect.asn
    if suspect.country:
        target.geo_country = suspect.country
    if suspect.source:
        target.sources = _merge_sources(target.sources, [suspect.source])
    if suspect.source_data:
        target.source_data = {**target.source_data, **suspect.source_data}


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def upsert(suspects: list[Suspect], *, batch: ImportBatch, now: datetime) -> None:
    if on_postgresql():
        _pg_upsert(_pg_merged(suspects, now), batch_id=batch.id, now=now)
        return
    chunk: dict[Key, Target] = {}
    for s in suspects:  # one row per key: PostgreSQL refuses to update a row twice in one INSERT
        key = (s.ip, s.port, s.protocol)
        seen = s.seen or now
        target = chunk.get(key)
        if target is None:
            chunk[key] = target = Target(
                ip=s.ip, port=s.port, protocol=s.protocol, first_seen=seen, last_seen=seen
            )
        _merge(target, s, seen)
    with transaction.atomic():
        # Rows already there are locked and merged here, in Python: sources and source_data
        # are JSON, and a plain upsert would overwrite what earlier feeds said.
        existing = (
            Target.objects.select_for_update()
            .filter(ip__in={key[0] for key in chunk}, port__in={key[1] for key in chunk})
            .values_list(
                "ip",
                "port",
                "protocol",
                "hostname",
                "asn",
                "geo_country",
                "first_seen",
                "last_seen",
                "sources",
                "source_data",
            )
        )
        for ip, port, protocol, hostname, asn, geo, first, last, sources, data in existing:
            new = chunk.get((ip, port, protocol))
            if new is None:
                continue
            new.first_seen = min(first, new.first_seen)
            new.last_seen = max(last, new.last_seen)
            new.hostname = new.hostname or hostname
            new.asn = new.asn if new.asn is not None else asn
            new.geo_country = new.geo_country or geo
            new.sources = _merge_sources(list(sources or []), new.sources)
            new.source_data = {**(data or {}), **new.source_data}
        targets = list(chunk.values())
        Target.objects.bulk_create(
            targets,
            update_conflicts=True,
            unique_fields=["ip", "port", "protocol"],
            update_fields=UPDATE_FIELDS,
        )
        _link(batch.id, [t.pk for t in targets])


def _link(batch_id: int, target_ids: list[int]) -> None:
    # Plain executemany: a model instance per link row costs more than the insert itself.
    through = ImportBatch.targets.through
    quote = connection.ops.quote_name
    columns = (
        through._meta.get_field("importbatch").column,
        through._meta.get_field("target").column,
    )
    sql = (
        f"INSERT INTO {quote(through._meta.db_table)} ({quote(columns[0])}, {quote(columns[1])})"
        " VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(batch_id, target_id) for target_id in target_ids])


# PostgreSQL: the chunk goes in with COPY to a temporary table, then one INSERT ... ON CONFLICT
# merges it into Target (the same rules as _merge above, in SQL) and links it to the batch.
STAGE = "intake_stage"
STAGE_COLUMNS = (
    "ip",
    "port",
    "protocol",
    "hostname",
    "asn",
    "geo_country",
    "first_seen",
    "last_seen",
    "sources",
    "source_data",
)
# How a target seen again merges into the stored row: the widest first/last seen, a new hostname,
# AS or country only where one was given, new sources appended once, source data overlaid. Both
# import paths (this staging table and the bulk SQL path, bulk_sql.py) merge with it.
TARGET_MERGE_ON_CONFLICT = """
  ON CONFLICT (ip, port, protocol) DO UPDATE SET
    first_seen = LEAST(scanning_target.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(scanning_target.last_seen, EXCLUDED.last_seen),
    hostname = COALESCE(NULLIF(EXCLUDED.hostname, ''), scanning_target.hostname),
    asn = COALESCE(EXCLUDED.asn, scanning_target.asn),
    geo_country = COALESCE(NULLIF(EXCLUDED.geo_country, ''), scanning_target.geo_country),
    sources = scanning_target.sources || COALESCE(
      (SELECT jsonb_agg(e.value ORDER BY e.n)
       FROM jsonb_array_elements(EXCLUDED.sources) WITH ORDINALITY AS e(value, n)
       WHERE NOT scanning_target.sources @> jsonb_build_array(e.value)),
      '[]'::jsonb),
    source_data = scanning_target.source_data || EXCLUDED.source_data
"""
MERGE_SQL = f"""
WITH merged AS (
  INSERT INTO scanning_target ({", ".join(STAGE_COLUMNS)}, created_at)
  SELECT {", ".join(STAGE_COLUMNS)}, %(now)s FROM {STAGE}
{TARGET_MERGE_ON_CONFLICT}  RETURNING id
)
INSERT INTO campaign_importbatch_targets (importbatch_id, target_id)
SELECT %(batch)s, id FROM merged
ON CONFLICT DO NOTHING
"""


def _pg_merged(suspects: list[Suspect], now: datetime) -> list[list[Any]]:
    """One row per key in STAGE_COLUMNS order, merged as _merge does (plain lists: a model
    instance per row costs more than storing it)."""
    rows: dict[Key, list[Any]] = {}
    for s in suspects:
        seen = s.seen or now
        key = (s.ip, s.port, s.protocol)
        row = rows.get(key)
        if row is None:
            rows[key] = row = [s.ip, s.port, s.protocol, "", None, "", seen, seen, [], {}]
        else:
            row[6] = min(row[6], seen)
            row[7] = max(row[7], seen)
        if s.hostname:
            row[3] = s.hostname
        if s.asn is not None:
            row[4] = s.asn
        if s.country:
            row[5] = s.country
        if s.source and s.source not in row[8]:
            row[8].append(s.source)
        if s.source_data:
            row[9] = {**row[9], **s.source_data}
    return list(rows.values())


def _pg_upsert(rows: list[list[Any]], *, batch_id: int, now: datetime) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (ip inet, port integer, "
            "protocol varchar(8), hostname varchar(255), asn bigint, geo_country varchar(2), "
            "first_seen timestamptz, last_seen timestamptz, sources jsonb, source_data jsonb) "
            "ON COMMIT DELETE ROWS"
        )
        # Emptied here too: inside a caller's transaction (a test, a bench) ON COMMIT comes late.
        cursor.execute(f"TRUNCATE {STAGE}")
        raw = cursor.cursor  # psycopg's own cursor: Django's has no copy()
        with raw.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                row[8] = json.dumps(row[8])
                row[9] = json.dumps(row[9])
                copy.write_row(row)
        cursor.execute(MERGE_SQL, {"now": now, "batch": batch_id})
