from __future__ import annotations

from django import template
from django.utils import formats

register = template.Library()


@register.filter
def pct(value: float | None) -> str:
    """A share (0..1) as a percentage with one decimal, in the active language's format."""
    if value is None:
        return "—"
    return f"{formats.number_format(round(value * 100, 1), 1, use_l10n=True)} %"


@register.filter
def num(value: float | None, decimals: int = 0) -> str:
    if value is None:
        return "—"
    return formats.number_format(
        round(value, decimals), decimals, use_l10n=True, force_grouping=True
    )


@register.filter
def get(mapping: dict, key: object) -> object:
    return mapping.get(key, 0) if mapping else 0
