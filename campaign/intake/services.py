"""Import a file of suspects into Target and record it as an ImportBatch."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.utils import timezone

from campaign.intake import bulk, store
from campaign.intake.parsers import checked_format, parsed_items
from campaign.intake.records import FileRejected, RowError, Suspect
from campaign.models import Campaign, ImportBatch

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
MAX_ERRORS = 1000  # stored on the batch; the rest are counted


def own_domains_setting() -> list[str]:
    return list(getattr(settings, "INTAKE_OWN_DOMAINS", []))


def import_batch_create(
    *, file_name: str, format: str | None, campaign: Campaign | None, actor: Any
) -> ImportBatch:
    return ImportBatch.objects.create(
        file_name=os.path.basename(file_name)[:255],
        format=format or "",
        campaign=campaign,
        uploaded_by=actor if getattr(actor, "is_authenticated", False) else None,
    )


def import_file(
    *,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    file_name: str | None = None,
    format: str | None = None,
    campaign: Campaign | None = None,
    actor: Any = None,
    own_domains: Iterable[str] | None = None,
) -> ImportBatch:
    if file_name is None:
        file_name = str(getattr(path_or_file, "name", path_or_file))
    batch = import_batch_create(file_name=file_name, format=format, campaign=campaign, actor=actor)
    return import_batch_run(batch=batch, path_or_file=path_or_file, own_domains=own_domains)


@contextlib.contextmanager
def _opened(path_or_file: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    if isinstance(path_or_file, str | os.PathLike):
        with open(path_or_file, "rb") as handle:
            yield handle
    else:
        path_or_file.seek(0)
        yield path_or_file


def import_batch_run(
    *,
    batch: ImportBatch,
    path_or_file: str | os.PathLike[str] | IO[bytes],
    own_domains: Iterable[str] | None = None,
) -> ImportBatch:
    """Parse and store; a file rejected as a whole leaves the batch failed and stores nothing."""
    if own_domains is None:
        own_domains = own_domains_setting()
    now = timezone.now()
    kept = rejected = 0
    errors: list[dict[str, object]] = []
    pending: list[Suspect] = []

    def flush() -> None:
        nonlocal pending
        if pending:
            store.upsert(pending, batch=batch, now=now)
            pending = []
        ImportBatch.objects.filter(id=batch.id).update(
            rows_total=kept + rejected, rows_kept=kept, rows_rejected=rejected
        )

    def chunk_done(chunk_kept: int, chunk_errors: list[RowError]) -> None:
        nonlocal kept, rejected
        kept += chunk_kept
        rejected += len(chunk_errors)
        room = MAX_ERRORS - len(errors)
        errors.extend({"line": e.line, "reason": e.reason} for e in chunk_errors[: max(room, 0)])
        flush()

    try:
        with _opened(path_or_file) as handle:
            fmt, head = checked_format(
                handle, file_name=batch.file_name, format=batch.format or None
            )
            if batch.format != fmt:
                batch.format = fmt
                ImportBatch.objects.filter(id=batch.id).update(format=fmt)
            if fmt in bulk.FORMATS and store.on_postgresql():
                bulk.run(
                    handle,
                    fmt=fmt,
                    file_name=batch.file_name,
                    batch_id=batch.id,
                    now=now,
                    chunk_done=chunk_done,
                )
            else:
                items = parsed_items(
                    handle, fmt=fmt, file_name=batch.file_name, head=head, own_domains=own_domains
                )
                for item in items:
                    if isinstance(item, RowError):
                        rejected += 1
                        if len(errors) < MAX_ERRORS:
                            errors.append({"line": item.line, "reason": item.reason})
                        continue
                    kept += 1
                    pending.append(item)
                    if len(pending) >= CHUNK_ROWS:
                        flush()
            flush()
    except FileRejected as exc:
        return _finish(batch, status=ImportBatch.Status.FAILED, failure=str(exc), errors=[])
    except OSError as exc:
        return _finish(
            batch,
            status=ImportBatch.Status.FAILED,
            failure=f"Could not read the file: {exc}",
            errors=errors,
        )
    except Exception:
        log.exception("import batch %s stopped", batch.id)
        _finish(
            batch,
            status=ImportBatch.Status.FAILED,
            failure=f"Stopped by an internal error after {kept + rejected} rows; "
            "rows stored before it are kept.",
            errors=errors,
        )
        raise
    if rejected > MAX_ERRORS:
        errors.append(
            {"line": None, "reason": f"… and {rejected - MAX_ERRORS} more rejected rows not listed"}
        )
    return _finish(batch, status=ImportBatch.Status.DONE, failure="", errors=errors)


def _finish(
    batch: ImportBatch, *, status: str, failure: str, errors: list[dict[str, object]]
) -> ImportBatch:
    ImportBatch.objects.filter(id=batch.id).update(
        status=status, failure=failure, errors=errors, finished_at=timezone.now()
    )
    batch.refresh_from_db()
    return batch


def import_stored_upload(*, batch_id: int, path: str) -> None:
    """The Celery task's body: run a queued batch from its stored upload, then remove the file.

    Running a batch twice (a redelivered task) is harmless: merging is idempotent.
    """
    batch = ImportBatch.objects.filter(
        id=batch_id, status=ImportBatch.Status.PENDING, finished_at__isnull=True
    ).first()
    if batch is None:
        return  # already run: a redelivered task finds nothing to do
    stored = Path(path).resolve()
    root = (Path(settings.MEDIA_ROOT) / "imports").resolve()
    if root not in stored.parents:
        _finish(
            batch,
            status=ImportBatch.Status.FAILED,
            failure="The stored upload is outside MEDIA_ROOT/imports/.",
            errors=[],
        )
        return
    try:
        import_batch_run(batch=batch, path_or_file=stored)
    finally:
        with contextlib.suppress(OSError):
            stored.unlink()
            stored.parent.rmdir()
