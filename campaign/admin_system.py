"""Users, groups, second factors, lockouts and beat schedules: superusers' business only."""

from __future__ import annotations

from typing import Any

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_otp.plugins.otp_totp.models import TOTPDevice


def _superuser(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


class SuperuserOnly:
    """Accounts, devices, lockouts, schedules: a partner must not list, add or promote users.
    Superusers get what the library's own admin allows them (log rows stay read-only)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return _superuser(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super().get_queryset(request)  # type: ignore[misc]
        return qs if _superuser(request) else qs.none()


site = admin.site
for model in (User, Group):
    if site.is_registered(model):
        site.unregister(model)


@admin.register(User)
class SystemUserAdmin(SuperuserOnly, UserAdmin):
    search_fields = ("username", "email", "first_name", "last_name")


@admin.register(Group)
class SystemGroupAdmin(SuperuserOnly, GroupAdmin):
    pass


for model, base in (
    (PeriodicTask, beat_admin.PeriodicTaskAdmin),
    (IntervalSchedule, admin.ModelAdmin),
    (CrontabSchedule, beat_admin.CrontabScheduleAdmin),
    (SolarSchedule, admin.ModelAdmin),
    (ClockedSchedule, beat_admin.ClockedScheduleAdmin),
):
    if site.is_registered(model):
        site.unregister(model)
    # A beat entry runs any task on any arguments (attribution of chosen ids, sweeps) with no
    # role check: superusers only.
    site.register(model, type(f"Superuser{model.__name__}Admin", (SuperuserOnly, base), {}))


# Second-factor devices (a superuser resets a lost one by deleting it) and django-axes' records
# of failed sign-ins (deleting an attempt unlocks the username).
for model in (TOTPDevice, AccessAttempt, AccessLog, AccessFailureLog):
    if site.is_registered(model):
        base = type(site._registry[model])
        site.unregister(model)
        site.register(model, type(f"Superuser{model.__name__}Admin", (SuperuserOnly, base), {}))
