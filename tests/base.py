"""Partners Alpha and Beta, a staff user each, a regulator superuser and a case per partner."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import TestCase, override_settings
from django.utils import timezone

from campaign import services
from campaign.models import Attribution, Campaign, Case, Contact, Membership, Partner, ServerOwner
from scanning.models import Finding, Target


def make_world(cls: type) -> None:
    """Shared by TestCase and TransactionTestCase subclasses."""
    now = timezone.now()
    cls.lead = Partner.objects.create(
        country="US",
        country_name="United States",
        agency="Lead Agency",
        languages=["en"],
        is_lead=True,
    )
    cls.alpha = Partner.objects.create(
        country="GB", country_name="Alphaland", agency="Alpha Agency", languages=["en"]
    )
    cls.beta = Partner.objects.create(
        country="DE", country_name="Betaland", agency="Beta Agency", languages=["de"]
    )
    cls.regulator = User.objects.create_superuser("regulator", "regulator@localhost", "pw")
    cls.alpha_staff = User.objects.create_user("alpha", "alpha@localhost", "pw", is_staff=True)
    cls.beta_staff = User.objects.create_user("beta", "beta@localhost", "pw", is_staff=True)
    cls.lead_staff = User.objects.create_user("lead", "lead@localhost", "pw", is_staff=True)
    Membership.objects.create(
        user=cls.alpha_staff, partner=cls.alpha, role=Membership.Role.CASEWORKER
    )
    Membership.objects.create(
        user=cls.beta_staff, partner=cls.beta, role=Membership.Role.CASEWORKER
    )
    Membership.objects.create(
        user=cls.lead_staff, partner=cls.lead, role=Membership.Role.CASEWORKER
    )
    cls.campaign = Campaign.objects.create(slug="wave-1", name="Wave 1")
    cls.alpha_case = _case(cls.alpha, "Alpha Hosting", "192.0.2.10", cls.campaign, now)
    cls.beta_case = _case(cls.beta, "Beta Hosting", "198.51.100.10", cls.campaign, now)


def _case(partner: Partner, name: str, ip: str, campaign: Campaign, now: object) -> Case:
    owner = ServerOwner.objects.create(name=name, country=partner.country, partner=partner)
    Contact.objects.create(
        server_owner=owner,
        position=0,
        kind=Contact.Kind.ABUSE,
        email=f"abuse@{name.split()[0].lower()}.example",
    )
    target = Target.objects.create(ip=ip, port=25, protocol="smtp", first_seen=now, last_seen=now)
    Attribution.objects.create(target=target, server_owner=owner, network_cidr=f"{ip}/32")
    finding = Finding.objects.create(
        target=target,
        protocol="smtp",
        verdict="confirmed-open",
        evidence_level="strong",
        transcript=[{"t_ms": 0, "direction": "<", "text": f"220 {name} ESMTP"}],
        probed_at=now,
    )
    return services.case_add_finding(campaign=campaign, owner=owner, finding=finding)


@override_settings(EMAIL_BACKEND="anymail.backends.test.EmailBackend")
class BaseTestCase(TestCase):
    lead: Partner
    alpha: Partner
    beta: Partner
    regulator: User
    alpha_staff: User
    beta_staff: User
    lead_staff: User
    campaign: Campaign
    alpha_case: Case
    beta_case: Case

    @classmethod
    def setUpTestData(cls) -> None:
        make_world(cls)
