"""What keeps the admin's lists fast at a million rows: address search through PostgreSQL's inet
operators and indexes, filters whose choices come from small tables or a short cache instead of
a DISTINCT over a whole table, relative date filters instead of date hierarchies, and a
paginator that estimates unfiltered totals and caps the rest."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import IntegerField, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

SHOWN_ROWS = 50  # rows of a long related list shown on a change page; the rest are linked
ASN = re.compile(r"^(?:AS)?\s*(\d{1,10})$", re.IGNORECASE)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address_term(term: str) -> tuple[str, Any] | None:
    """("ip", "10.0.0.1"), ("cidr", IPv4Network), ("asn", 64500), or None for other text.
    A bare number is an AS number only with the AS prefix: it could be a port or a reference."""
    text = term.strip()
    if "/" in text:
        try:
            return "cidr", ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        mapped = getattr(address, "ipv4_mapped", None)
        return "ip", str(mapped or address)
    match = ASN.match(text)
    if match and text[:2].upper() == "AS":
        return "asn", int(match.group(1))
    return None


def network_q(field: str, network: Network) -> Q:
    """Addresses in the network. PostgreSQL: the inet `<<=` operator (GiST index); elsewhere
    (SQLite stores text) prefixes of whole octets, which are exact for IPv4."""
    if connection.vendor == "postgresql":
        return Q(**{f"{field}__net_contained_or_equal": str(network)})
    if network.version == 6:
        if network.num_addresses > 256:
            raise ValueError(_("IPv6 network search needs PostgreSQL for networks over /120."))
        return Q(**{f"{field}__in": [str(a) for a in network]})
    if network.prefixlen >= 24:
        return Q(**{f"{field}__in": [str(a) for a in network]})
    block = 24 if network.prefixlen >= 16 else 16 if network.prefixlen >= 8 else 8
    q = Q()
    for subnet in network.subnets(new_prefix=block):
        octets = str(subnet.network_address).split(".")[: block // 8]
        q |= Q(**{f"{field}__startswith": ".".join(octets) + "."})
    return q


class AddressSearchMixin(admin.ModelAdmin):
    """Search by IP address, CIDR network or AS number; other terms go to `text_search`."""

    address_field = "ip"
    asn_field = "asn"
    # (lookup or term -> Q, predicate): a term is searched where its predicate accepts it, with
    # an exact or prefix lookup an index serves (or a trigram index for names), never a
    # LIKE '%…%' over a whole table.
    text_search: tuple[tuple[str | Callable[[str], Q], Callable[[str], bool]], ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        parsed = parse_address_term(term)
        if parsed is not None:
            kind, value = parsed
            if kind == "ip":
                return queryset.filter(**{self.address_field: value}), False
            if kind == "cidr":
                try:
                    return queryset.filter(network_q(self.address_field, value)), False
                except ValueError as exc:
                    self.message_user(request, str(exc), level="warning")
                    return queryset.none(), False
            return queryset.filter(**{self.asn_field: value}), False
        q = Q()
        for lookup, accepts in self.text_search:
            if accepts(term):
                q |= lookup(term) if callable(lookup) else Q(**{lookup: term})
        return (queryset.filter(q), False) if q else (queryset.none(), False)


def anything(term: str) -> bool:
    return True


def looks_like_email(term: str) -> bool:
    return "@" in term


class RecentFilter(admin.SimpleListFilter):
    """Instead of a date hierarchy (a DISTINCT over every row's date): fixed recent windows."""

    title = _("date")
    parameter_name = "recent"
    field = ""
    WINDOWS = {"1": 1, "7": 7, "30": 30, "90": 90}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("1", _("Past 24 hours")),
            ("7", _("Past 7 days")),
            ("30", _("Past 30 days")),
            ("90", _("Past 90 days")),
            ("older", _("Older than 90 days")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        now = timezone.now()
        if value in self.WINDOWS:
            since = now - dt.timedelta(days=self.WINDOWS[value])
            return queryset.filter(**{f"{self.field}__gte": since})
        if value == "older":
            return queryset.filter(**{f"{self.field}__lt": now - dt.timedelta(days=90)})
        return queryset


def recent_filter(field: str, title: Any) -> type[RecentFilter]:
    return type(
        f"Recent{field.title().replace('_', '')}Filter",
        (RecentFilter,),
        {"field": field, "title": title, "parameter_name": f"{field}__recent"},
    )


class CachedValuesFilter(admin.SimpleListFilter):
    """Choices from the distinct values of a column, counted once every few minutes for all
    users (values such as software names or country codes, never anyone's data)."""

    field = ""
    model: Any = None
    SECONDS = 600

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        key = f"admin-values:{self.model._meta.label_lower}.{self.field}"
        values = cache.get(key)
        if values is None:
            values = list(
                self.model.objects.exclude(**{self.field: ""})
                .order_by()
                .values_list(self.field, flat=True)
                .distinct()[:200]
            )
            values.sort()
            cache.set(key, values, self.SECONDS)
        return [(v, v) for v in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


def values_filter(model: Any, field: str, title: Any, path: str | None = None) -> type:
    """A cached-values filter on `model.field`, applied to the admin's rows through `path`."""
    lookup = path or field

    def queryset(self: Any, request: HttpRequest, qs: QuerySet) -> QuerySet:
        value = self.value()
        return qs.filter(**{lookup: value}) if value else qs

    return type(
        f"{model.__name__}{field.title().replace('_', '')}Filter",
        (CachedValuesFilter,),
        {
            "model": model,
            "field": field,
            "title": title,
            "parameter_name": lookup,
            "queryset": queryset,
        },
    )


class ChoicesFilter(admin.SimpleListFilter):
    """Choices given by a callable on the request (a small table, a setting)."""

    choice_source: Callable[[HttpRequest], list[tuple[Any, Any]]]
    lookup = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[Any, Any]]:
        return [(str(k), v) for k, v in type(self).choice_source(request)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.lookup: value}) if value else queryset


def choices_filter(
    lookup: str, title: Any, choices: Callable[[HttpRequest], list[tuple[Any, Any]]]
) -> type:
    return type(
        f"{lookup.title().replace('_', '')}ChoicesFilter",
        (ChoicesFilter,),
        {
            "lookup": lookup,
            "title": title,
            "parameter_name": lookup,
            "choice_source": staticmethod(choices),
        },
    )


class ScaleChangeList(ChangeList):
    """Django breaks ties in a sorted list with the primary key, descending whatever the sort's
    direction: `ORDER BY status ASC, id DESC`, which no index serves, so PostgreSQL sorts every
    row for the first page. Ties here follow the sort's direction, and an index on (column, id)
    answers the page in both directions."""

    def _get_deterministic_ordering(self, ordering: Any) -> list[Any]:
        # Private in Django (5.2) and so absent from django-stubs; it is the one place the
        # tie-breaker is added.
        ordering = super()._get_deterministic_ordering(ordering)  # type: ignore[misc]
        if len(ordering) > 1 and ordering[-1] == "-pk" and not _descending(ordering[0]):
            ordering[-1] = "pk"
        return ordering


def _descending(part: Any) -> bool:
    if isinstance(part, str):
        return part.startswith("-")
    return bool(getattr(part, "descending", False))


class SubqueryCount(Subquery):
    """The number of rows a correlated subquery returns, computed for each shown row only
    (an index lookup each), never by joining and grouping the whole related table."""

    template = "(SELECT count(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


class ScalePaginator(Paginator):
    """Counts that stay cheap at a million rows. Where PostgreSQL expects more than CAP rows
    (an unfiltered table: its own row estimate; a filtered or partner-scoped list: the planner's
    estimate for the query, which costs a plan and no reading) the total shown is that
    estimate. Otherwise the list is counted, up to CAP rows. Pages stop at CAP rows either way
    (narrow the list with a filter or a search to reach the rest)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return len(qs)
        if connection.vendor == "postgresql":
            if qs.query.where:
                estimate = _planned_rows(qs)
            else:
                estimate = _estimated_rows(qs.model._meta.db_table)
            if estimate is not None and estimate > self.CAP:
                return estimate
        return qs.order_by().values("pk")[: self.CAP].count()

    @property
    def num_pages(self) -> int:
        pages = super().num_pages
        return min(pages, max(1, -(-self.CAP // self.per_page)))


def _planned_rows(qs: QuerySet) -> int | None:
    """The planner's estimate of the rows `qs` returns: EXPLAIN, without running it."""
    try:
        sql, params = qs.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # a search that can match nothing (queryset.none())
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        row = cursor.fetchone()
    if row is None:
        return None
    plan: Any = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    try:
        return int(plan[0]["Plan"]["Plan Rows"])
    except (TypeError, LookupError, ValueError):
        return None


def _estimated_rows(table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None
