"""Import (upload, preview, confirm), exports (the action list, the dashboard's matrix) and the
printable reports of the programme and of each office."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker.actions import queries
from tracker.actions.queries import overdue_clause
from tracker.dashboard import services as dashboard
from tracker.dashboard.views import parse_filters
from tracker.extensions import db
from tracker.permissions import Perm, require
from tracker.transfer import apply, columns, export, read, uploads
from tracker.transfer.forms import ConfirmForm, UploadForm
from tracker.transfer.plan import ImportPlan, plan_import

log = logging.getLogger(__name__)

bp = Blueprint("transfer", __name__)

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Rows of each kind shown in the preview (the counts cover them all).
PREVIEW_ROWS = 50


def _now() -> datetime:
    return datetime.now(UTC)


def _limits() -> tuple[int, int]:
    config = current_app.config
    return config["TRACKER_IMPORT_MAX_BYTES"], config["TRACKER_IMPORT_MAX_ROWS"]


# --- import ----------------------------------------------------------------------------------


@bp.route("/import", methods=["GET", "POST"])
@login_required
def upload() -> ResponseReturnValue:
    """The upload form (admins and reviewers); a readable file is kept and its preview shown."""
    require(current_user, Perm.IMPORT_DATA)
    form = UploadForm()
    max_bytes, max_rows = _limits()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            upload = form.file.data
            name = read.clean_filename(upload.filename)
            data = upload.stream.read(max_bytes + 1)  # never more than the limit, whatever was sent
            try:
                read.read_table(data, name, max_bytes=max_bytes, max_rows=max_rows)
            except read.ImportFileError as exc:
                form.file.errors = [*form.file.errors, exc.message]
                status = exc.status
            else:
                token = uploads.store_upload(data, name, current_user.id, _now())
                return redirect(url_for(".preview", token=token), 303)
        else:
            status = 422
    return (
        render_template(
            "transfer/upload.html",
            form=form,
            columns=columns.COLUMN_HELP,
            extras=columns.EXPORT_EXTRAS,
            max_size=f"{max_bytes / 2**20:g} MB",
            max_rows=max_rows,
        ),
        status,
    )


@bp.route("/import/<token>", methods=["GET", "POST"])
@login_required
def preview(token: str) -> ResponseReturnValue:
    """What a stored file would create, update or leave alone, and every problem; POST imports it."""
    require(current_user, Perm.IMPORT_DATA)
    now = _now()
    stored = uploads.load_upload(token, current_user.id, now)
    if stored is None:
        abort(404)
    note = _("Imported from %(name)s", name=stored.filename)
    # The preview runs every row through the commands and rolls them back; the confirmation
    # runs them once and keeps the writes only if none is refused.
    plan = _plan(stored, now, rehearse=request.method == "GET")
    if plan is None:
        return redirect(url_for(".upload"), 303)
    error, status = None, 200
    if request.method == "POST":
        refused = _(
            "Nothing was imported: correct the problems listed below in your file, then upload it again."
        )
        if plan.problems:
            apply.rehearse(plan, current_user, now, note)  # list what the rules refuse too
            error, status = refused, 422
        elif not plan.changes_anything:
            uploads.discard_upload(token)
            flash(_("Nothing to import: the file matches what tracker holds."), "info")
            return redirect(url_for(".upload"), 303)
        else:
            try:
                counts = apply.apply_import(plan, current_user, now, note)
                db.session.commit()
            except apply.ImportRefused:
                error, status = refused, 422
            except (IntegrityError, StaleDataError):
                db.session.rollback()
                log.info("import of %s refused at write time", stored.filename, exc_info=True)
                plan = _plan(stored, now)
                if plan is None:
                    return redirect(url_for(".upload"), 303)
                error = _(
                    "Nothing was imported: the data changed while the file was being imported. "
                    "Check the new preview and confirm again."
                )
                status = 409
            else:
                uploads.discard_upload(token)
                flash(_summary(counts), "success")
                return redirect(url_for(".upload"), 303)
    return (
        render_template(
            "transfer/preview.html",
            plan=plan,
            stored=stored,
            form=ConfirmForm(),
            error=error,
            shown=PREVIEW_ROWS,
        ),
        status,
    )


@bp.route("/import/<token>/cancel", methods=["POST"])
@login_required
def cancel(token: str) -> ResponseReturnValue:
    """Forget a previewed file without importing it."""
    require(current_user, Perm.IMPORT_DATA)
    if uploads.load_upload(token, current_user.id, _now()) is None:
        abort(404)
    uploads.discard_upload(token)
    flash(_("The file was not imported, and it is forgotten."), "info")
    return redirect(url_for(".upload"), 303)


def _plan(stored: uploads.StoredUpload, now: datetime, *, rehearse: bool = True) -> ImportPlan | None:
    """Read and plan a stored file again; None (with a message) if it can no longer be read.

    With ``rehearse``, the rows also go through the commands (rolled back), and what they refuse
    is listed with the other problems.
    """
    max_bytes, max_rows = _limits()
    try:
        table = read.read_table(stored.data, stored.filename, max_bytes=max_bytes, max_rows=max_rows)
    except read.ImportFileError as exc:
        uploads.discard_upload(stored.token)
        flash(exc.message, "error")
        return None
    plan = plan_import(table)
    if rehearse:
        apply.rehearse(plan, current_user, now, _("Imported from %(name)s", name=stored.filename))
    return plan


def _summary(counts: dict[str, int]) -> str:
    return _(
        "Imported: %(rc)d recommendations created, %(ru)d updated; "
        "%(ac)d actions created, %(au)d updated. Unchanged: %(rn)d recommendations, %(an)d actions.",
        rc=counts["recommendations_create"],
        ru=counts["recommendations_update"],
        rn=counts["recommendations_unchanged"],
        ac=counts["actions_create"],
        au=counts["actions_update"],
        an=counts["actions_unchanged"],
    )


@bp.route("/import/template.csv")
@login_required
def template_csv() -> Response:
    """The import template as CSV: the column names and one example row."""
    require(current_user, Perm.IMPORT_DATA)
    body = "".join(export.csv_stream(columns.COLUMNS, [export.template_row(_now().date())]))
    return _attachment(Response(body, mimetype="text/csv"), "tracker-import-template.csv")


@bp.route("/import/template.xlsx")
@login_required
def template_xlsx() -> Response:
    """The import template as XLSX: the columns with one example row, and a sheet explaining them."""
    require(current_user, Perm.IMPORT_DATA)
    out, size = export.write_workbook(
        [
            export.Sheet(
                _("Import"),
                list(columns.COLUMNS),
                [export.template_row(_now().date())],
                export.EXPORT_WIDTHS[: len(columns.COLUMNS)],
            ),
            export.Sheet(
                _("Columns"), [_("Column"), _("What it holds")], export.template_help_rows(), [24, 100]
            ),
        ]
    )
    return _send_workbook(out, size, "tracker-import-template.xlsx")


# --- exports ---------------------------------------------------------------------------------


def _action_filters() -> queries.ActionFilters | Response:
    try:
        return queries.action_filters(request.args)
    except queries.FilterError as exc:
        return Response(
            render_template("transfer/message.html", title=_("Bad request"), message=str(exc)), status=400
        )


@bp.route("/export/actions.csv")
@login_required
def export_actions_csv() -> Response:
    """The actions the user may see, under the home list's filters, as CSV streamed row by row."""
    now = _now()
    filters = _action_filters()
    if isinstance(filters, Response):
        return filters
    rows = export.export_rows(queries.filtered_actions(current_user, now, filters), now)
    response = Response(
        stream_with_context(export.csv_stream(columns.column_labels(export.EXPORT_HEADER), rows)),
        mimetype="text/csv",
    )
    return _attachment(response, f"actions-{now:%Y%m%d}.csv")


@bp.route("/export/actions.xlsx")
@login_required
def export_actions_xlsx() -> Response:
    """The actions the user may see, under the home list's filters, as an XLSX workbook."""
    now = _now()
    filters = _action_filters()
    if isinstance(filters, Response):
        return filters
    rows = export.export_rows(queries.filtered_actions(current_user, now, filters), now)
    out, size = export.write_workbook(
        [export.Sheet(_("Actions"), columns.column_labels(export.EXPORT_HEADER), rows, export.EXPORT_WIDTHS)]
    )
    return _send_workbook(out, size, f"actions-{now:%Y%m%d}.xlsx")


@bp.route("/export/matrix.xlsx")
@login_required
def export_matrix() -> Response:
    """The dashboard's recommendation × office matrix, under its filters, as an XLSX workbook."""
    require(current_user, Perm.VIEW_DASHBOARD)
    now = _now()
    choices = dashboard.filter_choices(current_user)
    filters, _dropped = parse_filters(request.args, choices)
    overdue = overdue_clause(now)
    progress = dashboard.office_progress(current_user, filters, choices.offices, overdue)
    matrix = dashboard.matrix(current_user, filters, progress, overdue)
    out, size = export.write_workbook([export.matrix_sheet(matrix)])
    return _send_workbook(out, size, f"matrix-{now:%Y%m%d}.xlsx")


def _attachment(response: Response, name: str) -> Response:
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _send_workbook(out: io.BytesIO, size: int, name: str) -> Response:
    response = send_file(out, mimetype=XLSX_MIMETYPE, as_attachment=True, download_name=name, max_age=0)
    response.content_length = size
    return _attachment(response, name)
