"""The home page (the actions a user may see), the action page with its update form, evidence files."""

from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tracker.actions import evidence, services, workflow
from tracker.actions.forms import UpdateForm, VerifyForm
from tracker.auth.services import safe_next_url
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, ActionUpdate, Status
from tracker.permissions import Perm, require

bp = Blueprint("actions", __name__)


@bp.route("/")
@login_required
def home() -> str:
    """List the action items the signed-in user may see, filtered and paginated."""
    now = datetime.now(UTC)
    status = request.args.get("status") or None
    if status not in {s.value for s in Status}:
        status = None
    office = request.args.get("office") or None
    overdue_only = request.args.get("overdue") == "1"
    recommendation = request.args.get("recommendation") or None
    source_id = request.args.get("source", type=int)
    theme = request.args.get("theme") or None
    page = services.list_actions(
        current_user,
        now,
        page=request.args.get("page", 1, type=int),
        per_page=current_app.config["TRACKER_PAGE_SIZE"],
        office_code=office,
        status=status,
        overdue_only=overdue_only,
        recommendation_code=recommendation,
        source_id=source_id,
        theme=theme,
    )
    return render_template(
        "actions/home.html",
        page=page,
        now=now,
        offices=services.visible_offices(current_user),
        filters={
            "office": office or "",
            "status": status or "",
            "overdue": overdue_only,
            "recommendation": recommendation or "",
            "source": source_id or "",
            "theme": theme or "",
        },
    )


@bp.route("/actions/<int:action_id>", methods=["GET", "POST"])
@login_required
def detail(action_id: int) -> ResponseReturnValue:
    """An action item with its history and, for those who may, the update form."""
    now = datetime.now(UTC)
    item = services.get_action(current_user, action_id)
    if item is None:
        abort(404)
    form = UpdateForm()
    may_update = _offer_choices(form, item)
    conflict = None
    if request.method == "POST":
        if not may_update:
            abort(403)
        if form.validate_on_submit():
            try:
                update = services.record_update(current_user, item, now, _update_request(form))
                _commit(update)
            except services.WorkflowError as exc:
                db.session.rollback()
                (getattr(form, exc.field).errors if exc.field else form.form_errors).append(exc.message)
            except services.ConflictError as exc:
                conflict = exc
            except StaleDataError:  # someone saved between our read and our write
                db.session.rollback()
                item = services.get_action(current_user, action_id) or abort(404)
                conflict = services.ConflictError(item, services.changes_since(item, int(form.version.data)))
            else:
                flash(_("Your update is saved."), "success")
                back = safe_next_url(request.args.get("next"))
                return redirect(back or url_for(".detail", action_id=item.id))
        if conflict is not None:
            # Keep what the person typed; base the next save on the version they have now seen.
            _offer_choices(form, conflict.item)
            form.version.data = str(conflict.item.version)
    else:
        form.version.data = str(item.version)
        form.progress.data = item.progress
        form.deadline.data = item.deadline
    status = 409 if conflict else 422 if request.method == "POST" else 200
    return (
        render_template(
            "actions/detail.html", item=item, now=now, form=form, may_update=may_update, conflict=conflict
        ),
        status,
    )


@bp.route("/my")
@login_required
def my_work() -> str:
    """The open actions a person owns or deputises (a manager: all open actions of their scope)."""
    now = datetime.now(UTC)
    page = services.my_actions(
        current_user, now, request.args.get("page", 1, type=int), current_app.config["TRACKER_PAGE_SIZE"]
    )
    return render_template("actions/my.html", page=page, now=now, soon=timedelta(days=14))


@bp.route("/verification")
@login_required
def verification() -> str:
    """Completions awaiting verification, the longest waiting first (reviewers and admins)."""
    require(current_user, Perm.VERIFY_ACTION)
    page = services.verification_queue(
        current_user, request.args.get("page", 1, type=int), current_app.config["TRACKER_PAGE_SIZE"]
    )
    reports = services.completion_reports([item.id for item in page.items])
    return render_template("actions/verification.html", page=page, reports=reports, form=VerifyForm())


@bp.route("/evidence/<int:file_id>")
@login_required
def evidence_file(file_id: int) -> Response:
    """Download an evidence file; 404 unless the user may see its action."""
    found = services.get_evidence_file(current_user, file_id)
    if found is None or not evidence.path_of(found.stored_name).is_file():
        abort(404)
    response = send_file(
        evidence.path_of(found.stored_name),
        mimetype=found.content_type,
        as_attachment=True,
        download_name=found.filename,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _offer_choices(form: UpdateForm, item: ActionItem) -> bool:
    """Fill the status choices for this user and item; False if they may change nothing."""
    targets = workflow.allowed_targets(current_user, item)
    keep = [SelectChoice("", _("Keep “%(status)s”", status=status_label(item.status)))]
    form.status.choices = keep + [SelectChoice(t.value, status_label(t.value)) for t in targets]
    return bool(targets) or workflow.may_update_in_place(current_user, item)


def _update_request(form: UpdateForm) -> services.UpdateRequest:
    return services.UpdateRequest(
        version=int(form.version.data),
        status=form.status.data or None,
        progress=form.progress.data,
        deadline=form.deadline.data,
        note=form.note.data or "",
        evidence_url=form.evidence_url.data or None,
        files=list(request.files.getlist(form.files.name)),
    )


def _commit(update: ActionUpdate) -> None:
    """Commit, removing the update's stored files from disk if the commit fails."""
    stored = [f.stored_name for f in update.files]
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        evidence.discard(stored)
        raise
