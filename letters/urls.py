from __future__ import annotations

from django.urls import path, re_path

from letters import views

app_name = "remediation"
urlpatterns = [
    path("<str:token>/", views.remediation_page, name="page"),
    path("<str:token>/status.json", views.remediation_status, name="status"),
    # A link mangled into more segments (a mail client's wrapping): the same neutral page.
    re_path(r"^.*/$", views.remediation_invalid),
]
