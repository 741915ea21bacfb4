"""Users, groups and beat schedules: superusers' business, never a partner's."""

from __future__ import annotations

from typing import Any

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


class SuperuserOnly:
    """Accounts: a partner must not list, add or promote users."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    has_change_permission = has_view_permission
    has_delete_permission = has_view_permission

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super().get_queryset(request)  # type: ignore[misc]
        return qs if self.has_view_permission(request) else qs.none()


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
