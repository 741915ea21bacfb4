"""What was scanned and what was found. Knows nothing of owners, cases or letters."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from scanning.probes import base as probe_vocabulary
from scanning.probes.base import host_port


class _Unknown(enum.StrEnum):
    UNKNOWN = "unknown"  # a target imported without a protocol: the probe finds out


def _choices(name: str, members: Iterable[enum.StrEnum], labels: Mapping[str, Any]) -> Any:
    """Model choices built from a probe vocabulary: the probes' values are the only source, and
    a value without a label here stops start-up instead of showing a raw code."""
    missing = [str(m) for m in members if str(m) not in labels]
    if missing:
        raise ImproperlyConfigured(f"scanning.models: no label for {name} {missing}")
    pairs = [(m.name, (str(m), labels[str(m)])) for m in members]
    return models.TextChoices(name, pairs)  # type: ignore[call-overload]  # the functional API


Protocol = _choices(
    "Protocol",
    [*probe_vocabulary.Protocol, _Unknown.UNKNOWN],
    {
        "smtp": _("SMTP"),
        "http": _("HTTP proxy"),
        "socks4": _("SOCKS4/4a"),
        "socks5": _("SOCKS5"),
        "unknown": _("Unknown (auto)"),
    },
)
Verdict = _choices(
    "Verdict",
    probe_vocabulary.Verdict,
    {
        "confirmed-open": _("Confirmed open"),
        "likely-open": _("Likely open"),
        "likely-open-weak": _("Likely open (weak evidence)"),
        "inconclusive": _("Inconclusive"),
        "auth-required": _("Authentication required"),
        "closed": _("Closed"),
        "not-applicable": _("Not applicable"),
    },
)
EvidenceLevel = _choices(
    "EvidenceLevel",
    probe_vocabulary.EvidenceLevel,
    {
        "strong": _("Strong (our canary)"),
        "medium": _("Medium"),
        "weak": _("Weak (the server's word)"),
        "none": _("None"),
    },
)

OPEN_VERDICTS = (Verdict.CONFIRMED_OPEN, Verdict.LIKELY_OPEN, Verdict.LIKELY_OPEN_WEAK)


class Target(models.Model):
    """A suspect service: ip, port, protocol. Imports merge into the existing row."""

    ip = models.GenericIPAddressField(unpack_ipv4=True)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.UNKNOWN)
    hostname = models.CharField(max_length=255, blank=True)
    asn = models.PositiveBigIntegerField(null=True, blank=True)
    geo_country = models.CharField(
        max_length=2, blank=True, help_text="Where the server is, by the source."
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    sources = models.JSONField(default=list, blank=True, help_text="Every feed that reported it.")
    source_data = models.JSONField(
        default=dict, blank=True, help_text="Columns kept from the source."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ip", "port", "protocol"], name="target_unique_service"
            ),
            models.CheckConstraint(
                condition=models.Q(port__gte=1, port__lte=65535), name="target_port_in_range"
            ),
        ]
        # Each column the admin sorts by, with the id that breaks ties: the first page of a
        # million rows sorted either way is read from the index, not sorted whole. The AS number's
        # also serves the admin's search by AS number.
        indexes = [
            models.Index(fields=["last_seen", "id"], name="target_last_seen_id"),
            models.Index(fields=["protocol", "id"], name="target_protocol_id"),
            models.Index(fields=["asn", "id"], name="target_asn_id"),
        ]

    def __str__(self) -> str:
        return f"{host_port(self.ip, self.port)}/{self.protocol}"


class ScanRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        VOID = "void", "Void (self-check failed)"
        FAILED = "failed", "Failed"

    label = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    targets = models.ManyToManyField(Target, related_name="scan_runs", blank=True)
    confirm_relays = models.BooleanField(default=True)
    targets_total = models.PositiveIntegerField(default=0)
    targets_done = models.PositiveIntegerField(default=0)
    verdict_counts = models.JSONField(default=dict, blank=True)
    refusals = models.JSONField(
        default=list, blank=True, help_text="[{target, reason}]: never probed, and why."
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Scan #{self.pk}: {self.label}"

    @property
    def progress_percent(self) -> int:
        return 100 if not self.targets_total else int(100 * self.targets_done / self.targets_total)


class ScanBatch(models.Model):
    """A slice of a scan run, probed by one task. Claimed before probing, so a redelivered task
    (acks_late) finds it taken and sends nothing twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        VOID = "void", "Void (self-check failed)"
        FAILED = "failed", "Failed"

    scan_run = models.ForeignKey(ScanRun, on_delete=models.CASCADE, related_name="batches")
    target_ids = models.JSONField(default=list)
    attempt = models.PositiveSmallIntegerField(default=0, help_text="0 first pass; 1, 2 retries.")
    tokens = models.JSONField(default=dict, blank=True, help_text="Target id -> probe token.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A claim by a worker that died expires; the reconciler or a redelivered task takes it over.
    claimed_by = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    claims = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took it.")

    class Meta:
        indexes = [
            models.Index(fields=["scan_run", "status"]),
            models.Index(fields=["status", "lease_until"]),
        ]
        verbose_name_plural = "scan batches"

    def __str__(self) -> str:
        return f"batch #{self.pk} of scan #{self.scan_run_id} (attempt {self.attempt})"


class Finding(models.Model):
    """One probe result: a verdict with the evidence behind it."""

    class Transport(models.TextChoices):
        PLAIN = "plain", "Plain"
        IMPLICIT_TLS = "implicit-tls", "Implicit TLS"
        STARTTLS = "starttls", "STARTTLS"

    class TransportStatus(models.TextChoices):
        SUCCESS = "success", "Success"
        CONNECTION_REFUSED = "connection-refused", "Connection refused"
        CONNECTION_TIMEOUT = "connection-timeout", "Connection timeout"
        CONNECTION_CLOSED = "connection-closed", "Connection closed"
        IO_TIMEOUT = "io-timeout", "I/O timeout"
        PROTOCOL_ERROR = "protocol-error", "Protocol error"

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="findings")
    scan_run = models.ForeignKey(
        ScanRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="findings"
    )
    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    transport = models.CharField(max_length=12, choices=Transport.choices, default=Transport.PLAIN)
    transport_status = models.CharField(
        max_length=20, choices=TransportStatus.choices, default=TransportStatus.SUCCESS
    )
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    evidence_level = models.CharField(max_length=6, choices=EvidenceLevel.choices)
    reasons = models.JSONField(default=list, blank=True)
    software_family = models.CharField(max_length=64, blank=True)
    software_version = models.CharField(max_length=64, blank=True)
    software_source = models.CharField(max_length=32, blank=True)
    reverse_dns = models.CharField(max_length=255, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    token = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="Traces a complaint."
    )
    details = models.JSONField(default=dict, blank=True)
    transcript = models.JSONField(default=list, blank=True)
    catalogue_version = models.CharField(max_length=20, blank=True)
    probed_at = models.DateTimeField()
    # A relay that took our test message is stored at once with the verdict the session alone
    # supports (provisional, final=False) and its `token`; the canary's hit upgrades it to
    # confirmed-open, or the deadline job settles it at `confirm_by` (docs/probes.md).
    final = models.BooleanField(
        "final", default=True, help_text="No later canary hit can change the verdict."
    )
    confirm_by = models.DateTimeField(
        null=True, blank=True, help_text="A provisional finding is settled at this time."
    )

    class Meta:
        indexes = [
            models.Index(fields=["verdict", "probed_at"]),
            models.Index(fields=["target", "-probed_at"]),
            # The admin's sorts (ties broken by id) and its software filter.
            models.Index(fields=["verdict", "id"], name="finding_verdict_id"),
            models.Index(fields=["software_family", "id"], name="finding_software_id"),
            models.Index(fields=["probed_at", "id"], name="finding_probed_id"),
            # The confirmation and deadline sweeps read only the provisional few.
            models.Index(
                fields=["confirm_by"],
                condition=models.Q(final=False),
                name="finding_provisional_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target} {self.verdict}"

    @property
    def is_open(self) -> bool:
        return self.verdict in OPEN_VERDICTS


def validate_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"{value!r} is not an IP network (e.g. 192.0.2.0/24).") from None


class Exclusion(models.Model):
    """A do-not-scan network. Owners request one on the public scan page; staff approve it."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    network = models.CharField(max_length=64, validators=[validate_network])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    reason = models.TextField(blank=True)
    requester_email = models.EmailField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.network} ({self.status})"

    def clean(self) -> None:
        # Normalise so the exclusion check compares like with like (192.0.2.7/24 -> 192.0.2.0/24).
        validate_network(self.network)
        self.network = str(ipaddress.ip_network(self.network, strict=False))


class CanaryHit(models.Model):
    """What reached the deployed canary, keyed by the probe's token; workers read it."""

    token = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=8)
    peer_ip = models.GenericIPAddressField()
    headers = models.JSONField(default=dict, blank=True)
    detail = models.TextField(blank=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} {self.token[:8]}… from {self.peer_ip}"
