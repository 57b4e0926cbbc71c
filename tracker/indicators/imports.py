"""Import of measurements from CSV or XLSX: upload, preview of every row and problem, then all or nothing.

The uploaded file waits in the database (tracker/transfer/uploads.py) between its preview and its
confirmation, so that the confirmation may reach another web host. Every row is checked by the
reporting form's rules (import_plan.py) and written through services.report, in one transaction.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker import files
from tracker.extensions import db
from tracker.indicators import import_plan, queries
from tracker.indicators.import_plan import ImportRefused, MeasurementPlan
from tracker.indicators.views import bp
from tracker.models import Office
from tracker.permissions import Perm, can_somewhere
from tracker.quarters import Quarter
from tracker.transfer import read, uploads
from tracker.transfer.forms import UploadForm

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _require_reporter() -> None:
    # Focal points import their own office's values; reviewers and admins any office's.
    if not can_somewhere(current_user, Perm.REPORT_MEASUREMENT):
        abort(403)


def _limits() -> tuple[int, int]:
    """Bytes and rows a file may have: it is checked and imported within one request."""
    config = current_app.config
    rows = min(config["TRACKER_IMPORT_MAX_ROWS"], config["TRACKER_IMPORT_INLINE_ROWS"])
    return config["TRACKER_IMPORT_MAX_BYTES"], rows


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


@bp.route("/import", methods=["GET", "POST"])
@login_required
def import_values() -> ResponseReturnValue:
    """The upload form; a readable file is kept in the database and its preview shown."""
    _require_reporter()
    form = UploadForm()
    max_bytes, max_rows = _limits()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            upload = form.file.data
            name = read.clean_filename(upload.filename)
            now = _now()
            try:
                token = uploads.store_upload(upload.stream, name, current_user.id, now, limit=max_bytes)
                stored = uploads.load_upload(token, current_user.id, now)
                if stored is None:
                    raise read.ImportFileError(_("%(name)s is empty.", name=name))
                _check_file(stored)
            except (files.FileTooLarge, read.ImportFileError) as exc:
                db.session.rollback()  # nothing of the file is kept
                if isinstance(exc, read.ImportFileError):
                    message, status = exc.message, exc.status
                else:
                    message = _(
                        "%(name)s is larger than %(size)s: split it into smaller files.",
                        name=name,
                        size=_mb(max_bytes),
                    )
                    status = 413
                form.file.errors = [*form.file.errors, message]
            else:
                db.session.commit()
                return redirect(url_for(".import_preview", token=token), 303)
        else:
            status = 422
    return (
        render_template(
            "indicators/import.html",
            form=form,
            plan=None,
            columns=import_plan.COLUMN_HELP,
            max_size=_mb(max_bytes),
            max_rows=max_rows,
        ),
        status,
    )


def _check_file(stored: uploads.StoredUpload) -> None:
    """Read a stored file through (type, size, rows, required columns); ImportFileError otherwise."""
    max_bytes, max_rows = _limits()
    with stored.open() as file:
        table = read.open_table(
            file, stored.filename, max_bytes=max_bytes, max_rows=max_rows, layout=import_plan.LAYOUT
        )
        missing = import_plan.missing_columns(table)
        read.count_rows(table, max_rows)
    if missing:
        raise read.ImportFileError(
            ngettext(
                "The file has no %(columns)s column. Download the template to see the columns.",
                "The file lacks the columns %(columns)s. Download the template to see the columns.",
                len(missing),
                columns=", ".join(missing),
            )
        )


def _plan(stored: uploads.StoredUpload, now: datetime) -> MeasurementPlan | None:
    """Read and plan a stored file again; None (with a message) if it can no longer be read."""
    max_bytes, max_rows = _limits()
    try:
        with stored.open() as file:
            table = read.read_table(
                file, stored.filename, max_bytes=max_bytes, max_rows=max_rows, layout=import_plan.LAYOUT
            )
    except read.ImportFileError as exc:
        uploads.discard_upload(stored.token)
        db.session.commit()
        flash(exc.message, "error")
        return None
    return import_plan.plan_measurements(table, current_user, now)


@bp.route("/import/<token>", methods=["GET", "POST"])
@login_required
def import_preview(token: str) -> ResponseReturnValue:
    """Every row of a stored file and what importing it does, every problem; POST imports it all."""
    _require_reporter()
    now = _now()
    stored = uploads.load_upload(token, current_user.id, now)
    if stored is None:
        abort(404)
    plan = _plan(stored, now)
    if plan is None:
        return redirect(url_for(".import_values"), 303)
    error, status = None, 200
    nothing_imported = _(
        "Nothing was imported: correct the problems listed below in your file, then upload it again."
    )
    if request.method == "POST":
        if plan.problems:
            error, status = nothing_imported, 422
        elif not plan.changes_anything:
            uploads.discard_upload(token)
            db.session.commit()
            flash(_("Nothing to import: the file matches the values tracker holds."), "info")
            return redirect(url_for(".import_values"), 303)
        else:
            try:
                written = import_plan.apply_plan(plan, current_user, now)
                uploads.discard_upload(token)  # with the import: kept if it fails
                db.session.commit()
            except ImportRefused as exc:
                db.session.rollback()
                plan = _plan(stored, now)
                if plan is None:
                    return redirect(url_for(".import_values"), 303)
                plan.problems.append(exc.problem)
                error, status = nothing_imported, 422
            except (IntegrityError, StaleDataError):
                db.session.rollback()
                log.info("import of %s refused at write time", stored.filename, exc_info=True)
                plan = _plan(stored, now)
                if plan is None:
                    return redirect(url_for(".import_values"), 303)
                error = _(
                    "Nothing was imported: the values changed while the file was being imported. "
                    "Check the new preview and confirm again."
                )
                status = 409
            else:
                flash(
                    ngettext(
                        "Imported %(num)d value: it awaits a reviewer's validation.",
                        "Imported %(num)d values (%(new)d new, %(corrected)d corrected): "
                        "they await a reviewer's validation.",
                        written["new"] + written["correction"],
                        new=written["new"],
                        corrected=written["correction"],
                    ),
                    "success",
                )
                return redirect(url_for(".import_values"), 303)
    return (
        render_template(
            "indicators/import.html",
            plan=plan,
            token=stored.token,
            error=error,
            form=None,
        ),
        status,
    )


@bp.route("/import/<token>/cancel", methods=["POST"])
@login_required
def import_cancel(token: str) -> ResponseReturnValue:
    """Forget a previewed file without importing it."""
    _require_reporter()
    if uploads.load_upload(token, current_user.id, _now()) is None:
        abort(404)
    uploads.discard_upload(token)
    db.session.commit()
    flash(_("The file was not imported, and it is forgotten."), "info")
    return redirect(url_for(".import_values"), 303)


@bp.route("/import/template.csv")
@login_required
def import_template() -> Response:
    """The import template as CSV: the columns, and a row per active indicator for the last quarter
    (the person's office, or the first one) with the value to fill in."""
    _require_reporter()
    office = current_user.office or db.session.scalar(sa.select(Office).order_by(Office.code).limit(1))
    period = Quarter.last_ended(office.today(_now()) if office else _now().date())
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(import_plan.COLUMNS)
    for indicator in queries.active_indicators():
        writer.writerow([indicator.code, office.code if office else "", str(period), "", "", ""])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="tracker-indicator-import.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
