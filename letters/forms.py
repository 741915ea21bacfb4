"""The recipient's forms on the remediation page; labels come from the page's language strings."""

from __future__ import annotations

from django import forms


class NotMineForm(forms.Form):
    note = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: object, strings: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["note"].label = strings["not_mine_label"]


class OtherContactForm(forms.Form):
    email = forms.EmailField(max_length=254)

    def __init__(self, *args: object, strings: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["email"].label = strings["other_contact_email_label"]
        self.fields["email"].widget.attrs.update({"autocomplete": "email"})


class OptOutForm(forms.Form):
    reason = forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: object, strings: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["reason"].label = strings["optout_reason_label"]
