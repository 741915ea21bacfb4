"""Upsert suspects into Target, one chunk per transaction, merging into existing rows."""

from __future__ import annotations

from datetime import datetime

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


def upsert(suspects: list[Suspect], *, batch: ImportBatch, now: datetime) -> None:
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
