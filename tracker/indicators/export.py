"""The indicator table as CSV or XLSX (/indicators/export): one row per value the user may see.

Filters: ``indicator`` (id or code), ``office`` (code), ``from`` and ``to`` (quarters such as
2026Q1), ``state`` (validated, reported, sent_back); ``format`` is csv (the default) or xlsx. Rows
come from one statement read in batches (yield_per: a server-side cursor on PostgreSQL) and are
written as they come, with the house's writers (tracker/transfer/export.py), which neutralise text
that a spreadsheet would read as a formula. Visibility is queries.visible: validated values of
every office, others only for their office, reviewers and admins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Response, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.orm import aliased

from tracker.extensions import db
from tracker.indicators import queries
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementState
from tracker.indicators.views import bp
from tracker.models import Office, User
from tracker.offices.services import find_office
from tracker.params import whole_number
from tracker.permissions import Perm, require
from tracker.quarters import Quarter
from tracker.transfer import export
from tracker.transfer.views import XLSX_MIMETYPE

#: Rows read from the database at a time.
BATCH = 1000
#: Column widths of the export, in characters.
WIDTHS = [14, 40, 9, 8, 9, 10, 10, 10, 10, 10, 10, 12, 30, 22, 22, 40, 40]


class FilterError(ValueError):
    """A filter of the export's query string is refused; the message names it."""


@dataclass(frozen=True)
class ExportFilters:
    """What the export keeps; None means no restriction."""

    format: str = "csv"
    indicator_id: int | None = None
    office_id: int | None = None
    start: Quarter | None = None
    end: Quarter | None = None
    state: str | None = None


def parse_filters(args: Mapping[str, str]) -> ExportFilters:
    """The export's filters from a query string; raises FilterError naming the refused parameter."""
    fmt = (args.get("format") or "csv").strip().lower()
    if fmt not in ("csv", "xlsx"):
        raise FilterError(_("format: choose csv or xlsx."))
    indicator_id = None
    if text := (args.get("indicator") or "").strip():
        indicator_id = _indicator_id(text)
    office_id = None
    if text := (args.get("office") or "").strip():
        office = find_office(text)
        if office is None:
            raise FilterError(_("office: there is no office with the code %(code)s.", code=text))
        office_id = office.id
    start, end = _quarter(args, "from"), _quarter(args, "to")
    if start is not None and end is not None and start > end:
        raise FilterError(_("from: %(start)s comes after to (%(end)s).", start=start, end=end))
    state = (args.get("state") or "").strip() or None
    states = [s.value for s in MeasurementState]
    if state is not None and state not in states:
        raise FilterError(_("state: choose one of %(states)s.", states=", ".join(states)))
    return ExportFilters(fmt, indicator_id, office_id, start, end, state)


def _indicator_id(text: str) -> int:
    """The id of the indicator an ``indicator`` filter names by id or by code."""
    number = whole_number(text)
    found = None
    if number is not None:
        found = db.session.scalar(sa.select(Indicator.id).where(Indicator.id == number))
    if found is None and len(text) <= 32:
        found = db.session.scalar(sa.select(Indicator.id).where(Indicator.code == text.upper()))
    if found is None:
        raise FilterError(_("indicator: there is no indicator with the id or code %(value)s.", value=text))
    return found


def _quarter(args: Mapping[str, str], name: str) -> Quarter | None:
    text = (args.get(name) or "").strip()
    if not text:
        return None
    try:
        return Quarter.parse(text)
    except ValueError:
        raise FilterError(
            _("%(name)s: give a quarter such as 2026Q3, not %(value)s.", name=name, value=text[:20])
        ) from None


def header() -> list[str]:
    """The export's column titles, in the reader's language."""
    return [
        _("Indicator code"),
        _("Indicator"),
        _("Unit"),
        _("Office code"),
        _("Quarter"),
        _("Value"),
        _("State"),
        _("Baseline value"),
        _("Baseline quarter"),
        _("Target value"),
        _("Target quarter"),
        _("Progress to target (percent)"),
        _("Reported by"),
        _("Reported at"),
        _("Reviewed at"),
        _("Note"),
        _("Evidence link"),
    ]


def export_query(user: User, filters: ExportFilters) -> sa.Select[Any]:
    """The values ``user`` may see under ``filters`` as plain columns, by indicator, office, quarter."""
    reporter = aliased(User)
    where: list[sa.ColumnElement[bool]] = [queries.visible(user)]
    if filters.indicator_id is not None:
        where.append(Measurement.indicator_id == filters.indicator_id)
    if filters.office_id is not None:
        where.append(Measurement.office_id == filters.office_id)
    if filters.start is not None:
        where.append(Measurement.period >= str(filters.start))  # YYYYQn sorts in time order
    if filters.end is not None:
        where.append(Measurement.period <= str(filters.end))
    if filters.state is not None:
        where.append(Measurement.state == filters.state)
    return (
        sa.select(
            Indicator.code,
            Indicator.name,
            Indicator.unit,
            Office.code,
            Measurement.period,
            Measurement.value,
            Measurement.state,
            IndicatorTarget.baseline_value,
            IndicatorTarget.baseline_period,
            IndicatorTarget.target_value,
            IndicatorTarget.target_period,
            Indicator.direction,  # for the progress, not written
            reporter.email,
            Measurement.reported_at,
            Measurement.reviewed_at,
            Measurement.note,
            Measurement.evidence_url,
        )
        .select_from(Measurement)
        .join(Indicator, Indicator.id == Measurement.indicator_id)
        .join(Office, Office.id == Measurement.office_id)
        .outerjoin(
            IndicatorTarget,
            sa.and_(
                IndicatorTarget.indicator_id == Measurement.indicator_id,
                IndicatorTarget.office_id == Measurement.office_id,
            ),
        )
        .outerjoin(reporter, reporter.id == Measurement.reported_by_id)
        .where(*where)
        .order_by(Indicator.code, Office.code, Measurement.period)
    )


#: Where the direction (replaced by the progress) and the two moments are in a query row.
_DIRECTION, _REPORTED, _REVIEWED = 11, 13, 14


def export_rows(user: User, filters: ExportFilters, *, batch: int = BATCH) -> Iterator[list[Any]]:
    """One row per value, in header()'s order, read ``batch`` rows at a time (memory stays flat)."""
    statement = export_query(user, filters).execution_options(yield_per=batch)
    kinds: dict[tuple[str, str], Indicator] = {}  # what progress() reads of an indicator
    for values in db.session.execute(statement):
        row = list(values)
        unit, direction = row[2], row[_DIRECTION]
        kind = kinds.get((unit, direction))
        if kind is None:
            kind = kinds[(unit, direction)] = Indicator(unit=unit, direction=direction)
        goal = IndicatorTarget(baseline_value=row[7], target_value=row[9])
        share = queries.progress(kind, goal, row[5])
        row[_DIRECTION] = None if share is None else round(share * 100, 1)
        for at in (_REPORTED, _REVIEWED):
            row[at] = row[at].astimezone(UTC).isoformat(timespec="seconds") if row[at] else None
        yield row


def file_name(fmt: str, now: datetime) -> str:
    """The name of an indicator export made at ``now``."""
    return f"indicators-{now:%Y%m%d}.{fmt}"


@bp.route("/export")
@login_required
def export_table() -> ResponseReturnValue:
    """The indicator values the user may see, under the filters, as CSV or XLSX, streamed."""
    require(current_user, Perm.VIEW_INDICATORS)
    try:
        filters = parse_filters(request.args)
    except FilterError as exc:
        page = render_template("indicators/export_refused.html", message=str(exc))
        return Response(page, status=400)
    rows = export_rows(current_user, filters)
    if filters.format == "csv":
        response = Response(stream_with_context(export.csv_stream(header(), rows)), mimetype="text/csv")
    else:
        sheet = export.Sheet(_("Indicators"), header(), rows, WIDTHS)
        response = Response(stream_with_context(export.xlsx_stream([sheet])), mimetype=XLSX_MIMETYPE)
    name = file_name(filters.format, datetime.now(UTC))
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
