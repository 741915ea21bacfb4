"""What an RDAP IP network answer says about its owner: network, registrant, contacts, country.

The five registries shape the same facts differently: ARIN nests the abuse contact inside the
registrant organisation and has no network `country`; RIPE and APNIC list an abuse role (IRT) at
the top level and registrants as bare handles (organisations and maintainers); LACNIC puts the
e-mail on entities with several roles at once; AFRINIC gives addresses as vCard `adr` values.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from campaign.attribution.countries import country_code

MAX_ENTITY_DEPTH = 5
FALLBACK_ROLES = ("technical", "administrative", "noc")


@dataclass
class NetworkInfo:
    start: str = ""
    end: str = ""
    cidrs: list[str] = field(default_factory=list)
    handle: str = ""
    name: str = ""
    country: str = ""
    registrant_handle: str = ""
    registrant_name: str = ""
    abuse_email: str = ""
    abuse_role: str = ""  # "abuse", or the role it fell back to
    network_contacts: list[tuple[str, str]] = field(default_factory=list)  # (role, e-mail)
    asn: int | None = None

    @property
    def owner_handle(self) -> str:
        return self.registrant_handle or self.handle

    @property
    def owner_name(self) -> str:
        return self.registrant_name or self.name or self.owner_handle

    def cidr_for(self, address: str) -> str:
        ip = ipaddress.ip_address(address)
        for cidr in self.cidrs:
            if ip in ipaddress.ip_network(cidr, strict=False):
                return cidr
        return self.cidrs[0] if self.cidrs else ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["network_contacts"] = [tuple(pair) for pair in known.get("network_contacts", [])]
        return cls(**known)


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # RIPE once wrote "62.239.237.0/32" and "2a00:2381:ffff::/128" as start and end addresses.
    text = str(value or "").strip().split("/")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidrs(data: dict[str, Any]) -> tuple[list[str], str, str]:
    cidrs = []
    for item in data.get("cidr0_cidrs") or []:
        if not isinstance(item, dict):
            continue
        prefix = item.get("v4prefix") or item.get("v6prefix")
        try:
            cidrs.append(str(ipaddress.ip_network(f"{prefix}/{item.get('length')}", strict=False)))
        except ValueError:
            continue
    start, end = _address(data.get("startAddress")), _address(data.get("endAddress"))
    if not cidrs and start is not None and end is not None and start.version == end.version:
        if start <= end:  # type: ignore[operator]  # same version, checked above
            cidrs = [str(n) for n in ipaddress.summarize_address_range(start, end)]
    if cidrs and (start is None or end is None):
        networks = [ipaddress.ip_network(c) for c in cidrs]
        start = min(n.network_address for n in networks)
        end = max(n.broadcast_address for n in networks)
    return cidrs, str(start) if start else "", str(end) if end else ""


def _vcard(entity: dict[str, Any]) -> list[list[Any]]:
    card = entity.get("vcardArray")
    if isinstance(card, list) and len(card) >= 2 and card[0] == "vcard":
        return [p for p in card[1] if isinstance(p, list) and len(p) >= 4]
    return []


def _params_pref(params: Any) -> int:
    try:
        return int(params.get("pref", 100)) if isinstance(params, dict) else 100
    except (TypeError, ValueError):
        return 100


def vcard_emails(entity: dict[str, Any]) -> list[str]:
    found = []
    for name, params, _type, value in (p[:4] for p in _vcard(entity)):
        if name != "email" or not isinstance(value, str):
            continue
        email = clean_email(value)
        if email:
            found.append((_params_pref(params), email))
    ordered: list[str] = []
    for _pref, email in sorted(found, key=lambda item: item[0]):
        if email not in ordered:
            ordered.append(email)
    return ordered


def clean_email(value: str) -> str:
    value = value.strip().removeprefix("mailto:")
    local, sep, domain = value.rpartition("@")
    if not sep:
        return ""
    value = f"{local}@{domain.lower()}"  # domains are case-insensitive; local parts may not be
    try:
        validate_email(value)
    except ValidationError:
        return ""
    return value


def vcard_name(entity: dict[str, Any]) -> str:
    props = {p[0]: p[3] for p in reversed(_vcard(entity))}
    for key in ("fn", "org"):
        value = props.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value if v)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def vcard_country(entity: dict[str, Any]) -> str:
    for name, params, _type, value in (p[:4] for p in _vcard(entity)):
        if name != "adr":
            continue
        params = params if isinstance(params, dict) else {}
        code = country_code(str(params.get("cc") or ""))  # RFC 8605
        if not code and isinstance(value, list) and len(value) >= 7:
            code = country_code(str(value[6] or ""))
        if not code and params.get("label"):
            lines = [ln.strip() for ln in str(params["label"]).replace("\\n", "\n").splitlines()]
            lines = [ln for ln in lines if ln]
            if lines:
                last = lines[-1]
                code = country_code(last) or country_code(last.rsplit(" ", 1)[-1])
        if code:
            return code
    return ""


def walk_entities(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], set[str]]]:
    """Every entity, nested ones too, breadth first: nearer the network means more relevant."""
    queue: deque[tuple[dict[str, Any], int]] = deque(
        (e, 0) for e in data.get("entities") or [] if isinstance(e, dict)
    )
    while queue:
        entity, depth = queue.popleft()
        roles = {str(r).lower() for r in entity.get("roles") or []}
        yield entity, roles
        if depth < MAX_ENTITY_DEPTH:
            queue.extend(
                (e, depth + 1) for e in entity.get("entities") or [] if isinstance(e, dict)
            )


def _is_maintainer(handle: str) -> bool:
    # RIPE-style registries list maintainer objects (XYZ-MNT) as registrants too.
    return handle.upper().endswith("-MNT") or handle.upper().startswith("MNT-")


def _asn(data: dict[str, Any]) -> int | None:
    for key in ("arin_originas0_originautnums", "originAutnums", "lacnic_originAutnum"):
        values = data.get(key)
        if isinstance(values, list) and values:
            try:
                return int(str(values[0]).upper().removeprefix("AS"))
            except ValueError:
                continue
    return None


def parse_network(data: dict[str, Any]) -> NetworkInfo:
    cidrs, start, end = _cidrs(data)
    info = NetworkInfo(
        start=start,
        end=end,
        cidrs=cidrs,
        handle=str(data.get("handle") or "")[:100],
        name=str(data.get("name") or "")[:255],
        asn=_asn(data),
    )
    entities = list(walk_entities(data))
    registrants = [(e, r) for e, r in entities if "registrant" in r]
    ranked = sorted(
        registrants,
        key=lambda item: (
            _is_maintainer(str(item[0].get("handle") or "")),
            not vcard_name(item[0]),
        ),
    )
    registrant = ranked[0][0] if ranked else None
    if registrant is not None and not _is_maintainer(str(registrant.get("handle") or "")):
        info.registrant_handle = str(registrant.get("handle") or "")[:100]
        info.registrant_name = vcard_name(registrant)[:255]
    info.country = country_code(str(data.get("country") or ""))
    if not info.country and registrant is not None:
        info.country = vcard_country(registrant)

    for role in ("abuse", *FALLBACK_ROLES):
        for entity, roles in entities:
            if role in roles:
                emails = vcard_emails(entity)
                if emails and not info.abuse_email:
                    info.abuse_email, info.abuse_role = emails[0], role
                if role != "abuse":
                    for email in emails:
                        if (role, email) not in info.network_contacts:
                            info.network_contacts.append((role, email))
    return info
