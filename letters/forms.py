"""The recipient's forms on the remediation page; labels are translated in the page's language."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class NotMineForm(forms.Form):
    note = forms.CharField(
        label=_("Tell us more, if you like (optional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class OtherContactForm(forms.Form):
    name = forms.CharField(
        label=_("Name or organisation"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    email = forms.EmailField(
        label=_("Their e-mail address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class OptOutForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (optional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
