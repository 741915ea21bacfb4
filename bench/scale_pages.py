"""The admin pages of the `scale` section: every staff list and page that grows with the campaign,
as the lead and as a partner (each page's p50 server time and its number of queries).

For each list: its first page, a deep page, each filter (the first choice of each), each
sortable column, and searches by IP address, network (CIDR), AS number, case reference, owner
name and e-mail where the list offers them. The filter and sort links are read from the admin's
own changelist, so a filter or column added later is measured too. Every page is requested once
before it is timed (sessions, content types, caches, PostgreSQL's buffers).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlencode

LISTS = {
    "cases": "/admin/campaign/case/",
    "findings": "/admin/scanning/finding/",
    "targets": "/admin/scanning/target/",
    "owners": "/admin/campaign/serverowner/",
    "contacts": "/admin/campaign/contact/",
    "attributions": "/admin/campaign/attribution/",
    "case events": "/admin/campaign/caseevent/",
}
DEEP_PAGE = 50  # an OFFSET of 2,450 rows (or a partner's last page, when it has fewer)


def searches(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Search terms each list answers, from rows of the partner's own data (so that a partner's
    search finds something)."""
    ip, network, asn = data["ip"], data["network"], f"AS{data['asn']}"
    address = {"IP": ip, "CIDR": network, "AS": asn}
    return {
        "cases": {
            **address,
            "reference": data["reference"],
            "owner name": data["owner_name"],
            "e-mail": data["email"],
        },
        "findings": address,
        "targets": address,
        "owners": {"owner name": data["owner_name"], "e-mail": data["email"]},
        "contacts": {"owner name": data["owner_name"], "e-mail": data["email"]},
        "attributions": {**address, "e-mail": data["email"]},
        "case events": {"reference": data["reference"]},
    }


def sample(partner_country: str | None) -> dict[str, Any]:
    """An owner of the partner (any, for the lead), its case, a server, its network and AS."""
    from campaign.models import Attribution, Case, Contact

    cases = Case.objects.select_related("server_owner").order_by("id")
    if partner_country:
        cases = cases.filter(partner__country=partner_country)
    case = cases[5]
    owner = case.server_owner
    attribution = Attribution.objects.filter(server_owner=owner).select_related("target").first()
    assert attribution is not None, "the scale data set has an owner with no server"
    email = Contact.objects.filter(server_owner=owner).order_by("position").first()
    network = ".".join(attribution.target.ip.split(".")[:3]) + ".0/24"
    return {
        "reference": case.reference,
        "owner_name": owner.name,
        "email": email.email if email else "",
        "ip": attribution.target.ip,
        "network": network,
        "asn": attribution.target.asn,
    }


def list_pages(user: Any, name: str, path: str, data: dict[str, Any]) -> dict[str, str]:
    """First page, a deep page, each filter's first choice, each sortable column, searches."""
    changelist = _changelist(user, path)
    deep = min(DEEP_PAGE, changelist.paginator.num_pages)  # a partner's list may be shorter
    pages = {f"{name}: first page": path, f"{name}: deep page": f"{path}?p={deep}"}
    for spec in changelist.filter_specs:
        choices = [c for c in spec.choices(changelist) if not c.get("selected")]
        if choices:
            pages[f"{name}: filter {spec.title}"] = path + choices[0]["query_string"]
    from django.contrib.admin.templatetags.admin_list import result_headers

    for header in result_headers(changelist):
        if header.get("sortable") and header.get("url_primary"):
            label = str(header["text"]).strip() or "?"
            pages[f"{name}: sort by {label}"] = path + str(header["url_primary"])
    for label, term in searches(data).get(name, {}).items():
        pages[f"{name}: search {label}"] = f"{path}?{urlencode({'q': term})}"
    return pages


def _changelist(user: Any, path: str) -> Any:
    from django.contrib import admin
    from django.test import RequestFactory
    from django.urls import resolve

    request = RequestFactory().get(path)
    request.user = user
    match = resolve(path)
    model_admin = next(
        a
        for m, a in admin.site._registry.items()
        if path.startswith(f"/admin/{m._meta.app_label}/{m._meta.model_name}/")
    )
    request.resolver_match = match
    return model_admin.get_changelist_instance(request)


def change_pages(partner_country: str | None) -> dict[str, str]:
    """The biggest owner's page and its case's (the lead's); for a partner, one of its own."""
    from django.db.models import Count

    from campaign.models import Case, ServerOwner

    owners = ServerOwner.objects.order_by("id")
    if partner_country:
        owners = owners.filter(partner__country=partner_country)
    owner = owners.annotate(servers=Count("attributions")).order_by("-servers", "id").first()
    assert owner is not None
    case = Case.objects.filter(server_owner=owner).first()
    assert case is not None
    finding = case.findings.order_by("id").first()
    assert finding is not None
    servers, findings = owner.servers, case.findings.count()
    return {
        f"owner page: {servers:,} servers": f"/admin/campaign/serverowner/{owner.pk}/change/",
        f"case page: {findings:,} findings": f"/admin/campaign/case/{case.pk}/change/",
        "target page": f"/admin/scanning/target/{finding.target_id}/change/",
        "finding page": f"/admin/scanning/finding/{finding.pk}/change/",
    }


def run() -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    runs = int(os.environ.get("BENCH_PAGE_RUNS", "5"))
    # As config/wsgi.py does in each worker: what the process holds by now is not garbage.
    gc.collect()
    gc.freeze()
    only = os.environ.get("BENCH_PAGES", "")  # a substring of page names, to measure a few
    users: dict[str, tuple[User, str | None]] = {
        "lead": (User.objects.get(username="bench-admin"), None)
    }
    users["GB partner"] = (User.objects.get(username="bench-gb"), "GB")
    out: dict[str, Any] = {}
    with override_settings(MFA_REQUIRED=False, ALLOWED_HOSTS=["*"]):
        for who, (user, country) in users.items():
            client = Client()
            client.force_login(user)
            data = sample(country)
            pages: dict[str, str] = {}
            for name, path in LISTS.items():
                pages.update(list_pages(user, name, path, data))
            pages.update(change_pages(country))
            for name, path in pages.items():
                if only and only not in name:
                    continue
                client.get(path)  # warm: sessions, content types, caches, buffers
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append(time.perf_counter() - started)
                with CaptureQueriesContext(connection) as queries:
                    client.get(path)
                sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
                entry = out[f"{who} · {name}"] = {
                    "path": path,
                    "status": response.status_code,
                    "p50_ms": round(statistics.median(times) * 1000, 1),
                    "queries": len(queries),
                    "sql_ms": round(sql_ms, 1),
                }
                print(
                    f"{entry['p50_ms']:8.1f} ms {len(queries):3d} queries "
                    f"{entry['sql_ms']:7.1f} ms SQL  {who} · {name}",
                    file=sys.stderr,
                )
    return out
