"""Import (upload, preview, confirm), exports (the action list, the dashboard's matrix) and the
printable reports of the programme and of each office."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import IO

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

from tracker import files
from tracker.actions import queries
from tracker.dashboard import services as dashboard
from tracker.dashboard.views import parse_filters
from tracker.extensions import db
from tracker.permissions import Perm, require
from tracker.transfer import apply, columns, export, export_jobs, import_jobs, read, uploads
from tracker.transfer.cells import reader_locale
from tracker.transfer.forms import UploadForm
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
    """The upload form (admins and reviewers); a readable file is kept and its preview shown (a
    large one is previewed in the background)."""
    require(current_user, Perm.IMPORT_DATA)
    form = UploadForm()
    max_bytes, max_rows = _limits()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            upload = form.file.data
            name = read.clean_filename(upload.filename)
            now = _now()
            inline = current_app.config["TRACKER_IMPORT_INLINE_ROWS"]
            try:
                # Into the database a piece at a time (so that the confirmation may reach another
                # host); a file over the limit is refused before anything is written.
                token = uploads.store_upload(upload.stream, name, current_user.id, now, limit=max_bytes)
                stored = uploads.load_upload(token, current_user.id, now)
                rows = _first_rows(stored, inline) if stored is not None else 0
            except (files.FileTooLarge, read.ImportFileError) as exc:
                db.session.rollback()  # nothing of the file is kept
                form.file.errors = [*form.file.errors, _refusal(exc, name, max_bytes)]
                status = exc.status if isinstance(exc, read.ImportFileError) else 413
            else:
                if stored is not None and rows > inline:
                    job = import_jobs.start_preview(current_user, stored, now, reader_locale())
                    uploads.discard_upload(token)  # the job holds its own copy
                    db.session.commit()
                    return redirect(url_for(".job", job_id=job.id), 303)
                db.session.commit()
                return redirect(url_for(".preview", token=token), 303)
        else:
            status = 422
    return (
        render_template(
            "transfer/upload.html",
            form=form,
            columns=columns.COLUMN_HELP,
            extras=columns.EXPORT_EXTRAS,
            max_size=_mb(max_bytes),
            max_rows=max_rows,
            inline_rows=current_app.config["TRACKER_IMPORT_INLINE_ROWS"],
        ),
        status,
    )


def _refusal(exc: files.FileTooLarge | read.ImportFileError, name: str, max_bytes: int) -> str:
    """What to say of a refused upload."""
    if isinstance(exc, read.ImportFileError):
        return exc.message
    return _("%(name)s is larger than %(size)s: split it into smaller files.", name=name, size=_mb(max_bytes))


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


def _first_rows(stored: uploads.StoredUpload, most: int) -> int:
    """Check a stored file as far as its first ``most`` + 1 rows; how many rows it has, up to that."""
    max_bytes, max_rows = _limits()
    with stored.open() as file:
        table = read.open_table(file, stored.filename, max_bytes=max_bytes, max_rows=max_rows)
        return read.count_rows(table, most)


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
    # The preview checks every row by the commands' rules (what is not a new action runs through
    # them, rolled back); the confirmation checks them again and keeps the writes only if none is
    # refused.
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
            db.session.commit()
            flash(_("Nothing to import: the file matches what tracker holds."), "info")
            return redirect(url_for(".upload"), 303)
        else:
            try:
                counts = apply.apply_import(plan, current_user, now, note)
                uploads.discard_upload(token)  # with the import: kept if it fails
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
                flash(apply.summary(counts), "success")
                return redirect(url_for(".upload"), 303)
    return (
        render_template(
            "transfer/preview.html",
            plan=plan,
            filename=stored.filename,
            cancel_url=url_for(".cancel", token=stored.token),
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
    db.session.commit()
    flash(_("The file was not imported, and it is forgotten."), "info")
    return redirect(url_for(".upload"), 303)


@bp.route("/import/jobs/<int:job_id>", methods=["GET", "POST"])
@login_required
def job(job_id: int) -> ResponseReturnValue:
    """A large import in the background: its progress, then its preview (POST confirms it: the
    apply is a second job), then what it wrote."""
    require(current_user, Perm.IMPORT_DATA)
    found = import_jobs.job_of(current_user, job_id)
    if found is None:
        abort(404)
    if request.method == "POST":
        applying = import_jobs.confirm(current_user, found, _now())
        if applying is None:
            abort(409)
        db.session.commit()
        return redirect(url_for(".job", job_id=applying.id), 303)
    view = import_jobs.JobView(found)
    if view.plan is not None and view.applying is None:  # the preview, or what refused the apply
        return render_template(
            "transfer/preview.html",
            plan=view.plan,
            filename=view.filename,
            cancel_url=None,
            error=found.message if view.refused else None,
            shown=PREVIEW_ROWS,
        )
    return render_template("transfer/job.html", view=view, job_page=_job_page(found.id))


def _job_page(job_id: int) -> str | None:
    """The jobs page of this job, if the jobs feature is served."""
    if "jobs.show" not in current_app.view_functions:
        return None
    return url_for("jobs.show", job_id=job_id)


def _plan(stored: uploads.StoredUpload, now: datetime, *, rehearse: bool = True) -> ImportPlan | None:
    """Read and plan a stored file again; None (with a message) if it can no longer be read.

    With ``rehearse``, the rows are also checked by the commands' rules (rolled back), and what
    they refuse is listed with the other problems.
    """
    max_bytes, max_rows = _limits()
    try:
        with stored.open() as file:
            table = read.open_table(file, stored.filename, max_bytes=max_bytes, max_rows=max_rows)
            plan = plan_import(table, reader_locale())
    except read.ImportFileError as exc:
        uploads.discard_upload(stored.token)
        db.session.commit()
        flash(exc.message, "error")
        return None
    if rehearse:
        apply.rehearse(plan, current_user, now, _("Imported from %(name)s", name=stored.filename))
    return plan


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


def _export_actions(fmt: str) -> ResponseReturnValue:
    """The actions the user may see, under the home list's filters: streamed when they are few
    enough for a request (TRACKER_EXPORT_INLINE_ROWS_CSV / _XLSX), else prepared in the
    background, the person sent to the job's page."""
    now = _now()
    filters = _action_filters()
    if isinstance(filters, Response):
        return filters
    query = queries.filtered_actions(current_user, now, filters)
    inline = current_app.config[f"TRACKER_EXPORT_INLINE_ROWS_{fmt.upper()}"]
    count = export.count_rows(query, limit=inline)
    if count > inline:
        job = export_jobs.queue_export(
            current_user, fmt, request.args.to_dict(), now, export.count_rows(query)
        )
        db.session.commit()
        flash(
            _("This export is large: it is being prepared, and you will get an email when it is ready."),
            "info",
        )
        return redirect(url_for("jobs.show", job_id=job.id), 303)
    rows = export.export_rows(query, now)
    header = columns.column_labels(export.EXPORT_HEADER)
    name = export_jobs.file_name(fmt, now)
    if fmt == "csv":
        body = export.csv_stream(header, rows)
        response = Response(stream_with_context(body), mimetype="text/csv")
    else:
        body = export.xlsx_stream([export.Sheet(_("Actions"), header, rows, export.EXPORT_WIDTHS)])
        response = Response(stream_with_context(body), mimetype=XLSX_MIMETYPE)
    return _attachment(response, name)


@bp.route("/export/actions.csv")
@login_required
def export_actions_csv() -> ResponseReturnValue:
    """The actions the user may see, under the home list's filters, as CSV streamed row by row."""
    return _export_actions("csv")


@bp.route("/export/actions.xlsx")
@login_required
def export_actions_xlsx() -> ResponseReturnValue:
    """The actions the user may see, under the home list's filters, as an XLSX workbook."""
    return _export_actions("xlsx")


@bp.route("/export/matrix.xlsx")
@login_required
def export_matrix() -> Response:
    """The dashboard's recommendation × office matrix, under its filters, as an XLSX workbook."""
    require(current_user, Perm.VIEW_DASHBOARD)
    now = _now()
    choices = dashboard.filter_choices(current_user)
    filters, _dropped = parse_filters(request.args, choices)
    matrix = dashboard.build_dashboard(current_user, now, filters).matrix  # cached with the dashboard
    out, size = export.write_workbook([export.matrix_sheet(matrix)])
    return _send_workbook(out, size, f"matrix-{now:%Y%m%d}.xlsx")


def _attachment(response: Response, name: str) -> Response:
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _send_workbook(out: IO[bytes], size: int, name: str) -> Response:
    response = send_file(out, mimetype=XLSX_MIMETYPE, as_attachment=True, download_name=name, max_age=0)
    response.content_length = size
    return _attachment(response, name)
