"""The digest's "Indicators" section: each office's value for the quarter, its change, progress, gaps.

Read once for all managers (three statements: active indicators, the quarter's and the previous
quarter's measurements, baselines and targets), then sliced per manager by
:meth:`IndicatorFigures.for_user`: the offices of their scope, and of each value only what
``permissions.may_see_measurement`` lets them see. A programme-wide manager reads validated values;
an office's manager also reads their office's values awaiting validation, marked as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_babel import format_decimal
from flask_babel import gettext as _

from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementState, Unit
from tracker.indicators.queries import active_indicators, format_value, progress, targets
from tracker.models import Office, User
from tracker.permissions import Perm, can, may_see_measurement
from tracker.quarters import Quarter


def indicator_url(indicator_id: int) -> str:
    """An indicator's comparison page, from TRACKER_BASE_URL (for mail)."""
    return f"{site_base()}/indicators/{int(indicator_id)}"


def site_base() -> str:
    """TRACKER_BASE_URL without its trailing slash.

    Mail builds the indicator pages' links as plain paths rather than with url_for: those pages'
    endpoints belong to their own module.
    """
    return current_app.config["TRACKER_BASE_URL"].rstrip("/")


def format_change(unit: str, change: float | None) -> str:
    """A change between two quarters as shown: ``+5 points``, ``-1.5 months``; "–" when unknown."""
    if change is None or unit == Unit.YES_NO:
        return "–"
    sign = "-" if change < 0 else "+"
    if unit == Unit.PERCENT:
        return _("%(points)s points", points=sign + format_decimal(round(abs(change), 1), format="#,##0.#"))
    return sign + format_value(unit, abs(change))


@dataclass(frozen=True)
class IndicatorRow:
    """One office's line under an indicator: what the reader may see of its value and progress."""

    indicator: Indicator
    office: Office
    #: The quarter's value shown to the reader (None: awaiting validation, not theirs to see).
    value: float | None
    #: The previous quarter's value shown to the reader, if any.
    previous: float | None
    target: IndicatorTarget | None
    #: The value shown is not validated yet (the reader is of its office).
    unvalidated: bool = False

    @property
    def awaiting(self) -> bool:
        """A value was reported and awaits validation, and the reader may not see it yet."""
        return self.value is None

    @property
    def change(self) -> float | None:
        """The change since the previous quarter, when both values are shown."""
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def progress(self) -> float | None:
        """Progress from the baseline to the target, 0–1, of the value shown."""
        return progress(self.indicator, self.target, self.value)

    @property
    def value_text(self) -> str:
        """The value in its unit, in the reader's language."""
        return format_value(self.indicator.unit, self.value)

    @property
    def change_text(self) -> str:
        """The change in the indicator's unit, in the reader's language."""
        return format_change(self.indicator.unit, self.change)


@dataclass(frozen=True)
class IndicatorSection:
    """One indicator in one manager's digest: the offices that reported, and those that did not."""

    indicator: Indicator
    rows: list[IndicatorRow]
    #: Offices of the reader's scope with no value for the quarter (or one sent back).
    missing: list[Office]

    @property
    def url(self) -> str:
        """The indicator's comparison page (every office's values)."""
        return indicator_url(self.indicator.id)


@dataclass(frozen=True)
class IndicatorFigures:
    """Every active office's measurements of the quarter and the one before, for all managers."""

    quarter: Quarter
    indicators: list[Indicator]
    offices: list[Office]
    measurements: dict[tuple[int, int, str], Measurement]
    targets: dict[tuple[int, int], IndicatorTarget]

    def for_user(self, user: User) -> list[IndicatorSection]:
        """The sections of ``user``'s scope, each value as they may see it; no statement is run."""
        offices = [o for o in self.offices if can(user, Perm.VIEW_OFFICE, o)]
        sections = []
        now, before = str(self.quarter), str(self.quarter.previous)
        for indicator in self.indicators:
            rows, missing = [], []
            for office in offices:
                current = self.measurements.get((indicator.id, office.id, now))
                if current is None or current.state == MeasurementState.SENT_BACK:
                    missing.append(office)
                    continue
                shown = may_see_measurement(user, current)
                previous = self.measurements.get((indicator.id, office.id, before))
                rows.append(
                    IndicatorRow(
                        indicator,
                        office,
                        current.value if shown else None,
                        previous.value if previous and may_see_measurement(user, previous) else None,
                        self.targets.get((indicator.id, office.id)),
                        unvalidated=shown and current.state != MeasurementState.VALIDATED,
                    )
                )
            if offices:
                sections.append(IndicatorSection(indicator, rows, missing))
        return sections


def indicator_figures(quarter: Quarter, offices: list[Office]) -> IndicatorFigures:
    """The indicator figures of ``quarter`` for every active office: at most three statements."""
    indicators = active_indicators()
    active = sorted((o for o in offices if o.active), key=lambda o: o.code)
    if not indicators or not active:
        return IndicatorFigures(quarter, [], active, {}, {})
    ids = [i.id for i in indicators]
    query = sa.select(Measurement).where(
        Measurement.indicator_id.in_(ids),
        Measurement.period.in_([str(quarter), str(quarter.previous)]),
    )
    found = {(m.indicator_id, m.office_id, m.period): m for m in db.session.scalars(query)}
    return IndicatorFigures(quarter, indicators, active, found, targets(ids))
