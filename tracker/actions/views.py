"""The home page (the actions a user may see), the action page with its update form, evidence files."""

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tracker import params
from tracker.actions import commands, evidence, extensions, proposals, queries, services, workflow
from tracker.actions.forms import (
    ExtensionDecisionForm,
    ExtensionRequestForm,
    ProposalDecisionForm,
    ReopenForm,
    UpdateForm,
    VerifyForm,
    VerifySelectedForm,
    WithdrawForm,
)
from tracker.auth.services import safe_next_url
from tracker.extensions import db
from tracker.forms import show_refusal
from tracker.indicators import review as indicator_review
from tracker.indicators.forms import ReviewForm
from tracker.labels import status_label
from tracker.models import ActionItem, Status
from tracker.permissions import Perm, can, require
from tracker.profile import absences

bp = Blueprint("actions", __name__)


def _version(form: Any) -> int:
    """The item's version the form was based on; a missing or forged one (0) matches none: a conflict."""
    return params.whole_number(form.version.data) or 0


@bp.route("/")
@login_required
def home() -> ResponseReturnValue:
    """List the action items the signed-in user may see, filtered and paginated."""
    now = datetime.now(UTC)
    try:
        filters = queries.action_filters(request.args)
    except queries.FilterError as exc:
        flash(str(exc), "error")
        filters = queries.ActionFilters()
    page = services.list_actions(
        current_user,
        now,
        filters,
        page=params.page_arg(),
        per_page=current_app.config["TRACKER_PAGE_SIZE"],
    )
    return render_template(
        "actions/home.html",
        page=page,
        now=now,
        offices=services.visible_offices(current_user),
        filters={
            "office": filters.office_code or "",
            "status": filters.status or "",
            "overdue": filters.overdue_only,
            "recommendation": filters.recommendation_code or "",
            "source": filters.source_id or "",
            "theme": filters.theme or "",
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
                commands.record_update(current_user, item, now, _update_request(form))
                db.session.commit()  # the files too: they are in the database
            except commands.WorkflowError as exc:
                db.session.rollback()
                if exc.field == "deadline" and not can(current_user, Perm.DECIDE_EXTENSION, item):
                    exc.field = None  # the office has no deadline field: say it above the form
                _field_error(form, exc)
            except commands.ConflictError as exc:
                conflict = exc
            except StaleDataError:  # someone saved between our read and our write
                db.session.rollback()
                item = services.get_action(current_user, action_id) or abort(404)
                conflict = commands.ConflictError(item, commands.changes_since(item, _version(form)))
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
        form.deadline.data = item.deadline
        # Sending a completion back proposes the progress the office stood at before reporting it.
        form.progress.data = (
            commands.progress_before_report(item) if item.status == Status.COMPLETED else item.progress
        )
    status = 409 if conflict else 422 if request.method == "POST" else 200
    return _page(item, now, status, form=form, may_update=may_update, conflict=conflict)


def _page(item: ActionItem, now: datetime, status: int = 200, **forms: object) -> ResponseReturnValue:
    """The action page with whichever forms the user may use (those given keep their input and errors)."""
    if "form" not in forms:
        form = UpdateForm(formdata=None)
        forms["may_update"] = _offer_choices(form, item)
        form.version.data = str(item.version)
        form.deadline.data = item.deadline
        form.progress.data = item.progress
        forms["form"] = form
    pending = extensions.pending_extension(item)
    forms.setdefault("conflict", None)
    forms.setdefault("extension_form", ExtensionRequestForm(formdata=None))
    forms.setdefault("decision_form", ExtensionDecisionForm(formdata=None))
    for name, form_class in (("reopen_form", ReopenForm), ("withdraw_form", WithdrawForm)):
        if name not in forms:
            forms[name] = form_class(formdata=None, version=str(item.version))
    if item.status == Status.VERIFIED and forms["reopen_form"].progress.data is None:
        forms["reopen_form"].progress.data = commands.progress_before_report(item)
    return (
        render_template("actions/detail.html", item=item, now=now, pending=pending, **forms),
        status,
    )


def _field_error(form: FlaskForm, error: commands.WorkflowError) -> None:
    """Put a command's refusal on the form field it names (else on the form); a state conflict on top."""
    if isinstance(error, commands.StateConflict):
        flash(error.message, "error")
        return
    show_refusal(form, error)


def _item_or_404(action_id: int) -> ActionItem:
    item = services.get_action(current_user, action_id)
    if item is None:
        abort(404)
    return item


@bp.post("/actions/<int:action_id>/extensions")
@login_required
def request_extension(action_id: int) -> ResponseReturnValue:
    """Ask for a later deadline with a reason (the office); a reviewer decides."""
    return _side_form(
        action_id,
        Perm.REQUEST_EXTENSION,
        ExtensionRequestForm,
        "extension_form",
        lambda item, form, now: extensions.request_extension(
            current_user, item, now, form.new_deadline.data, form.reason.data or ""
        ),
        _("Your request is recorded. A reviewer will decide; until then the current deadline holds."),
        renames={"deadline": "new_deadline"},  # the update form's field has that name on the page
    )


@bp.post("/extensions/<int:extension_id>/decision")
@login_required
def decide_extension(extension_id: int) -> ResponseReturnValue:
    """Approve or reject an extension request (reviewers), from the action page or the review queue."""
    now = datetime.now(UTC)
    extension = extensions.get_extension(current_user, extension_id)
    if extension is None:
        abort(404)
    require(current_user, Perm.DECIDE_EXTENSION, extension.action_item)
    form = ExtensionDecisionForm()
    if form.validate_on_submit():
        try:
            extensions.decide_extension(
                current_user, extension, now, form.decision.data, form.note.data or ""
            )
            db.session.commit()
        except commands.WorkflowError as exc:
            db.session.rollback()
            _field_error(form, exc)
            item = _item_or_404(extension.action_item_id)
            return _page(item, now, exc.status, decision_form=form)
        if form.decision.data == "approved":
            flash(_("Extension approved: the new deadline applies."), "success")
        else:
            flash(_("Extension rejected: the deadline holds."), "success")
        back = safe_next_url(request.args.get("next"))
        return redirect(back or url_for(".detail", action_id=extension.action_item_id))
    return _page(_item_or_404(extension.action_item_id), now, 422, decision_form=form)


def _decide(
    item: ActionItem, form: FlaskForm, change: Callable[[], object], done: str, conflict: str
) -> Response | tuple[ActionItem, int]:
    """Run a reviewer's confirmed decision on ``item`` and commit it: then a redirect to ``next``
    (or the action) with ``done`` said; if it is refused or the action changed meanwhile, the
    action read again and the status to answer with, the reason on the form."""
    item_id = item.id  # read before a rollback expires the instance
    try:
        change()
        db.session.commit()
    except commands.WorkflowError as exc:
        db.session.rollback()
        _field_error(form, exc)
        return _item_or_404(item_id), exc.status
    except (commands.ConflictError, StaleDataError):
        db.session.rollback()
        form.form_errors.append(conflict)
        return _item_or_404(item_id), 409
    flash(done, "success")
    back = safe_next_url(request.args.get("next"))
    return redirect(back or url_for(".detail", action_id=item_id))


@bp.route("/actions/<int:action_id>/verify", methods=["GET", "POST"])
@login_required
def verify(action_id: int) -> ResponseReturnValue:
    """Confirm, then verify a reported completion (reviewers): what was reported is shown first."""
    now = datetime.now(UTC)
    item = _item_or_404(action_id)
    require(current_user, Perm.VERIFY_ACTION, item)
    form = VerifyForm()
    status = 200
    if item.status != Status.COMPLETED:
        form.form_errors.append(
            _(
                "This action is “%(status)s”: there is no completion to verify.",
                status=status_label(item.status),
            )
        )
        status = 409
    elif form.validate_on_submit():
        request_ = commands.UpdateRequest(
            version=_version(form), status=Status.VERIFIED.value, note=form.note.data or ""
        )
        outcome = _decide(
            item,
            form,
            lambda: commands.record_update(current_user, item, now, request_),
            _("“%(title)s” is verified.", title=item.title),
            _("Someone changed this action meanwhile. Check it and confirm again."),
        )
        if not isinstance(outcome, tuple):
            return outcome
        item, status = outcome
    elif request.method == "POST":
        status = 422
    form.version.data = str(item.version)
    report = services.completion_reports([item.id]).get(item.id)
    return render_template("actions/verify.html", item=item, report=report, form=form), status


@bp.post("/actions/<int:action_id>/reopen")
@login_required
def reopen(action_id: int) -> ResponseReturnValue:
    """Move a verified action back to in progress with a note (reviewers); the owner is told."""
    return _side_form(
        action_id,
        Perm.REOPEN_ACTION,
        ReopenForm,
        "reopen_form",
        lambda item, form, now: commands.reopen(
            current_user, item, now, form.note.data or "", _version(form), form.progress.data
        ),
        _("The action is reopened; its owner is told."),
    )


@bp.post("/actions/<int:action_id>/withdraw")
@login_required
def withdraw(action_id: int) -> ResponseReturnValue:
    """The office withdraws its completion report before verification (back to in progress)."""
    return _side_form(
        action_id,
        Perm.UPDATE_ACTION,
        WithdrawForm,
        "withdraw_form",
        lambda item, form, now: commands.withdraw_completion(
            current_user, item, now, form.note.data or "", _version(form)
        ),
        _("The completion report is withdrawn; the action is in progress again."),
    )


def _side_form(
    action_id: int,
    perm: Perm,
    form_class: type[FlaskForm],
    name: str,
    command: Callable[[ActionItem, Any, datetime], object],
    done: str,
    renames: dict[str, str] | None = None,
) -> ResponseReturnValue:
    """Run one of the action page's small forms (no files) through its command and commit; on a
    refusal, the page again with that form, its input and the message next to the field."""
    now = datetime.now(UTC)
    item = _item_or_404(action_id)
    require(current_user, perm, item)
    form = form_class()
    if not form.validate_on_submit():
        return _page(item, now, 422, **{name: form})
    try:
        command(item, form, now)
        db.session.commit()
    except commands.WorkflowError as exc:
        db.session.rollback()
        if exc.field in (renames or {}):
            exc.field = renames[exc.field]
        _field_error(form, exc)
        return _page(_item_or_404(action_id), now, exc.status, **{name: form})
    except (commands.ConflictError, StaleDataError):
        db.session.rollback()
        form.form_errors.append(_("Someone changed this action meanwhile. Check it and try again."))
        return _page(_item_or_404(action_id), now, 409, **{name: form})
    flash(done, "success")
    return redirect(url_for(".detail", action_id=item.id))


@bp.route("/my")
@login_required
def my_work() -> str:
    """The open actions a person owns or deputises (a manager: all open actions of their scope),
    with counts (overdue, due soon, awaiting verification, sent back) that filter the list."""
    now = datetime.now(UTC)
    show = request.args.get("show")
    show = show if show in services.MY_WORK_FILTERS else None  # as the lists do: unknown is ignored
    per_page = current_app.config["TRACKER_PAGE_SIZE"]
    page = services.my_actions(current_user, now, params.page_arg(), per_page, show=show)
    covering = absences.covered_for(current_user, absences.today_of(current_user, now))
    return render_template(
        "actions/my.html",
        page=page,
        now=now,
        soon=timedelta(days=services.DUE_SOON_DAYS),
        covering=covering,
        show=show,
        counts=services.my_work_counts(current_user, now),
        filters=services.MY_WORK_FILTERS,
        indicators_due=indicator_review.due(current_user, now),
    )


@bp.route("/verification")
@login_required
def verification() -> str:
    """The review queue: completions, extension requests, proposed actions and indicator values, the
    longest waiting first, filtered by office, recommendation and kind (GET); completions can be
    verified together."""
    require(current_user, Perm.VERIFY_ACTION)
    filters = services.QueueFilters.from_args(request.args)
    queue = services.review_queue(
        current_user,
        datetime.now(UTC),
        filters,
        params.page_arg(),
        current_app.config["TRACKER_PAGE_SIZE"],
    )
    return render_template(
        "actions/verification.html",
        queue=queue,
        page=queue.page,
        filters=filters,
        offices=services.visible_offices(current_user),
        recommendations=services.queue_recommendations(),
        decision_form=ExtensionDecisionForm(formdata=None),
        proposal_form=ProposalDecisionForm(formdata=None),
        value_form=ReviewForm(formdata=None),
    )


def _chosen_versions() -> dict[int, int]:
    """item id → version, from the confirmation's ``item`` fields ("id:version"); malformed ones dropped."""
    chosen: dict[int, int] = {}
    for value in request.form.getlist("item")[:500]:
        item_id, _sep, version = value.partition(":")
        if (number := params.whole_number(item_id)) and (seen := params.whole_number(version)):
            chosen[number] = seen
    return chosen


@bp.route("/verification/verify", methods=["GET", "POST"])
@login_required
def verify_selected() -> ResponseReturnValue:
    """Verify the completions chosen in the review queue: a confirmation page listing them (GET),
    then each verified through the same command as one (POST); those changed meanwhile are skipped."""
    require(current_user, Perm.VERIFY_ACTION)
    filters = services.QueueFilters.from_args(request.values)
    back = url_for(".verification", **filters.args())
    form = VerifySelectedForm()
    if request.method == "GET":
        ids = [n for v in request.args.getlist("id")[:500] if (n := params.whole_number(v))]
        items = services.verifiable(current_user, ids)
        if not items:
            flash(_("Choose at least one completion to verify."), "error")
            return redirect(back)
        ready = [item for item in items if item.status == Status.COMPLETED]
        reports = services.completion_reports([item.id for item in ready])
        return render_template(
            "actions/verify_many.html",
            items=items,
            ready=ready,
            reports=reports,
            form=form,
            filters=filters,
            back=back,
        )
    if not form.validate_on_submit():
        abort(400)
    chosen = _chosen_versions()
    now = datetime.now(UTC)
    verified, skipped = [], []
    for item in services.verifiable(current_user, list(chosen)):
        request_ = commands.UpdateRequest(version=chosen[item.id], status=Status.VERIFIED.value)
        title = item.title
        if item.status != Status.COMPLETED:  # verified, sent back or withdrawn meanwhile
            skipped.append(title)
            continue
        # One savepoint per item: an item refused or changed meanwhile leaves nothing behind.
        savepoint = db.session.begin_nested()
        try:
            commands.record_update(current_user, item, now, request_)
            savepoint.commit()
        except (commands.WorkflowError, commands.ConflictError, StaleDataError):
            savepoint.rollback()
            skipped.append(title)
        else:
            verified.append(title)
    db.session.commit()
    if verified:
        flash(ngettext("%(num)d action verified.", "%(num)d actions verified.", len(verified)), "success")
    if skipped:
        flash(
            _(
                "Not verified, as they changed meanwhile (check them in the queue): %(titles)s",
                titles=", ".join(f"“{t}”" for t in skipped),
            ),
            "error",
        )
    return redirect(back)


@bp.route("/actions/<int:action_id>/proposal", methods=["GET", "POST"])
@login_required
def decide_proposal(action_id: int) -> ResponseReturnValue:
    """Accept a proposed action into the plan or decline it with a note (reviewers), from the review
    queue or this page; the proposer is told."""
    now = datetime.now(UTC)
    item = _item_or_404(action_id)
    require(current_user, Perm.DECIDE_PROPOSAL, item)
    form = ProposalDecisionForm()
    status = 200
    if item.status != Status.PROPOSED:
        form.form_errors.append(
            _("This action is no longer a proposal: it is “%(status)s”.", status=status_label(item.status))
        )
        status = 409
    elif form.validate_on_submit():
        accept = bool(form.accept.data)
        decide = proposals.accept_proposal if accept else proposals.decline_proposal
        outcome = _decide(
            item,
            form,
            lambda: decide(current_user, item, now, form.note.data or "", _version(form)),
            _("“%(title)s” is accepted into the plan.", title=item.title)
            if accept
            else _("The proposal “%(title)s” is declined.", title=item.title),
            _("Someone changed this action meanwhile. Check it and try again."),
        )
        if not isinstance(outcome, tuple):
            return outcome
        item, status = outcome
    elif request.method == "POST":
        status = 422
    form.version.data = str(item.version)
    proposal = proposals.proposers([item.id]).get(item.id)
    return render_template("actions/proposal.html", item=item, proposal=proposal, form=form), status


@bp.route("/evidence/<int:file_id>")
@login_required
def evidence_file(file_id: int) -> Response:
    """Download an evidence file, streamed a piece at a time; 404 unless the user may see its action."""
    found = services.get_evidence_file(current_user, file_id)
    content = evidence.content(found) if found is not None else None
    if found is None or content is None:
        abort(404)
    size, pieces = content
    response = current_app.response_class(stream_with_context(pieces), mimetype=found.content_type)
    response.content_length = size
    response.headers.set("Content-Disposition", "attachment", **_download_name(found.filename))
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _download_name(name: str) -> dict[str, str]:
    """Content-Disposition's file name parameters, as send_file writes them (RFC 6266: an ASCII
    ``filename`` and, for other names, ``filename*`` in UTF-8)."""
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        return {"filename": simple, "filename*": "UTF-8''" + quote(name, safe="!#$&+-.^_`|~")}
    return {"filename": name}


def _offer_choices(form: UpdateForm, item: ActionItem) -> bool:
    """Fill the status choices for this user and item; False if they may change nothing."""
    targets = workflow.allowed_targets(current_user, item)
    keep = [SelectChoice("", _("Keep “%(status)s”", status=status_label(item.status)))]
    form.status.choices = keep + [SelectChoice(t.value, status_label(t.value)) for t in targets]
    return bool(targets) or workflow.may_update_in_place(current_user, item)


def _update_request(form: UpdateForm) -> commands.UpdateRequest:
    return commands.UpdateRequest(
        version=_version(form),
        status=form.status.data or None,
        progress=form.progress.data,
        # Only those who decide extensions see the field; the command refuses a forged one.
        deadline=form.deadline.data,
        note=form.note.data or "",
        evidence_url=form.evidence_url.data or None,
        files=list(request.files.getlist(form.files.name)),
    )
