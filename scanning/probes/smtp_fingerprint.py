"""Which MTA answered: a guess from the greeting, the EHLO reply and the error texts.

Banners are untrusted and often rewritten by administrators, so this only ever names a family
(and a version when the server states one); the remediation guide is picked from the family.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from scanning.probes.base import Software

_VERSION = r"(\d+(?:\.\d+)+[\w.\-]*)"


def _ms_family(version: str | None, ehlo: str) -> str:
    # Exchange advertises its own verbs; the bare IIS SMTP service (a frequent accidental relay)
    # shares the greeting and states a Windows build number as its version.
    if re.search(r"\b(XEXCH50|X-EXPS|X-ANONYMOUSTLS|XRDST|XSHADOW)", ehlo, re.I):
        return "Microsoft Exchange"
    if version and re.match(r"(5|6|7|8|10)\.\d", version):
        return "Microsoft IIS SMTP"
    return "Microsoft Exchange"


# (pattern on the banner or EHLO text, family or a function of (match, ehlo text), version group)
_Family = str | Callable[[re.Match[str], str], str]
_BANNER_RULES: list[tuple[re.Pattern[str], _Family, int | None]] = [
    (re.compile(r"\bExim\s+" + _VERSION, re.I), "Exim", 1),
    (re.compile(r"\bExim\b", re.I), "Exim", None),
    (re.compile(r"\bSendmail\s+(?:Switch-)?" + _VERSION, re.I), "Sendmail", 1),
    (re.compile(r"\bSendmail\b", re.I), "Sendmail", None),
    (
        re.compile(r"Microsoft ESMTP MAIL Service(?:,\s*Version:\s*" + _VERSION + ")?", re.I),
        lambda m, ehlo: _ms_family(m.group(1), ehlo),
        1,
    ),
    (re.compile(r"\bZimbra\b", re.I), "Zimbra (Postfix)", None),
    (re.compile(r"\bPostfix\s*\(" + _VERSION + r"\)", re.I), "Postfix", 1),
    (re.compile(r"\bPostfix\b", re.I), "Postfix", None),
    (re.compile(r"\bOpenSMTPD\b", re.I), "OpenSMTPD", None),
    (re.compile(r"\bnetqmail\b|\bqmail\b|\bnotqmail\b", re.I), "qmail", None),
    (re.compile(r"\bMDaemon\s+" + _VERSION, re.I), "MDaemon", 1),
    (re.compile(r"\bMDaemon\b", re.I), "MDaemon", None),
    (re.compile(r"\bhMailServer\b", re.I), "hMailServer", None),
    (re.compile(r"\bHaraka/" + _VERSION, re.I), "Haraka", 1),
    (re.compile(r"\bHaraka\b", re.I), "Haraka", None),
    (re.compile(r"\bKerio (?:Connect|MailServer)\s+" + _VERSION, re.I), "Kerio Connect", 1),
    (re.compile(r"\bKerio\b", re.I), "Kerio Connect", None),
    (re.compile(r"\bIceWarp\s+" + _VERSION, re.I), "IceWarp", 1),
    (re.compile(r"\bIceWarp\b|\bMerak\b", re.I), "IceWarp", None),
    (re.compile(r"\b(?:Lotus|IBM|HCL) Domino Release\s+([\w.]+)", re.I), "Domino", 1),
    (re.compile(r"\bDomino\b", re.I), "Domino", None),
    (re.compile(r"\bCommuniGate Pro\s+" + _VERSION, re.I), "CommuniGate Pro", 1),
    (re.compile(r"\bCommuniGate\b", re.I), "CommuniGate Pro", None),
    (re.compile(r"Messaging Server\s+" + _VERSION, re.I), "Oracle Messaging Server", 1),
    (re.compile(r"\bGroupWise Internet Agent\s+" + _VERSION, re.I), "GroupWise", 1),
    (re.compile(r"\bSmarterMail\b", re.I), "SmarterMail", None),
    (re.compile(r"\bAxigen\b", re.I), "Axigen", None),
    (re.compile(r"\bJAMES SMTP Server\s+" + _VERSION, re.I), "Apache James", 1),
    (re.compile(r"\bMercury/32\b|\bMercury Mail\b", re.I), "Mercury", None),
    (re.compile(r"\bArGoSoft\b", re.I), "ArGoSoft Mail Server", None),
    (re.compile(r"\bCourier\b", re.I), "Courier", None),
    (re.compile(r"\bMailEnable\b", re.I), "MailEnable", None),
    (re.compile(r"\bWinGate\b", re.I), "WinGate", None),
    (re.compile(r"\bZoneMTA\b", re.I), "ZoneMTA", None),
    (re.compile(r"\bmaddy\b", re.I), "maddy", None),
    (re.compile(r"secure-your-server-canary-sink", re.I), "Secure Your Server canary sink", None),
]

# Refusal texts each MTA uses by default, for servers whose greeting says nothing.
_REPLY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Relay access denied", re.I), "Postfix"),
    (re.compile(r"Recipient address rejected", re.I), "Postfix"),
    (re.compile(r"\brelay not permitted\b", re.I), "Exim"),
    (re.compile(r"\.\.\. Relaying denied", re.I), "Sendmail"),
    (re.compile(r"Unable to relay|Client was not authenticated", re.I), "Microsoft Exchange"),
    (re.compile(r"isn't in my list of allowed rcpthosts|\(#\d\.\d\.\d\)"), "qmail"),
    (re.compile(r"\bok \d{9,} qp \d+", re.I), "qmail"),
    (re.compile(r"Delivery not authorized, message refused", re.I), "OpenSMTPD"),
]


def _match_rules(text: str, ehlo_text: str) -> tuple[str, str | None] | None:
    for pattern, family, group in _BANNER_RULES:
        m = pattern.search(text)
        if not m:
            continue
        name = family(m, ehlo_text) if callable(family) else family
        version = m.group(group) if group is not None else None
        return name, version
    return None


def _texts(lines: Iterable[str]) -> str:
    return "\n".join(line for line in lines if line)


def smtp_software(banner: str, ehlo_lines: list[str], other_replies: list[str]) -> Software | None:
    ehlo_text = _texts(ehlo_lines)
    found = _match_rules(banner, ehlo_text)
    if found:
        return Software(family=found[0], version=found[1], source="banner")
    found = _match_rules(ehlo_text, ehlo_text)
    if found:
        return Software(family=found[0], version=found[1], source="ehlo")
    if re.search(r"\b(XEXCH50|X-EXPS|X-ANONYMOUSTLS)\b", ehlo_text, re.I):
        return Software(family="Microsoft Exchange", version=None, source="ehlo")
    if re.search(r"pleased to meet you", ehlo_text, re.I):
        # Sendmail's greeting phrase; OpenSMTPD copies it but names itself in the banner.
        return Software(family="Sendmail", version=None, source="ehlo")
    replies = _texts(other_replies)
    for pattern, family in _REPLY_RULES:
        if pattern.search(replies):
            return Software(family=family, version=None, source="reply")
    return None
