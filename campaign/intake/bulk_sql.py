"""The SQL that checks and converts staged CSV records, as the Python parsers would.

Every condition accepts only the plain forms the Python checks accept unchanged (a dotted quad
without leading zeros, a port of digits, an ISO timestamp in UTC, ...): a row that fails one is
read back and judged by the Python code, which normalises what it accepts (IPv6, "AS64500",
" 25 ") and names what it rejects. Each condition guards its own casts with CASE, because
PostgreSQL evaluates the terms of an AND in any order. Column i of the file is `r.f<i>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from campaign.intake.addresses import PORT_PROTOCOLS, PROTOCOL_NAMES
from campaign.intake.csvfiles import (
    SHADOWSERVER_REPORTS,
    csv_extra_columns,
    shadowserver_source,
)
from campaign.intake.store import TARGET_MERGE_ON_CONFLICT

_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
# ISO 8601 to the second, naive (read as UTC) or in UTC; years from 1000 so the cast is safe.
TIMESTAMP = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[ T]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](Z|\+00:00| UTC| GMT)?$"
)
ASN = "^([Aa][Ss])?[0-9]{1,10}$"
PRINTABLE = "^[!-~]*$"  # ASCII without spaces: nothing for Python's strip() to take away
SPACED = "^([!-~]([ -~]*[!-~])?)?$"  # ASCII, spaces inside only


EMPTY = "'{}'::jsonb"


def lit(value: str) -> str:
    """A text literal in a statement run with parameters (so % is doubled)."""
    return "'" + value.replace("'", "''").replace("%", "%%") + "'"


@dataclass(frozen=True)
class Checks:
    """SQL over a staged record `r`: the condition for the fast path and the typed values."""

    where: str  # empty: every staged row was checked before (csv_line_pattern)
    ip: str
    port: str
    protocol: str
    hostname: str
    asn: str
    country: str
    seen: str  # NULL: the import's own time
    source: str
    data: str


class _Fields:
    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def __call__(self, name: str) -> str:
        """The first column of that name (as the Python parsers read it), or an empty text."""
        if name in self.columns:
            return f"r.f{self.columns.index(name)}"
        return "''"


def _ip_ok(ip: str) -> str:
    return (
        f"CASE WHEN {ip} ~ {lit(IPV4)} THEN split_part({ip}, '.', 1)::int NOT BETWEEN 224 AND 239"
        f" AND {ip} <> '0.0.0.0' ELSE false END"
    )


def _port_ok(port: str) -> str:
    return (
        f"CASE WHEN {port} ~ '^[0-9]{{1,5}}$' THEN {port}::int BETWEEN 1 AND 65535 ELSE false END"
    )


def _by_port(port: str) -> str:
    whens = " ".join(f"WHEN '{p}' THEN {lit(name)}" for p, name in PORT_PROTOCOLS.items())
    return f"CASE ltrim({port}, '0') {whens} ELSE 'unknown' END"


def _timestamp_ok(text: str) -> str:
    # Days 29 to 31 exist in some months only: the month's last day decides.
    month = f"(substr({text}, 1, 7) || '-01')::date"
    last_day = f"extract(day FROM {month} + interval '1 month - 1 day')"
    return (
        f"CASE WHEN {text} = '' THEN true WHEN {text} ~ {lit(TIMESTAMP)} THEN "
        f"substr({text}, 9, 2) <= '28' OR {last_day} >= substr({text}, 9, 2)::int ELSE false END"
    )


def _timestamp(text: str) -> str:
    return (
        f"CASE WHEN {text} = '' THEN NULL ELSE left({text}, 19)::timestamp AT TIME ZONE 'UTC' END"
    )


def _asn_ok(asn: str) -> str:
    return (
        f"CASE WHEN {asn} = '' THEN true WHEN {asn} ~ {lit(ASN)} THEN "
        f"ltrim(upper({asn}), 'AS')::bigint < 4294967296 ELSE false END"
    )


def _asn(asn: str) -> str:
    return f"NULLIF(CASE WHEN {asn} = '' THEN 0 ELSE ltrim(upper({asn}), 'AS')::bigint END, 0)"


def _country_ok(country: str) -> str:
    return f"{country} ~ '^([A-Za-z]{{2}})?$'"


def _object(pairs: list[tuple[str, str]]) -> str:
    """jsonb of the non-empty values (at most 50 pairs per jsonb_build_object call)."""
    parts = []
    for start in range(0, len(pairs), 50):
        args = ", ".join(f"{lit(k)}, {v}" for k, v in pairs[start : start + 50])
        parts.append(f"jsonb_build_object({args})")
    return f"jsonb_strip_nulls({' || '.join(parts) or EMPTY})"


# A plain line of a suspect list whose every field is in the form Python would store unchanged,
# as bytes patterns per column; a line that does not match is read and judged by Python.
_BYTE_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_FIRST_OCTET = rb"(?:25[0-5]|24[0-9]|22[0-3]|2[01][0-9]|1[0-9][0-9]|[1-9][0-9]|[1-9])"  # unicast
_PORT = rb"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# Days 29 to 31 do not exist in every month: Python judges those.
_WHEN = (
    rb"(?:[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])[ T]"
    rb"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:Z|\+00:00)?)?"
)


def _printable(delimiter: bytes, spaces: bool = False) -> bytes:
    """A character class of printable ASCII but the delimiter (and the space unless asked)."""
    first = b" " if spaces else b"!"
    d = delimiter[0]
    if not first[0] <= d <= 0x7E:
        return b"[" + re.escape(first) + b"-~]"
    below = re.escape(first) + b"-" + re.escape(bytes([d - 1])) if d > first[0] else b""
    above = re.escape(bytes([d + 1])) + b"-~" if d < 0x7E else b""
    return b"[" + below + above + b"]"


def csv_line_pattern(columns: list[str], delimiter: str) -> re.Pattern[bytes]:
    sep = delimiter.encode()
    word = _printable(sep)
    spaced = _printable(sep, spaces=True)
    names = b"|".join(re.escape(name.encode()) for name in sorted(PROTOCOL_NAMES, key=len))
    patterns = {
        "ip": _FIRST_OCTET + rb"(?:\." + _BYTE_OCTET + rb"){3}",
        "port": _PORT,
        "protocol": rb"(?:" + names + rb")?",
        "hostname": word + b"*",
        "asn": rb"(?:(?:AS|as)?[1-9][0-9]{0,8})?",
        "country": rb"(?:[A-Za-z]{2})?",
        "first_seen": _WHEN,
        "last_seen": b"",  # a later last_seen goes into source_data as Python writes it
        "source": b"(?:" + word + b"(?:" + spaced + b"*" + word + b")?)?",
    }
    other = b"[^" + re.escape(sep) + b"]*"
    fields = []
    for i, name in enumerate(columns):
        # Only a column's first occurrence is read; any other is kept as it is or ignored.
        first = columns.index(name) == i
        fields.append(patterns.get(name, other) if first else other)
    return re.compile(re.escape(sep).join(fields))


def csv_values(columns: list[str]) -> Checks:
    """The typed values of a line csv_line_pattern accepted: casts, no checks."""
    field = _Fields(columns)
    port, protocol = field("port"), field("protocol")
    names = " ".join(f"WHEN {lit(raw)} THEN {lit(name)}" for raw, name in PROTOCOL_NAMES.items())
    extra = list(dict.fromkeys(csv_extra_columns(columns)))
    kept = [(name, f"NULLIF({field(name)}, '')") for name in extra]
    data = EMPTY
    if kept:
        anything = " OR ".join(f"{field(name)} <> ''" for name in extra)
        data = (
            f"CASE WHEN {anything} THEN jsonb_build_object('csv', {_object(kept)}) ELSE {data} END"
        )
    asn = field("asn")
    return Checks(
        where="",
        ip=field("ip"),
        port=port,
        protocol=f"CASE {protocol} WHEN '' THEN {_by_port(port)} {names} END",
        hostname=f"left({field('hostname')}, 255)",
        asn=f"CASE WHEN {asn} = '' THEN NULL ELSE ltrim(upper({asn}), 'AS')::bigint END",
        country=f"upper({field('country')})",
        seen=_timestamp(field("first_seen")),
        source=f"COALESCE(NULLIF(left({field('source')}, 100), ''), 'csv')",
        data=data,
    )


def _socks(tags: str) -> str:
    return (
        f"CASE WHEN strpos({tags}, 'socks5') > 0 THEN 'socks5' "
        f"WHEN strpos({tags}, 'socks4') > 0 THEN 'socks4' ELSE 'socks5' END"
    )


def shadowserver_checks(columns: list[str], report: str | None) -> Checks:
    field = _Fields(columns)
    ip, port, tag = field("ip"), field("port"), field("tag")
    tags = f"lower({tag})"
    kind = SHADOWSERVER_REPORTS.get(report or "")
    if kind == "socks":
        protocol = _socks(tags)
    elif kind is not None:
        protocol = lit(kind)
    else:
        protocol = (
            f"CASE WHEN strpos({tags}, 'socks') > 0 THEN {_socks(tags)} "
            f"WHEN strpos({tags}, 'smtp') > 0 THEN 'smtp' "
            f"WHEN strpos({tags}, 'proxy') > 0 OR strpos({tags}, 'http') > 0 THEN 'http' "
            f"ELSE {_by_port(port)} END"
        )
    # Every named column that is not empty, a later column of the same name first (a dict).
    kept = []
    for name in dict.fromkeys(c for c in columns if c and not (report and c == "report")):
        indexes = [i for i, c in enumerate(columns) if c == name]
        values = ", ".join(f"NULLIF(r.f{i}, '')" for i in reversed(indexes))
        kept.append((name, f"COALESCE({values})"))
    if report:
        kept.append(("report", lit(report)))
    geo = field("geo")
    where = [
        _ip_ok(ip),
        _port_ok(port),
        _timestamp_ok(field("timestamp")),
        f"{tag} ~ '^[ -~]*$'",
        f"{field('hostname')} ~ {lit(PRINTABLE)}",
        _asn_ok(field("asn")),
        _country_ok(geo),
    ]
    return Checks(
        where=" AND ".join(f"({w})" for w in where),
        ip=ip,
        port=port,
        protocol=protocol,
        hostname=f"left({field('hostname')}, 255)",
        asn=_asn(field("asn")),
        country=f"CASE upper({geo}) WHEN 'ZZ' THEN '' ELSE upper({geo}) END",
        seen=_timestamp(field("timestamp")),
        source=lit(shadowserver_source(report)),
        data=f"jsonb_build_object('shadowserver', {_object(kept)})",
    )


def _latest(expr: str, present: str) -> str:
    """The value on the row read last where it is present: max() of a line-prefixed text is a
    plain hashed aggregate, where array_agg(... ORDER BY) sorts every group."""
    return f"max(lpad(line::text, 10, '0') || {expr}) FILTER (WHERE {present})"


def merge_sql(checks: Checks) -> str:
    """Merge the chunk's accepted rows into Target in line order (the rules of store._merge) and
    link them to the batch. The chunk's own duplicates are folded first, one row per key: the
    latest value of each field, the sources in the order first seen."""
    return f"""
WITH accepted AS (
  SELECT r.line, ({checks.ip})::inet AS ip, ({checks.port})::int AS port,
    ({checks.protocol})::text AS protocol, {checks.hostname} AS hostname, {checks.asn} AS asn,
    {checks.country} AS country, COALESCE({checks.seen}, %(now)s) AS seen,
    {checks.source} AS source, {checks.data} AS data
  FROM intake_raw r {f"WHERE {checks.where}" if checks.where else ""}
  UNION ALL
  SELECT line, ip, port, protocol, hostname, asn, country, COALESCE(seen, %(now)s), source, data
  FROM intake_checked
), merged AS (
  SELECT ip, port, protocol,
    COALESCE(substr({_latest("hostname", "hostname <> ''")}, 11), '') AS hostname,
    substr({_latest("asn::text", "asn IS NOT NULL")}, 11)::bigint AS asn,
    COALESCE(substr({_latest("country", "country <> ''")}, 11), '') AS geo_country,
    min(seen) AS first_seen, max(seen) AS last_seen,
    CASE WHEN min(source) = max(source) THEN jsonb_build_array(min(source)) ELSE (
      SELECT jsonb_agg(s.source ORDER BY s.first)
      FROM (SELECT substr(x, 11) AS source, min(x) AS first
            FROM unnest(array_agg(lpad(line::text, 10, '0') || source)) AS x GROUP BY 1) s
    ) END AS sources,
    COALESCE(substr({_latest("data::text", "data <> '{}'::jsonb")}, 11)::jsonb, '{{}}'::jsonb)
      AS source_data
  FROM accepted GROUP BY ip, port, protocol
), stored AS (
  INSERT INTO scanning_target (ip, port, protocol, hostname, asn, geo_country, first_seen,
    last_seen, sources, source_data, created_at)
  SELECT ip, port, protocol, hostname, asn, geo_country, first_seen, last_seen, sources,
    source_data, %(now)s
  FROM merged
{TARGET_MERGE_ON_CONFLICT}  RETURNING id
)
INSERT INTO campaign_importbatch_targets (importbatch_id, target_id)
SELECT %(batch)s, id FROM stored
ON CONFLICT DO NOTHING
"""
