"""The public page about our scanner, linked from its EHLO name and User-Agent. In the visitor's
language (the browser's), from the gettext catalogues."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
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
    operator, contact = settings.SCANNER_OPERATOR, settings.SCANNER_CONTACT_EMAIL
    if not (operator and contact):
        # Unset: the lead agency's own name and address. Scanning never imports campaign at
        # import time (the apps import the other way); the model is looked up by name.
        partner_model = apps.get_model("campaign", "Partner")
        lead = partner_model.objects.filter(is_lead=True).only("agency", "reply_to").first()
        if lead is not None:
            operator = operator or lead.agency
            contact = contact or lead.reply_to
    return {
        "operator": operator,
        "contact_email": contact,
        "source_addresses": settings.SCANNER_SOURCE_ADDRESSES,
        "scanner_name": settings.SCANNER_NAME,
        "html_lang": translation.to_locale(translation.get_language() or "en").replace("_", "-"),
    }
