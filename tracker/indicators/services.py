"""The commands that change indicators and their values: the pages, the API and the import call these.

Each command takes the acting user and the moment, checks the permission (permissions.py) and the
rules (bounds of the unit, a quarter that has ended, one value per office × indicator × quarter),
writes the change and its history row, and flushes; the caller commits. A refusal raises before
anything is written: :class:`WorkflowError` (422, names the field) or :class:`StateConflict`
(409: already there, already reviewed, changed meanwhile).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage

from tracker.actions import evidence
from tracker.actions.commands import StateConflict, WorkflowError
from tracker.extensions import db
from tracker.indicators.models import (
    Direction,
    Indicator,
    IndicatorTarget,
    Measurement,
    MeasurementChange,
    MeasurementEvent,
    MeasurementState,
    ReportingPeriod,
    Unit,
)
from tracker.models import Office, Recommendation, User
from tracker.permissions import Perm, can, require
from tracker.quarters import Quarter
from tracker.transactions import savepoint

#: The values each unit allows: (lowest, highest), None for no bound.
BOUNDS: dict[str, tuple[float, float | None]] = {
    Unit.PERCENT: (0, 100),
    Unit.NUMBER: (0, None),
    Unit.DAYS: (0, None),
    Unit.MONTHS: (0, None),
    Unit.YES_NO: (0, 1),
}
#: What a yes/no value may be written as (any case), besides 1 and 0.
_YES = {"yes", "y", "true", "oui", "sí", "si"}
_NO = {"no", "n", "false", "non"}
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")


def value_problem(unit: str, value: float) -> str | None:
    """Why ``value`` is not a possible value of ``unit``, or None."""
    if not math.isfinite(value):
        return _("Give a number.")
    if unit == Unit.YES_NO and value not in (0, 1):
        return _("Give yes or no.")
    low, high = BOUNDS[unit]
    if value < low:
        return _("The value cannot be negative.") if low == 0 else _("The value is too low.")
    if high is not None and value > high:
        return _("A percentage cannot be above 100.") if unit == Unit.PERCENT else _("The value is too high.")
    return None


def parse_value(unit: str, text: str | float | int | None, *, field: str = "value") -> float:
    """A value as typed (``87.5``, ``87,5``, ``yes``) → float within the unit's bounds; raises
    WorkflowError naming ``field`` otherwise."""
    if isinstance(text, int | float):  # bool too: True is 1
        number = float(text)
    else:
        raw = (text or "").strip()
        if not raw:
            raise WorkflowError(_("Give a value."), field)
        lowered = raw.lower()
        if unit == Unit.YES_NO and lowered in _YES | _NO:
            number = 1.0 if lowered in _YES else 0.0
        else:
            try:
                number = float(raw.replace(",", ".").rstrip("%").strip())
            except ValueError:
                raise WorkflowError(
                    _("Give yes or no.") if unit == Unit.YES_NO else _("Give a number."), field
                ) from None
    if problem := value_problem(unit, number):
        raise WorkflowError(problem, field)
    return number


def parse_period(text: str | None, *, field: str = "period") -> Quarter:
    """``2026Q3`` → Quarter; raises WorkflowError naming ``field`` otherwise."""
    try:
        return Quarter.parse(text or "")
    except ValueError:
        raise WorkflowError(_("Give a quarter such as 2026Q3."), field) from None


def last_reportable(office: Office, now: datetime) -> Quarter:
    """The latest quarter whose values the office can report: the last one that has ended there."""
    return Quarter.last_ended(office.today(now))


def check_reportable(office: Office, period: Quarter, now: datetime, *, field: str = "period") -> None:
    """Refuse a quarter that has not ended yet in the office's time zone."""
    if period > last_reportable(office, now):
        raise WorkflowError(
            _("%(period)s has not ended yet: values are reported once the quarter is over.", period=period),
            field,
        )


@dataclass
class Report:
    """A value as entered on the form, through the API or by an import row."""

    value: float
    note: str = ""
    evidence_url: str | None = None
    file: FileStorage | None = None
    #: The version the form showed; None to accept whatever is there (API, import).
    version: int | None = None


def find(indicator_id: int, office_id: int, period: Quarter | str) -> Measurement | None:
    """The measurement of an office, indicator and quarter, if any."""
    return db.session.scalar(
        sa.select(Measurement).where(
            Measurement.indicator_id == indicator_id,
            Measurement.office_id == office_id,
            Measurement.period == str(period),
        )
    )


def report(
    actor: User,
    indicator: Indicator,
    office: Office,
    period: Quarter,
    entry: Report,
    now: datetime,
    *,
    create_only: bool = False,
    imported: bool = False,
) -> Measurement | None:
    """Report (or correct) an office's value for a quarter; flushes. Returns the measurement, or
    None when the entry changes nothing.

    A corrected value goes back to "reported", whatever its state was: a reviewer validates it again.
    ``create_only`` refuses a quarter that already has a value (StateConflict, naming ``period``).
    """
    if not can(actor, Perm.REPORT_MEASUREMENT, office):
        raise WorkflowError(_("You may not report values for %(office)s.", office=office.code), "office")
    if indicator.archived_at is not None:
        raise WorkflowError(_("Indicator %(code)s is archived.", code=indicator.code), "indicator")
    check_reportable(office, period, now)
    if problem := value_problem(indicator.unit, entry.value):
        raise WorkflowError(problem, "value")
    url = (entry.evidence_url or "").strip() or None
    if url and (problem := evidence.link_problem(url)):
        raise WorkflowError(problem, "evidence_url")
    checked = None
    if entry.file is not None and entry.file.filename:
        try:
            checked = evidence.check(entry.file)
        except evidence.EvidenceError as exc:
            raise WorkflowError(str(exc), "file") from None
    note = entry.note.strip() or None
    existing = find(indicator.id, office.id, period)
    if existing is not None:
        if create_only:
            raise StateConflict(
                _(
                    "%(office)s already has a value of %(code)s for %(period)s; correct it instead.",
                    office=office.code,
                    code=indicator.code,
                    period=period,
                ),
                "period",
            )
        if entry.version is not None and entry.version != existing.version:
            raise StateConflict(
                _("This value was changed by someone else meanwhile; look at it again before saving."),
                "value",
            )
        unchanged = (
            existing.value == entry.value
            and existing.note == note
            and (url is None or url == existing.evidence_url)
            and checked is None
            and existing.state != MeasurementState.SENT_BACK
        )
        if unchanged:
            return None
    measurement = existing or Measurement(indicator=indicator, office=office, period=str(period), version=0)
    old_value, old_state = (existing.value, existing.state) if existing else (None, None)
    measurement.value = entry.value
    measurement.note = note
    if url is not None:
        measurement.evidence_url = url
    if checked is not None:
        stored = evidence.store(checked)
        measurement.evidence_file_id = stored.id
        measurement.evidence_filename = checked.filename
        measurement.evidence_content_type = checked.content_type
    measurement.state = MeasurementState.REPORTED.value
    measurement.reported_by = actor
    measurement.reported_at = now
    measurement.reviewed_by = None
    measurement.reviewed_at = None
    measurement.version += 1
    if existing is None:
        event = MeasurementEvent.IMPORTED if imported else MeasurementEvent.REPORTED
    else:
        event = MeasurementEvent.IMPORTED if imported else MeasurementEvent.CORRECTED
    _history(measurement, actor, now, event, old_value, old_state, note)
    if existing is None:
        # Two first reports of the same quarter at once: the unique key refuses the second.
        try:
            with savepoint():
                db.session.add(measurement)
                db.session.flush()
        except sa.exc.IntegrityError:
            raise StateConflict(
                _("This value was changed by someone else meanwhile; look at it again before saving."),
                "value",
            ) from None
    db.session.flush()
    return measurement


def validate(actor: User, measurement: Measurement, now: datetime, *, version: int | None = None) -> None:
    """A reviewer accepts a reported value: every signed-in user sees it from now on; flushes."""
    require(actor, Perm.VALIDATE_MEASUREMENT, measurement)
    _decide(actor, measurement, now, version, MeasurementState.VALIDATED, None)


def send_back(
    actor: User, measurement: Measurement, note: str, now: datetime, *, version: int | None = None
) -> None:
    """A reviewer asks the office to correct a reported value, saying why; flushes."""
    require(actor, Perm.VALIDATE_MEASUREMENT, measurement)
    note = (note or "").strip()
    if not note:
        raise WorkflowError(_("Say what needs correcting."), "note")
    _decide(actor, measurement, now, version, MeasurementState.SENT_BACK, note)


def _decide(
    actor: User,
    measurement: Measurement,
    now: datetime,
    version: int | None,
    state: MeasurementState,
    note: str | None,
) -> None:
    if version is not None and version != measurement.version:
        raise StateConflict(_("This value was corrected meanwhile; look at it again."), "value")
    if measurement.state != MeasurementState.REPORTED:
        raise StateConflict(_("This value has already been reviewed."), "state")
    old_state = measurement.state
    measurement.state = state.value
    measurement.reviewed_by = actor
    measurement.reviewed_at = now
    measurement.review_note = note
    measurement.version += 1
    event = MeasurementEvent.VALIDATED if state is MeasurementState.VALIDATED else MeasurementEvent.SENT_BACK
    _history(measurement, actor, now, event, measurement.value, old_state, note)
    db.session.flush()


def _history(
    measurement: Measurement,
    actor: User | None,
    now: datetime,
    event: MeasurementEvent,
    old_value: float | None,
    old_state: str | None,
    note: str | None,
) -> None:
    measurement.changes.append(
        MeasurementChange(
            author=actor,
            created_at=now,
            event=event.value,
            old_value=old_value,
            new_value=measurement.value,
            old_state=old_state,
            new_state=measurement.state,
            note=note,
        )
    )


@dataclass
class IndicatorFields:
    """What the indicator form (or the API) gives for an indicator."""

    code: str
    name: str
    unit: str
    direction: str = Direction.HIGHER.value
    definition: str = ""
    recommendation_id: int | None = None
    period: str = ReportingPeriod.QUARTERLY.value


def save_indicator(
    actor: User, fields: IndicatorFields, now: datetime, indicator: Indicator | None = None
) -> Indicator:
    """Create an indicator, or change one; flushes. The unit of an indicator with values is fixed."""
    require(actor, Perm.MANAGE_INDICATORS)
    code = fields.code.strip().upper()
    if not _CODE.match(code):
        raise WorkflowError(_("Give a code of letters, digits, dots or dashes (at most 32)."), "code")
    name = fields.name.strip()
    if not name:
        raise WorkflowError(_("Give a name."), "name")
    if fields.unit not in {u.value for u in Unit}:
        raise WorkflowError(_("Choose a unit."), "unit")
    if fields.direction not in {d.value for d in Direction}:
        raise WorkflowError(_("Choose whether higher or lower is better."), "direction")
    if fields.period not in {p.value for p in ReportingPeriod}:
        raise WorkflowError(_("Indicators are reported quarterly."), "period")
    taken = db.session.scalar(sa.select(Indicator.id).where(Indicator.code == code))
    if taken is not None and (indicator is None or taken != indicator.id):
        raise StateConflict(_("Another indicator has the code %(code)s.", code=code), "code")
    if (
        fields.recommendation_id is not None
        and db.session.get(Recommendation, fields.recommendation_id) is None
    ):
        raise WorkflowError(_("No such recommendation."), "recommendation_id")
    if indicator is not None and fields.unit != indicator.unit and _has_values(indicator):
        raise WorkflowError(_("The unit cannot change once values have been reported."), "unit")
    if indicator is None:
        indicator = Indicator(created_at=now)
        db.session.add(indicator)
    indicator.code = code
    indicator.name = name[:200]
    indicator.unit = fields.unit
    indicator.direction = fields.direction
    indicator.definition = fields.definition.strip()
    indicator.recommendation_id = fields.recommendation_id
    indicator.period = fields.period
    indicator.updated_at = now
    db.session.flush()
    return indicator


def set_archived(actor: User, indicator: Indicator, archived: bool, now: datetime) -> None:
    """Archive an indicator (no longer reported or reminded; values kept) or bring it back; flushes."""
    require(actor, Perm.MANAGE_INDICATORS)
    indicator.archived_at = now if archived else None
    db.session.flush()


def _has_values(indicator: Indicator) -> bool:
    return db.session.scalar(sa.select(sa.exists().where(Measurement.indicator_id == indicator.id))) or False


@dataclass
class Goal:
    """An office's baseline and target as entered; a value without its quarter is refused."""

    baseline_value: float | None = None
    baseline_period: Quarter | None = None
    target_value: float | None = None
    target_period: Quarter | None = None


def save_goal(
    actor: User, indicator: Indicator, office: Office, goal: Goal, now: datetime
) -> IndicatorTarget:
    """Set an office's baseline and target for an indicator; flushes."""
    require(actor, Perm.MANAGE_INDICATORS)
    for name in ("baseline", "target"):
        value, period = getattr(goal, f"{name}_value"), getattr(goal, f"{name}_period")
        if value is not None:
            if problem := value_problem(indicator.unit, value):
                raise WorkflowError(problem, f"{name}_value")
            if period is None:
                raise WorkflowError(_("Give the quarter of this value."), f"{name}_period")
    if (
        goal.baseline_period is not None
        and goal.target_period is not None
        and goal.target_period < goal.baseline_period
    ):
        raise WorkflowError(_("The target's quarter cannot come before the baseline's."), "target_period")
    target = db.session.scalar(
        sa.select(IndicatorTarget).where(
            IndicatorTarget.indicator_id == indicator.id, IndicatorTarget.office_id == office.id
        )
    )
    if target is None:
        target = IndicatorTarget(indicator=indicator, office=office)
        db.session.add(target)
    target.baseline_value = goal.baseline_value
    target.baseline_period = str(goal.baseline_period) if goal.baseline_period else None
    target.target_value = goal.target_value
    target.target_period = str(goal.target_period) if goal.target_period else None
    target.updated_by = actor
    target.updated_at = now
    db.session.flush()
    return target
