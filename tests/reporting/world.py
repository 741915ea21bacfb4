"""A hand-built campaign whose every figure is worked out by hand in the tests that use it.

On top of tests.base's world (Alpha's and Beta's one case each, confirmed open, strong):

Alpha (GB)  .10 smtp  the base case, sent to review; a letter that failed to send
            .20 http  likely-open medium (squid), then closed; case fixed 10 days after the
                      first letter (delivered), no reminder
            .30 socks5  weak, then confirmed strong (dante), then closed; first letter 40 days
                      ago, reminder 21 days later, fixed 30 days after the first letter
            .40 smtp  strong (exim); first letter 15 days ago bounced, the second contact's
                      complained; still notified
Beta (DE)   base case (ready); .20 http weak (tinyproxy); case escalated after a letter 60 days
            ago and a reminder 35 days ago, both delivered
Lead (US)   .50 smtp strong, owner in the lead's triage (needs review)
nobody      203.0.113.5 socks4 likely-open medium, 203.0.113.6 smtp closed: not attributed
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from campaign import services
from campaign.models import Attribution, Case, Contact, Partner, ServerOwner
from letters.models import Letter
from scanning.models import Finding, Target

DAY = timedelta(days=1)


def _target(ip: str, port: int, protocol: str, at: datetime, owner: ServerOwner | None) -> Target:
    target = Target.objects.create(ip=ip, port=port, protocol=protocol, first_seen=at, last_seen=at)
    if owner is not None:
        Attribution.objects.create(target=target, server_owner=owner, network_cidr=f"{ip}/32")
    return target


def _finding(
    target: Target, verdict: str, evidence: str, at: datetime, software: str = ""
) -> Finding:
    return Finding.objects.create(
        target=target,
        protocol=target.protocol,
        verdict=verdict,
        evidence_level=evidence,
        software_family=software,
        probed_at=at,
    )


def _owner(partner: Partner, name: str) -> ServerOwner:
    owner = ServerOwner.objects.create(name=name, country=partner.country, partner=partner)
    Contact.objects.create(
        server_owner=owner,
        position=0,
        kind="abuse",
        email=f"abuse@{name.lower().replace(' ', '-')}.example",
    )
    return owner


def _case(
    t: Any, owner: ServerOwner, findings: list[Finding], status: str, changed: datetime
) -> Case:
    case = Case.objects.create(
        reference=services.next_case_reference(changed.year),
        campaign=t.campaign,
        server_owner=owner,
        partner=owner.partner,
        language="en",
        status=status,
        # A case in review always says why (a check constraint).
        review_reason="Checked by hand." if status == Case.Status.NEEDS_REVIEW else "",
        status_changed_at=changed,
        opened_at=changed - 60 * DAY,
    )
    case.findings.add(*findings)
    return case


def _letter(case: Case, kind: str, email: str, status: str, sent: datetime | None) -> Letter:
    return Letter.objects.create(
        case=case, kind=kind, language="en", recipient_email=email, status=status, sent_at=sent
    )


def build(t: Any, now: datetime) -> None:
    """Adds the world above to a BaseTestCase class `t`; `now` is what the figures are as of."""
    alpha_finding = t.alpha_case.findings.get()
    Finding.objects.filter(pk=alpha_finding.pk).update(
        probed_at=now - 70 * DAY, software_family="postfix"
    )
    Case.objects.filter(pk=t.alpha_case.pk).update(
        status=Case.Status.NEEDS_REVIEW, review_reason="Checked by hand."
    )
    _letter(t.alpha_case, "initial", "abuse@alpha.example", Letter.Status.FAILED, None)

    a2 = _owner(t.alpha, "Alpha Two")
    tg = _target("192.0.2.20", 3128, "http", now - 40 * DAY, a2)
    f = _finding(tg, "likely-open", "medium", now - 40 * DAY, "squid")
    _finding(tg, "closed", "none", now - 20 * DAY)
    case = _case(t, a2, [f], Case.Status.FIXED, now - 20 * DAY)
    _letter(case, "initial", "abuse@alpha-two.example", Letter.Status.DELIVERED, now - 30 * DAY)

    a3 = _owner(t.alpha, "Alpha Three")
    tg = _target("192.0.2.30", 1080, "socks5", now - 50 * DAY, a3)
    weak = _finding(tg, "likely-open-weak", "weak", now - 50 * DAY)
    strong = _finding(tg, "confirmed-open", "strong", now - 45 * DAY, "dante")
    _finding(tg, "closed", "none", now - 10 * DAY)
    case = _case(t, a3, [weak, strong], Case.Status.FIXED, now - 10 * DAY)
    _letter(case, "initial", "abuse@alpha-three.example", Letter.Status.DELIVERED, now - 40 * DAY)
    _letter(case, "reminder", "abuse@alpha-three.example", Letter.Status.DELIVERED, now - 19 * DAY)

    a4 = _owner(t.alpha, "Alpha Four")
    tg = _target("192.0.2.40", 25, "smtp", now - 20 * DAY, a4)
    f = _finding(tg, "confirmed-open", "strong", now - 20 * DAY, "exim")
    case = _case(t, a4, [f], Case.Status.NOTIFIED, now - 15 * DAY)
    _letter(case, "initial", "abuse@alpha-four.example", Letter.Status.BOUNCED, now - 15 * DAY)
    _letter(case, "initial", "noc@alpha-four.example", Letter.Status.COMPLAINED, now - 14 * DAY)

    beta_finding = t.beta_case.findings.get()
    Finding.objects.filter(pk=beta_finding.pk).update(probed_at=now - 70 * DAY)
    b2 = _owner(t.beta, "Beta Two")
    tg = _target("198.51.100.20", 8080, "http", now - 65 * DAY, b2)
    f = _finding(tg, "likely-open-weak", "weak", now - 65 * DAY, "tinyproxy")
    case = _case(t, b2, [f], Case.Status.ESCALATED, now - 5 * DAY)
    _letter(case, "initial", "abuse@beta-two.example", Letter.Status.DELIVERED, now - 60 * DAY)
    _letter(case, "reminder", "abuse@beta-two.example", Letter.Status.DELIVERED, now - 35 * DAY)

    lead_owner = _owner(t.lead, "Triage Owner")
    tg = _target("203.0.113.50", 25, "smtp", now - 3 * DAY, lead_owner)
    f = _finding(tg, "confirmed-open", "strong", now - 3 * DAY)
    case = _case(t, lead_owner, [f], Case.Status.NEEDS_REVIEW, now - 3 * DAY)
    Case.objects.filter(pk=case.pk).update(
        review_reason="No partner agency for FR: lead agency triage."
    )

    tg = _target("203.0.113.5", 1080, "socks4", now - 2 * DAY, None)
    _finding(tg, "likely-open", "medium", now - 2 * DAY)
    tg = _target("203.0.113.6", 25, "smtp", now - 2 * DAY, None)
    _finding(tg, "closed", "none", now - 2 * DAY)
