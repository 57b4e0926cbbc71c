"""Import of measurements: a file's rows → the values they report, and every problem, by row and column.

The file is read by the house's reader (:mod:`tracker.transfer.read`, with :data:`LAYOUT`); each row
names an indicator and an office by code, a quarter (``2026Q3``) and a value, with an optional note
and evidence link. :func:`plan_measurements` checks every row by the rules of the reporting form
(services.report) and says what it would do: a new value, a correction, or nothing (unchanged). It
reads the indicators, the offices and the file's existing values in three statements, whatever the
number of rows. :func:`apply_plan` then reports every row through services.report, in the caller's
transaction: the view commits all of them, or rolls back all of them at the first refusal.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from tracker.actions import evidence
from tracker.actions.commands import WorkflowError
from tracker.extensions import db
from tracker.indicators import services
from tracker.indicators.models import Indicator, Measurement, MeasurementState
from tracker.models import Office, User
from tracker.permissions import Perm, can
from tracker.quarters import Quarter
from tracker.transfer import read
from tracker.transfer.read import _CONTROL_OR_BREAK

#: The columns of a measurements file, in the template's order.
COLUMNS: tuple[str, ...] = ("indicator", "office", "period", "value", "note", "evidence_url")
#: Columns every file must have.
REQUIRED: tuple[str, ...] = ("indicator", "office", "period", "value")
#: The labels a file's header may use instead of the identifiers, in any interface language.
LABELS: dict[str, Any] = {
    "indicator": _l("Indicator"),
    "office": _l("Office"),
    "period": _l("Quarter"),
    "value": _l("Value"),
    "note": _l("Note"),
    "evidence_url": _l("Evidence link"),
}
#: What each column holds, for the upload page.
COLUMN_HELP: dict[str, Any] = {
    "indicator": _l("Required. The indicator's code, e.g. IND-ONLINE."),
    "office": _l("Required. The office's code, e.g. SG."),
    "period": _l("Required. The quarter measured, written 2026Q3; it must have ended."),
    "value": _l(
        "Required. A number within the unit's bounds (a percentage from 0 to 100); "
        "yes or no for a yes/no indicator."
    ),
    "note": _l("Optional. How the value was measured, or what changed."),
    "evidence_url": _l("Optional. A web address where the value can be checked."),
}
LAYOUT = read.Layout(COLUMNS, LABELS, "indicator")
#: Longest note accepted (as the action import's notes).
MAX_NOTE = 5000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Kind(enum.StrEnum):
    """What the import does with a row."""

    NEW = "new"
    CORRECTION = "correction"
    UNCHANGED = "unchanged"


@dataclass(slots=True)
class Problem:
    """Why a row (its number as the spreadsheet shows it) cannot be imported; ``column`` names the field."""

    row: int
    column: str | None
    message: str


@dataclass(slots=True)
class PlannedRow:
    """One row of the file: what it names, as typed and as found, and what importing it does."""

    number: int
    indicator_code: str | None = None
    office_code: str | None = None
    period_text: str | None = None
    indicator: Indicator | None = None
    office: Office | None = None
    period: Quarter | None = None
    value: float | None = None
    note: str | None = None
    evidence_url: str | None = None
    #: None for a row with a problem.
    kind: Kind | None = None
    #: The value there now, for a correction or an unchanged row.
    current: float | None = None


@dataclass
class MeasurementPlan:
    """A file planned: its rows, the problems (none → it may be imported) and the reader's warnings."""

    filename: str
    rows: list[PlannedRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        """How many rows of each kind."""
        return Counter(r.kind.value for r in self.rows if r.kind is not None)

    @property
    def changes_anything(self) -> bool:
        """True if importing would write something."""
        return any(r.kind in (Kind.NEW, Kind.CORRECTION) for r in self.rows)


class ImportRefused(Exception):  # noqa: N818 - a refusal, like WorkflowError
    """A row refused while the file was being imported: nothing of the file is kept."""

    def __init__(self, row: int, column: str | None, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(row, column, message)


def missing_columns(table: read.Table) -> list[str]:
    """The required columns a file's header does not name."""
    return [c for c in REQUIRED if c not in table.columns]


def plan_measurements(table: read.Table, actor: User, now: datetime) -> MeasurementPlan:
    """Check every row of ``table`` (read with :data:`LAYOUT`) as the reporting form would, and say
    what importing it would do. Reads the database in three statements; writes nothing."""
    plan = MeasurementPlan(table.filename, warnings=list(table.warnings))
    for column in missing_columns(table):
        plan.problems.append(Problem(1, column, _("The file has no %(column)s column.", column=column)))
    checker = _RowChecker(plan, actor, now)
    for row in table.rows:
        plan.rows.append(checker.check(row))
    _check_duplicates(plan)
    existing = _existing(plan.rows)
    failed = {p.row for p in plan.problems}
    for planned in plan.rows:
        if planned.number in failed or planned.indicator is None or planned.office is None:
            continue
        found = existing.get((planned.indicator.id, planned.office.id, str(planned.period)))
        planned.kind = _kind(planned, found)
        planned.current = found.value if found is not None else None
    return plan


class _RowChecker:
    """Types the cells of each row and records its problems, with the indicators and offices read once."""

    def __init__(self, plan: MeasurementPlan, actor: User, now: datetime) -> None:
        self.plan, self.actor, self.now = plan, actor, now
        # Both lists are short (tens of rows): read whole, not looked up per row.
        self.indicators = {i.code: i for i in db.session.scalars(sa.select(Indicator))}
        self.offices = {o.code: o for o in db.session.scalars(sa.select(Office))}
        self.last_ended = Quarter.last_ended(now.date())

    def problem(self, row: read.Row, column: str, message: str) -> None:
        """Record a problem at a row and column."""
        self.plan.problems.append(Problem(row.number, column, message))

    def check(self, row: read.Row) -> PlannedRow:
        """One row, typed and checked."""
        planned = PlannedRow(row.number)
        self._indicator(row, planned)
        self._office(row, planned)
        self._period(row, planned)
        note = self._text(row, "note", multiline=True)
        if note is not None and len(note) > MAX_NOTE:
            self.problem(row, "note", _("Longer than %(num)d characters.", num=MAX_NOTE))
        else:
            planned.note = note
        url = self._text(row, "evidence_url")
        if url is not None and (link := evidence.link_problem(url)):
            self.problem(row, "evidence_url", link)
        else:
            planned.evidence_url = url
        self._value(row, planned)
        return planned

    def _indicator(self, row: read.Row, planned: PlannedRow) -> None:
        code = self._text(row, "indicator")
        if code is None:
            if row.cells.get("indicator") is None:
                self.problem(row, "indicator", _("Give the indicator's code."))
            return
        planned.indicator_code = code.upper()
        indicator = self.indicators.get(code.upper())
        if indicator is None:
            self.problem(row, "indicator", _("No indicator has the code %(code)s.", code=code))
        elif indicator.archived_at is not None:
            self.problem(row, "indicator", _("Indicator %(code)s is archived.", code=indicator.code))
        else:
            planned.indicator = indicator

    def _office(self, row: read.Row, planned: PlannedRow) -> None:
        code = self._text(row, "office")
        if code is None:
            if row.cells.get("office") is None:
                self.problem(row, "office", _("Give the office's code."))
            return
        planned.office_code = code.upper()
        office = self.offices.get(code.upper())
        if office is None:
            self.problem(row, "office", _("No office has the code %(code)s.", code=code))
        elif not can(self.actor, Perm.REPORT_MEASUREMENT, office):
            self.problem(row, "office", _("You may not report values for %(office)s.", office=office.code))
        else:
            planned.office = office

    def _period(self, row: read.Row, planned: PlannedRow) -> None:
        text = self._text(row, "period")
        planned.period_text = text
        if text is None and row.cells.get("period") is not None:
            return  # a formula or control characters: already a problem
        try:
            period = services.parse_period(text)
            if planned.office is not None:
                services.check_reportable(planned.office, period, self.now)
            elif period > self.last_ended:
                raise WorkflowError(
                    _(
                        "%(period)s has not ended yet: values are reported once the quarter is over.",
                        period=period,
                    ),
                    "period",
                )
        except WorkflowError as exc:
            self.problem(row, "period", exc.message)
        else:
            planned.period = period

    def _value(self, row: read.Row, planned: PlannedRow) -> None:
        value = row.cells.get("value")
        if isinstance(value, read.Formula):
            self.problem(row, "value", _("Formulas are not accepted: type the value itself."))
            return
        if isinstance(value, datetime | date):
            value = value.isoformat()  # not a number: refused below with the unit's message
        unit = planned.indicator.unit if planned.indicator is not None else None
        try:
            if unit is None:
                # The indicator is unknown: its bounds are too, but a value must still be given.
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise WorkflowError(_("Give a value."), "value")
                return
            planned.value = services.parse_value(unit, value)
        except WorkflowError as exc:
            self.problem(row, "value", exc.message)

    def _text(self, row: read.Row, column: str, *, multiline: bool = False) -> str | None:
        """A cell as text (None when empty); a formula or control characters are a problem."""
        value = row.cells.get(column)
        if value is None:
            return None
        if isinstance(value, read.Formula):
            self.problem(row, column, _("Formulas are not accepted: type the value itself."))
            return None
        if isinstance(value, datetime | date):
            text = value.isoformat()
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if (_CONTROL if multiline else _CONTROL_OR_BREAK).search(text):
            self.problem(row, column, _("Contains control characters or line breaks."))
            return None
        return text or None


def _check_duplicates(plan: MeasurementPlan) -> None:
    """The same office, indicator and quarter twice in the file: every row after the first is a problem."""
    first: dict[tuple[int, int, str], int] = {}
    for planned in plan.rows:
        if planned.indicator is None or planned.office is None or planned.period is None:
            continue
        key = (planned.indicator.id, planned.office.id, str(planned.period))
        if key in first:
            plan.problems.append(
                Problem(
                    planned.number,
                    "period",
                    _(
                        "Row %(row)d already gives %(office)s's value of %(code)s for %(period)s.",
                        row=first[key],
                        office=planned.office.code,
                        code=planned.indicator.code,
                        period=planned.period,
                    ),
                )
            )
        else:
            first[key] = planned.number


def _existing(rows: list[PlannedRow]) -> dict[tuple[int, int, str], Measurement]:
    """The values already there for the file's offices, indicators and quarters: one statement.

    Quarters are selected as a range (``2026Q3`` strings sort in time order), so that the statement
    has as many parameters as the file has indicators and offices, not rows.
    """
    keyed = [r for r in rows if r.indicator is not None and r.office is not None and r.period is not None]
    if not keyed:
        return {}
    periods = [str(r.period) for r in keyed]
    found = db.session.scalars(
        sa.select(Measurement).where(
            Measurement.indicator_id.in_(sorted({r.indicator.id for r in keyed})),  # type: ignore[union-attr]
            Measurement.office_id.in_(sorted({r.office.id for r in keyed})),  # type: ignore[union-attr]
            Measurement.period.between(min(periods), max(periods)),
        )
    )
    return {(m.indicator_id, m.office_id, m.period): m for m in found}


def _kind(planned: PlannedRow, found: Measurement | None) -> Kind:
    """New, correction or unchanged: as services.report decides whether an entry changes anything."""
    if found is None:
        return Kind.NEW
    unchanged = (
        found.value == planned.value
        and found.note == planned.note
        and (planned.evidence_url is None or planned.evidence_url == found.evidence_url)
        and found.state != MeasurementState.SENT_BACK
    )
    return Kind.UNCHANGED if unchanged else Kind.CORRECTION


def apply_plan(plan: MeasurementPlan, actor: User, now: datetime) -> Counter[str]:
    """Report every row that changes something through services.report (imported); flushes.

    Raises ImportRefused at the first row the rules refuse: the caller rolls back everything.
    Returns how many values were new and corrected.
    """
    if plan.problems:
        raise ValueError("a plan with problems cannot be applied")
    written: Counter[str] = Counter()
    for planned in plan.rows:
        if planned.kind not in (Kind.NEW, Kind.CORRECTION):
            continue
        assert planned.indicator and planned.office and planned.period and planned.value is not None
        entry = services.Report(planned.value, planned.note or "", planned.evidence_url)
        try:
            done = services.report(
                actor, planned.indicator, planned.office, planned.period, entry, now, imported=True
            )
        except WorkflowError as exc:
            raise ImportRefused(planned.number, exc.field, exc.message) from None
        if done is not None:
            written[planned.kind.value] += 1
    return written
