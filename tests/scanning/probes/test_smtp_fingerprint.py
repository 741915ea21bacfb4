from __future__ import annotations

import pytest

from scanning.probes.base import Software
from scanning.probes.smtp_fingerprint import smtp_software
from scanning.probes.smtp_sink import SINK_BANNER_MARKER

DATE = "Fri, 27 Nov 2026 17:00:00 +0000"
MS = "mail.example.com Microsoft ESMTP MAIL Service"


@pytest.mark.parametrize(
    ("banner", "family", "version"),
    [
        ("mail.example.com ESMTP Postfix (Debian/GNU)", "Postfix", None),
        ("mail.example.com ESMTP Postfix (Ubuntu)", "Postfix", None),
        ("mail.example.com ESMTP Postfix (3.7.11)", "Postfix", "3.7.11"),
        ("zimbra.example.com ESMTP Zimbra Postfix", "Zimbra (Postfix)", None),
        (f"mail.example.com ESMTP Exim 4.96 {DATE}", "Exim", "4.96"),
        (
            f"server.example.com ESMTP Exim 4.96.2 #2 {DATE}\n"
            "We do not authorize the use of this system to transport unsolicited,\n"
            "and/or bulk e-mail.",
            "Exim",
            "4.96.2",
        ),
        (f"mail.example.com ESMTP Sendmail 8.15.2/8.15.2; {DATE}", "Sendmail", "8.15.2"),
        (f"mx.example.com ESMTP Sendmail 8.14.4/8.14.4/Debian-8; {DATE}", "Sendmail", "8.14.4"),
        (
            f"mail.example.com Microsoft ESMTP MAIL Service ready at {DATE}",
            "Microsoft Exchange",
            None,
        ),
        (
            f"{MS}, Version: 10.0.17763.1 ready at {DATE}",
            "Microsoft IIS SMTP",
            "10.0.17763.1",
        ),
        (
            f"{MS}, Version: 6.0.3790.4675 ready at {DATE}",
            "Microsoft IIS SMTP",
            "6.0.3790.4675",
        ),
        ("mail.example.com ESMTP OpenSMTPD", "OpenSMTPD", None),
        (f"mail.example.com ESMTP MDaemon 23.5.2; {DATE}", "MDaemon", "23.5.2"),
        ("mail.example.com ESMTP hMailServer", "hMailServer", None),
        ("mail.example.com ESMTP Haraka/3.0.3 ready", "Haraka", "3.0.3"),
        ("mail.example.com Kerio Connect 9.4.2 ESMTP ready", "Kerio Connect", "9.4.2"),
        (f"mail.example.com ESMTP IceWarp 13.0.3.10; {DATE}", "IceWarp", "13.0.3.10"),
        (
            f"mail.example.com ESMTP Service (HCL Domino Release 12.0.2FP1) ready at {DATE}",
            "Domino",
            "12.0.2FP1",
        ),
        (
            "mail.example.com ESMTP CommuniGate Pro 6.3.1 is glad to see you!",
            "CommuniGate Pro",
            "6.3.1",
        ),
        (f"canary.test ESMTP {SINK_BANNER_MARKER} ready", "Secure Your Server canary sink", None),
    ],
)
def test_it_reads_the_banner(banner: str, family: str, version: str | None) -> None:
    assert smtp_software(banner, [], []) == Software(family, version, "banner")


def test_it_tells_exchange_from_iis_by_its_ehlo_verbs() -> None:
    banner = (
        f"mail.example.com Microsoft ESMTP MAIL Service, Version: 8.5.9600.16384 ready at {DATE}"
    )
    ehlo = ["mail.example.com Hello [192.0.2.1]", "X-EXPS GSSAPI NTLM", "XEXCH50", "8BITMIME"]
    assert smtp_software(banner, ehlo, []) == Software(
        "Microsoft Exchange", "8.5.9600.16384", "banner"
    )


def test_it_falls_back_to_ehlo_then_replies() -> None:
    hidden = "mail.example.com ESMTP"
    exchange_ehlo = ["mail.example.com Hello [192.0.2.1]", "X-ANONYMOUSTLS", "XEXCH50"]
    assert smtp_software(hidden, exchange_ehlo, []) == Software("Microsoft Exchange", None, "ehlo")
    sendmail_ehlo = ["mail.example.com Hello x [192.0.2.1], pleased to meet you", "HELP"]
    assert smtp_software(hidden, sendmail_ehlo, []) == Software("Sendmail", None, "ehlo")
    qmail = ["sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"]
    assert smtp_software(hidden, ["mail.example.com"], qmail) == Software("qmail", None, "reply")
    postfix = ["5.7.1 <rcpt@canary.test>: Relay access denied"]
    assert smtp_software(hidden, [], postfix) == Software("Postfix", None, "reply")
    assert smtp_software(hidden, [], ["relay not permitted"]) == Software("Exim", None, "reply")
    exchange = ["5.7.54 SMTP; Unable to relay recipient in non-accepted domain"]
    assert smtp_software(hidden, [], exchange) == Software("Microsoft Exchange", None, "reply")


def test_it_says_nothing_when_nothing_names_the_software() -> None:
    assert smtp_software("mail.example.com ESMTP", ["mail.example.com", "PIPELINING"], []) is None
    assert smtp_software("", [], []) is None
