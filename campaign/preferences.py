"""Staff read the admin in their own language: a preference each user sets for themselves on the
admin's "Language" page, defaulting to the first language of their partner that the site speaks.
Django's admin comes translated; our additions use gettext like the public pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy

from campaign.models import Membership, StaffPreference

SESSION_KEY = "staff_language"
LANGUAGE_NAMES = dict(settings.LANGUAGES)


def partner_language(user: Any) -> str:
    supported = set(LANGUAGE_NAMES)
    membership = (
        Membership.objects.filter(user=user).select_related("partner").order_by("id").first()
    )
    for code in membership.partner.languages if membership else []:
        if code in supported:
            return code
    return settings.LANGUAGE_CODE


def staff_language(user: Any) -> str:
    chosen = StaffPreference.objects.filter(user=user).values_list("language", flat=True).first()
    return chosen or partner_language(user)


class StaffLanguageMiddleware:
    """After authentication: the admin in the staff member's language, looked up once per
    session (the language page refreshes it)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if not (user is not None and user.is_authenticated and user.is_staff):
            return self.get_response(request)
        if not request.path.startswith(reverse("admin:index")):
            return self.get_response(request)
        language = request.session.get(SESSION_KEY)
        if language not in LANGUAGE_NAMES:
            language = staff_language(user)
            request.session[SESSION_KEY] = language
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        response.headers["Content-Language"] = language
        return response


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=gettext_lazy("Language of the admin"), required=False)

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        label = gettext("Your partner's language (%(language)s)") % {
            "language": LANGUAGE_NAMES.get(default, default)
        }
        field = self.fields["language"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", label), *settings.LANGUAGES]


def language_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    default = partner_language(request.user)
    user = cast(User, request.user)  # the admin site only lets signed-in staff this far
    chosen = StaffPreference.objects.filter(user=user).first()
    form = LanguageForm(
        request.POST or None,
        initial={"language": chosen.language if chosen else ""},
        default=default,
    )
    if request.method == "POST" and form.is_valid():
        StaffPreference.objects.update_or_create(
            user=user, defaults={"language": form.cleaned_data["language"]}
        )
        language = form.cleaned_data["language"] or default
        request.session[SESSION_KEY] = language
        with translation.override(language):
            messages.success(
                request,
                gettext("The admin is now in %(language)s.")
                % {"language": LANGUAGE_NAMES.get(language, language)},
            )
        return redirect("admin:index")
    context = {
        **site.each_context(request),
        "title": gettext("Your language"),
        "form": form,
    }
    return TemplateResponse(request, "admin/staff_language.html", context)
