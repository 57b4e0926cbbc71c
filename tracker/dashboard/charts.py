"""Server-side SVG charts: plain markup, no script, no external asset, every text escaped.

Each chart is an ``<svg role="img">`` labelled by its ``<title>`` (and a ``<desc>`` pointing to the
table next to it); each bar carries its own ``<title>`` so that hovering shows its figures. The
page puts a table with the same figures next to every chart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask_babel import format_number, format_percent, get_locale, gettext, ngettext
from markupsafe import Markup, escape

from tracker.dashboard import cache
from tracker.dashboard.history import Line, Point, RatesOverTime
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


def _svg_open(chart_id: str, title: str, description: str, height: int, css: str = "chart") -> list[str]:
    return [
        f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
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


def quarter_label(quarter: QuarterCount | tuple[int, int]) -> str:
    """A quarter's short name, e.g. ``Q3 2026``; ``quarter`` is a QuarterCount or (year, number)."""
    year, number = quarter if isinstance(quarter, tuple) else (quarter.year, quarter.quarter)
    return gettext("Q%(quarter)d %(year)d", quarter=number, year=year)


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


# --- completion rate over time ----------------------------------------------------------------

#: One colour per office line (each at least 3:1 against the white card), in office order; the
#: dash patterns cycle apart from them, so two neighbouring lines differ in both.
LINE_COLOURS = (
    "#0b5cad",
    "#b3261e",
    "#1a7f37",
    "#8250df",
    "#9a6700",
    "#bf3989",
    "#0a7d8c",
    "#c24e00",
    "#3949ab",
    "#5c6b00",
    "#8c4a2f",
    "#6e5494",
)
DASHES = ("", "6 3", "2 2", "8 3 2 3")
PROGRAMME_COLOUR = "#24292f"
#: The lines' box in user units: left of it the percentages, right of it a label per line.
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 40, 336, 12, 222
LINE_CHART_HEIGHT = 262
#: Least vertical distance between two lines' end labels.
LABEL_GAP = 12


def line_style(index: int, line: Line) -> tuple[str, str]:
    """The colour and dash pattern of the ``index``-th line (the programme's is dark and solid)."""
    if line.programme:
        return PROGRAMME_COLOUR, ""
    return LINE_COLOURS[index % len(LINE_COLOURS)], DASHES[index % len(DASHES)]


def moment_labels(rates: RatesOverTime) -> list[str]:
    """The moments' column headings: each quarter (its end), then "Now"."""
    return [quarter_label(q) for q in rates.quarters] + [gettext("Now")]


def line_name(line: Line) -> str:
    """A line's label: the office's code, or "All offices" for the programme's."""
    return gettext("All offices") if line.programme else line.code


def rate_text(value: float | None) -> str:
    """A rate as the chart and its table print it: a percentage, or a dash when nothing counts."""
    return _percent(value)


def _spread(targets: list[float], top: float, bottom: float, gap: float) -> list[float]:
    """Label positions as near their targets as possible, at least ``gap`` apart, within the box."""
    order = sorted(range(len(targets)), key=lambda i: targets[i])
    placed = [0.0] * len(targets)
    previous = top - gap
    for i in order:  # downwards: no label above the one before
        previous = placed[i] = max(targets[i], previous + gap)
    following = bottom + gap
    for i in reversed(order):  # upwards: back into the box, still apart
        following = placed[i] = min(placed[i], following - gap)
    return placed


def rate_chart(chart_id: str, rates: RatesOverTime) -> Markup:
    """:func:`draw_rate_chart`, drawn once per data version, figures and language (formatting each
    point's figures costs tens of milliseconds)."""
    key = ("rate-chart", chart_id, rates, str(get_locale()))
    return cache.cached(key, lambda: draw_rate_chart(chart_id, rates))


def draw_rate_chart(chart_id: str, rates: RatesOverTime) -> Markup:
    """One line per office (and the programme's): the completion rate at each quarter's end and now.

    Thin lines told apart by colour and dash pattern, each named at its end by a sample of its
    stroke and its code; every point carries its figures in a ``<title>``. A line has a gap where
    nothing counted. The y axis runs from 0 to 100 %.
    """
    moments = moment_labels(rates)
    parts = _svg_open(
        chart_id,
        gettext("Completion rate over time"),
        gettext(
            "Completion rate at the end of each quarter and now, one line per office and one for all "
            "offices together; the table below gives the figures."
        ),
        LINE_CHART_HEIGHT,
        css="chart chart-lines",
    )
    step = (PLOT_RIGHT - PLOT_LEFT - 16) / max(len(moments) - 1, 1)
    xs = [PLOT_LEFT + 8 + step * i for i in range(len(moments))]

    def y_of(rate: float) -> float:
        return PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * min(max(rate, 0.0), 1.0)

    for tick in range(0, 101, 25):  # horizontal grid lines with their percentage on the left
        ty = y_of(tick / 100)
        parts.append(
            f'<line class="grid" stroke="{LINE}" x1="{PLOT_LEFT}" y1="{ty:.1f}" '
            f'x2="{PLOT_RIGHT}" y2="{ty:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{PLOT_LEFT - 4}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{escape(format_percent(tick / 100))}</text>"
        )
    for x, (year, quarter) in zip(xs, rates.quarters, strict=False):  # "Q3" over "2026"
        for row, text in enumerate((gettext("Q%(quarter)d", quarter=quarter), str(year))):
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{PLOT_BOTTOM + 16 + 14 * row}" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
    parts.append(
        f'<text class="tick" x="{xs[-1]:.1f}" y="{PLOT_BOTTOM + 16}" text-anchor="middle">'
        f"{escape(moments[-1])}</text>"
    )

    drawn = [(i, line) for i, line in enumerate(rates.lines) if any(p.rate is not None for p in line.points)]
    ends = []
    for _, line in drawn:
        last = max(j for j, p in enumerate(line.points) if p.rate is not None)
        ends.append((xs[last], y_of(line.points[last].rate or 0.0)))
    # Closer than LABEL_GAP only when more lines than fit (beyond the 13 of a dozen offices).
    gap = min(LABEL_GAP, (PLOT_BOTTOM - PLOT_TOP - 4) / max(len(ends) - 1, 1))
    label_ys = _spread([y for _, y in ends], PLOT_TOP + 4, PLOT_BOTTOM, gap)
    # The programme's line last, so that it lies on top of the offices'.
    for (index, line), (end_x, end_y), label_y in zip(drawn, ends, label_ys, strict=True):
        colour, dash = line_style(index, line)
        name = line_name(line)
        css = "series programme" if line.programme else "series"
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        width = 2 if line.programme else 1.5
        heading = name if line.programme else f"{line.code} — {line.name}"
        parts.append(f'<g class="{css}"><title>{escape(heading)}</title>')
        for run in _runs(line, xs, y_of):  # one polyline per stretch without a gap
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(
                f'<polyline class="rate-line" fill="none" stroke="{colour}" stroke-width="{width}"'
                f'{dash_attr} points="{points}"/>'
            )
        for x, point, moment, j in zip(xs, line.points, moments, range(len(moments)), strict=True):
            if point.rate is None:
                continue
            tip = _point_title(line, name, moment, j == len(moments) - 1, point)
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y_of(point.rate):.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        sample_x = PLOT_RIGHT + 6
        if abs(label_y - end_y) > 1 or end_x < xs[-1]:  # a thin leader from the line to its label
            parts.append(
                f'<line class="leader" stroke="{LINE}" x1="{end_x + 3:.1f}" y1="{end_y:.1f}" '
                f'x2="{sample_x - 1}" y2="{label_y:.1f}"/>'
            )
        parts.append(
            f'<line class="sample" stroke="{colour}" stroke-width="{width}"{dash_attr} '
            f'x1="{sample_x}" y1="{label_y:.1f}" x2="{sample_x + 14}" y2="{label_y:.1f}"/>'
        )
        parts.append(
            f'<text class="series-label" x="{sample_x + 18}" y="{label_y + 4:.1f}">{escape(name)}</text>'
        )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _runs(line: Line, xs: Sequence[float], y_of: Callable[[float], float]) -> list[list[tuple[float, float]]]:
    """The line's points split where a moment has no rate."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, point in zip(xs, line.points, strict=True):
        if point.rate is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y_of(point.rate)))
    return [run for run in runs if len(run) > 1]


def _point_title(line: Line, name: str, moment: str, now: bool, point: Point) -> str:
    """A point's figures: the line, the moment, the rate (an office's with its counts)."""
    when = gettext("now") if now else gettext("end of %(quarter)s", quarter=moment)
    rate = _percent(point.rate)
    if line.programme:  # a rate only: with counts, one office's could be told from the rest
        return gettext("%(line)s, %(moment)s: %(rate)s", line=name, moment=when, rate=rate)
    return gettext(
        "%(line)s, %(moment)s: %(rate)s (%(done)s of %(counted)s)",
        line=name,
        moment=when,
        rate=rate,
        done=format_number(point.done),
        counted=format_number(point.counted),
    )
