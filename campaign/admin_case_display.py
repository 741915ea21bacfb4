"""How a case reads to staff on every page that shows one: its status badge, the next action its
status asks for, language names, and the case form's choice of letter language."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.html import format_html

from campaign.models import Case

LANGUAGE_NAMES = dict(settings.LANGUAGES)


class CaseForm(forms.ModelForm):
    """The letter language is one of the partner's letter languages, picked from a list."""

    language = forms.ChoiceField(choices=settings.LANGUAGES)

    class Meta:
        model = Case
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        partner = self.instance.partner if self.instance.partner_id else None
        if partner is not None and "language" in self.fields:
            codes = list(partner.letter_languages)
            if self.instance.language and self.instance.language not in codes:
                codes.append(self.instance.language)  # keep what the case has, to see it
            language = self.fields["language"]
            assert isinstance(language, forms.ChoiceField)  # declared above
            language.choices = [
                (code, f"{LANGUAGE_NAMES.get(code, code)} ({code})") for code in codes
            ]
            language.help_text = (
                f"Letters in the languages {partner.country_name} writes in, in its order."
            )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        partner = data.get("partner") or (
            self.instance.partner if self.instance.partner_id else None
        )
        language = data.get("language")
        if partner is not None and language and language not in partner.letter_languages:
            self.add_error(
                "language",
                f"{partner.country_name} writes letters in "
                f"{', '.join(partner.letter_languages) or 'no shipped language'}, "
                f"not “{language}”.",
            )
        return data


STATUS_COLOURS: dict[str, tuple[str, str]] = {
    Case.Status.NEW: ("#e8eef7", "#1f3d6b"),
    Case.Status.NEEDS_REVIEW: ("#fff1d6", "#6b4500"),
    Case.Status.READY: ("#dff3e4", "#155724"),
    Case.Status.NOTIFIED: ("#e3e9ff", "#23348f"),
    Case.Status.REMINDED: ("#ece3ff", "#4a2a8f"),
    Case.Status.ESCALATED: ("#ffe1dc", "#8a1f11"),
    Case.Status.FIXED: ("#d4f0d9", "#0f5132"),
}


def status_badge(case: Case) -> str:
    background, colour = STATUS_COLOURS.get(case.status, ("#eee", "#333"))
    return format_html(
        '<span class="status-badge status-{}" style="background:{};color:{}">{}</span>',
        case.status,
        background,
        colour,
        case.get_status_display(),
    )


NEXT_ACTIONS: dict[str, str] = {
    Case.Status.NEW: "Attribution pending: run attribution for its targets.",
    Case.Status.NEEDS_REVIEW: "Review the evidence and contacts, then mark ready or withdraw.",
    Case.Status.READY: "Queue the advisory letter.",
    Case.Status.NOTIFIED: "Wait for the owner; the schedule re-probes, and reminds only a server "
    "it has just seen open.",
    Case.Status.REMINDED: "Wait; the schedule hands the case to the partner at the deadline.",
    Case.Status.ESCALATED: "The partner follows up by hand.",
    Case.Status.FIXED: "Nothing: verified fixed.",
    Case.Status.UNRESPONSIVE: "Closed at the final deadline.",
    Case.Status.WITHDRAWN: "Nothing: withdrawn.",
    Case.Status.SUPPRESSED: "Nothing: the contact asked not to be written to.",
}
