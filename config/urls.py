from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from letters.views import healthz
from reporting.public import results_page

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("anymail/", include("letters.webhooks")),
    path("scanning/", include("scanning.urls")),
    path("r/", include("letters.urls")),
    path("healthz", healthz, name="healthz"),
    path("results/", results_page, name="results"),
    path("api/v1/", include("api.urls")),
]
