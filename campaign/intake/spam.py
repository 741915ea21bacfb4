"""Spam samples (.eml, mbox): the relays in their `Received:` headers.

Only header blocks are read; bodies are skipped line by line, so an mbox of any size streams.
Each message's hops are walked from the top (our own infrastructure) down. The first hop from
outside was recorded by our own servers and is trusted; each hop below must have been recorded
by the host the hop above says it came from, else the chain is broken: the spammer could have
written everything below, so those hops are reported, not imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from typing import IO

from campaign.intake.addresses import BadValue, is_not_routed, normalize_ip
from campaign.intake.records import FileRejected, Item, RowError, Suspect

MAX_HEADER_LINES = 2000  # a header block longer than this is not mail
HEADER_LINE = re.compile(rb"^[!-9;-~]+:")  # RFC 5322 field name, then a colon
BRACKETED = re.compile(r"\[(?:ipv6:)?([0-9a-f:.]+)\]", re.IGNORECASE)
BARE_IP = re.compile(
    r"(?<![\w.:])([0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]*:[0-9a-f:.]*:[0-9a-f.]*)"
    r"(?![\w.:])",
    re.IGNORECASE,
)
# A dotted name whose last label is not all digits (so not an IPv4 address).
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_-]+\.)+[a-z0-9-]*[a-z][a-z0-9-]*\.?$", re.I)
TWO_LEVEL_SUFFIXES = {"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gob"}


@dataclass(slots=True)
class Header:
    line: int
    name: str
    value: str


@dataclass(slots=True)
class Hop:
    line: int
    text: str
    ip: str | None = None
    bad_ip: str = ""
    helo: str = ""
    rdns: str = ""
    by: str = ""
    at: datetime | None = None
    names: set[str] = field(default_factory=set)


def _clean_host(value: str) -> str:
    return value.strip("[]()<>;,").rstrip(".").lower()


def registered_domain(host: str) -> str:
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in TWO_LEVEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _clauses(text: str) -> dict[str, tuple[str, list[str]]]:
    """Split a Received value into its RFC 5321 clauses: keyword -> (word, comments)."""
    clauses: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    depth, comment, word = 0, "", ""
    words: list[tuple[str, bool]] = []
    for ch in text + " ":
        if depth:
            if ch == ")":
                depth -= 1
                if not depth:
                    words.append((comment, True))
                    comment = ""
                    continue
            elif ch == "(":
                depth += 1
            comment += ch
        elif ch == "(":
            if word:
                words.append((word, False))
                word = ""
            depth = 1
        elif ch.isspace():
            if word:
                words.append((word, False))
                word = ""
        else:
            word += ch
    for token, is_comment in words:
        keyword = token.lower()
        if not is_comment and keyword in ("from", "by", "via", "with", "id", "for"):
            current = keyword
            clauses.setdefault(current, ("", []))
        elif current is not None:
            value, comments = clauses[current]
            if is_comment:
                comments.append(token)
            elif not value:
                clauses[current] = (token, comments)
    return clauses


def _first_ip(texts: Iterable[str]) -> tuple[str | None, str]:
    """The peer address: bracketed first (what the receiving MTA saw), then a bare one."""
    texts = list(texts)
    for pattern in (BRACKETED, BARE_IP):
        for text in texts:
            for candidate in pattern.findall(text):
                if pattern is BARE_IP and candidate.count(":") < 2 and "." not in candidate:
                    continue  # "12:34" in a time of day, not an address
                try:
                    return normalize_ip(candidate), ""
                except BadValue:
                    if pattern is BRACKETED:
                        return None, candidate
    return None, ""


def mail_date(text: str) -> datetime | None:
    """An RFC 5322 date in UTC; None when it is missing, malformed or out of range."""
    if not text.strip():
        return None
    try:
        value = parsedate_to_datetime(text.strip())
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # a year of 30 digits overflows
        return None


def parse_received(line: int, value: str) -> Hop:
    text = " ".join(value.split())
    body, semicolon, date = text.rpartition(";")
    if not semicolon:
        body, date = text, ""
    hop = Hop(line=line, text=text[:500])
    hop.at = mail_date(date)
    clauses = _clauses(body)
    hop.by = _clean_host(clauses.get("by", ("", []))[0])
    if "from" not in clauses:
        return hop
    word, comments = clauses["from"]
    hop.ip, hop.bad_ip = _first_ip([*comments, word])
    word = _clean_host(word)
    helo_in_comment = ""
    for comment in comments:
        match = re.search(r"\bhelo[= ]\s*([^\s)\]]+)", comment, re.IGNORECASE)
        if match:
            helo_in_comment = _clean_host(match.group(1))
    if helo_in_comment:  # Exim, qmail: "from rdns ([ip] helo=HELO)"
        hop.helo = helo_in_comment
        hop.rdns = word if HOSTNAME.match(word) else ""
    else:  # Postfix, Sendmail: "from HELO (rdns [ip])"
        hop.helo = word
        for comment in comments:
            first = _clean_host(comment.split("[")[0].split(" ")[0]) if comment else ""
            if HOSTNAME.match(first) and first != "unknown":
                hop.rdns = first
                break
    hop.names = {n for n in (hop.helo, hop.rdns) if n and n != "unknown"}
    return hop


def _own(hop: Hop, own_domains: set[str]) -> bool:
    return any(name == d or name.endswith("." + d) for name in hop.names for d in own_domains)


def _recorded_by(lower: Hop, upper: Hop) -> bool:
    """Whether `lower`'s "by" host is the host `upper` says the message came from."""
    if not lower.by:
        return True
    if lower.by == upper.ip:
        return True
    try:
        return normalize_ip(lower.by) == upper.ip
    except BadValue:
        pass
    wanted = {registered_domain(n) for n in upper.names if HOSTNAME.match(n)}
    return lower.by in upper.names or registered_domain(lower.by) in wanted


def message_items(
    headers: list[Header], *, own_domains: Iterable[str], file_name: str, now: datetime
) -> Iterator[Item]:
    received = [h for h in headers if h.name == "received"]
    if not received:
        return
    message_id = next((h.value.strip()[:200] for h in headers if h.name == "message-id"), "")
    # Stored in JSON: PostgreSQL takes neither a NUL nor a lone surrogate there.
    message_id = (
        message_id.encode("utf-8", "surrogateescape")
        .decode("utf-8", "replace")
        .replace("\x00", "\ufffd")
    )
    sent = mail_date(next((h.value for h in headers if h.name == "date"), ""))
    hops = []
    for header in received:
        if any("\udc80" <= ch <= "\udcff" for ch in header.value):
            yield RowError(header.line, "undecodable bytes in the Received header")
            continue
        if "\x00" in header.value:
            yield RowError(header.line, "NUL byte in the Received header")
            continue
        hops.append(parse_received(header.line, header.value))
    if not hops:
        return
    own = {d.lower().strip(".") for d in own_domains if d}
    if hops[0].by and HOSTNAME.match(hops[0].by):
        own.add(registered_domain(hops[0].by))
    above: Hop | None = None
    outside_seen = False
    broken_at: Hop | None = None
    for hop in hops:
        if hop.bad_ip:
            yield RowError(hop.line, f"bad IP address {hop.bad_ip[:60]!r} in the Received header")
            continue
        if hop.ip is None:
            continue  # local submission ("from userid 1000"), nothing to probe
        internal = is_not_routed(hop.ip) or _own(hop, own)
        if broken_at is None and outside_seen and above and not _recorded_by(hop, above):
            said = ", ".join(sorted(above.names)) or above.ip or "?"
            broken_at = hop
            reason = (
                f"hop {hop.ip} not imported: recorded 'by {hop.by or '?'}', but the hop above "
                f"came from {said}; a forged Received header?"
            )
        elif broken_at is not None:
            reason = f"hop {hop.ip} not imported: below the broken chain at line {broken_at.line}"
        above = hop
        if internal:
            continue
        if broken_at is not None:
            yield RowError(hop.line, reason)
            continue
        outside_seen = True
        seen = hop.at or sent
        if seen is not None and seen > now:
            seen = now  # a clock that runs ahead must not push last_seen into the future
        yield Suspect(
            line=hop.line,
            ip=hop.ip,
            port=25,
            protocol="smtp",
            seen=seen,
            hostname=hop.rdns[:255],
            source="spam-sample",
            source_data={
                "spam": {
                    "file": file_name[:200],
                    "message_id": message_id,
                    "helo": hop.helo[:255],
                    "rdns": hop.rdns[:255],
                    "by": hop.by[:255],
                    "received": hop.text,
                }
            },
        )


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape").rstrip("\r\n")


def _header_value(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError):
        return value


class _HeaderBlocks:
    """Each message's header block, with line numbers; bodies are read past, not kept."""

    def __init__(self, handle: IO[bytes], *, mbox: bool) -> None:
        self.handle = handle
        self.mbox = mbox

    def __iter__(self) -> Iterator[tuple[int, list[Header] | RowError]]:
        in_headers = not self.mbox
        start = 1
        headers: list[Header] = []
        previous_blank = True
        count = 0
        for number, raw in enumerate(iter(lambda: self.handle.readline(1 << 20), b""), start=1):
            blank = not raw.strip(b"\r\n")
            if self.mbox and raw.startswith(b"From ") and previous_blank:
                if in_headers or headers:
                    yield start, headers
                start, headers, in_headers, count = number, [], True, 0
                previous_blank = False
                continue
            previous_blank = blank
            if not in_headers:
                continue
            if blank:
                in_headers = False
                if not self.mbox:
                    break
                continue
            count += 1
            if count > MAX_HEADER_LINES:
                yield start, RowError(start, "header block too long: not an e-mail message")
                in_headers, headers = False, []
                continue
            if raw[:1] in (b" ", b"\t") and headers:
                headers[-1].value += " " + _decode(raw).strip()
            elif HEADER_LINE.match(raw):
                name, _, value = _decode(raw).partition(":")
                headers.append(Header(number, name.strip().lower(), value.strip()))
            elif number == 1 and raw.startswith(b"From "):
                continue  # an .eml saved with its mbox separator
        if in_headers or headers:
            yield start, headers


def looks_like_message(head: bytes) -> bool:
    lines = head.lstrip(b"\r\n").splitlines()
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    return bool(lines) and HEADER_LINE.match(lines[0]) is not None


def spam_items(
    handle: IO[bytes], file_name: str, *, mbox: bool, own_domains: Iterable[str], head: bytes
) -> Iterator[Item]:
    if mbox and not head.lstrip(b"\r\n").startswith(b"From "):
        raise FileRejected(
            f"{file_name} is not an mbox: it does not start with a 'From ' separator line"
            + (
                " (it looks like a single message: use --format eml)"
                if looks_like_message(head)
                else "."
            )
        )
    if not mbox and not looks_like_message(head):
        raise FileRejected(
            f"{file_name} is not an e-mail message: it does not start with header lines "
            "such as 'Received: ...'."
        )
    return _spam_items(handle, file_name, mbox=mbox, own_domains=list(own_domains))


def _spam_items(
    handle: IO[bytes], file_name: str, *, mbox: bool, own_domains: list[str]
) -> Iterator[Item]:
    now = datetime.now(UTC)
    for _start, block in _HeaderBlocks(handle, mbox=mbox):
        if isinstance(block, RowError):
            yield block
            continue
        for header in block:
            if header.name in ("message-id", "date"):
                header.value = _header_value(header.value)
        yield from message_items(block, own_domains=own_domains, file_name=file_name, now=now)
