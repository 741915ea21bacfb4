from __future__ import annotations

import ipaddress

from django import forms
from django.utils.translation import gettext, gettext_lazy

# Wider requests go to staff by e-mail: one form must not switch off scanning of a whole ISP.
MIN_PREFIX = {4: 16, 6: 32}


class ExclusionRequestForm(forms.Form):
    network = forms.CharField(
        label=gettext_lazy("Your address or network"),
        max_length=64,
        help_text=gettext_lazy("An IP address (192.0.2.10) or a network (192.0.2.0/24)."),
    )
    email = forms.EmailField(
        label=gettext_lazy("Your e-mail address"),
        help_text=gettext_lazy("So we can confirm the request."),
    )
    reason = forms.CharField(
        label=gettext_lazy("Anything we should know (optional)"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def clean_network(self) -> str:
        raw = self.cleaned_data["network"].strip()
        try:
            network = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise forms.ValidationError(
                gettext("“%(value)s” is not an IP address or network such as 192.0.2.0/24.")
                % {"value": raw}
            ) from None
        if network.prefixlen < MIN_PREFIX[network.version]:
            raise forms.ValidationError(
                gettext(
                    "Networks larger than /%(prefix)s are handled by e-mail; please write to the "
                    "address on this page."
                )
                % {"prefix": MIN_PREFIX[network.version]}
            )
        return str(network)
