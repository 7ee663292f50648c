"""Small bar charts as inline SVG, drawn on the server: no JavaScript, nothing fetched from elsewhere."""

from datetime import date
from decimal import Decimal

from django.utils.html import format_html, format_html_join

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


def bar_chart_svg(
    *, chart_id: str, title: str, days: list[date], values: list, unit: str = "", color: str, nothing: str
) -> str:
    """One bar per day, the largest value at the top; each bar's tooltip says the day and the value.
    A chart of only zeros says `nothing` ("No calls in ...") where its scale would be."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(values), 1)
    top_value = max(values, default=0) or 1
    bars = []
    for index, (day, value) in enumerate(zip(days, values)):
        height = plot_height * float(value) / float(top_value)
        bars.append(
            (
                f"{LEFT + index * slot + slot * 0.15:.1f}",
                f"{TOP + plot_height - height:.1f}",
                f"{slot * 0.7:.1f}",
                f"{height:.1f}",
                color,
                day.isoformat(),
                f"{day:%a %d %b}: {format_value(value, unit)}",
            )
        )
    bar_marks = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" data-day="{}"><title>{}</title></rect>',
        bars,
    )
    # A date under every 7th bar, counted back from today so the last bar is always labelled.
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="11" fill="currentColor" text-anchor="middle">{}</text>',
        (
            (f"{LEFT + index * slot + slot / 2:.1f}", HEIGHT - 8, f"{day:%d %b}")
            for index, day in enumerate(days)
            if (len(days) - 1 - index) % 7 == 0
        ),
    )
    if any(values):
        scale = format_html(
            '<text x="{}" y="{}" font-size="11" fill="currentColor" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" font-size="11" fill="currentColor" text-anchor="end">0</text>',
            LEFT - 6,
            TOP + 10,
            format_value(max(values), unit),
            LEFT - 6,
            TOP + plot_height,
        )
    else:
        scale = format_html(
            '<text x="{}" y="{}" font-size="13" fill="currentColor" text-anchor="middle">{}</text>',
            LEFT + plot_width / 2,
            TOP + plot_height / 2,
            nothing,
        )
    return format_html(
        '<svg id="{}" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg" style="max-width: 100%; height: auto; font-family: sans-serif">'
        "<title>{}</title>"
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.4"/>'
        "{}{}{}</svg>",
        chart_id,
        title,
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        title,
        LEFT,
        TOP + plot_height,
        WIDTH - RIGHT,
        TOP + plot_height,
        scale,
        bar_marks,
        ticks,
    )


def format_value(value, unit: str) -> str:
    if unit == "$":
        return money(value)
    return f"{value:,}"


def money(value) -> str:
    """Dollars to the cent, or to a hundredth of a cent below one cent (a short test call), never "$0.00" for a cost."""
    value = Decimal(value)
    places = 4 if value and abs(value) < Decimal("0.01") else 2
    return f"${value:,.{places}f}"
