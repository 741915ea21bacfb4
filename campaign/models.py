"""Partners, owners and cases: who is told what, by whom."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

LANGUAGE_CODES = {code for code, _ in settings.LANGUAGES}


def validate_country(value: str) -> None:
    if len(value) != 2 or not value.isascii() or not value.isalpha() or not value.isupper():
        raise ValidationError(f"{value!r} is not an ISO 3166-1 alpha-2 code such as GB or DE.")


def validate_languages(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError('List the partner\'s languages in order, e.g. ["de", "fr", "it"].')
    for code in value:
        if not isinstance(code, str) or code != code.lower() or not code:
            raise ValidationError(
                f"{code!r} is not a lower-case Django language code (pt-br, zh-hant)."
            )


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone name.") from exc


NAME_KEYS = ("agency", "country_name", "signatory_name", "signatory_title")


def validate_partner_names(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError('Give names per language: {"ja": {"agency": "…"}}.')
    for language, names in value.items():
        if language not in LANGUAGE_CODES:
            raise ValidationError(f"{language!r} is not a letter language code (ja, zh-hant).")
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise ValidationError(f"{language}: give a mapping of names to text.")
        unknown = sorted(set(names) - set(NAME_KEYS))
        if unknown:
            raise ValidationError(
                f"{language}: unknown key(s) {', '.join(unknown)}; use {', '.join(NAME_KEYS)}."
            )


class Partner(models.Model):
    """A national agency; the lead regulator is one partner too."""

    country = models.CharField(max_length=2, unique=True, validators=[validate_country])
    country_name = models.CharField(max_length=100)
    agency = models.CharField(max_length=200)
    languages = models.JSONField(
        validators=[validate_languages],
        help_text="Letter languages in order; ones without shipped letters are skipped.",
    )
    is_lead = models.BooleanField(default=False)
    signatory_name = models.CharField(max_length=200, blank=True)
    signatory_title = models.CharField(max_length=200, blank=True)
    reply_to = models.EmailField(blank=True)
    website = models.URLField(blank=True)
    letterhead = models.FileField(upload_to="letterheads/", blank=True)
    address = models.TextField(blank=True, help_text="Postal address printed on the letterhead.")
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone (e.g. Europe/Berlin): dates in exports, sending windows.",
    )
    automation_paused = models.BooleanField(
        default=False,
        help_text="The schedule leaves this partner's cases alone (re-probes, reminders, "
        "escalation) until resumed; they keep their dates.",
    )
    # Letters leave only inside this window of the partner's local time (both empty: any time).
    sending_window_start = models.TimeField(
        null=True, blank=True, help_text="Letters leave from this local time (e.g. 09:00)."
    )
    sending_window_end = models.TimeField(
        null=True, blank=True, help_text="…until this local time (e.g. 17:00; may wrap midnight)."
    )
    letters_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="This partner's own cap on letters sent per minute."
    )
    names = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_partner_names],
        help_text=(
            "The agency's name and signatory per letter language, e.g. "
            '{"ja": {"agency": "総務省", "signatory_name": "…", "signatory_title": "…"}}; '
            "a language without an entry uses the fields above."
        ),
    )

    class Meta:
        ordering = ["country"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_lead"], condition=models.Q(is_lead=True), name="partner_one_lead"
            ),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="partner_country_iso2"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    sending_window_start__isnull=True, sending_window_end__isnull=True
                )
                | models.Q(sending_window_start__isnull=False, sending_window_end__isnull=False),
                name="partner_sending_window_both_or_neither",
                violation_error_message="A sending window needs both a start and an end time.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.country_name} ({self.agency})"

    def localized(self, language: str) -> dict[str, str]:
        """Agency, country and signatory as written in `language` (the fields as a fallback)."""
        own = (self.names or {}).get(language) or {}
        return {key: own.get(key) or getattr(self, key) for key in NAME_KEYS}

    @property
    def letter_languages(self) -> list[str]:
        """The partner's languages that have shipped letters, in the partner's order."""
        return [code for code in self.languages if code in LANGUAGE_CODES]


class Membership(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        CASEWORKER = "caseworker", "Caseworker"
        APPROVER = "approver", "Approver"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "partner"], name="membership_unique_user_partner"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.partner.country} ({self.role})"


class StaffPreference(models.Model):
    """A staff member's own choices: the admin's language (blank: their partner's first)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_preference"
    )
    language = models.CharField(max_length=10, blank=True, choices=settings.LANGUAGES)

    def __str__(self) -> str:
        return f"{self.user} ({self.language or 'partner default'})"


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def current(self) -> Campaign | None:
        """The campaign new findings join: the active one that started last."""
        return self.filter(is_active=True).order_by("-starts_on", "-id").first()


class Campaign(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    starts_on = models.DateField(default=timezone.localdate)
    ends_on = models.DateField(
        null=True, blank=True, help_text="Remediation links expire after this."
    )
    reprobe_after_days = models.PositiveIntegerField(
        default=7, help_text="Days after the letter before the first re-probe of the servers."
    )
    reminder_after_days = models.PositiveIntegerField(
        default=21,
        help_text="Days after the letter; the reminder goes out only if a re-probe in the last "
        "48 hours saw the server still open.",
    )
    final_deadline_days = models.PositiveIntegerField(
        default=60, help_text="Days after the letter before a still-open case goes to the partner."
    )
    unresponsive_after_days = models.PositiveIntegerField(
        default=30,
        help_text="Days after escalation with no change before the case closes as unresponsive.",
    )
    is_active = models.BooleanField(default=True)
    is_paused = models.BooleanField(
        default=False,
        help_text="The schedule leaves every case of this campaign alone until resumed.",
    )
    scan_runs = models.ManyToManyField("scanning.ScanRun", blank=True, related_name="campaigns")

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_on"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__isnull=True)
                | models.Q(ends_on__gte=models.F("starts_on")),
                name="campaign_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ServerOwner(models.Model):
    """The organisation behind one or more servers, with an ordered chain of contacts."""

    name = models.CharField(max_length=255)
    rdap_handle = models.CharField(max_length=100, blank=True, db_index=True)
    country = models.CharField(max_length=2, blank=True, validators=[validate_country])
    partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        related_name="server_owners",
        help_text="Routed by the owner's country; the lead agency triages owners with no partner.",
    )
    preferred_language = models.CharField(max_length=10, blank=True)
    corrections = models.JSONField(
        default=dict, blank=True, help_text="Manual corrections; they win over automatic data."
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["partner", "name"]),
            models.Index(fields=["country"]),
            models.Index(fields=["name", "id"], name="owner_name_id"),  # the admin's order
        ]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    class Kind(models.TextChoices):
        ABUSE = "abuse", "Abuse contact"
        NETWORK = "network", "Network contact"
        TECHNICAL = "technical", "Technical contact"
        ADMINISTRATIVE = "administrative", "Administrative contact"
        PARTNER = "partner", "Partner agency (manual follow-up)"

    server_owner = models.ForeignKey(ServerOwner, on_delete=models.CASCADE, related_name="contacts")
    position = models.PositiveSmallIntegerField(help_text="0 is tried first.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    email = models.EmailField()
    source = models.CharField(max_length=16, default="manual", help_text="rdap, manual, ...")
    bounced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server_owner", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["server_owner", "position"], name="contact_unique_position"
            ),
            models.UniqueConstraint(fields=["server_owner", "email"], name="contact_unique_email"),
        ]
        # The admin finds owners and cases by a contact's address, in any case.
        indexes = [models.Index(Upper("email"), name="contact_email_upper")]

    def __str__(self) -> str:
        return f"{self.email} ({self.kind})"


class Attribution(models.Model):
    """What reverse DNS and RDAP said about one target, and to which owner it was attributed."""

    target = models.OneToOneField(
        "scanning.Target", on_delete=models.CASCADE, related_name="attribution"
    )
    server_owner = models.ForeignKey(
        ServerOwner, null=True, blank=True, on_delete=models.SET_NULL, related_name="attributions"
    )
    reverse_dns = models.CharField(max_length=255, blank=True)
    network_cidr = models.CharField(max_length=64, blank=True)
    network_name = models.CharField(max_length=255, blank=True)
    registrant_country = models.CharField(max_length=2, blank=True)
    abuse_email = models.EmailField(blank=True)
    asn = models.PositiveBigIntegerField(null=True, blank=True)
    rdap_source = models.URLField(blank=True)
    error = models.CharField(max_length=255, blank=True)
    attributed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # An owner's servers read from the index alone: the owner page, and a partner's share
        # of targets and findings in the admin's lists.
        indexes = [
            models.Index(fields=["server_owner", "target"], name="attribution_owner_target"),
            # The admin's search by abuse address, in any case.
            models.Index(Upper("abuse_email"), name="attribution_abuse_email_upper"),
        ]

    def __str__(self) -> str:
        return f"{self.target} → {self.server_owner or 'unattributed'}"


class NextAction(models.TextChoices):
    REPROBE = "reprobe", "Re-probe"
    REMINDER = "reminder", "Reminder if still open"
    ESCALATE = "escalate", "Hand to the partner"
    UNRESPONSIVE = "unresponsive", "Close as unresponsive"
    CLOSE = "close", "Close at campaign end"


class Attention(models.TextChoices):
    NOT_MINE = "not_mine", "Owner says: not my server"
    OTHER_CONTACT = "other_contact", "Owner gave another contact"
    OPT_OUT = "opt_out", "Owner opted out"
    BOUNCED = "bounced", "Every contact bounced"
    ESCALATED = "escalated", "Escalated: the partner follows up"
    LETTER_FAILED = "letter_failed", "A letter failed"
    REVIEW = "review", "Needs review"
    REOPENED = "reopened", "Open again after a fix"
    TRIAGE = "triage", "Owner with no partner: lead triage"


class Case(models.Model):
    """One server owner in one campaign: every finding of theirs, one letter."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        NEEDS_REVIEW = "needs_review", "Needs review"
        READY = "ready", "Ready"
        NOTIFIED = "notified", "Notified"
        REMINDED = "reminded", "Reminded"
        ESCALATED = "escalated", "Escalated"
        FIXED = "fixed", "Verified fixed"
        UNRESPONSIVE = "unresponsive", "Unresponsive"
        WITHDRAWN = "withdrawn", "Withdrawn"
        SUPPRESSED = "suppressed", "Suppressed"

    reference = models.CharField(max_length=20, unique=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="cases")
    server_owner = models.ForeignKey(ServerOwner, on_delete=models.PROTECT, related_name="cases")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="cases")
    language = models.CharField(max_length=10)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.NEW)
    findings = models.ManyToManyField("scanning.Finding", related_name="cases", blank=True)
    review_reason = models.CharField(max_length=255, blank=True)
    remediation_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    opened_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(default=timezone.now)
    next_action_at = models.DateTimeField(null=True, blank=True)
    # The schedule's state (campaign.schedule plans from these; services write them).
    next_action = models.CharField(max_length=16, choices=NextAction.choices, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    reprobe_requested_at = models.DateTimeField(null=True, blank=True)
    reprobe_run = models.ForeignKey(
        "scanning.ScanRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reminder_step_at = models.DateTimeField(null=True, blank=True)
    schedule_claimed_until = models.DateTimeField(null=True, blank=True)
    # What needs a person (the work queue); empty when nothing does.
    attention = models.CharField(max_length=16, choices=Attention.choices, blank=True)
    attention_at = models.DateTimeField(null=True, blank=True)
    attention_note = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server_owner", "campaign"], name="case_one_per_owner_campaign"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="needs_review") | ~models.Q(review_reason=""),
                name="case_review_has_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(reference__regex=r"^SYS-[0-9]{4}-[0-9]{6}$"),
                name="case_reference_format",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "status"]),
            models.Index(fields=["status", "next_action_at"]),
            # The admin's sorts, ties broken by id: a page read from the index either way.
            models.Index(fields=["status", "id"], name="case_status_id"),
            models.Index(fields=["opened_at", "id"], name="case_opened_id"),
            models.Index(fields=["next_action_at", "id"], name="case_next_action_id"),
            # The sweep: due cases only, so a sweep with nothing due reads an empty index range.
            models.Index(
                fields=["next_action_at"],
                condition=models.Q(next_action_at__isnull=False),
                name="case_schedule_due",
            ),
            models.Index(
                fields=["partner", "attention"],
                condition=~models.Q(attention=""),
                name="case_needs_attention",
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def next_action_label(self) -> str:
        """What happens next, for people: "re-probe on 14 Dec", "reminder on 28 Dec if still
        open"."""
        from campaign.schedule import next_action_label

        return next_action_label(self)


class CaseSequence(models.Model):
    """The last case number used in a year; references are SYS-<year>-<6 digits>."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "case number sequence"


class CaseEvent(models.Model):
    """Append-only audit of a case: every status change and every action, with its actor."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Case opened"
        STATUS_CHANGED = "status_changed", "Status changed"
        FINDING_ADDED = "finding_added", "Finding added"
        FINDING_CONFIRMED = "finding_confirmed", "Finding confirmed by the canary"
        FINDING_SETTLED = "finding_settled", "Finding settled at its deadline"
        REOPENED = "reopened", "Reopened by a new finding"
        LETTER_QUEUED = "letter_queued", "Letter queued"
        LETTER_SENT = "letter_sent", "Letter sent"
        LETTER_DELIVERED = "letter_delivered", "Letter delivered"
        LETTER_BOUNCED = "letter_bounced", "Letter bounced"
        LETTER_COMPLAINED = "letter_complained", "Complaint"
        RECHECK_REQUESTED = "recheck_requested", "Re-check requested"
        RECHECK_RESULT = "recheck_result", "Re-check result"
        CORRECTION = "correction", "Correction from recipient"
        OPT_OUT = "opt_out", "Opt-out"
        NOTE = "note", "Note"
        SCHEDULED = "scheduled", "Scheduled step"
        HANDLED = "handled", "Handled by staff"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=100, blank=True, help_text="system, recipient, worker…"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_status = models.CharField(max_length=14, blank=True)
    to_status = models.CharField(max_length=14, blank=True)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["case", "at", "id"]
        # By time, ties by id: the admin's list sorted either way, and its recent windows.
        indexes = [models.Index(fields=["at", "id"], name="caseevent_at_id")]

    def __str__(self) -> str:
        return f"{self.case} {self.kind} {self.at:%Y-%m-%d %H:%M}"


class SuppressionQuerySet(models.QuerySet["Suppression"]):
    def active(self, at: datetime | None = None) -> SuppressionQuerySet:
        """In force at `at` (now): the query form of `Suppression.is_active`."""
        at = at or timezone.now()
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=at))

    def affecting(self, partner: Partner | int) -> SuppressionQuerySet:
        """The ones that apply to this partner's cases: its own and the lead's global ones."""
        partner_id = partner if isinstance(partner, int) else partner.pk
        return self.filter(models.Q(partner__isnull=True) | models.Q(partner_id=partner_id))


class Suppression(models.Model):
    """Do not contact this address (or owner) until it expires.

    Scoped to a partner: it stops only that partner's letters, so one agency can never silence
    another's. A suppression with no partner is global; only the lead agency adds those.
    """

    class Reason(models.TextChoices):
        OPT_OUT = "opt_out", "Opt-out by the recipient"
        LEGAL_HOLD = "legal_hold", "Legal hold"
        COMPLAINT = "complaint", "Complaint (ESP)"
        OTHER = "other", "Other"

    partner = models.ForeignKey(
        Partner,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="suppressions",
        help_text="Whose letters it stops. Empty: every partner's (the lead agency's call).",
    )
    email = models.EmailField(blank=True, db_index=True)
    server_owner = models.ForeignKey(
        ServerOwner, null=True, blank=True, on_delete=models.CASCADE, related_name="suppressions"
    )
    reason = models.CharField(max_length=12, choices=Reason.choices)
    note = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(email="") | models.Q(server_owner__isnull=False),
                name="suppression_names_email_or_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email or self.server_owner} ({self.reason})"

    def is_active(self, at: datetime | None = None) -> bool:
        return self.expires_at is None or self.expires_at > (at or timezone.now())

    @property
    def is_global(self) -> bool:
        return self.partner_id is None


class ImportBatch(models.Model):
    """One uploaded file of suspects: what was kept and what was rejected, line by line."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        SHADOWSERVER = "shadowserver", "Shadowserver report"
        EML = "eml", "Spam sample (.eml)"
        MBOX = "mbox", "Spam samples (mbox)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="import_batches"
    )
    file_name = models.CharField(max_length=255)
    format = models.CharField(max_length=12, choices=Format.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rows_total = models.PositiveIntegerField(default=0)
    rows_kept = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, reason}], capped.")
    failure = models.TextField(blank=True)
    targets = models.ManyToManyField("scanning.Target", blank=True, related_name="import_batches")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"])]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.file_name} ({self.format})"


class RdapNetworkCache(models.Model):
    """A parsed RDAP answer for one network, reused for every address in it until it expires.

    Addresses are stored as fixed-width hex so one range query works for IPv4 and IPv6 on both
    SQLite and PostgreSQL (an IPv6 address does not fit in a bigint).
    """

    network_cidr = models.CharField(max_length=100, help_text="CIDR, or a start - end range.")
    ip_version = models.PositiveSmallIntegerField()
    start_hex = models.CharField(max_length=32)
    end_hex = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    rdap_source = models.URLField(max_length=500, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "RDAP network cache entry"
        verbose_name_plural = "RDAP network cache"
        constraints = [
            models.UniqueConstraint(
                fields=["ip_version", "start_hex", "end_hex"], name="rdap_cache_unique_range"
            )
        ]
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return self.network_cidr


class AttributionJob(models.Model):
    """One "Run attribution" from the admin: what it was asked to do and what each target gave."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_ids = models.JSONField(default=list)
    targets_total = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="attributed, errors, cases…")
    errors = models.JSONField(default=list, blank=True, help_text="[{target, error}]")
    error_count = models.PositiveIntegerField(default=0)
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"Attribution #{self.pk} ({self.targets_total} target(s))"
