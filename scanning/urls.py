from __future__ import annotations

from django.urls import path

from scanning import views

app_name = "scanning"
urlpatterns = [
    path("", views.scan_page, name="scan-page"),
    path("opt-out/received/", views.opt_out_received, name="opt-out-received"),
]
