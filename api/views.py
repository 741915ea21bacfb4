"""The read-only partner API: cases and findings, scoped exactly as the admin scopes them."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination

from campaign import selectors
from campaign.models import Case, CaseEvent
from letters.models import Letter
from scanning.kinds import KIND_LABELS, KIND_PROTOCOLS, kind_of
from scanning.models import EvidenceLevel, Finding, Verdict


class IdCursorPagination(CursorPagination):
    # Ordered by id: immutable and unique, so a page boundary never skips or repeats a row.
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


# --- Serializers ---------------------------------------------------------------------------------
class FindingBriefSerializer(serializers.Serializer):
    """A case's finding, as embedded in the case (the schema of `CaseSerializer.findings`)."""

    id = serializers.IntegerField()
    ip = serializers.CharField()
    port = serializers.IntegerField()
    protocol = serializers.CharField()
    kind = serializers.CharField(allow_null=True)
    verdict = serializers.CharField()
    evidence_level = serializers.CharField()
    software_family = serializers.CharField()
    probed_at = serializers.DateTimeField()


class LetterBriefSerializer(serializers.Serializer):
    kind = serializers.CharField()
    language = serializers.CharField()
    status = serializers.CharField()
    queued_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    status_changed_at = serializers.DateTimeField()


FINDING_COLUMNS = (
    "id",
    "target__ip",
    "target__port",
    "protocol",
    "verdict",
    "evidence_level",
    "software_family",
    "probed_at",
)
LETTER_COLUMNS = ("kind", "language", "status", "queued_at", "sent_at", "status_changed_at")


def _iso(value: datetime | None) -> str | None:
    # As DRF writes date-times (UTC, "Z"), without building a serializer field per value.
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def attach_related(cases: list[Case]) -> list[Case]:
    """Each case's findings and letters as plain rows, two queries for the whole page: building
    model instances for ten findings a case made a page of a hundred cases five times slower."""
    by_case: dict[int, Case] = {case.pk: case for case in cases}
    for case in cases:
        case.finding_rows, case.letter_rows = [], []  # type: ignore[attr-defined]
    through = Case.findings.through.objects.filter(case_id__in=by_case).order_by("finding_id")
    for case_id, *row in through.values_list(
        "case_id", *(f"finding__{c}" for c in FINDING_COLUMNS)
    ):
        fid, ip, port, protocol, verdict, evidence, software, probed_at = row
        by_case[case_id].finding_rows.append(  # type: ignore[attr-defined]
            {
                "id": fid,
                "ip": ip,
                "port": port,
                "protocol": protocol,
                "kind": kind_of(protocol),
                "verdict": verdict,
                "evidence_level": evidence,
                "software_family": software,
                "probed_at": _iso(probed_at),
            }
        )
    letters = Letter.objects.filter(case_id__in=by_case).order_by("id")
    for case_id, *row in letters.values_list("case_id", *LETTER_COLUMNS):
        letter = dict(zip(LETTER_COLUMNS, row, strict=True))
        for key in ("queued_at", "sent_at", "status_changed_at"):
            letter[key] = _iso(letter[key])
        by_case[case_id].letter_rows.append(letter)  # type: ignore[attr-defined]
    return cases


class CaseSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.country", help_text="ISO 3166-1 alpha-2.")
    campaign = serializers.CharField(source="campaign.slug")
    server_owner = serializers.CharField(source="server_owner.name")
    status_label = serializers.CharField(source="get_status_display")
    updated_at = serializers.DateTimeField(help_text="The case's latest event or status change.")
    findings = serializers.SerializerMethodField()
    letters = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = (
            "reference",
            "status",
            "status_label",
            "partner",
            "campaign",
            "server_owner",
            "language",
            "review_reason",
            "opened_at",
            "status_changed_at",
            "next_action_at",
            "updated_at",
            "findings",
            "letters",
        )

    @extend_schema_field(FindingBriefSerializer(many=True))
    def get_findings(self, obj: Case) -> list[dict[str, Any]]:
        return obj.finding_rows  # type: ignore[attr-defined]

    @extend_schema_field(LetterBriefSerializer(many=True))
    def get_letters(self, obj: Case) -> list[dict[str, Any]]:
        return obj.letter_rows  # type: ignore[attr-defined]


class FindingSerializer(serializers.ModelSerializer):
    ip = serializers.CharField(source="target.ip")
    port = serializers.IntegerField(source="target.port")
    kind = serializers.SerializerMethodField()
    software = serializers.SerializerMethodField()
    cases = serializers.SerializerMethodField()

    class Meta:
        model = Finding
        fields = (
            "id",
            "ip",
            "port",
            "protocol",
            "kind",
            "transport",
            "verdict",
            "evidence_level",
            "reasons",
            "software",
            "reverse_dns",
            "probed_at",
            "cases",
        )

    def get_kind(self, obj: Finding) -> str | None:
        return kind_of(obj.protocol)

    def get_software(self, obj: Finding) -> dict[str, str] | None:
        if not obj.software_family:
            return None
        return {"family": obj.software_family, "version": obj.software_version}

    def get_cases(self, obj: Finding) -> list[str]:
        return [case.reference for case in obj.visible_cases]  # type: ignore[attr-defined]


# --- Filters -------------------------------------------------------------------------------------
def _choice(params: Any, name: str, allowed: list[str]) -> list[str]:
    raw = params.get(name)
    if raw is None or raw == "":
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong:
        raise ValidationError({name: [f"{wrong[0]!r} is not one of: {', '.join(allowed)}."]})
    return values


def _since(params: Any) -> datetime | None:
    raw = params.get("updated_since")
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
        if moment is None and (day := parse_date(raw)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise ValidationError({"updated_since": [f"{raw!r} is not an ISO 8601 date or date-time."]})
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


KIND_CHOICES = list(KIND_LABELS)
KIND_PARAM = OpenApiParameter(
    "kind", OpenApiTypes.STR, description=f"Comma-separated: {', '.join(KIND_CHOICES)}."
)
SINCE_PARAM = OpenApiParameter(
    "updated_since",
    OpenApiTypes.DATETIME,
    description="ISO 8601 date or date-time (UTC unless it names a zone).",
)


def _protocols(kinds: list[str]) -> list[str]:
    return [p for kind in kinds for p in KIND_PROTOCOLS[kind]]


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description=f"Comma-separated: {', '.join(Case.Status.values)}.",
            ),
            KIND_PARAM,
            SINCE_PARAM,
        ]
    )
)
class CaseViewSet(viewsets.ReadOnlyModelViewSet):
    """Your partner's cases (every partner's for the lead agency), oldest first."""

    serializer_class = CaseSerializer
    pagination_class = IdCursorPagination
    lookup_field = "reference"

    def get_serializer(self, instance: Any = None, *args: Any, **kwargs: Any) -> Any:
        if instance is not None:
            attach_related(list(instance) if kwargs.get("many") else [instance])
        return super().get_serializer(instance, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Case]:
        user = self.request.user
        last_event = CaseEvent.objects.filter(case=OuterRef("pk")).order_by("-at").values("at")[:1]
        qs = (
            selectors.visible(Case.objects.all(), user)
            .select_related("partner", "campaign", "server_owner")
            .annotate(updated_at=Subquery(last_event))
        )
        if self.action != "list":
            return qs
        params = self.request.query_params
        if statuses := _choice(params, "status", list(Case.Status.values)):
            qs = qs.filter(status__in=statuses)
        if kinds := _choice(params, "kind", KIND_CHOICES):
            qs = qs.filter(
                Exists(
                    Case.findings.through.objects.filter(
                        case_id=OuterRef("pk"), finding__protocol__in=_protocols(kinds)
                    )
                )
            )
        if (since := _since(params)) is not None:
            qs = qs.filter(
                Q(status_changed_at__gte=since)
                | Exists(CaseEvent.objects.filter(case_id=OuterRef("pk"), at__gte=since))
            )
        return qs


@extend_schema_view(
    list=extend_schema(
        parameters=[
            KIND_PARAM,
            OpenApiParameter(
                "verdict",
                OpenApiTypes.STR,
                description=f"Comma-separated: {', '.join(Verdict.values)}.",
            ),
            OpenApiParameter(
                "evidence_level",
                OpenApiTypes.STR,
                description=f"Comma-separated: {', '.join(EvidenceLevel.values)}.",
            ),
            SINCE_PARAM,
        ]
    )
)
class FindingViewSet(viewsets.ReadOnlyModelViewSet):
    """Probe results on your partner's servers (attributed to its owners), oldest first."""

    serializer_class = FindingSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self) -> QuerySet[Finding]:
        user = self.request.user
        qs = (
            selectors.visible(
                Finding.objects.all(),
                user,
                partner_field="target__attribution__server_owner__partner",
            )
            .select_related("target")
            .prefetch_related(
                Prefetch(
                    "cases",
                    queryset=selectors.visible(Case.objects.order_by("id"), user),
                    to_attr="visible_cases",
                )
            )
        )
        if self.action != "list":
            return qs
        params = self.request.query_params
        if kinds := _choice(params, "kind", KIND_CHOICES):
            qs = qs.filter(protocol__in=_protocols(kinds))
        if verdicts := _choice(params, "verdict", list(Verdict.values)):
            qs = qs.filter(verdict__in=verdicts)
        if levels := _choice(params, "evidence_level", list(EvidenceLevel.values)):
            qs = qs.filter(evidence_level__in=levels)
        if (since := _since(params)) is not None:
            qs = qs.filter(probed_at__gte=since)
        return qs
