"""Every admin field partner staff can edit, swept: each is classified, none steers another
partner's attribution, scanning or sending.

A new editable field fails `test_every_field_partner_staff_can_edit_is_classified` until it is
put in PARTNER_EDITABLE (with the reason a partner may change it) or made lead-only (listed in
LEAD_ONLY, read-only for partner staff through `lead_only_fields`, and checked below by posting
a change as Alpha's caseworker would).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db import models

from api.models import ApiToken
from campaign.models import Attribution, Case, Contact, ServerOwner, Suppression
from letters.models import LetterTemplate
from scanning.models import Target
from tests.base import BaseTestCase
from tests.campaign.test_partner_isolation import ALPHA_OBJECTS
from tests.security.forms import admin_form_data

SCOPED = "a relation: only the user's own partners' objects are offered (isolation sweep)"

# (model, field): why Alpha's caseworker may change it on Alpha's own objects.
PARTNER_EDITABLE: dict[tuple[type[models.Model], str], str] = {
    (ServerOwner, "name"): "how the letter addresses the owner; kept as a correction",
    (ServerOwner, "partner"): SCOPED,
    (ServerOwner, "preferred_language"): "picks among the partner's own letter languages",
    (ServerOwner, "notes"): "free text for the partner's staff",
    (Contact, "server_owner"): SCOPED,
    (Contact, "position"): "the order of the partner's own owner's contacts",
    (Contact, "kind"): "a label on the partner's own contact",
    (Contact, "email"): "caseworkers handle corrections: who the partner's letter goes to",
    (Contact, "bounced_at"): "a caseworker may clear a bounce after the owner fixed it",
    (Case, "campaign"): "campaigns are shared by every partner",
    (Case, "server_owner"): SCOPED,
    (Case, "partner"): SCOPED,
    (Case, "language"): "the letter language of the partner's own case",
    (Case, "next_action_at"): "the partner's own schedule",
    (Suppression, "partner"): SCOPED + "; a partner's suppression stops only its letters",
    (Suppression, "server_owner"): SCOPED,
    (Suppression, "email"): "stops only the partner's own letters (partner is required)",
    (Suppression, "reason"): "a label",
    (Suppression, "note"): "free text",
    (Suppression, "expires_at"): "ends the partner's own suppression",
    (LetterTemplate, "partner"): SCOPED,
    (LetterTemplate, "kind"): "the partner's own template slot",
    (LetterTemplate, "language"): "the partner's own template slot",
    (LetterTemplate, "subject"): "a new draft: approval and the tone check gate sending",
    (LetterTemplate, "body_html"): "a new draft: approval and the tone check gate sending",
    (LetterTemplate, "body_text"): "a new draft: approval and the tone check gate sending",
    (ApiToken, "name"): "a label on the user's own read-only API token",
}

# (model, field): a value Alpha's caseworker would post to steer attribution or probes.
LEAD_ONLY: dict[tuple[type[models.Model], str], Any] = {
    (ServerOwner, "rdap_handle"): "ORG-EH1-RIPE",
    (ServerOwner, "country"): "DE",
    (ServerOwner, "corrections"): json.dumps({"country": "DE", "merged_handles": ["X"]}),
    (Contact, "source"): "rdap",
    (Target, "ip"): "203.0.113.66",
    (Target, "port"): "8080",
    (Target, "protocol"): "http",
    (Target, "hostname"): "elsewhere.example",
    (Target, "asn"): "64500",
    (Target, "geo_country"): "DE",
    (Target, "first_seen_0"): "2001-01-01",
    (Target, "last_seen_0"): "2001-01-01",
    (Attribution, "server_owner"): "beta-owner",
    (Attribution, "target"): "beta-target",
    (Attribution, "reverse_dns"): "elsewhere.example",
    (Attribution, "network_cidr"): "198.51.100.0/24",
    (Attribution, "network_name"): "ELSEWHERE",
    (Attribution, "registrant_country"): "DE",
    (Attribution, "abuse_email"): "abuse@elsewhere.example",
    (Attribution, "asn"): "64500",
    (Attribution, "rdap_source"): "https://rdap.example/",
    (Attribution, "error"): "x",
    (Attribution, "attributed_at_0"): "2001-01-01",
}


def _field(name: str) -> str:
    return name.rsplit("_", 1)[0] if name.endswith(("_0", "_1")) else name


class FieldSweepTestCase(BaseTestCase):
    def setUp(self) -> None:
        self.objects = {model: factory(self) for model, (_, factory) in ALPHA_OBJECTS.items()}

    def _editable(self, response: Any) -> set[tuple[type[models.Model], str]]:
        found: set[tuple[type[models.Model], str]] = set()
        if response.status_code != 200 or "adminform" not in response.context:
            return found
        context = response.context
        can_edit = context.get("add") or context.get("has_change_permission")
        if can_edit:
            adminform = context["adminform"]
            readonly = set(adminform.readonly_fields)
            model = context["opts"].model
            found |= {(model, f) for f in adminform.form.fields if f not in readonly}
        for inline in context["inline_admin_formsets"]:
            if not (inline.has_add_permission or inline.has_change_permission):
                continue
            formset = inline.formset
            skip = {"id", "DELETE", "ORDER", formset.fk.name, *inline.readonly_fields}
            found |= {(formset.model, f) for f in formset.form.base_fields if f not in skip}
        return found

    def _partner_editable(self) -> set[tuple[type[models.Model], str]]:
        self.client.force_login(self.alpha_staff)
        found: set[tuple[type[models.Model], str]] = set()
        for model in admin.site._registry:
            base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            found |= self._editable(self.client.get(f"{base}add/"))
            obj = self.objects.get(model)
            if obj is not None:
                found |= self._editable(self.client.get(f"{base}{obj.pk}/change/"))
        return found

    def test_every_field_partner_staff_can_edit_is_classified(self) -> None:
        editable = self._partner_editable()
        unclassified = {f"{m.__name__}.{f}" for m, f in editable - set(PARTNER_EDITABLE)}
        self.assertEqual(unclassified, set(), "classify these in PARTNER_EDITABLE or LEAD_ONLY")
        lead_only = {(m, _field(f)) for m, f in LEAD_ONLY}
        self.assertEqual(editable & lead_only, set())
        stale = {f"{m.__name__}.{f}" for m, f in set(PARTNER_EDITABLE) - editable}
        self.assertEqual(stale, set(), "no longer editable by partner staff: drop from the table")

    def test_the_lead_edits_the_lead_only_fields(self) -> None:
        self.client.force_login(self.lead_staff)
        for model, name in {(m, _field(f)) for m, f in LEAD_ONLY}:
            obj = self.objects[model]
            base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            editable = self._editable(self.client.get(f"{base}{obj.pk}/change/"))
            if model is Contact:  # also on its owner's page
                owner = f"/admin/campaign/serverowner/{obj.server_owner_id}/change/"
                self.assertIn((model, name), self._editable(self.client.get(owner)))
            self.assertIn((model, name), editable)

    def test_it_stops_partner_staff_posting_a_lead_only_field(self) -> None:
        beta_owner = self.beta_case.server_owner
        beta_target = self.beta_case.findings.get().target
        replacements = {"beta-owner": str(beta_owner.pk), "beta-target": str(beta_target.pk)}
        self.client.force_login(self.alpha_staff)
        for model in {m for m, _ in LEAD_ONLY}:
            obj = self.objects[model]
            before = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/{obj.pk}/change/"
            page = self.client.get(url)
            data = admin_form_data(page) if page.status_code == 200 else {}
            for (m, name), value in LEAD_ONLY.items():
                if m is model:
                    data[name] = replacements.get(value, value)
            with self.subTest(model=model.__name__):
                self.client.post(url, data)
                obj.refresh_from_db()
                after = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
                changed = {k for k in before if before[k] != after[k]} - {"updated_at"}
                self.assertEqual(changed, set())

    def test_it_stops_partner_staff_posting_a_contacts_source_from_the_owner_page(self) -> None:
        owner = self.alpha_case.server_owner
        contact = owner.contacts.get()
        self.client.force_login(self.alpha_staff)
        url = f"/admin/campaign/serverowner/{owner.pk}/change/"
        data = admin_form_data(self.client.get(url))
        prefix = next(k for k in data if k.endswith("-0-email")).removesuffix("-0-email")
        data[f"{prefix}-0-source"] = "rdap"
        data[f"{prefix}-0-email"] = "new@alpha.example"
        self.assertEqual(self.client.post(url, data).status_code, 302)
        contact.refresh_from_db()
        self.assertEqual((contact.email, contact.source), ("new@alpha.example", "manual"))
