from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from letters.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("anymail/", include("anymail.urls")),
    path("scanning/", include("scanning.urls")),
    path("r/", include("letters.urls")),
    path("healthz", healthz, name="healthz"),
]
