"""The public page about our scanner, linked from its EHLO name and User-Agent."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from config.security import public_page
from scanning import services
from scanning.forms import ExclusionRequestForm


@public_page
@require_http_methods(["GET", "POST"])
def scan_page(request: HttpRequest) -> HttpResponse:
    form = ExclusionRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.exclusion_request(
            network=form.cleaned_data["network"],
            requester_email=form.cleaned_data["email"],
            reason=form.cleaned_data["reason"],
        )
        return redirect("scanning:opt-out-received")
    return render(request, "scanning/scan_page.html", {"form": form, **_about()}, status=200)


@public_page
def opt_out_received(request: HttpRequest) -> HttpResponse:
    return render(request, "scanning/opt_out_received.html", _about())


def _about() -> dict[str, object]:
    return {
        "operator": settings.SCANNER_OPERATOR,
        "contact_email": settings.SCANNER_CONTACT_EMAIL,
        "source_addresses": settings.SCANNER_SOURCE_ADDRESSES,
        "scanner_name": settings.SCANNER_NAME,
    }
