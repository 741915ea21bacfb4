"""Staff sign-in: login throttling (django-axes) and a second factor (TOTP, django-otp).

A password alone opens nothing. Staff with a confirmed TOTP device must give a code before
any page; with MFA_REQUIRED (the default) staff without one are sent to enrol first.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from axes.backends import AxesStandaloneBackend
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.signals import user_logged_in
from django.core import checks
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, gettext_lazy
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

# Pages a half-signed-in user (password given, second factor not yet) may still open.
OPEN_BEFORE_SECOND_FACTOR = ("admin:login", "admin:logout", "admin:mfa_enrol", "admin:mfa_verify")


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for every sign-in made through a web request.

    Axes refuses authenticate() calls without a request; only code running on the server makes
    those (the test client, shell sessions), and no one outside can reach them.
    """

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def client_ip(request: HttpRequest) -> str:
    """The address lockouts count against. Behind our TLS proxy, the one it appended last to
    X-Forwarded-For (earlier entries come from the client and prove nothing)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return str(request.META.get("REMOTE_ADDR", ""))


def lockout_response(request: HttpRequest, original_response: Any, credentials: Any) -> Any:
    """django-axes' answer to a locked-out sign-in: the admin's own page, status 429."""
    from axes.helpers import get_cool_off, get_failure_limit
    from django.contrib import admin
    from django.shortcuts import render

    cool_off = get_cool_off(request)
    context = {
        **admin.site.each_context(request),
        "title": gettext("Sign-in locked"),
        "failure_limit": get_failure_limit(request, credentials),
        "minutes": max(1, int(cool_off.total_seconds() // 60)) if cool_off else None,
    }
    # Rendered now: the middleware hands this over after the view's own rendering is done.
    return render(request, "admin/locked_out.html", context, status=429)


def _verified(user: Any) -> bool:
    """django-otp's OTPMiddleware puts is_verified() on the request's user."""
    return bool(getattr(user, "is_verified", lambda: False)())


def confirmed_device(user: AbstractBaseUser | AnonymousUser) -> TOTPDevice | None:
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("id").first()


# Set at sign-in: whether the user had a confirmed device then. Spares a query on every request
# of sessions that owe nothing (MFA_REQUIRED off, no device).
HAD_DEVICE_SESSION_KEY = "sys_mfa_device"


@receiver(user_logged_in)
def _remember_device(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if hasattr(request, "session"):
        request.session[HAD_DEVICE_SESSION_KEY] = confirmed_device(user) is not None


def second_factor_missing(request: HttpRequest) -> str | None:
    """Which page this user must go through first ("verify" or "enrol"), or None."""
    user = request.user
    if not user.is_authenticated or _verified(user):
        return None
    if settings.MFA_REQUIRED and user.is_staff:
        return "verify" if confirmed_device(user) is not None else "enrol"
    if request.session.get(HAD_DEVICE_SESSION_KEY, True) and confirmed_device(user) is not None:
        return "verify"  # optional for this user, but once enrolled it is asked for every time
    return None


class SecondFactorMiddleware:
    """After django-otp's OTPMiddleware: no page for a signed-in user who still owes a code."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._open_paths: set[str] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._open_paths is None:
            self._open_paths = {reverse(name) for name in OPEN_BEFORE_SECOND_FACTOR}
        if request.path not in self._open_paths and not request.path.startswith(
            f"/{settings.STATIC_URL.lstrip('/')}"
        ):
            step = second_factor_missing(request)
            if step is not None:
                url = reverse(f"admin:mfa_{step}")
                return HttpResponseRedirect(f"{url}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


class TokenForm(forms.Form):
    token = forms.RegexField(
        label=gettext_lazy("Code from your authenticator app"),
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": gettext_lazy("Enter the 6-digit code.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _token_ok(device: TOTPDevice, form: TokenForm) -> bool:
    if not form.is_valid():
        return False
    allowed, _ = device.verify_is_allowed()
    if not allowed:  # django-otp's throttle: each wrong code doubles the wait
        form.add_error("token", gettext("Too many wrong codes. Wait a minute and try again."))
        return False
    if not device.verify_token(form.cleaned_data["token"].strip()):
        form.add_error("token", gettext("That code is not valid. Try the current one."))
        return False
    return True


def _qr_svg(url: str) -> str:
    out = io.BytesIO()
    qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).save(out)
    svg = out.getvalue().decode()
    return svg[svg.index("<svg") :]  # inline: drop the XML declaration


def verify_view(site: Any, request: HttpRequest) -> HttpResponse:
    from django.template.response import TemplateResponse

    device = confirmed_device(request.user)
    if device is None:
        return HttpResponseRedirect(reverse("admin:mfa_enrol"))
    if _verified(request.user):
        return HttpResponseRedirect(_next_url(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and _token_ok(device, form):
        otp_login(request, device)
        return HttpResponseRedirect(_next_url(request))
    context = {
        **site.each_context(request),
        "title": gettext("Two-factor sign-in"),
        "form": form,
        "next": _next_url(request),
    }
    return TemplateResponse(request, "admin/mfa_verify.html", context)


def enrol_view(site: Any, request: HttpRequest) -> HttpResponse:
    from django.template.response import TemplateResponse

    user = request.user
    confirmed = confirmed_device(user)
    if confirmed is not None and not _verified(user):
        return HttpResponseRedirect(reverse("admin:mfa_verify"))
    context: dict[str, Any] = {
        **site.each_context(request),
        "title": gettext("Two-factor authentication"),
        "next": _next_url(request),
        "enrolled": confirmed is not None,
        "required": settings.MFA_REQUIRED,
    }
    if confirmed is None:
        # One pending device per user; its secret is shown only until it is confirmed.
        device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("id").first()
        if device is None:
            device = TOTPDevice.objects.create(
                user_id=user.pk, name=gettext("Authenticator app"), confirmed=False
            )
        form = TokenForm(request.POST or None)
        if request.method == "POST" and _token_ok(device, form):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            messages.success(request, gettext("Two-factor authentication is on for your account."))
            return HttpResponseRedirect(_next_url(request))
        secret = _base32(device)
        context.update(
            form=form,
            qr_svg=mark_safe(_qr_svg(device.config_url)),  # our own SVG from our own URL
            secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        )
    return TemplateResponse(request, "admin/mfa_enrol.html", context)


def _base32(device: TOTPDevice) -> str:
    from base64 import b32encode

    return b32encode(device.bin_key).decode().rstrip("=")


@checks.register(checks.Tags.security, deploy=True)
def check_mfa_required(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.MFA_REQUIRED:
        return []
    return [
        checks.Warning(
            "MFA_REQUIRED is off: staff can use the admin with a password alone.",
            hint="Unset MFA_REQUIRED (it defaults to on); only the local demo turns it off.",
            id="accounts.W001",
        )
    ]
