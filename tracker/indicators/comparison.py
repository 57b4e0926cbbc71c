"""What the indicator pages show: the list, one indicator's comparison of every office, an office's
section, and the dashboard's office × indicator table.

Each builder reads whole sets (all offices of an indicator, all indicators of an office) in a fixed
number of statements, through queries.py, so a page costs the same for two offices as for twelve.
Validated values are everyone's; a value not validated yet is shown only to whom queries.visible
allows, beside the validated one and marked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from markupsafe import Markup

from tracker.extensions import db
from tracker.indicators import charts, queries
from tracker.indicators.models import (
    Indicator,
    IndicatorTarget,
    Measurement,
    MeasurementState,
)
from tracker.labels import measurement_state_mark
from tracker.models import Office, User
from tracker.params import paginate
from tracker.quarters import Quarter

#: Indicators per page of the list (a programme has a few dozen at most).
LIST_PAGE_SIZE = 50
#: Quarters shown by default on an indicator's page, and the most one range may hold.
DEFAULT_QUARTERS = 8
MAX_QUARTERS = 40


def active_offices() -> list[Office]:
    """Active offices by code (one statement)."""
    return list(db.session.scalars(sa.select(Office).where(Office.active.is_(True)).order_by(Office.code)))


def _newer_pending(
    validated: Mapping[tuple[int, int], Measurement], visible: Mapping[tuple[int, int], Measurement]
) -> dict[tuple[int, int], Measurement]:
    """Per (indicator, office): the latest visible value when it is newer than the latest validated one."""
    found = {}
    for key, m in visible.items():
        if m.state == MeasurementState.VALIDATED:
            continue
        known = validated.get(key)
        if known is None or m.period > known.period:
            found[key] = m
    return found


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListEntry:
    """One indicator of the list, with how many offices reported the last quarter and the median."""

    indicator: Indicator
    reported: int
    median: float | None

    @property
    def median_text(self) -> str:
        """The programme median as shown."""
        return queries.format_value(self.indicator.unit, self.median)


@dataclass(frozen=True)
class IndicatorList:
    """A page of indicators, active ones first, and the quarter counted."""

    page: Pagination
    active: list[ListEntry]
    archived: list[ListEntry]
    quarter: Quarter


def indicator_list(today: date, page: int) -> IndicatorList:
    """A page of indicators with their counts and medians, in five statements."""
    query = sa.select(Indicator).order_by(Indicator.archived_at.is_not(None), Indicator.code)
    found = paginate(query, page=page, per_page=LIST_PAGE_SIZE)
    quarter = Quarter.last_ended(today)
    ids = [i.id for i in found.items]
    offices = [o.id for o in active_offices()]
    counts: dict[int, int] = dict(
        db.session.execute(
            sa.select(Measurement.indicator_id, sa.func.count())
            .where(
                Measurement.indicator_id.in_(ids),
                Measurement.office_id.in_(offices),
                Measurement.period == str(quarter),
                Measurement.state == MeasurementState.VALIDATED.value,
            )
            .group_by(Measurement.indicator_id)
        ).all()
    )
    latest = queries.latest(indicator_ids=ids, office_ids=offices)
    values: dict[int, list[float]] = {}
    for (indicator_id, _office), m in latest.items():
        values.setdefault(indicator_id, []).append(m.value)
    entries = [ListEntry(i, counts.get(i.id, 0), queries.median(values.get(i.id, []))) for i in found.items]
    return IndicatorList(
        page=found,
        active=[e for e in entries if e.indicator.archived_at is None],
        archived=[e for e in entries if e.indicator.archived_at is not None],
        quarter=quarter,
    )


# --- one indicator's comparison ---------------------------------------------------------------


@dataclass(frozen=True)
class QuarterRange:
    """The quarters an indicator's page shows, from ``start`` to ``end`` included."""

    start: Quarter
    end: Quarter

    @property
    def quarters(self) -> list[Quarter]:
        """Every quarter of the range, oldest first."""
        return self.start.span(self.end)

    def shifted(self, quarters: int) -> QuarterRange:
        """The same number of quarters, ``quarters`` later (earlier when negative)."""
        start, end = self.start, self.end
        for _step in range(abs(quarters)):
            start, end = (start.next, end.next) if quarters > 0 else (start.previous, end.previous)
        return QuarterRange(start, end)


def quarter_range(args: Mapping[str, str], today: date) -> tuple[QuarterRange, str | None]:
    """The range asked for (``from``, ``to``: ``2026Q3``), else the last 8 ended quarters; with why a
    value given was ignored, if one was."""
    last = Quarter.last_ended(today)
    problem = None

    def read(name: str) -> Quarter | None:
        nonlocal problem
        text = (args.get(name) or "").strip()
        if not text:
            return None
        try:
            return Quarter.parse(text)
        except ValueError:
            problem = _("Give quarters such as 2026Q3; the range shown is the default one.")
            return None

    end, start = read("to"), read("from")
    end = min(end or last, last)
    if start is None:
        start = end
        for _step in range(DEFAULT_QUARTERS - 1):
            start = start.previous
    if start > end:
        start, end = end, start
    if _index(end) - _index(start) + 1 > MAX_QUARTERS:  # counted, not listed: a range may be huge
        problem = _("At most %(num)d quarters are shown at once.", num=MAX_QUARTERS)
        start = end
        for _step in range(MAX_QUARTERS - 1):
            start = start.previous
    return QuarterRange(start, end), problem


def _index(quarter: Quarter) -> int:
    return quarter.year * 4 + quarter.number


@dataclass(frozen=True)
class Point:
    """One quarter of an office's line: the value the viewer may see, if any, and its state."""

    quarter: Quarter
    measurement: Measurement | None

    @property
    def value(self) -> float | None:
        """The value, if any."""
        return self.measurement.value if self.measurement else None

    @property
    def state(self) -> str | None:
        """The value's state, if there is a value."""
        return self.measurement.state if self.measurement else None

    @property
    def pending(self) -> bool:
        """True when the value is not validated yet (the viewer may see it: their office's, or a reviewer)."""
        return self.measurement is not None and self.measurement.state != MeasurementState.VALIDATED


@dataclass
class OfficeRow:
    """One office on an indicator's page."""

    office: Office
    validated: Measurement | None
    pending: Measurement | None
    target: IndicatorTarget | None
    progress: float | None
    points: list[Point]
    chart: Markup = field(default_factory=Markup)


@dataclass(frozen=True)
class Comparison:
    """Everything an indicator's page shows."""

    indicator: Indicator
    range: QuarterRange
    rows: list[OfficeRow]
    median: float | None
    median_progress: float | None
    #: True when the viewer may see some office's values not yet validated.
    sees_pending: bool


def comparison(user: User, indicator: Indicator, shown: QuarterRange) -> Comparison:
    """Every active office's values of ``indicator`` over ``shown``, in five statements."""
    offices = active_offices()
    ids = [o.id for o in offices]
    validated = queries.latest(indicator_ids=[indicator.id], office_ids=ids, until=shown.end)
    visible = queries.latest(
        indicator_ids=[indicator.id], office_ids=ids, until=shown.end, validated_only=False, user=user
    )
    pending = _newer_pending(validated, visible)
    goals = queries.targets([indicator.id])
    series: dict[int, dict[str, Measurement]] = {}
    for m in db.session.scalars(
        sa.select(Measurement).where(
            Measurement.indicator_id == indicator.id,
            Measurement.office_id.in_(ids),
            Measurement.period >= str(shown.start),
            Measurement.period <= str(shown.end),
            queries.visible(user),
        )
    ):
        series.setdefault(m.office_id, {})[m.period] = m
    quarters = shown.quarters
    rows = []
    for office in offices:
        key = (indicator.id, office.id)
        known = validated.get(key)
        target = goals.get(key)
        points = [Point(q, series.get(office.id, {}).get(str(q))) for q in quarters]
        rows.append(
            OfficeRow(
                office=office,
                validated=known,
                pending=pending.get(key),
                target=target,
                progress=queries.progress(indicator, target, known.value if known else None),
                points=points,
            )
        )
    top = charts.scale_top(
        indicator.unit,
        [p.value for r in rows for p in r.points]
        + [v for r in rows if r.target for v in (r.target.target_value, r.target.baseline_value)],
    )
    for row in rows:
        row.chart = charts.office_line_chart(
            f"chart-{row.office.code.lower()}",
            indicator,
            row.office.code,
            row.points,
            row.target.target_value if row.target else None,
            top,
        )
    return Comparison(
        indicator=indicator,
        range=shown,
        rows=rows,
        median=queries.median(r.validated.value if r.validated else None for r in rows),
        median_progress=queries.median(r.progress for r in rows),
        sees_pending=any(p.pending for r in rows for p in r.points) or bool(pending),
    )


# --- an office's section ------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficeIndicator:
    """One active indicator on an office's page."""

    indicator: Indicator
    validated: Measurement | None
    pending: Measurement | None
    target: IndicatorTarget | None
    progress: float | None

    def text(self, value: float | None) -> str:
        """A value of this indicator as shown."""
        return queries.format_value(self.indicator.unit, value)

    @property
    def pending_state(self) -> str:
        """The newer value's state as marked ("awaiting validation", "sent back")."""
        return measurement_state_mark(self.pending.state) if self.pending else ""


def office_section(user: User, office: Office) -> list[OfficeIndicator]:
    """The office's latest value of each active indicator (what ``user`` may see), in four statements."""
    indicators = queries.active_indicators()
    ids = [i.id for i in indicators]
    validated = queries.latest(indicator_ids=ids, office_ids=[office.id])
    visible = queries.latest(indicator_ids=ids, office_ids=[office.id], validated_only=False, user=user)
    pending = _newer_pending(validated, visible)
    goals = {
        t.indicator_id: t
        for t in db.session.scalars(sa.select(IndicatorTarget).where(IndicatorTarget.office_id == office.id))
    }
    entries = []
    for i in indicators:
        known = validated.get((i.id, office.id))
        target = goals.get(i.id)
        entries.append(
            OfficeIndicator(
                indicator=i,
                validated=known,
                pending=pending.get((i.id, office.id)),
                target=target,
                progress=queries.progress(i, target, known.value if known else None),
            )
        )
    return entries


# --- the dashboard's table ------------------------------------------------------------------------

#: Progress bands of the dashboard's cells, (lowest progress, CSS class), highest first.
BANDS = ((1.0, "reached"), (2 / 3, "high"), (1 / 3, "mid"), (0.0, "low"))


@dataclass(frozen=True)
class TableColumn:
    """An indicator as a column of the dashboard's table (plain data: the table is cached)."""

    id: int
    code: str
    name: str
    unit: str


@dataclass(frozen=True)
class TableCell:
    """An office's latest validated value of an indicator, with its progress to target."""

    unit: str
    value: float | None
    period: str | None
    progress: float | None

    @property
    def text(self) -> str:
        """The value as shown, in the user's language (formatted per request: the cache is shared)."""
        return queries.format_value(self.unit, self.value)

    @property
    def band(self) -> str:
        """The cell's colour class: ``reached``, ``high``, ``mid``, ``low``, or ``unknown``."""
        if self.progress is None:
            return "unknown"
        return next(css for low, css in BANDS if self.progress >= low)


@dataclass(frozen=True)
class TableRow:
    """One office of the dashboard's table."""

    office_id: int
    code: str
    name: str
    cells: tuple[TableCell, ...]


@dataclass(frozen=True)
class IndicatorTable:
    """Offices (rows) × active indicators (columns): latest validated values and progress."""

    columns: tuple[TableColumn, ...] = ()
    rows: tuple[TableRow, ...] = ()


def dashboard_table(offices: Iterable[tuple[int, str, str]]) -> IndicatorTable:
    """The table for ``offices`` (id, code, name), in three statements; plain data, fit for the cache."""
    offices = list(offices)
    indicators = queries.active_indicators()
    cells = queries.grid(indicators, [o[0] for o in offices])
    columns = tuple(TableColumn(i.id, i.code, i.name, i.unit) for i in indicators)
    rows = []
    for office_id, code, name in offices:
        row = []
        for i in indicators:
            c = cells[(i.id, office_id)]
            row.append(TableCell(i.unit, c.value, c.latest.period if c.latest else None, c.progress))
        rows.append(TableRow(office_id, code, name, tuple(row)))
    return IndicatorTable(columns=columns, rows=tuple(rows))
