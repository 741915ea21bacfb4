"""A hand edit of an owner in the admin is a correction: it survives re-attribution."""

from __future__ import annotations

from campaign.attribution import services
from campaign.models import ServerOwner
from scanning.models import Target
from tests.campaign.attribution.base import AttributionTestCase


class AdminCorrectionTestCase(AttributionTestCase):
    def test_an_owner_renamed_in_the_admin_keeps_the_name_after_reattribution(self) -> None:
        target = self.make_target("192.0.2.77")
        services.targets_attribute(targets=Target.objects.filter(pk=target.pk))
        owner = ServerOwner.objects.get(attributions__target=target)
        automatic = owner.name
        self.client.force_login(self.regulator)
        url = f"/admin/campaign/serverowner/{owner.pk}/change/"
        page = self.client.get(url)
        data = {
            "name": "Example Net (as the owner asked)",
            "rdap_handle": owner.rdap_handle,
            "country": owner.country,
            "partner": owner.partner_id,
            "preferred_language": "",
            "corrections": "{}",
            "notes": "",
        }
        for inline in page.context["inline_admin_formsets"]:
            prefix = inline.formset.prefix
            data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
        response = self.client.post(url, data)
        self.assertEqual(
            response.status_code,
            302,
            response.context and response.context["adminform"].form.errors,
        )
        owner.refresh_from_db()
        self.assertEqual(owner.corrections.get("name"), "Example Net (as the owner asked)")
        services.targets_attribute(targets=Target.objects.filter(pk=target.pk))
        owner.refresh_from_db()
        self.assertNotEqual(automatic, owner.name)
        self.assertEqual(owner.name, "Example Net (as the owner asked)")
