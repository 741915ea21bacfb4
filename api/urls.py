from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from api import views

router = SimpleRouter()
router.register("cases", views.CaseViewSet, basename="case")
router.register("findings", views.FindingViewSet, basename="finding")

app_name = "api"
urlpatterns = [
    path(
        "openapi.json",
        SpectacularJSONAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="schema",
    ),
    *router.urls,
]
