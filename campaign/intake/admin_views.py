"""The admin's "Import targets" page and the batch page's table of rejected rows."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from campaign.admin_base import log_service_action
from campaign.intake import services
from campaign.intake.tasks import import_targets as import_targets_task
from campaign.models import Campaign, ImportBatch

SYNC_MAX_BYTES = 4 * 1024 * 1024  # bigger uploads go to the `default` queue


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV (ip, port, …), a Shadowserver report CSV, a spam sample (.eml) or an mbox."
    )
    format = forms.ChoiceField(
        choices=[("", "Guess from the file"), *ImportBatch.Format.choices], required=False
    )
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.order_by("-starts_on", "name"),
        required=False,
        empty_label="No campaign",
    )


def _stored_path(batch: ImportBatch, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(name))[:200] or "upload"
    folder = Path(settings.MEDIA_ROOT) / "imports" / f"{batch.id}-{uuid.uuid4().hex}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / safe


def import_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        batch = services.import_batch_create(
            file_name=upload.name,
            format=form.cleaned_data["format"] or None,
            campaign=form.cleaned_data["campaign"],
            actor=request.user,
        )
        log_service_action(request, batch, f"Imported {upload.name}.")
        limit = getattr(settings, "INTAKE_SYNC_MAX_BYTES", SYNC_MAX_BYTES)
        if upload.size <= limit:
            batch = services.import_batch_run(batch=batch, path_or_file=upload)
            level = messages.ERROR if batch.status == ImportBatch.Status.FAILED else messages.INFO
            model_admin.message_user(
                request,
                batch.failure
                if batch.status == ImportBatch.Status.FAILED
                else f"Imported {batch.file_name}: {batch.rows_kept} kept, "
                f"{batch.rows_rejected} rejected.",
                level,
            )
        else:
            path = _stored_path(batch, upload.name)
            with open(path, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            import_targets_task.delay_on_commit(batch.id, str(path))
            model_admin.message_user(
                request, f"{batch.file_name} is being imported in the background; reload to see."
            )
        return redirect(reverse("admin:campaign_importbatch_change", args=[batch.id]))
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Import targets",
        "opts": model_admin.model._meta,
        "form": form,
        "sync_max_mb": getattr(settings, "INTAKE_SYNC_MAX_BYTES", SYNC_MAX_BYTES) // (1024 * 1024),
    }
    return TemplateResponse(request, "admin/campaign/importbatch/import_form.html", context)


def error_table(batch: ImportBatch) -> str:
    if batch.failure and batch.status == ImportBatch.Status.FAILED and not batch.errors:
        return format_html("<strong>File rejected:</strong> {}", batch.failure)
    if not batch.errors:
        return "No rejected rows."
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td></tr>",
        ((e.get("line") or "", e.get("reason", "")) for e in batch.errors),
    )
    return format_html(
        '<table class="import-errors"><thead><tr><th>Line</th><th>Reason</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        body,
    )
