"""Server-side SVG charts: plain markup, no script, no external asset, every text escaped.

Each chart is an ``<svg role="img">`` labelled by its ``<title>`` (and a ``<desc>`` pointing to the
table next to it); each bar carries its own ``<title>`` so that hovering shows its figures. The
page puts a table with the same figures next to every chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import format_number, format_percent, gettext, ngettext
from markupsafe import Markup, escape

from tracker.dashboard.services import OfficeProgress, QuarterCount

WIDTH = 420  # user units; the chart scales to its box, this keeps text legible on phones
LABEL_WIDTH = 56  # office codes on the left of the bars
VALUE_ROOM = 64  # room right of the longest bar for its value
BAR_HEIGHT = 14
ACCENT = "#0b5cad"
OK = "#1a7f37"
LINE = "#d0d7de"


@dataclass(frozen=True)
class Series:
    """One kind of bar in a bar chart: its name (legend), CSS class and fallback colour."""

    name: str
    css: str
    colour: str


@dataclass(frozen=True)
class BarGroup:
    """One row of a bar chart: a label and one value (0–1, or None) per series."""

    label: str
    values: Sequence[float | None]
    texts: Sequence[str]
    tooltip: str


def _svg_open(chart_id: str, title: str, description: str, height: int) -> list[str]:
    return [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]


def bar_chart(
    chart_id: str, title: str, description: str, series: Sequence[Series], groups: Sequence[BarGroup]
) -> Markup:
    """Horizontal bars, one group per row, one bar per series, on a 0–100 % scale."""
    legend_height, axis_height = 28, 22
    group_height = len(series) * (BAR_HEIGHT + 2) + 10
    height = legend_height + max(len(groups), 1) * group_height + axis_height
    plot = WIDTH - LABEL_WIDTH - VALUE_ROOM
    parts = _svg_open(chart_id, title, description, height)

    x = LABEL_WIDTH
    for s in series:  # the legend: a swatch and the series name
        parts.append(
            f'<rect class="{escape(s.css)}" fill="{escape(s.colour)}" x="{x}" y="6" width="12" height="12"/>'
        )
        parts.append(f'<text x="{x + 18}" y="16">{escape(s.name)}</text>')
        x += 30 + 8 * len(s.name)

    bottom = height - axis_height
    for tick in range(0, 101, 25):  # vertical grid lines with their percentage below
        tx = LABEL_WIDTH + plot * tick / 100
        parts.append(
            f'<line class="grid" stroke="{LINE}" x1="{tx:.1f}" y1="{legend_height}" '
            f'x2="{tx:.1f}" y2="{bottom}"/>'
        )
        parts.append(
            f'<text class="tick" x="{tx:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{escape(format_percent(tick / 100))}</text>"
        )

    for row, group in enumerate(groups):
        top = legend_height + row * group_height + 4
        parts.append(f"<g><title>{escape(group.tooltip)}</title>")
        parts.append(
            f'<text class="label" x="{LABEL_WIDTH - 8}" y="{top + group_height / 2 + 1:.1f}" '
            f'text-anchor="end">{escape(group.label)}</text>'
        )
        for i, (s, value, text) in enumerate(zip(series, group.values, group.texts, strict=True)):
            y = top + i * (BAR_HEIGHT + 2)
            length = plot * min(max(value or 0.0, 0.0), 1.0)
            parts.append(
                f'<rect class="{escape(s.css)}" fill="{escape(s.colour)}" x="{LABEL_WIDTH}" y="{y}" '
                f'width="{length:.1f}" height="{BAR_HEIGHT}"/>'
            )
            parts.append(
                f'<text class="value" x="{LABEL_WIDTH + length + 4:.1f}" y="{y + BAR_HEIGHT - 3}">'
                f"{escape(text)}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    chart_id: str,
    title: str,
    description: str,
    columns: Sequence[tuple[Sequence[str], int]],
    tooltips: Sequence[str],
) -> Markup:
    """Vertical columns, one per (label lines, count), scaled to the largest count."""
    height, top, bottom, left = 230, 24, 190, 8
    parts = _svg_open(chart_id, title, description, height)
    largest = max((count for _, count in columns), default=0) or 1
    slot = (WIDTH - 2 * left) / max(len(columns), 1)
    parts.append(
        f'<line class="axis" stroke="{LINE}" x1="{left}" y1="{bottom}" x2="{WIDTH - left}" y2="{bottom}"/>'
    )
    for i, ((label, count), tooltip) in enumerate(zip(columns, tooltips, strict=True)):
        column_height = (bottom - top) * count / largest
        x = left + i * slot + slot * 0.2
        middle = left + i * slot + slot / 2
        parts.append(f"<g><title>{escape(tooltip)}</title>")
        parts.append(
            f'<rect class="column" fill="{ACCENT}" x="{x:.1f}" y="{bottom - column_height:.1f}" '
            f'width="{slot * 0.6:.1f}" height="{column_height:.1f}"/>'
        )
        parts.append(
            f'<text class="value" x="{middle:.1f}" y="{bottom - column_height - 5:.1f}" text-anchor="middle">'
            f"{escape(format_number(count))}</text>"
        )
        for line, text in enumerate(label):  # short lines under the column, e.g. "Q3" over "2026"
            parts.append(
                f'<text class="label" x="{middle:.1f}" y="{bottom + 17 + 15 * line}" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def quarter_label(quarter: QuarterCount) -> str:
    """A quarter's short name, e.g. ``Q3 2026``."""
    return gettext("Q%(quarter)d %(year)d", quarter=quarter.quarter, year=quarter.year)


def office_progress_chart(offices: Sequence[OfficeProgress]) -> Markup:
    """Bars per office: average progress and completion rate."""
    series = [
        Series(gettext("Average progress"), "bar-progress", ACCENT),
        Series(gettext("Completion rate"), "bar-done", OK),
    ]
    groups = []
    for p in offices:
        progress = None if p.average_progress is None else p.average_progress / 100
        texts = [_percent(progress), _percent(p.completion_rate)]
        tooltip = ngettext(
            "%(office)s: %(num)d action, average progress %(progress)s, completion rate %(rate)s",
            "%(office)s: %(num)d actions, average progress %(progress)s, completion rate %(rate)s",
            p.items,
            office=p.office.code,
            progress=texts[0],
            rate=texts[1],
        )
        groups.append(
            BarGroup(label=p.office.code, values=[progress, p.completion_rate], texts=texts, tooltip=tooltip)
        )
    return bar_chart(
        "chart-offices",
        gettext("Progress per office"),
        gettext("Average progress and completion rate of each office; the table below gives the figures."),
        series,
        groups,
    )


def completion_chart(quarters: Sequence[QuarterCount]) -> Markup:
    """Columns per quarter: actions first completed in it."""
    labels = [quarter_label(q) for q in quarters]
    tooltips = [
        ngettext(
            "%(quarter)s: %(num)d action completed",
            "%(quarter)s: %(num)d actions completed",
            q.count,
            quarter=label,
        )
        for label, q in zip(labels, quarters, strict=True)
    ]
    return column_chart(
        "chart-quarters",
        gettext("Actions completed per quarter"),
        gettext(
            "Actions reported completed for the first time, per calendar quarter; "
            "the table below gives the figures."
        ),
        [((gettext("Q%(quarter)d", quarter=q.quarter), str(q.year)), q.count) for q in quarters],
        tooltips,
    )


def _percent(value: float | None) -> str:
    # A dash, not 0 %, when there is nothing to divide by.
    return "–" if value is None else format_percent(value)
