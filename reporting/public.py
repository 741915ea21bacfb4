"""The public results page, /results/: what the agencies publish about the campaign."""

from __future__ import annotations

from babel import Locale, UnknownLocaleError
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from config.security import public_page
from letters.rendering import bcp47
from reporting import charts, services
from reporting.models import PartnerFigures
from reporting.selectors import public_results

RESULTS_CACHE_KEY = "reporting:results:v1"
RESULTS_CACHE_SECONDS = 300


def _country_names(language: str) -> dict[str, str]:
    """Country names in the page's language, from the CLDR data Babel ships."""
    try:
        return dict(Locale.parse(translation.to_locale(language)).territories)
    except (UnknownLocaleError, ValueError):
        return {}


@public_page
@require_GET
def results_page(request: HttpRequest) -> HttpResponse:
    languages = dict(settings.LANGUAGES)
    wanted = request.GET.get("lang", "")
    language = wanted if wanted in languages else translation.get_language() or "en"
    if language not in languages:
        language = settings.LANGUAGE_CODE
    data = cache.get(RESULTS_CACHE_KEY)
    if data is None:
        if not PartnerFigures.objects.exists():
            services.figures_refresh()
        data = public_results()
        cache.set(RESULTS_CACHE_KEY, data, RESULTS_CACHE_SECONDS)
    names = _country_names(language)
    countries = sorted(
        ({**c, "name": names.get(c["country"], c["name"])} for c in data["countries"]),
        key=lambda c: c["name"],
    )
    with translation.override(language):
        months = data["months"]
        context = {
            "r": data,
            "countries": countries,
            "language": language,
            "lang_attr": bcp47(language),
            "languages": settings.LANGUAGES,
            "months_chart": charts.columns(
                [m["month"] for m in months],
                [
                    (_("Servers found"), [m["found"] for m in months]),
                    (_("Owners notified"), [m["notified"] for m in months]),
                    (_("Verified fixed"), [m["fixed"] for m in months]),
                ],
                title=_("Servers found, owners notified and servers fixed, by month"),
            ),
            "countries_chart": charts.hbars(
                sorted(
                    (
                        (c["name"], round(100 * c["share_fixed"], 1))
                        for c in countries
                        if c["share_fixed"] is not None
                    ),
                    key=lambda row: (-row[1], row[0]),
                ),
                title=_("Share of notified owners who fixed their server, by country"),
                percent=True,
                colour=charts.PALETTE[1],
            ),
        }
        response = render(request, "reporting/results.html", context)
    # Aggregates only, the same for everyone: shared caches may keep them for a while.
    response["Cache-Control"] = f"public, max-age={RESULTS_CACHE_SECONDS}"
    response["Content-Language"] = language
    return response
