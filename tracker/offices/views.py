"""Office pages: the offices with their counts, an office's action plan, adding and editing its
actions, and reassigning the actions of someone who leaves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from sqlalchemy.orm.exc import StaleDataError
from wtforms import SelectChoice

from tracker import params
from tracker.actions import proposals
from tracker.actions import reassign as reassigning
from tracker.actions.commands import ConflictError, changes_since
from tracker.dashboard import charts
from tracker.dashboard import history as rates_history
from tracker.extensions import db
from tracker.indicators import comparison as indicator_pages
from tracker.labels import role_label
from tracker.models import ActionItem, Office, Recommendation, User
from tracker.notifications.compose import offices_without_manager
from tracker.offices import services
from tracker.offices.forms import ActionForm, ReassignForm
from tracker.permissions import Perm, can, office_scope, require

bp = Blueprint("offices", __name__)


@bp.route("/offices")
@login_required
def index() -> ResponseReturnValue:
    """The offices the user may see with their open, overdue and done actions; one office: its page."""
    scope = office_scope(current_user)
    if scope is not None and len(scope) == 1:  # a focal point or an office's manager
        office = db.session.get(Office, next(iter(scope))) or abort(404)
        return redirect(url_for(".detail", code=office.code))
    # Admins see which offices have no active manager (their escalations skip a level).
    unmanaged = {o.id for o in offices_without_manager()} if can(current_user, Perm.MANAGE_OFFICES) else set()
    return render_template(
        "offices/index.html", rows=services.office_counts(current_user, _now()), unmanaged=unmanaged
    )


@bp.route("/offices/<code>")
@login_required
def detail(code: str) -> str:
    """An office's action plan: a page of recommendations in use, each with the response and the
    counts of its actions; ?show=<recommendation id> lists the first actions of one of them."""
    now = _now()
    office = services.get_office(current_user, code)
    plan = services.plan_page(current_user, office, now, page=params.page_arg(), show=params.int_arg("show"))
    rates = rates_history.for_office(office, now.date())  # the office's line and the programme's
    return render_template(
        "offices/detail.html",
        office=office,
        plan=plan,
        counts=plan.totals,
        now=now,
        rates=rates,
        rate_chart=charts.rate_chart("chart-rates", rates),
        charts=charts,
        office_indicators=indicator_pages.office_section(current_user, office),
    )


@bp.route("/offices/<code>/actions/new", methods=["GET", "POST"])
@login_required
def create_action(code: str) -> ResponseReturnValue:
    """Add an action to an office's plan (reviewers and admins); ?recommendation=<id> preselects one."""

    def added(item: ActionItem, office: Office) -> ResponseReturnValue:
        flash(
            _(
                "The action “%(title)s” is added to the plan of %(office)s.",
                title=item.title,
                office=office.code,
            ),
            "success",
        )
        return redirect(_plan_url(office, item.recommendation))

    return _new_action_page(code, Perm.CREATE_ACTION, services.create_action, added)


@bp.route("/offices/<code>/actions/propose", methods=["GET", "POST"])
@login_required
def propose_action(code: str) -> ResponseReturnValue:
    """Propose an action for the office's own plan (its focal points); a reviewer accepts or declines it.

    The same form as a reviewer's new action; ?recommendation=<id> preselects one.
    """

    def proposed(item: ActionItem, office: Office) -> ResponseReturnValue:
        flash(
            _(
                "Your proposal “%(title)s” is recorded; a reviewer will accept or decline it.",
                title=item.title,
            ),
            "success",
        )
        return redirect(url_for("actions.detail", action_id=item.id))

    return _new_action_page(code, Perm.PROPOSE_ACTION, proposals.propose_action, proposed, proposing=True)


def _new_action_page(
    code: str,
    perm: Perm,
    save: Callable[..., ActionItem],
    done: Callable[[ActionItem, Office], ResponseReturnValue],
    proposing: bool = False,
) -> ResponseReturnValue:
    """The new-action form of an office's plan: ``save(actor, office, now, fields)`` writes the item."""
    office = services.get_office(current_user, code)
    require(current_user, perm, office)
    form = ActionForm()
    recommendations = _offer_choices(form, office, None)
    if request.method == "GET":
        chosen = params.int_arg("recommendation")
        if chosen in {r.id for r in recommendations}:
            form.recommendation_id.data = chosen
    elif form.validate_on_submit():
        try:
            item = save(current_user, office, _now(), _fields(form))
            db.session.commit()
        except services.PlanError as exc:
            _refuse(form, exc)
        else:
            return done(item, office)
    if request.method == "POST":
        flash(_("Nothing was saved: see the messages in the form."), "error")
    return render_template(
        "offices/action_form.html", form=form, office=office, item=None, conflict=None, proposing=proposing
    ), 422 if request.method == "POST" else 200


@bp.route("/actions/<int:action_id>/edit", methods=["GET", "POST"])
@login_required
def edit_action(action_id: int) -> ResponseReturnValue:
    """Change an action's title, description, recommendation, owner, deputy, deadline (reviewers, admins)."""
    item = services.get_item(current_user, action_id) or abort(404)
    require(current_user, Perm.EDIT_ACTION, item)
    if not services.may_edit(item):
        flash(_("This action is verified or cancelled; it can no longer be edited."), "error")
        return redirect(url_for("actions.detail", action_id=item.id))
    form = ActionForm() if request.method == "POST" else ActionForm(obj=item)
    _offer_choices(form, item.office, item)
    conflict = None
    if form.validate_on_submit():
        # A missing or forged version cannot match: it is handled as a conflict.
        version = params.whole_number(form.version.data) or 0
        try:
            services.edit_action(current_user, item, _now(), _fields(form), version)
            db.session.commit()
        except services.PlanError as exc:
            _refuse(form, exc)
        except ConflictError as exc:
            conflict = exc
        except StaleDataError:  # someone saved between our read and our write
            db.session.rollback()
            item = services.get_item(current_user, action_id) or abort(404)
            conflict = ConflictError(item, changes_since(item, version))
        else:
            flash(_("Your changes to “%(title)s” are saved.", title=item.title), "success")
            return redirect(url_for("actions.detail", action_id=item.id))
        if conflict is not None:
            # Keep what the person typed; base the next save on the version they have now seen.
            item = conflict.item
            _offer_choices(form, item.office, item)
            form.version.data = str(item.version)
    if request.method == "POST":
        if conflict is not None:
            flash(_("Someone else saved this action after you opened it. Nothing was saved."), "error")
        else:
            flash(_("Nothing was saved: see the messages in the form."), "error")
    else:
        form.version.data = str(item.version)
    status = 409 if conflict else 422 if request.method == "POST" else 200
    return render_template(
        "offices/action_form.html", form=form, office=item.office, item=item, conflict=conflict
    ), status


@bp.route("/offices/<code>/reassign", methods=["GET", "POST"])
@login_required
def reassign(code: str) -> ResponseReturnValue:
    """Hand the actions of someone leaving to someone else: choose, preview, confirm (reviewers, admins)."""
    office = services.get_office(current_user, code)
    require(current_user, Perm.EDIT_ACTION, office)
    form = ReassignForm()
    choose = SelectChoice("", _("Choose a person"))
    form.leaving_id.choices = [choose] + [
        SelectChoice(u.id, _person_label(u, office)) for u in reassigning.leaving_candidates(office)
    ]
    form.successor_id.choices = [choose] + [
        SelectChoice(u.id, _person_label(u, office)) for u in services.assignable_people(office)
    ]
    plan, status, deputy_errors = None, 200, {}
    # The new deputies chosen in the preview, by item id (kept when the page comes back).
    answers = {
        int(key.removeprefix("deputy-")): value
        for key, value in request.form.items()
        if key.startswith("deputy-") and key.removeprefix("deputy-").isdigit() and len(key) < 20
    }
    if form.validate_on_submit():
        plan = _plan_or_refuse(form, office)
        if plan is not None and form.confirm.data:
            try:
                done = reassigning.apply_reassignment(
                    current_user, plan, _now(), form.fingerprint.data or "", answers
                )
                db.session.commit()
            except reassigning.DeputyChoiceError as exc:
                refusal, deputy_errors = exc.message, exc.errors
            except services.PlanError as exc:
                refusal = exc.message
            except StaleDataError:  # an item changed between our read and our write
                refusal = _("Some of these actions changed meanwhile. Check the new list and confirm again.")
            else:
                flash(ngettext("%(num)d action reassigned.", "%(num)d actions reassigned.", done), "success")
                return redirect(url_for(".detail", code=office.code))
            db.session.rollback()  # all or nothing
            form.form_errors.append(refusal)
            # The list as it stands now: 422 when only answers are missing, else 409 (it changed).
            plan, status = _plan_or_refuse(form, office), 422 if deputy_errors else 409
        if plan is None:
            status = 422
            flash(_("Nothing was reassigned: see the messages in the form."), "error")
        else:
            form.fingerprint.data = plan.fingerprint
            if status == 409:
                flash(_("Nothing was reassigned: see the message above the list."), "error")
            elif status == 422:
                flash(_("Nothing was reassigned: see the messages in the form."), "error")
            elif plan.changes:
                flash(_("Nothing is changed yet: check the list, then confirm."), "info")
            else:
                flash(_("Nothing to reassign: no action matches."), "info")
    elif request.method == "POST":
        status = 422
        flash(_("Nothing was reassigned: see the messages in the form."), "error")
    return render_template(
        "offices/reassign.html",
        form=form,
        office=office,
        plan=plan,
        answers=answers,
        deputy_errors=deputy_errors,
        no_deputy=reassigning.NO_DEPUTY,
    ), status


def _plan_url(office: Office, recommendation: Recommendation) -> str:
    """The page of the office's plan that lists the recommendation, with its actions shown."""
    page = services.plan_page_number(recommendation)
    return url_for(
        ".detail",
        code=office.code,
        page=page if page > 1 else None,
        show=recommendation.id,
        _anchor=f"rec-{recommendation.id}-actions",
    )


def _plan_or_refuse(form: ReassignForm, office: Office) -> reassigning.Reassignment | None:
    """The reassignment the form asks for, as the database stands now; None (and errors) if refused."""
    try:
        return reassigning.plan_reassignment(
            current_user, office, form.leaving_id.data, form.successor_id.data, bool(form.include_closed.data)
        )
    except services.PlanError as exc:
        _refuse(form, exc)
        return None


def _offer_choices(form: ActionForm, office: Office, item: ActionItem | None) -> list[Recommendation]:
    """Fill the selects for this office (and item); returns the recommendations offered."""
    recommendations = services.recommendations_for_plan(item.recommendation if item else None)
    form.recommendation_id.choices = [SelectChoice("", _("Choose a recommendation"))] + [
        SelectChoice(r.id, f"{r.code} — {r.title}") for r in recommendations
    ]
    people = [SelectChoice(u.id, _person_label(u, office)) for u in services.assignable_people(office)]
    offered = {c.value for c in people}
    # Someone an item already has stays on offer (marked) so that saving other changes keeps them.
    current = [u for u in (item.owner, item.deputy) if u is not None] if item else []
    people += [SelectChoice(u.id, _person_label(u, office)) for u in current if u.id not in offered]
    form.owner_id.choices = [SelectChoice("", _("Choose the owner")), *people]
    form.deputy_id.choices = [SelectChoice("", _("No deputy")), *people]
    return recommendations


def _person_label(user: User, office: Office) -> str:
    """A person in a select: name and role, and why they may not be chosen for the office."""
    label = f"{user.name} — {role_label(user.role)}"
    if not user.active:
        return _("%(person)s (inactive)", person=label)
    if user.office_id != office.id or not services.may_be_assigned(user, office):
        return _("%(person)s (not of this office)", person=label)
    return label


def _fields(form: ActionForm) -> services.ActionFields:
    return services.ActionFields(
        title=form.title.data or "",
        recommendation_id=form.recommendation_id.data,
        owner_id=form.owner_id.data,
        deputy_id=form.deputy_id.data,
        deadline=form.deadline.data,
        description=form.description.data or "",
        note=form.note.data or "",
    )


def _refuse(form: ActionForm | ReassignForm, error: services.PlanError) -> None:
    """Put a service's refusal next to its field, else above the form; nothing of it is kept."""
    db.session.rollback()
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def _now() -> datetime:
    return datetime.now(UTC)
