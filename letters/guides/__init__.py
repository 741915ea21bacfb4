"""Fix guides for the remediation page: per finding kind and detected software, in every language.

Pure Python on purpose (no Django at import), like letters.tone: the page, the tests and the
letter rendering all read the same data. Commands and configuration lines are language-neutral
and live in snippets.toml; each <lang>.toml holds the prose and the self-check list (the page's
interface strings are in the gettext catalogues under locale/). There is no English fallback: a
language without its own file raises KeyError.

In snippets, 192.0.2.10 (RFC 5737) stands for the server's own address, example.org for a
sender and example.com for an outside recipient; the prose says so where it matters. The page
shows each guide with the address and port of its own finding (`for_server`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

GUIDES_DIR = Path(__file__).resolve().parent
SNIPPETS_FILE = GUIDES_DIR / "snippets.toml"

KINDS: tuple[str, ...] = ("smtp_relay", "http_proxy", "socks_proxy")
SOFTWARE_KEYS: dict[str, tuple[str, ...]] = {
    "smtp_relay": ("postfix", "exim", "sendmail", "exchange", "opensmtpd", "qmail", "generic"),
    "http_proxy": ("squid", "tinyproxy", "apache", "nginx", "3proxy", "generic"),
    "socks_proxy": ("dante", "3proxy", "microsocks", "generic"),
}
STEP_KEYS: tuple[str, ...] = ("confirm", "change", "test")
GUIDE_FIELDS: tuple[str, ...] = ("title", "confirm", "change", "test")
SNIPPET_FIELDS: tuple[str, ...] = ("confirm", "change", "file", "test")
OWN_ADDRESS = "192.0.2.10"  # the placeholder for "your server's own address" in snippets

# Fingerprint families (scanning.probes.*_fingerprint) -> guide key, per kind. Matched on the
# lower-cased family as whole words, first match wins; anything else gets the generic guide.
# A family of another kind (Postfix reported on a proxy port) also gets the generic guide.
_FAMILY_RULES: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "smtp_relay": (
        (re.compile(r"\bpostfix\b"), "postfix"),  # also "Zimbra (Postfix)"
        (re.compile(r"\bexim\d*\b"), "exim"),
        (re.compile(r"\bsendmail\b"), "sendmail"),
        # The bare IIS SMTP service has no Receive connectors: the generic guide fits it better.
        (re.compile(r"\bexchange\b"), "exchange"),
        (re.compile(r"\bopensmtpd\b"), "opensmtpd"),
        (re.compile(r"\b(?:net|not)?qmail\b"), "qmail"),
    ),
    "http_proxy": (
        (re.compile(r"\bsquid\b"), "squid"),
        (re.compile(r"\btinyproxy\b"), "tinyproxy"),
        # "Apache httpd", "Apache mod_proxy", "Apache/2.4"; not Traffic Server or James.
        (re.compile(r"^apache(?:\b(?!\s*(?:traffic|james))|$)|\bmod_proxy\b|\bhttpd\b"), "apache"),
        (re.compile(r"\bnginx\b"), "nginx"),
        (re.compile(r"\b3proxy\b"), "3proxy"),
    ),
    "socks_proxy": (
        (re.compile(r"\bdante\b|\bsockd\b|\bdanted\b"), "dante"),
        (re.compile(r"\b3proxy\b"), "3proxy"),
        (re.compile(r"\bmicrosocks\b"), "microsocks"),
    ),
}
_PROTOCOL_KINDS = {
    "smtp": "smtp_relay",
    "http": "http_proxy",
    "https": "http_proxy",
    "socks4": "socks_proxy",
    "socks4a": "socks_proxy",
    "socks5": "socks_proxy",
}

StepKey = Literal["confirm", "change", "test"]


@dataclass(frozen=True)
class GuideStep:
    key: StepKey
    text: str  # prose, short paragraphs separated by a blank line, {file} filled in
    snippet: str  # commands or configuration lines, language-neutral; may be ""
    file: str  # the file the change goes into; only on the "change" step, else ""


@dataclass(frozen=True)
class Guide:
    kind: str
    software: str
    language: str
    title: str
    steps: list[GuideStep]
    checklist_title: str
    checklist: list[str]


def kind_for_protocol(protocol: str) -> str:
    try:
        return _PROTOCOL_KINDS[protocol.strip().lower()]
    except KeyError:
        raise ValueError(f"no finding kind for protocol {protocol!r}") from None


def normalise_software(family: str | None, kind: str) -> str:
    if kind not in SOFTWARE_KEYS:
        raise ValueError(f"unknown finding kind {kind!r}")
    name = " ".join((family or "").lower().split())
    for pattern, key in _FAMILY_RULES[kind]:
        if pattern.search(name):
            return key
    return "generic"


def languages() -> list[str]:
    return sorted(p.stem for p in GUIDES_DIR.glob("*.toml") if p.name != SNIPPETS_FILE.name)


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def snippets() -> dict[str, Any]:
    return _load(SNIPPETS_FILE)


def language_data(language: str) -> dict[str, Any]:
    """The parsed <language>.toml; KeyError when that language ships no guides."""
    code = language.strip().lower()
    path = GUIDES_DIR / f"{code}.toml"
    if code == SNIPPETS_FILE.stem or not re.fullmatch(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*", code):
        raise KeyError(language)
    if not path.is_file():
        raise KeyError(language)
    return _load(path)


def for_server(text: str, ip: str, port: int) -> str:
    """A guide's text with the placeholder address made the finding's own: the address in
    commands, ACLs and networks, and the port where a command connects to it."""
    v6 = ":" in ip
    host = f"[{ip}]" if v6 else ip
    own = re.escape(OWN_ADDRESS)
    text = re.sub(own + r"/32\b", f"{ip}/{128 if v6 else 32}", text)
    text = re.sub(own + r":\d+\b", f"{host}:{port}", text)
    text = re.sub(r"\btelnet " + own + r" \d+\b", f"telnet {ip} {port}", text)
    text = re.sub(r"--server " + own + r"\b", f"--server {host}:{port}", text)
    return re.sub(own + r"(?![\d.])", ip, text)


def guide_for(kind: str, software_family: str | None, language: str) -> Guide:
    data = language_data(language)  # first: an unknown language is a KeyError, never English
    software = normalise_software(software_family, kind)
    if software not in SOFTWARE_KEYS[kind]:  # a key given directly that this kind lacks
        software = "generic"
    prose = data[kind][software]
    snippet = snippets()[kind][software]
    file = snippet["file"]
    steps = [
        GuideStep(
            key=key,  # type: ignore[arg-type]
            text=prose[key].strip().replace("{file}", file),
            snippet=snippet[key].strip("\n"),
            file=file if key == "change" else "",
        )
        for key in STEP_KEYS
    ]
    return Guide(
        kind=kind,
        software=software,
        language=language.strip().lower(),
        title=prose["title"],
        steps=steps,
        checklist_title=data["checklist"]["title"],
        checklist=list(data["checklist"]["items"]),
    )
