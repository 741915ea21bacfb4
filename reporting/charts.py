"""Small server-side SVG charts: no script, no external asset, nothing a strict CSP blocks.

Colours are presentation attributes (a CSP without 'unsafe-inline' blocks style attributes, not
these). Every chart is drawn next to a table of the same numbers; the SVG is the picture only.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

PALETTE = ("#0b5cad", "#17663a", "#b35900", "#6b3fa0", "#a4000f", "#4a5361")
WIDTH = 480
FONT = 13


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def hbars(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    percent: bool = False,
    colour: str = PALETTE[0],
) -> SafeString:
    """One horizontal bar per row, its label above it and its value at its end."""
    row_height = 34
    height = max(1, len(rows)) * row_height + 4
    top = max([value for _, value in rows] + [0]) or 1
    if percent:
        top = 100
    scale = (WIDTH - 70) / top
    bars = format_html_join(
        "",
        '<text x="0" y="{}" font-size="{}" fill="#1b1f24">{}</text>'
        '<rect x="0" y="{}" width="{}" height="12" rx="2" fill="{}"></rect>'
        '<text x="{}" y="{}" font-size="{}" fill="#1b1f24">{}</text>',
        (
            (
                i * row_height + 13,
                FONT,
                label,
                i * row_height + 17,
                f"{max(value * scale, 0.5 if value else 0):.1f}",
                colour,
                f"{value * scale + 6:.1f}",
                i * row_height + 28,
                FONT,
                f"{_number(value)}{' %' if percent else ''}",
            )
            for i, (label, value) in enumerate(rows)
        ),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        "<title>{}</title>{}</svg>",
        WIDTH,
        height,
        title,
        title,
        bars,
    )


def line(
    points: Sequence[tuple[float, float | None]],
    *,
    title: str,
    x_label: str,
    x_ticks: Sequence[int],
    y_max: float = 100,
) -> SafeString:
    """A line over x (days) of y (percent, 0..y_max); None values are gaps."""
    left, right, top, bottom = 40, 10, 10, 36
    height = 220
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    x_max = max([x for x, _ in points] + [1])

    def px(x: float) -> float:
        return left + x / x_max * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    grid = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d5dae1"></line>'
        '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#4a5361">{} %</text>',
        (
            (left, WIDTH - right, f"{py(y):.1f}", f"{py(y):.1f}", left - 4, f"{py(y) + 4:.1f}", y)
            for y in range(0, int(y_max) + 1, 25)
        ),
    )
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#4a5361">{}</text>',
        ((f"{px(x):.1f}", top + plot_h + 14, x) for x in x_ticks),
    )
    segments: list[list[str]] = [[]]
    for x, y in points:
        if y is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{px(x):.1f},{py(y):.1f}")
    lines = format_html_join(
        "",
        '<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"></polyline>',
        ((" ".join(seg), PALETTE[0]) for seg in segments if seg),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>'
        '{}{}<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#4a5361">{}</text>'
        "{}</svg>",
        WIDTH,
        height,
        title,
        title,
        grid,
        ticks,
        left + plot_w / 2,
        height - 4,
        x_label,
        lines,
    )


def columns(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
) -> SafeString:
    """Grouped vertical columns: one group per label, one column per series, with a legend."""
    left, top, bottom, legend = 40, 10, 30, 22
    height = 220
    plot_w, plot_h = WIDTH - left - 10, height - top - bottom - legend
    top_value = max([v for _, values in series for v in values] + [1])
    group_w = plot_w / max(1, len(labels))
    col_w = max(1.0, (group_w - 6) / max(1, len(series)))
    parts = []
    for s, (_, values) in enumerate(series):
        for i, value in enumerate(values):
            h = value / top_value * plot_h
            parts.append(
                (
                    f"{left + i * group_w + 3 + s * col_w:.1f}",
                    f"{top + legend + plot_h - h:.1f}",
                    f"{col_w:.1f}",
                    f"{h:.1f}",
                    PALETTE[s % len(PALETTE)],
                )
            )
    bars = format_html_join(
        "", '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"></rect>', parts
    )
    step = max(1, len(labels) // 6)
    axis = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" text-anchor="middle" fill="#4a5361">{}</text>',
        (
            (f"{left + i * group_w + group_w / 2:.1f}", height - 12, label)
            for i, label in enumerate(labels)
            if i % step == 0
        ),
    )
    keys = format_html_join(
        "",
        '<rect x="{}" y="4" width="12" height="12" fill="{}"></rect>'
        '<text x="{}" y="14" font-size="12" fill="#1b1f24">{}</text>',
        (
            (left + s * 140, PALETTE[s % len(PALETTE)], left + s * 140 + 16, name)
            for s, (name, _) in enumerate(series)
        ),
    )
    scale = format_html(
        '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#4a5361">{}</text>'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d5dae1"></line>',
        left - 4,
        top + legend + 4,
        _number(top_value),
        left,
        WIDTH - 10,
        top + legend + plot_h,
        top + legend + plot_h,
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>'
        "{}{}{}{}</svg>",
        WIDTH,
        height,
        title,
        title,
        keys,
        scale,
        bars,
        axis,
    )
