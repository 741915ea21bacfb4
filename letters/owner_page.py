"""What the owner's page says: each server's finding in words that never claim more than the
test showed, the fix guide for its software written for its own address, the re-check's
progress, and what happens next for the case's real state. Every text is in the gettext
catalogues (locale/); the fix guides' prose is data (letters/guides/)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from campaign import services as campaign_services
from campaign.models import Case, NextAction
from letters import guides
from letters.rendering import local_date
from letters.selectors import Recheck, recipient_corrections
from scanning.models import OPEN_VERDICTS, Finding, Verdict

TRANSCRIPT_EXCERPT_LINES = 40
# The probe redacts its own tokens; anything else shaped like one (32+ hex digits) goes too.
HEX_TOKEN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])")
LANGUAGE_NAMES = dict(settings.LANGUAGES)
# "Check again" only where a verified-closed server can still close the case: not after an
# opt-out, a withdrawal or a fix.
RECHECK_STATUSES = campaign_services.RECHECKABLE_STATUSES

KIND_TEXT = {
    "smtp_relay": gettext_lazy("Open mail relay (SMTP)"),
    "http_proxy": gettext_lazy("Open HTTP proxy"),
    "socks_proxy": gettext_lazy("Open SOCKS proxy"),
}
MEANING_TEXT = {
    "smtp_relay": gettext_lazy(
        "This mail server accepted a message from us, a stranger on the internet, for delivery "
        "to an outside address. Senders of unwanted mail look for such servers to hide where "
        "their messages come from, which can put your server on blocklists and slow it down."
    ),
    "http_proxy": gettext_lazy(
        "This server fetched a web page for us, a stranger on the internet. Others can use it to "
        "hide their own address, so that their traffic appears to come from your network and "
        "your address may end up on blocklists."
    ),
    "socks_proxy": gettext_lazy(
        "This server opened a connection onward for us, a stranger on the internet. Others can "
        "use it to hide their own address, so that their traffic, unwanted mail included, "
        "appears to come from your network."
    ),
}
STEP_HEADINGS = {
    "confirm": gettext_lazy("Confirm the problem"),
    "change": gettext_lazy("Make the change"),
    "test": gettext_lazy("Test the fix"),
}
CASE_STATUS_TEXT = {
    Case.Status.NEW: gettext_lazy("We are preparing this case."),
    Case.Status.NEEDS_REVIEW: gettext_lazy("Our staff are reviewing this case."),
    Case.Status.READY: gettext_lazy("A letter about this case is about to be sent."),
    Case.Status.NOTIFIED: gettext_lazy("We have written to you about this server."),
    Case.Status.REMINDED: gettext_lazy("We have sent you a reminder about this server."),
    Case.Status.ESCALATED: gettext_lazy("Our staff are following up on this case in person."),
    Case.Status.FIXED: gettext_lazy("Fixed: our latest check found the server closed. Thank you."),
    Case.Status.UNRESPONSIVE: gettext_lazy(
        "This case is closed without a confirmed fix. You can still fix the server and ask us "
        "to check again."
    ),
    Case.Status.WITHDRAWN: gettext_lazy(
        "This case has been withdrawn. Nothing more is needed from you."
    ),
    Case.Status.SUPPRESSED: gettext_lazy(
        "You asked us not to write to you about this server, and we will not."
    ),
}


def page_languages(case: Case) -> list[str]:
    """The case's language, then the partner's others that ship guides, and English always: an
    owner who reads none of the partner's languages well still gets a page they can use."""
    shipped = set(guides.languages())
    codes = [case.language, *case.partner.letter_languages, "en"]
    return [code for i, code in enumerate(codes) if code in shipped and code not in codes[:i]]


def _verdict_word(verdict: str | None) -> str:
    if verdict is None:
        return "pending"
    if verdict == Verdict.CLOSED:
        return "closed"
    if verdict == Verdict.CONFIRMED_OPEN:
        return "open"
    if verdict in OPEN_VERDICTS or verdict == Verdict.LIKELY_OPEN_WEAK:
        return "likely"  # medium or weak evidence: we say so, never "open" outright
    return "inconclusive"


def evidence_excerpt(finding: Finding) -> list[str]:
    """The exchange as the owner would see it in their own logs: our commands and the server's
    replies, tokens redacted, our internal notes left out."""
    lines = []
    for line in finding.transcript or []:
        direction = line.get("direction") if isinstance(line, dict) else None
        if direction not in ("<", ">"):
            continue
        text = HEX_TOKEN.sub("[REDACTED]", str(line.get("text", "")))
        lines.append(f"{direction} {text}")
        if len(lines) >= TRANSCRIPT_EXCERPT_LINES:
            lines.append("…")
            break
    return lines


def local_day(at: datetime, language: str, case: Case) -> str:
    # In the partner's country's form of the language: a UK owner reads "5 December 2026".
    return local_date(timezone.localdate(at), language, case.partner.country)


def finding_text(word: str, *, date: str, owner_asked: bool) -> str:
    """What we saw and when, in words that never claim more than the test showed: "still"
    only after a check the owner asked for, "probably" for medium or weak evidence."""
    if owner_asked:
        texts = {
            "open": gettext("Still open when we checked again on %(date)s"),
            "likely": gettext("Probably still open when we checked again on %(date)s"),
            "closed": gettext("Closed when we checked again on %(date)s"),
        }
    else:
        texts = {
            "open": gettext("Open when we checked on %(date)s"),
            "likely": gettext("Probably open when we checked on %(date)s"),
            "closed": gettext("Closed when we checked on %(date)s"),
        }
    text = texts.get(word) or gettext("No clear answer when we checked on %(date)s")
    return text % {"date": date}


def server_rows(case: Case, language: str, recheck: Recheck) -> list[dict]:
    rows = []
    findings = list(case.findings.select_related("target").order_by("probed_at", "id"))
    latest: dict[tuple[int, str], Finding] = {}
    evidence: dict[tuple[int, str], Finding] = {}
    for finding in findings:
        latest[(finding.target_id, finding.protocol)] = finding
        if finding.is_open:
            evidence[(finding.target_id, finding.protocol)] = finding
    per_target = Counter(target_id for target_id, _ in latest)
    for key, finding in sorted(
        latest.items(), key=lambda item: (item[1].target.ip, item[1].target.port, item[0][1])
    ):
        target_id, protocol = key
        row_id = str(target_id) if per_target[target_id] == 1 else f"{target_id}-{protocol}"
        shown = evidence.get(key, finding)
        try:
            kind = guides.kind_for_protocol(shown.protocol)
        except ValueError:  # "unknown": a finding always names what it spoke; be safe anyway
            kind = "smtp_relay"
        result = recheck.results.get(key)
        # A re-check that could not decide leaves the last known state standing.
        current = finding
        if result is not None and _verdict_word(result.verdict) in ("closed", "open", "likely"):
            current = result if result.probed_at >= finding.probed_at else finding
        status = _verdict_word(current.verdict)
        software = " ".join(p for p in (shown.software_family, shown.software_version) if p)
        rows.append(
            {
                "target_id": target_id,
                "row_id": row_id,
                "address": shown.target.ip,
                "port": shown.target.port,
                "kind": kind,
                "kind_text": KIND_TEXT[kind],
                "meaning": MEANING_TEXT[kind],
                "likely": _verdict_word(shown.verdict) == "likely",
                "status": status,
                "status_text": finding_text(
                    status,
                    date=local_day(current.probed_at, language, case),
                    owner_asked=current is result,
                ),
                "software": software,
                "evidence": evidence_excerpt(shown),
                "family": shown.software_family,
                "recheck": _recheck_row(recheck, key),
            }
        )
    return rows


def _recheck_row(recheck: Recheck, key: tuple[int, str]) -> dict[str, str]:
    if recheck.state == "none":
        return {}
    result = recheck.results.get(key)
    word = _verdict_word(result.verdict) if result is not None else "pending"
    if word == "pending" and recheck.state == "done":
        word = "inconclusive"  # refused or lost: we cannot say it is fixed
    texts = {
        "closed": gettext("Closed: your server refused our test. Thank you for fixing it."),
        "open": gettext(
            "Still open: your server accepted our test again. Please check the change and try "
            "again."
        ),
        "inconclusive": gettext(
            "Inconclusive: we could not get a clear answer from your server. Please try again "
            "later."
        ),
        "pending": gettext("Waiting for the result."),
    }
    texts["likely"] = texts["open"]
    return {"status": "open" if word == "likely" else word, "text": texts[word]}


def guides_for(rows: list[dict], language: str) -> list[dict]:
    """One guide per server and kind of finding, written for that server's own address: an owner
    with a mail server and a proxy gets each guide with the right one."""
    seen: set[tuple[str, str, str]] = set()
    shown = []
    for row in rows:
        key = (row["kind"], (row["family"] or "").lower(), row["address"])
        if key in seen:
            continue
        seen.add(key)
        guide = guides.guide_for(row["kind"], row["family"], language)
        ip, port = row["address"], row["port"]
        steps = [
            {
                "heading": STEP_HEADINGS[step.key],
                "text": guides.for_server(step.text, ip, port),
                "snippet": guides.for_server(step.snippet, ip, port),
                "file": step.file,
            }
            for step in guide.steps
        ]
        shown.append(
            {"guide": guide, "steps": steps, "address": ip, "port": port, "row_id": row["row_id"]}
        )
    return shown


def progress_text(recheck: Recheck) -> str:
    if recheck.state == "queued":
        return gettext(
            "Your check is in the queue. This page shows the result when it arrives; you can "
            "also reload it."
        )
    if recheck.state == "running":
        return gettext("We are testing your server now. This usually takes less than a minute.")
    return ""


def next_text(case: Case, language: str, *, opted_out: bool = False) -> str:
    """What happens next, for the case's real state: no reminder is promised or threatened
    where none will come, and "check again" is only mentioned where the page offers it."""
    status = case.status
    when = local_day(case.next_action_at, language, case) if case.next_action_at else ""
    agency = case.partner.localized(language)["agency"]
    if status == Case.Status.FIXED:
        return gettext(
            "Nothing more is needed. We will only write to you again about this server if a "
            "later check finds it open."
        )
    if status == Case.Status.SUPPRESSED or opted_out:
        return gettext(
            "We will not write to you again about this server and will send no reminders. The "
            "guide below stays here if you want to use it."
        )
    if status == Case.Status.WITHDRAWN:
        return gettext("Nothing more is needed from you.")
    if status == Case.Status.NEEDS_REVIEW:
        return gettext(
            "Our staff are reviewing this case. We send nothing more about it until they have."
        )
    if status == Case.Status.UNRESPONSIVE:
        return gettext(
            "This case is closed. If you fix the server later, you can still ask us to check it."
        )
    if status == Case.Status.ESCALATED:
        return gettext(
            "Staff of %(agency)s are following up on this case. When you have made the change, "
            "press “I fixed it — check again”."
        ) % {"agency": agency}
    if status == Case.Status.REMINDED:
        if when:
            return gettext(
                "When you have made the change, press “I fixed it — check again”. If the server "
                "is still open on %(date)s, staff of %(agency)s will follow up on this case."
            ) % {"date": when, "agency": agency}
        return gettext(
            "When you have made the change, press “I fixed it — check again”. Staff of "
            "%(agency)s may follow up on this case while the server is still open."
        ) % {"agency": agency}
    # Dated only when the next step is the reminder itself (not the first re-probe before it).
    if status == Case.Status.NOTIFIED and when and case.next_action == NextAction.REMINDER:
        return gettext(
            "When you have made the change, press “I fixed it — check again”. If our check on "
            "%(date)s still finds the server open, we will send you a reminder."
        ) % {"date": when}
    if status in (Case.Status.NEW, Case.Status.READY):
        return gettext(
            "When you have made the change, press “I fixed it — check again” below. We will "
            "tell you the result on this page."
        )
    return gettext(
        "When you have made the change, press “I fixed it — check again” below. We also check "
        "again ourselves from time to time and may send you a reminder while the server is "
        "still open."
    )


def confirmations(case: Case, language: str) -> list[str]:
    """What the recipient told us, each in its own words: a confirmation of exactly what was
    recorded, shown until staff have dealt with it (then the case's status says what changed)."""
    done = []
    for event in recipient_corrections(case):
        data = event.data or {}
        day = local_day(event.at, language, case)
        if data.get("correction") == "not_mine":
            done.append(
                gettext(
                    "On %(date)s you told us that this is not your server. Our staff will look "
                    "at it before we write about it again."
                )
                % {"date": day}
            )
        elif data.get("correction") == "other_contact":
            name, email = data.get("name", ""), data.get("email", "")
            contact = f"{name} <{email}>" if name else email
            done.append(
                gettext(
                    "On %(date)s you asked us to write to %(contact)s instead. Our staff will "
                    "check this before anything is sent to them."
                )
                % {"date": day, "contact": contact}
            )
    return done
