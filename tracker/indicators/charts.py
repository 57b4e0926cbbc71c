"""Server-side SVG of an office's values of one indicator over the quarters, with its target.

The house style of tracker/dashboard/charts.py: plain markup, no script, every text escaped, an
``<svg role="img">`` labelled by its ``<title>`` and ``<desc>`` (which points to the table that
follows the chart), every point with its own ``<title>``. A value not validated yet is drawn hollow
and says so in its title; the target is a dashed line named "Target".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from flask_babel import format_decimal
from flask_babel import gettext as _
from markupsafe import Markup, escape

from tracker.indicators import queries
from tracker.indicators.models import Indicator, Unit
from tracker.labels import measurement_state_mark
from tracker.quarters import Quarter

WIDTH, HEIGHT = 320, 168
#: The plot's box in user units: values' ticks on the left, quarters below, "Target" on the right.
LEFT, RIGHT, TOP, BOTTOM = 52, 270, 10, 128
LINE_COLOUR = "#0b5cad"
TARGET_COLOUR = "#9a6700"
GRID = "#d0d7de"


class ChartPoint(Protocol):
    """What the chart needs of a quarter's value (comparison.Point)."""

    quarter: Quarter

    @property
    def value(self) -> float | None: ...

    @property
    def pending(self) -> bool: ...

    @property
    def state(self) -> str | None: ...


def scale_top(unit: str, values: Iterable[float | None]) -> float:
    """The top of the value axis: 100 for percentages, 1 for yes/no, else a round number above all values."""
    if unit == Unit.PERCENT:
        return 100.0
    if unit == Unit.YES_NO:
        return 1.0
    highest = max((v for v in values if v is not None), default=0.0)
    if highest <= 0:
        return 1.0
    step = 10 ** (len(str(int(highest))) - 1)  # 37 → 10, 240 → 100
    return float((int(highest * 1.05 // step) + 1) * step)


def _tick_text(unit: str, value: float) -> str:
    if unit == Unit.YES_NO:
        return _("Yes") if value >= 1 else _("No")
    if unit == Unit.PERCENT:
        return queries.format_value(unit, value)
    return format_decimal(round(value, 1))


def office_line_chart(
    chart_id: str,
    indicator: Indicator,
    office_code: str,
    points: Sequence[ChartPoint],
    target: float | None,
    top: float,
) -> Markup:
    """One office's values of ``indicator`` per quarter (a gap where none is known), the target dashed."""
    title = _("%(office)s: %(indicator)s per quarter", office=office_code, indicator=indicator.name)
    description = _(
        "Values of %(office)s per quarter, hollow where not validated yet, with the target as a dashed "
        "line; the table below gives the figures.",
        office=office_code,
    )
    cid = escape(chart_id)
    parts = [
        f'<svg class="chart chart-indicator" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{cid}-title {cid}-desc">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(description)}</desc>',
    ]
    top = top or 1.0

    def y_of(value: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * min(max(value / top, 0.0), 1.0)

    ticks = (0.0, top) if indicator.unit == Unit.YES_NO else (0.0, top / 2, top)
    for tick in ticks:
        ty = y_of(tick)
        parts.append(
            f'<line class="grid" stroke="{GRID}" x1="{LEFT}" y1="{ty:.1f}" x2="{RIGHT}" y2="{ty:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 4}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{escape(_tick_text(indicator.unit, tick))}</text>"
        )
    step = (RIGHT - LEFT - 16) / max(len(points) - 1, 1)
    xs = [LEFT + 8 + step * i for i in range(len(points))]
    every = 1 if len(points) <= 8 else (len(points) + 7) // 8  # at most eight quarter labels
    last_year = None
    for i, (x, point) in enumerate(zip(xs, points, strict=True)):
        if i % every and i != len(points) - 1:
            continue
        # The year under the first label and where it changes only: under every one they run together.
        year = str(point.quarter.year) if point.quarter.year != last_year else ""
        last_year = point.quarter.year
        for row, text in enumerate((f"Q{point.quarter.number}", year)):
            if not text:
                continue
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{BOTTOM + 14 + 12 * row}" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
    if target is not None:
        ty = y_of(target)
        tip = _("Target: %(value)s", value=queries.format_value(indicator.unit, target))
        parts.append(f'<g class="target"><title>{escape(tip)}</title>')
        parts.append(
            f'<line class="target-line" stroke="{TARGET_COLOUR}" stroke-width="1.5" stroke-dasharray="6 3" '
            f'x1="{LEFT}" y1="{ty:.1f}" x2="{RIGHT}" y2="{ty:.1f}"/>'
        )
        parts.append(
            f'<text class="target-label" x="{RIGHT + 4}" y="{ty + 4:.1f}">{escape(_("Target"))}</text>'
        )
        parts.append("</g>")
    runs: list[list[tuple[float, float]]] = [[]]
    for x, point in zip(xs, points, strict=True):
        if point.value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y_of(point.value)))
    for run in runs:
        if len(run) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(
                f'<polyline class="value-line" fill="none" stroke="{LINE_COLOUR}" stroke-width="2" '
                f'points="{coords}"/>'
            )
    for x, point in zip(xs, points, strict=True):
        if point.value is None:
            continue
        text = queries.format_value(indicator.unit, point.value)
        if point.pending:
            label = measurement_state_mark(point.state)
            tip = _("%(quarter)s: %(value)s (%(state)s)", quarter=point.quarter, value=text, state=label)
            fill, css = "#fff", "point pending"
        else:
            tip = _("%(quarter)s: %(value)s", quarter=point.quarter, value=text)
            fill, css = LINE_COLOUR, "point"
        parts.append(
            f'<circle class="{css}" cx="{x:.1f}" cy="{y_of(point.value):.1f}" r="3.5" fill="{fill}" '
            f'stroke="{LINE_COLOUR}" stroke-width="1.5"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
