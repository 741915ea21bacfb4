"""Letter templates, letters and what the ESP told us about them."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from campaign.models import Case, Contact, Partner


class LetterKind(models.TextChoices):
    INITIAL = "initial", "Initial advisory"
    REMINDER = "reminder", "Reminder"
    FIXED = "fixed", "Thanks: verified fixed"


class LetterTemplate(models.Model):
    """One version of a partner's letter of one kind in one language. Edits make new versions."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        APPROVED = "approved", "Approved"
        RETIRED = "retired", "Retired"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="letter_templates")
    kind = models.CharField(max_length=10, choices=LetterKind.choices)
    language = models.CharField(max_length=10)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    subject = models.CharField(max_length=255)
    body_html = models.TextField()
    body_text = models.TextField(
        blank=True, help_text="Plain-text alternative; derived from HTML if empty."
    )
    source_path = models.CharField(
        max_length=255, blank=True, help_text="Shipped file it was loaded from."
    )
    tone_report = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "kind", "language", "version"], name="template_unique_version"
            ),
            models.UniqueConstraint(
                fields=["partner", "kind", "language"],
                condition=models.Q(status="approved"),
                name="template_one_approved",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="approved")
                | (models.Q(approved_by__isnull=False) & models.Q(approved_at__isnull=False)),
                name="template_approval_recorded",
            ),
        ]
        indexes = [models.Index(fields=["partner", "language", "status"])]

    def __str__(self) -> str:
        return f"{self.partner.country} {self.kind}/{self.language} v{self.version} ({self.status})"


class Letter(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        FAILED = "failed", "Failed"
        # Handed to the ESP, then the worker died before recording the answer and no tracking
        # event settles it: a person decides ("mark sent" or "send again"), nothing guesses.
        UNKNOWN = "unknown", "Unknown: needs a person"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="letters")
    kind = models.CharField(max_length=10, choices=LetterKind.choices, default=LetterKind.INITIAL)
    language = models.CharField(max_length=10)
    template = models.ForeignKey(
        LetterTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="letters"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="letters"
    )
    recipient_email = models.EmailField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    esp_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    error = models.TextField(blank=True)
    pdf = models.FileField(upload_to="letters/%Y/%m/", blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    # The outbox: the database says what should happen; the broker only rings the bell.
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Not dispatched before (back-off after a temporary error)."
    )
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="Last handed to a worker (counts against the send rate)."
    )
    claimed_by = models.CharField(max_length=200, blank=True, help_text="Worker task holding it.")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="The dispatch or send claim expires then."
    )
    handed_at = models.DateTimeField(
        null=True, blank=True, help_text="Given to the ESP; from here a resend could duplicate."
    )
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            # A letter is never sent twice: one letter of a kind to one address per case.
            models.UniqueConstraint(
                fields=["case", "kind", "recipient_email"], name="letter_once_per_recipient"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "status_changed_at"]),
            models.Index(fields=["status", "lease_until"]),
            models.Index(fields=["dispatched_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.case.reference} {self.kind} → {self.recipient_email or '?'} ({self.status})"


class DeliveryEvent(models.Model):
    """One tracking event from the ESP, stored once."""

    esp = models.CharField(max_length=20)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=20, db_index=True)
    letter = models.ForeignKey(
        Letter, null=True, blank=True, on_delete=models.SET_NULL, related_name="delivery_events"
    )
    message_id = models.CharField(max_length=255, blank=True)
    recipient = models.EmailField(blank=True)
    bounce_kind = models.CharField(max_length=4, blank=True, help_text="hard or soft")
    description = models.TextField(blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp", "event_id"], name="delivery_event_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} {self.recipient}"


class RemediationLink(models.Model):
    """The recipient's way in: a random token, stored only as its sha256, that expires."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="remediation_links")
    letter = models.ForeignKey(
        Letter, null=True, blank=True, on_delete=models.SET_NULL, related_name="remediation_links"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.case.reference} link {self.token_hash[:8]}… until {self.expires_at:%Y-%m-%d}"

    def is_valid(self, at: datetime | None = None) -> bool:
        return self.expires_at > (at or timezone.now())


class Heartbeat(models.Model):
    """When a periodic job last ran: the health check's proof that beat and a worker are alive."""

    name = models.CharField(max_length=50, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
