"""Reading indicator values: what a user may see, each office's latest value, progress to target.

Every function reads all offices (or all indicators) in one statement, so pages, the dashboard, the
digest, exports and the API run a bounded number of statements whatever the number of values.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from flask_babel import format_decimal
from flask_babel import gettext as _

from tracker.extensions import db
from tracker.indicators.models import (
    Direction,
    Indicator,
    IndicatorTarget,
    Measurement,
    MeasurementState,
    Unit,
)
from tracker.models import User
from tracker.permissions import measurement_visibility_clause
from tracker.quarters import Quarter


def visible(user: User) -> sa.ColumnElement[bool]:
    """WHERE clause: the measurements ``user`` may read (validated: all; others: as permissions say)."""
    return measurement_visibility_clause(user, Measurement.state, Measurement.office_id)


def active_indicators() -> list[Indicator]:
    """Indicators not archived, by code."""
    return list(
        db.session.scalars(
            sa.select(Indicator).where(Indicator.archived_at.is_(None)).order_by(Indicator.code)
        )
    )


def latest(
    *,
    indicator_ids: Iterable[int] | None = None,
    office_ids: Iterable[int] | None = None,
    until: Quarter | None = None,
    validated_only: bool = True,
    user: User | None = None,
) -> dict[tuple[int, int], Measurement]:
    """Each (indicator, office)'s latest measurement (up to ``until``), in one statement.

    ``validated_only`` keeps validated values (what offices compare); otherwise ``user``'s visible ones.
    """
    where: list[sa.ColumnElement[bool]] = []
    if validated_only:
        where.append(Measurement.state == MeasurementState.VALIDATED.value)
    elif user is not None:
        where.append(visible(user))
    if indicator_ids is not None:
        where.append(Measurement.indicator_id.in_(sorted(set(indicator_ids))))
    if office_ids is not None:
        where.append(Measurement.office_id.in_(sorted(set(office_ids))))
    if until is not None:
        where.append(Measurement.period <= str(until))
    rank = (
        sa.select(
            Measurement.id,
            sa.func.row_number()
            .over(
                partition_by=(Measurement.indicator_id, Measurement.office_id),
                order_by=Measurement.period.desc(),
            )
            .label("rank"),
        )
        .where(*where)
        .subquery()
    )
    rows = db.session.scalars(
        sa.select(Measurement).join(rank, rank.c.id == Measurement.id).where(rank.c.rank == 1)
    )
    return {(m.indicator_id, m.office_id): m for m in rows}


def targets(indicator_ids: Iterable[int] | None = None) -> dict[tuple[int, int], IndicatorTarget]:
    """Every office's baseline and target, by (indicator, office), in one statement."""
    query = sa.select(IndicatorTarget)
    if indicator_ids is not None:
        query = query.where(IndicatorTarget.indicator_id.in_(sorted(set(indicator_ids))))
    return {(t.indicator_id, t.office_id): t for t in db.session.scalars(query)}


def progress(indicator: Indicator, target: IndicatorTarget | None, value: float | None) -> float | None:
    """How far ``value`` has come from the baseline to the target, 0–1 (capped); None when unknown.

    For a lower-is-better indicator the same formula works (the target is below the baseline). A
    yes/no indicator has reached its target or not. Without a baseline, progress is 1 at or past the
    target and otherwise unknown.
    """
    if value is None or target is None or target.target_value is None:
        return None
    goal = target.target_value
    higher = indicator.direction == Direction.HIGHER
    reached = value >= goal if higher else value <= goal
    if indicator.unit == Unit.YES_NO:
        return 1.0 if reached else 0.0
    if reached:
        return 1.0
    base = target.baseline_value
    if base is None or base == goal:
        return None
    return max(0.0, min(1.0, (value - base) / (goal - base)))


def median(values: Iterable[float | None]) -> float | None:
    """The median of the known values (the programme median), or None if none is known."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


#: Decimal places shown per unit.
_PLACES = {Unit.PERCENT: 1, Unit.NUMBER: 1, Unit.DAYS: 0, Unit.MONTHS: 1}


def format_value(unit: str, value: float | None) -> str:
    """A value as shown, in the user's locale: ``87.5 %``, ``120 days``, ``Yes``; "—" for none."""
    if value is None:
        return "—"
    if unit == Unit.YES_NO:
        return _("Yes") if value >= 1 else _("No")
    places = _PLACES.get(Unit(unit), 1)
    number = format_decimal(round(value, places), format="#,##0." + "#" * places if places else "#,##0")
    if unit == Unit.PERCENT:
        return _("%(number)s %%", number=number)
    if unit == Unit.DAYS:
        return _("%(number)s days", number=number)
    if unit == Unit.MONTHS:
        return _("%(number)s months", number=number)
    return number


@dataclass(frozen=True)
class Cell:
    """One office × indicator: its latest validated value, baseline, target and progress."""

    indicator: Indicator
    office_id: int
    latest: Measurement | None
    target: IndicatorTarget | None

    @property
    def value(self) -> float | None:
        """The latest validated value, if any."""
        return self.latest.value if self.latest else None

    @property
    def progress(self) -> float | None:
        """Progress to target, 0–1, if known."""
        return progress(self.indicator, self.target, self.value)


def grid(
    indicators: list[Indicator], office_ids: list[int], *, until: Quarter | None = None
) -> dict[tuple[int, int], Cell]:
    """The comparison grid (latest validated values with baselines and targets) in two statements."""
    ids = [i.id for i in indicators]
    found = latest(indicator_ids=ids, office_ids=office_ids, until=until)
    goals = targets(ids)
    return {
        (i.id, o): Cell(i, o, found.get((i.id, o)), goals.get((i.id, o)))
        for i in indicators
        for o in office_ids
    }
