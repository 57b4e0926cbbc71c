"""Reporting and reviewing indicator values: an office's values for a quarter on one page, a value's
page with its history and evidence file, and the reviewers' decisions (from the review queue)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.wrappers import Response

from tracker import files
from tracker.actions.commands import StateConflict, WorkflowError
from tracker.actions.views import _download_name
from tracker.auth.services import safe_next_url
from tracker.extensions import db
from tracker.indicators import queries, services
from tracker.indicators.forms import ReportForm, ReviewForm, Row, input_bounds, read_rows, shown_value
from tracker.indicators.models import (
    Indicator,
    Measurement,
    MeasurementChange,
)
from tracker.indicators.views import bp
from tracker.models import Office
from tracker.permissions import Perm, can, can_somewhere, may_see_measurement, office_scope
from tracker.quarters import Quarter

#: How many quarters the report page's chooser offers, the last reportable one first.
CHOOSER_QUARTERS = 8


def _reporting_office() -> Office:
    """The office of ``?office=`` (default: the user's own, else the first they may report for);
    404 for an office the user may not report for, so that other offices' pages do not leak."""
    code = (request.args.get("office") or "").strip().upper()[:8]
    if code:
        office = db.session.scalar(sa.select(Office).where(Office.code == code, Office.active.is_(True)))
    elif current_user.office_id is not None:
        office = current_user.office
    else:
        office = db.session.scalar(
            sa.select(Office).where(Office.active.is_(True)).order_by(Office.code).limit(1)
        )
    if office is None or not can(current_user, Perm.REPORT_MEASUREMENT, office):
        abort(404)
    return office


def _choosable_offices(office: Office) -> list[Office]:
    """The offices the chooser offers: every active office for reviewers and admins, else none."""
    if office_scope(current_user) is not None:
        return []
    return list(db.session.scalars(sa.select(Office).where(Office.active.is_(True)).order_by(Office.code)))


@bp.route("/report", methods=["GET", "POST"])
@login_required
def report() -> ResponseReturnValue:
    """An office's values of every active indicator for one quarter, entered and saved together:
    all saved or, if any is refused, none (each refusal beside its field)."""
    if not can_somewhere(current_user, Perm.REPORT_MEASUREMENT):
        abort(403)
    now = datetime.now(UTC)
    office = _reporting_office()
    latest = services.last_reportable(office, now)
    page_errors: list[str] = []
    try:
        period = services.parse_period(request.args.get("period") or str(latest))
        services.check_reportable(office, period, now)
    except WorkflowError as exc:
        page_errors.append(exc.message)
        return _report_page(office, None, latest, [], page_errors, 422)
    indicators = queries.active_indicators()
    form = ReportForm()
    if request.method == "GET":
        current = _values(office, [period])
        rows = [_row_of(i, current.get((i.id, str(period)))) for i in indicators]
        return _report_page(office, period, latest, rows, page_errors, 200, form)
    if not form.validate_on_submit():
        abort(400)
    rows = read_rows(indicators, request.form, request.files)
    saved, status = _save(office, period, now, rows, page_errors)
    if status != 200:
        db.session.rollback()  # one refusal: nothing of this page is written
        page_errors.insert(0, _("Nothing was saved: correct the values marked below, then save again."))
        return _report_page(office, period, latest, rows, page_errors, status, form)
    db.session.commit()
    if saved:
        flash(ngettext("%(num)d value saved.", "%(num)d values saved.", saved), "success")
    else:
        flash(_("Nothing changed: no value was saved."), "info")
    return redirect(url_for(".report", office=office.code, period=str(period)))


def _save(
    office: Office, period: Quarter, now: datetime, rows: list[Row], page_errors: list[str]
) -> tuple[int, int]:
    """Report every filled row through the command; returns (values saved, status: 200, 409 or 422).

    Every row is tried, so that all refusals show at once; the caller rolls back if any was refused.
    """
    existing = _values(office, [period])
    saved, status = 0, 200
    for row in rows:
        if not row.filled or row.errors:
            status = 422 if row.errors else status
            continue
        indicator = row.indicator
        found = existing.get((indicator.id, str(period)))
        try:
            value = services.parse_value(indicator.unit, row.value)
            if found is not None and row.version == found.version and _unchanged(found, value, row):
                continue
            entry = services.Report(
                value=value,
                note=row.note,
                evidence_url=row.evidence_url or None,
                file=row.file,
                version=row.version if found is not None else None,
            )
            # A first report (no version on the page) must not overwrite a value entered meanwhile.
            if services.report(
                current_user, indicator, office, period, entry, now, create_only=found is None
            ):
                saved += 1
        except StateConflict as exc:
            row.refuse("value", exc.message)
            status = 409
        except WorkflowError as exc:
            if exc.field in ("office", "period"):
                page_errors.append(exc.message)
            else:
                row.refuse(exc.field or "value", exc.message)
            status = status if status == 409 else 422
    return saved, status


def _unchanged(found: Measurement, value: float, row: Row) -> bool:
    """The row says what is already there (a sent-back value stays sent back until changed)."""
    return (
        found.value == value
        and (found.note or "") == row.note
        and (not row.evidence_url or row.evidence_url == found.evidence_url)
        and row.file is None
    )


def _values(office: Office, periods: list[Quarter]) -> dict[tuple[int, str], Measurement]:
    """(indicator id, period) → the office's values of those quarters that the user may see (one query)."""
    rows = db.session.scalars(
        sa.select(Measurement)
        .where(
            Measurement.office_id == office.id,
            Measurement.period.in_([str(p) for p in periods]),
            queries.visible(current_user),
        )
        .options(joinedload(Measurement.reviewed_by))
    )
    return {(m.indicator_id, m.period): m for m in rows}


def _row_of(indicator: Indicator, found: Measurement | None) -> Row:
    """A row as the page first shows it: the quarter's value, if any, ready to correct."""
    if found is None:
        return Row(indicator)
    return Row(
        indicator,
        value=shown_value(indicator.unit, found.value),
        note=found.note or "",
        evidence_url=found.evidence_url or "",
        version=found.version,
    )


def _report_page(
    office: Office,
    period: Quarter | None,
    latest: Quarter,
    rows: list[Row],
    page_errors: list[str],
    status: int,
    form: ReportForm | None = None,
) -> ResponseReturnValue:
    quarters = [latest]
    while len(quarters) < CHOOSER_QUARTERS:
        quarters.append(quarters[-1].previous)
    if period is not None and period not in quarters:
        quarters.append(period)
    values = _values(office, [period, period.previous]) if period is not None else {}
    return (
        render_template(
            "indicators/report.html",
            office=office,
            offices=_choosable_offices(office),
            period=period,
            quarters=quarters,
            rows=rows,
            current={i: m for (i, p), m in values.items() if p == str(period)},
            previous={
                i: m for (i, p), m in values.items() if period is not None and p == str(period.previous)
            },
            page_errors=page_errors,
            form=form or ReportForm(formdata=None),
            bounds=input_bounds,
        ),
        status,
    )


def _measurement_or_404(measurement_id: int, *, history: bool = False) -> Measurement:
    """The measurement if the user may see it, else 404 (its existence does not leak)."""
    options = [
        joinedload(Measurement.indicator),
        joinedload(Measurement.office),
        joinedload(Measurement.reported_by),
        joinedload(Measurement.reviewed_by),
    ]
    if history:
        options.append(selectinload(Measurement.changes).joinedload(MeasurementChange.author))
    found = db.session.scalar(
        sa.select(Measurement).where(Measurement.id == measurement_id).options(*options)
    )
    if found is None or not may_see_measurement(current_user, found):
        abort(404)
    return found


@bp.route("/measurements/<int:measurement_id>")
@login_required
def measurement(measurement_id: int) -> str:
    """One value: quarter, office, indicator, state, who reported and reviewed it, evidence, history."""
    found = _measurement_or_404(measurement_id, history=True)
    return render_template(
        "indicators/measurement.html",
        m=found,
        review_form=ReviewForm(formdata=None),
        may_report=can(current_user, Perm.REPORT_MEASUREMENT, found.office),
        may_validate=can(current_user, Perm.VALIDATE_MEASUREMENT, found),
    )


@bp.route("/measurements/<int:measurement_id>/evidence")
@login_required
def measurement_evidence(measurement_id: int) -> Response:
    """Download a value's evidence file, streamed a piece at a time; 404 unless the user may see the value."""
    found = _measurement_or_404(measurement_id)
    size = files.size(found.evidence_file_id) if found.evidence_file_id is not None else None
    if size is None:
        abort(404)
    response = current_app.response_class(
        stream_with_context(files.read(found.evidence_file_id)),
        mimetype=found.evidence_content_type or "application/octet-stream",
    )
    response.content_length = size
    name = found.evidence_filename or "evidence"
    response.headers.set("Content-Disposition", "attachment", **_download_name(name))
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/measurements/<int:measurement_id>/validate")
@login_required
def measurement_validate(measurement_id: int) -> Response:
    """Validate a reported value (reviewers), from the review queue or the value's page."""
    return _review(measurement_id, send_back=False)


@bp.post("/measurements/<int:measurement_id>/send-back")
@login_required
def measurement_send_back(measurement_id: int) -> Response:
    """Send a reported value back to its office with a note saying what to correct (reviewers)."""
    return _review(measurement_id, send_back=True)


def _review(measurement_id: int, *, send_back: bool) -> Response:
    """Run a reviewer's decision and commit it; a refusal or a conflict is flashed. Back to ``next``."""
    found = _measurement_or_404(measurement_id)
    if not can(current_user, Perm.VALIDATE_MEASUREMENT, found):
        abort(403)
    form = ReviewForm()
    if not form.validate_on_submit():
        abort(400)
    back = safe_next_url(request.args.get("next")) or url_for(".measurement", measurement_id=found.id)
    version = int(form.version.data) if (form.version.data or "").isdigit() else 0
    label = _(
        "%(indicator)s of %(office)s for %(period)s",
        indicator=found.indicator.name,
        office=found.office.code,
        period=found.period,
    )
    now = datetime.now(UTC)
    try:
        if send_back:
            services.send_back(current_user, found, form.note.data or "", now, version=version)
        else:
            services.validate(current_user, found, now, version=version)
        db.session.commit()
    except (WorkflowError, StateConflict) as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(back)
    if send_back:
        flash(_("%(what)s is sent back to the office.", what=label), "success")
    else:
        flash(_("%(what)s is validated: every signed-in user sees it now.", what=label), "success")
    return redirect(back)
