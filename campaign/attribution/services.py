"""Attribution of targets to owners: reverse DNS, RDAP (cached per network), owners and their
contact chains, routing to a partner, and the owner's case in the active campaign.

Manual corrections live in ServerOwner.corrections ({"name", "country", "abuse_email",
"preferred_language"}) and are applied after every automatic update, so they always win.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from campaign import services
from campaign.attribution import rdap
from campaign.attribution.countries import country_code
from campaign.attribution.parse import NetworkInfo, clean_email, parse_network
from campaign.attribution.reverse_dns import reverse_dns
from campaign.models import (
    LANGUAGE_CODES,
    Attribution,
    AttributionJob,
    Campaign,
    Case,
    CaseEvent,
    Contact,
    Partner,
    RdapNetworkCache,
    ServerOwner,
    Suppression,
)
from campaign.selectors import AnyUser
from scanning.models import OPEN_VERDICTS, Finding, Target, Verdict

AUTOMATIC_SOURCES = ("rdap", "partner")
ROLE_KINDS = {
    "abuse": Contact.Kind.ABUSE,
    "technical": Contact.Kind.TECHNICAL,
    "administrative": Contact.Kind.ADMINISTRATIVE,
    "noc": Contact.Kind.NETWORK,
}
# Reasons case_settle gives that attribution itself can clear; a reviewer's reasons stay put.
AUTOMATIC_REVIEW_REASONS = ("No usable contact.", "lead agency triage.")
REROUTABLE = (Case.Status.NEW, Case.Status.NEEDS_REVIEW, Case.Status.READY)


class AttributionSetupError(Exception):
    pass


@dataclass
class TargetResult:
    target: Target
    attribution: Attribution
    owner: ServerOwner | None
    error_kind: str = ""
    cases: list[Case] = field(default_factory=list)


@dataclass
class BatchReport:
    results: list[TargetResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        kinds = [r.error_kind for r in self.results]
        return {
            "targets": len(self.results),
            "attributed": sum(1 for r in self.results if r.owner and not r.error_kind),
            "errors": sum(1 for k in kinds if k),
            "rate_limited": kinds.count(rdap.RdapRateLimited.kind),
            "timeouts": kinds.count(rdap.RdapTimeout.kind),
            "cases": len({c.pk for r in self.results for c in r.cases}),
        }


def partner_for_country(country: str) -> Partner:
    """The partner of the owner's country; the lead agency when there is none (it triages)."""
    partner = Partner.objects.filter(country=country).first() if country else None
    if partner is None:
        partner = Partner.objects.filter(is_lead=True).first()
    if partner is None:
        raise AttributionSetupError("No lead agency partner: mark one partner as the lead.")
    return partner


# --- RDAP, cached per network -------------------------------------------------------------------


def _hex(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{int(ip):0{8 if ip.version == 4 else 32}x}"


def network_lookup(address: str, limited: dict[str, int | None]) -> tuple[NetworkInfo, str]:
    """The network holding this address: from the cache while fresh, else from RDAP.

    `limited` holds the registries that rate-limited this batch: no further request goes to them.
    """
    ip = ipaddress.ip_address(address)
    now = timezone.now()
    key = _hex(ip)
    cached = (
        RdapNetworkCache.objects.filter(
            ip_version=ip.version, start_hex__lte=key, end_hex__gte=key, expires_at__gt=now
        )
        .order_by("-start_hex", "end_hex")  # the most specific network
        .first()
    )
    if cached is not None:
        return NetworkInfo.from_json(cached.data), cached.rdap_source
    host = urlsplit(rdap.base_urls_for(ip)[0]).netloc
    if host in limited:
        raise rdap.RdapRateLimited(f"{host} rate-limited this batch earlier", limited[host])
    try:
        answer = rdap.lookup_ip(address)
    except rdap.RdapRateLimited as exc:
        limited[host] = exc.retry_after
        raise
    try:
        info = parse_network(answer.data)
    except (TypeError, ValueError, AttributeError, KeyError):  # one odd registry, not the batch
        raise rdap.RdapError(f"malformed RDAP answer from {urlsplit(answer.url).netloc}") from None
    seconds = int(settings.RDAP_CACHE_SECONDS)
    if seconds and info.start and info.end:
        start, end = ipaddress.ip_address(info.start), ipaddress.ip_address(info.end)
        if start.version == ip.version and start <= ip <= end:  # type: ignore[operator]
            label = info.cidrs[0] if len(info.cidrs) == 1 else f"{info.start} - {info.end}"
            RdapNetworkCache.objects.update_or_create(
                ip_version=ip.version,
                start_hex=_hex(start),
                end_hex=_hex(end),
                defaults={
                    "network_cidr": label[:100],
                    "data": info.to_json(),
                    "rdap_source": answer.url[:500],
                    "fetched_at": now,
                    "expires_at": now + timedelta(seconds=seconds),
                },
            )
    return info, answer.url


# --- Owners and contact chains -------------------------------------------------------------------


def _has_handle(owner: ServerOwner, handle: str) -> bool:
    merged = (owner.corrections or {}).get("merged_handles") or []
    return owner.rdap_handle == handle or handle in merged


def _owner_by_handle(
    handle: str, *, partner: Partner, current: ServerOwner | None = None
) -> ServerOwner | None:
    """The owner this handle stands for, never one of another partner's: a handle set by hand
    on another partner's owner must not pull this network's targets into that partner's case.

    The target's current owner keeps it while it still carries the handle (the lead agency may
    have moved that owner to another partner by a correction); otherwise the handle matches only
    the owners of `partner`, the one the registry's country routes to.
    """
    if current is not None and _has_handle(current, handle):
        return current
    owners = ServerOwner.objects.filter(partner=partner)
    owner = owners.filter(rdap_handle=handle).order_by("id").first()
    if owner is not None:
        return owner
    # An owner merged into another by hand: its handle now leads to the survivor.
    for candidate in owners.filter(corrections__has_key="merged_handles").order_by("id"):
        if _has_handle(candidate, handle):
            return candidate
    return None


def owner_for_network(info: NetworkInfo, *, current: ServerOwner | None = None) -> ServerOwner:
    handle = info.owner_handle[:100]
    if not handle:
        raise rdap.RdapError("the RDAP answer names neither a registrant nor a network handle")
    with transaction.atomic():
        # Serialise owner creation: there is no unique key on rdap_handle to race against.
        list(Partner.objects.select_for_update().filter(is_lead=True).values_list("id"))
        owner = _owner_by_handle(handle, partner=partner_for_country(info.country), current=current)
        if owner is None:
            owner = ServerOwner(rdap_handle=handle)
        owner_refresh(owner, info)
    return owner


def owner_refresh(owner: ServerOwner, info: NetworkInfo | None) -> ServerOwner:
    """Automatic data first, then the manual corrections over it, then routing and contacts."""
    corrections = owner.corrections or {}
    if info is not None:
        owner.name = info.owner_name[:255] or owner.name
        owner.country = info.country
    if corrections.get("name"):
        owner.name = str(corrections["name"])[:255]
    if corrections.get("country"):
        owner.country = country_code(str(corrections["country"])) or owner.country
    language = str(corrections.get("preferred_language") or "").lower()
    if language in LANGUAGE_CODES:
        owner.preferred_language = language
    owner.name = owner.name or "Unknown owner"
    owner.partner = partner_for_country(owner.country)
    owner.save()
    contacts_sync(owner, info)
    _reroute_open_cases(owner)
    return owner


def contacts_sync(owner: ServerOwner, info: NetworkInfo | None) -> list[Contact]:
    """Order: the corrected abuse address, contacts staff added, RDAP abuse, RDAP network
    contacts, then the partner agency for manual follow-up. Rows are kept (bounces survive)."""
    existing = list(owner.contacts.order_by("position"))
    wanted: list[tuple[int, str, str, str]] = []  # (group, kind, email, source)
    corrected = clean_email(str((owner.corrections or {}).get("abuse_email") or ""))
    if corrected:
        wanted.append((0, Contact.Kind.ABUSE, corrected, "manual"))
    wanted += [
        (1, c.kind, c.email, c.source) for c in existing if c.source not in AUTOMATIC_SOURCES
    ]
    if info is not None:
        if info.abuse_email:
            kind = ROLE_KINDS.get(info.abuse_role, Contact.Kind.ABUSE)
            wanted.append((2 if kind == Contact.Kind.ABUSE else 3, kind, info.abuse_email, "rdap"))
        wanted += [
            (3, ROLE_KINDS.get(r, Contact.Kind.NETWORK), e, "rdap")
            for r, e in info.network_contacts
        ]
    # Contacts of the owner's other networks stay behind this network's.
    wanted += [
        (2 if c.kind == Contact.Kind.ABUSE else 3, c.kind, c.email, c.source)
        for c in existing
        if c.source == "rdap"
    ]
    if owner.partner.reply_to:
        wanted.append((4, Contact.Kind.PARTNER, owner.partner.reply_to, "partner"))
    chain: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for _group, kind_code, email, source in sorted(wanted, key=lambda item: item[0]):
        if email.lower() not in seen:
            seen.add(email.lower())
            chain.append((kind_code, email, source))
    by_email = {c.email.lower(): c for c in existing}
    with transaction.atomic():
        # Clear the positions first: (owner, position) is unique and rows swap places.
        owner.contacts.update(position=F("position") + 1000)
        for stale in existing:
            if stale.email.lower() not in seen:
                stale.delete()  # only an old partner address gets here (owner re-routed)
        result = []
        for position, (kind_code, email, source) in enumerate(chain):
            contact = by_email.get(email.lower())
            if contact is None:
                contact = Contact.objects.create(
                    server_owner=owner,
                    position=position,
                    kind=kind_code,
                    email=email,
                    source=source,
                )
            else:
                contact.position, contact.kind, contact.source = position, kind_code, source
                contact.save(update_fields=["position", "kind", "source"])
            result.append(contact)
    return result


def _reroute_open_cases(owner: ServerOwner) -> None:
    """Cases not yet written about follow the owner's partner and language (corrections too)."""
    language = services.case_language(owner)
    for case in Case.objects.filter(server_owner=owner, status__in=REROUTABLE).select_related(
        "partner"
    ):
        if case.partner_id == owner.partner_id and case.language == language:
            continue
        before = f"{case.partner.country}/{case.language}"
        Case.objects.filter(pk=case.pk).update(partner=owner.partner, language=language)
        case.partner, case.language = owner.partner, language
        services.case_record_event(
            case=case,
            kind=CaseEvent.Kind.NOTE,
            actor_label="attribution",
            note=f"Routed from {before} to {owner.partner.country}/{language}.",
            data={"partner": owner.partner.country, "language": language},
        )


# --- Targets and cases --------------------------------------------------------------------------


def open_findings(target: Target) -> QuerySet[Finding]:
    """The target's open findings since it was last seen closed."""
    findings = target.findings.filter(verdict__in=OPEN_VERDICTS)
    last_closed = target.findings.filter(verdict=Verdict.CLOSED).aggregate(at=Max("probed_at"))
    if last_closed["at"] is not None:
        findings = findings.filter(probed_at__gt=last_closed["at"])
    return findings.order_by("probed_at", "id")


def target_join_cases(*, target: Target, owner: ServerOwner, campaign: Campaign) -> list[Case]:
    owned = Case.objects.filter(campaign=campaign, server_owner=owner)
    cases: dict[int, Case] = {}
    for finding in open_findings(target).exclude(cases__in=owned):
        case = services.case_add_finding(
            campaign=campaign, owner=owner, finding=finding, actor_label="attribution"
        )
        cases[case.pk] = case
    for case in owned.filter(status__in=(Case.Status.NEW, Case.Status.NEEDS_REVIEW)):
        automatic = case.review_reason.endswith(AUTOMATIC_REVIEW_REASONS)
        if case.status == Case.Status.NEW or automatic:
            services.case_settle(case=case, actor_label="attribution")
        cases[case.pk] = case
    return list(cases.values())


def target_attribute(
    target: Target, *, campaign: Campaign | None, limited: dict[str, int | None]
) -> TargetResult:
    rdns = reverse_dns(target.ip)
    attribution, _ = Attribution.objects.get_or_create(target=target)
    attribution.reverse_dns = rdns or attribution.reverse_dns
    error_kind = ""
    owner: ServerOwner | None
    try:
        info, source = network_lookup(target.ip, limited)
        owner = owner_for_network(info, current=attribution.server_owner)
    except rdap.RdapError as exc:
        # Reported on the row and counted on the batch; the owner found before stays.
        error_kind = exc.kind
        attribution.error = f"{exc.kind}: {exc}"[:255]
        attribution.save(update_fields=["reverse_dns", "error"])
        owner = attribution.server_owner
    else:
        attribution.server_owner = owner
        attribution.network_cidr = info.cidr_for(target.ip)[:64]
        attribution.network_name = info.name[:255]
        attribution.registrant_country = info.country
        attribution.abuse_email = info.abuse_email
        attribution.asn = info.asn or target.asn
        attribution.rdap_source = source[:200]
        attribution.error = ""
        attribution.attributed_at = timezone.now()
        attribution.save()
    cases = []
    if owner is not None and campaign is not None:
        cases = target_join_cases(target=target, owner=owner, campaign=campaign)
    return TargetResult(target, attribution, owner, error_kind, cases)


def targets_attribute(*, targets: Iterable[Target]) -> BatchReport:
    """Attribute each target; an error on one (a 429, a timeout) is reported, not raised."""
    campaign = Campaign.objects.current()
    limited: dict[str, int | None] = {}
    report = BatchReport()
    for target in targets:
        report.results.append(target_attribute(target, campaign=campaign, limited=limited))
    return report


def attribution_job_start(
    *, target_ids: list[int], actor: User | AnonymousUser | None = None
) -> AttributionJob:
    """A job record the user can watch; the worker fills in its counts and errors."""
    from campaign.tasks import attribute_job as attribute_job_task  # tasks import services

    ids = sorted(set(target_ids))
    job = AttributionJob.objects.create(
        target_ids=ids,
        targets_total=len(ids),
        started_by=actor if actor is not None and actor.is_authenticated else None,
    )
    attribute_job_task.delay_on_commit(job.pk)
    return job


def attribution_job_run(*, job_id: int) -> AttributionJob | None:
    """Run a queued job once (claimed first: a redelivered task finds nothing to do)."""
    claimed = AttributionJob.objects.filter(pk=job_id, status=AttributionJob.Status.QUEUED).update(
        status=AttributionJob.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    job = AttributionJob.objects.get(pk=job_id)
    targets = Target.objects.filter(id__in=job.target_ids).order_by("id")
    try:
        report = targets_attribute(targets=targets)
    except Exception as exc:  # reported on the job: the user sees why, the worker carries on
        AttributionJob.objects.filter(pk=job_id).update(
            status=AttributionJob.Status.FAILED,
            failure=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        raise
    errors = [
        {"target": str(r.target), "error": r.attribution.error or r.error_kind}
        for r in report.results
        if r.error_kind
    ]
    missing = len(job.target_ids) - len(report.results)
    if missing:
        errors.append({"target": "", "error": f"{missing} target(s) no longer exist."})
    AttributionJob.objects.filter(pk=job_id).update(
        status=AttributionJob.Status.DONE,
        counts=report.counts(),
        errors=errors[:1000],
        error_count=len(errors),
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


def targets_needing_attribution() -> Any:
    return (
        Target.objects.filter(findings__verdict__in=OPEN_VERDICTS, attribution__server_owner=None)
        .distinct()
        .order_by("id")
    )


# --- Merging owners by hand ---------------------------------------------------------------------


@dataclass
class MergeReport:
    merged: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@transaction.atomic
def owner_merge(
    *, into: ServerOwner, others: Iterable[ServerOwner], actor: AnyUser | None = None
) -> MergeReport:
    """Move targets, contacts, cases and suppressions to `into`; an owner with a case in a
    campaign where `into` has one too is left alone (one case per owner per campaign)."""
    report = MergeReport()
    into = ServerOwner.objects.select_for_update().get(pk=into.pk)
    for other in others:
        if other.pk == into.pk:
            continue
        shared = Campaign.objects.filter(cases__server_owner=into).filter(cases__server_owner=other)
        if shared.exists():
            names = ", ".join(sorted({c.name for c in shared}))
            report.refused.append(f"{other.name} (both have a case in {names})")
            continue
        Attribution.objects.filter(server_owner=other).update(server_owner=into)
        Suppression.objects.filter(server_owner=other).update(server_owner=into)
        emails = {e.lower() for e in into.contacts.values_list("email", flat=True)}
        next_position = (into.contacts.aggregate(p=Max("position"))["p"] or 0) + 1
        for contact in other.contacts.order_by("position"):
            if contact.email.lower() in emails:
                continue
            Contact.objects.filter(pk=contact.pk).update(server_owner=into, position=next_position)
            emails.add(contact.email.lower())
            next_position += 1
        for case in Case.objects.filter(server_owner=other):
            Case.objects.filter(pk=case.pk).update(server_owner=into, partner=into.partner)
            services.case_record_event(
                case=case,
                kind=CaseEvent.Kind.NOTE,
                actor=actor,
                note=f"Owner “{other.name}” merged into “{into.name}”.",
                data={"merged_owner": other.pk, "into_owner": into.pk},
            )
        handles = set(into.corrections.get("merged_handles") or [])
        handles.update(other.corrections.get("merged_handles") or [])
        if other.rdap_handle:
            handles.add(other.rdap_handle)
        handles.discard(into.rdap_handle)
        into.corrections = {**into.corrections, "merged_handles": sorted(handles)}
        into.save(update_fields=["corrections", "updated_at"])
        report.merged.append(other.name)
        other.delete()
    owner_refresh(into, None)  # re-order the joined chain: abuse, network, partner last
    for case in Case.objects.filter(server_owner=into, status=Case.Status.NEW):
        services.case_settle(case=case, actor_label="merge")
    return report
