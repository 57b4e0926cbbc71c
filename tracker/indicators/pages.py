"""Seeing, comparing and managing indicators: the list, an indicator's comparison of every office,
the indicator form, archiving, and every office's baseline and target on one form."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from tracker import params
from tracker.actions.commands import StateConflict, WorkflowError
from tracker.extensions import db
from tracker.forms import show_refusal
from tracker.indicators import comparison, queries, services
from tracker.indicators.manage_forms import GOAL_FIELDS, IndicatorForm, goal_field_name, goals_form
from tracker.indicators.models import Indicator, Unit
from tracker.indicators.views import bp
from tracker.models import Office
from tracker.permissions import Perm, can, can_somewhere, require


def _now() -> datetime:
    return datetime.now(UTC)


@bp.route("/")
@login_required
def index() -> str:
    """Every indicator, active ones first, with last quarter's reports and the programme median."""
    require(current_user, Perm.VIEW_INDICATORS)
    listing = comparison.indicator_list(_now().date(), params.page_arg())
    return render_template(
        "indicators/index.html",
        listing=listing,
        may_manage=can(current_user, Perm.MANAGE_INDICATORS),
        may_report=can_somewhere(current_user, Perm.REPORT_MEASUREMENT),
    )


@bp.route("/<int:indicator_id>")
@login_required
def show(indicator_id: int) -> str:
    """One indicator: every office's latest value, baseline, target, progress and line, and the median."""
    require(current_user, Perm.VIEW_INDICATORS)
    indicator = db.get_or_404(Indicator, indicator_id)
    shown, problem = comparison.quarter_range(request.args, _now().date())
    data = comparison.comparison(current_user, indicator, shown)
    earlier, later = shown.shifted(-len(shown.quarters)), shown.shifted(len(shown.quarters))
    last = comparison.quarter_range({}, _now().date())[0].end
    return render_template(
        "indicators/show.html",
        indicator=indicator,
        data=data,
        problem=problem,
        earlier=earlier,
        later=later if later.start <= last else None,
        filters={"from": str(shown.start), "to": str(shown.end)},
        may_manage=can(current_user, Perm.MANAGE_INDICATORS),
    )


def _indicator_page(indicator: Indicator | None) -> ResponseReturnValue:
    """The indicator form: a new indicator, or changes to one (those who manage indicators)."""
    require(current_user, Perm.MANAGE_INDICATORS)
    form = IndicatorForm(obj=indicator) if indicator else IndicatorForm()
    form.offer_recommendations()
    if indicator is not None and request.method == "GET":
        form.recommendation_id.data = str(indicator.recommendation_id or "")
    if form.validate_on_submit():
        fields = services.IndicatorFields(
            code=form.code.data or "",
            name=form.name.data or "",
            unit=form.unit.data or "",
            direction=form.direction.data or "",
            definition=form.definition.data or "",
            recommendation_id=form.recommendation(),
        )
        try:
            saved = services.save_indicator(current_user, fields, _now(), indicator)
            db.session.commit()
        except (WorkflowError, StateConflict) as error:
            show_refusal(form, error)
        else:
            flash(_("Indicator %(code)s is saved.", code=saved.code), "success")
            return redirect(url_for("indicators.show", indicator_id=saved.id))
    if form.is_submitted():
        flash(_("Nothing was saved: see the messages in the form."), "error")
    return render_template("indicators/form.html", form=form, indicator=indicator)


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> ResponseReturnValue:
    """Create an indicator (reviewers and administrators)."""
    return _indicator_page(None)


@bp.route("/<int:indicator_id>/edit", methods=["GET", "POST"])
@login_required
def edit(indicator_id: int) -> ResponseReturnValue:
    """Change an indicator (reviewers and administrators); the unit is fixed once values exist."""
    require(current_user, Perm.MANAGE_INDICATORS)
    return _indicator_page(db.get_or_404(Indicator, indicator_id))


class ConfirmForm(FlaskForm):
    """No fields: the CSRF token of a confirmation button."""


def _set_archived(indicator_id: int, archived: bool) -> ResponseReturnValue:
    """Ask, then archive an indicator or bring it back."""
    require(current_user, Perm.MANAGE_INDICATORS)
    indicator = db.get_or_404(Indicator, indicator_id)
    back = url_for("indicators.show", indicator_id=indicator.id)
    if (indicator.archived_at is not None) == archived:
        flash(
            _("%(code)s is already archived.", code=indicator.code)
            if archived
            else _("%(code)s is not archived.", code=indicator.code),
            "info",
        )
        return redirect(back)
    form = ConfirmForm()
    if not form.validate_on_submit():
        if archived:
            title = _("Archive %(code)s?", code=indicator.code)
            text = [
                _(
                    "Offices will no longer report %(code)s and no reminder will ask for it. Its values, "
                    "baselines and targets are kept and shown. You can bring it back later.",
                    code=indicator.code,
                )
            ]
            button = _("Archive %(code)s", code=indicator.code)
        else:
            title = _("Bring back %(code)s?", code=indicator.code)
            text = [_("Offices will report %(code)s again each quarter.", code=indicator.code)]
            button = _("Bring back %(code)s", code=indicator.code)
        return render_template(
            "admin/confirm.html", form=form, title=title, text=text, button=button, cancel=back
        )
    services.set_archived(current_user, indicator, archived, _now())
    db.session.commit()
    flash(
        _("%(code)s is archived.", code=indicator.code)
        if archived
        else _("%(code)s is back among the active indicators.", code=indicator.code),
        "success",
    )
    return redirect(back)


@bp.route("/<int:indicator_id>/archive", methods=["GET", "POST"])
@login_required
def archive(indicator_id: int) -> ResponseReturnValue:
    """Ask, then archive an indicator: no longer reported or reminded, its values kept."""
    return _set_archived(indicator_id, True)


@bp.route("/<int:indicator_id>/unarchive", methods=["GET", "POST"])
@login_required
def unarchive(indicator_id: int) -> ResponseReturnValue:
    """Ask, then bring an archived indicator back."""
    return _set_archived(indicator_id, False)


@bp.route("/<int:indicator_id>/goals", methods=["GET", "POST"])
@login_required
def goals(indicator_id: int) -> ResponseReturnValue:
    """Every active office's baseline and target on one form, saved all together or not at all."""
    require(current_user, Perm.MANAGE_INDICATORS)
    indicator = db.get_or_404(Indicator, indicator_id)
    offices = comparison.active_offices()
    current = {t.office_id: t for t in queries.targets([indicator.id]).values()}
    form = goals_form(offices, current)
    if form.validate_on_submit():
        if _save_goals(form, indicator, offices, current):
            db.session.commit()
            flash(_("The baselines and targets of %(code)s are saved.", code=indicator.code), "success")
            return redirect(url_for("indicators.show", indicator_id=indicator.id))
        db.session.rollback()
    if form.is_submitted():
        flash(_("Nothing was saved: see the messages in the form."), "error")
    return render_template(
        "indicators/goals.html",
        form=form,
        indicator=indicator,
        offices=offices,
        field_name=goal_field_name,
        yes_no=indicator.unit == Unit.YES_NO,
    )


def _save_goals(form: FlaskForm, indicator: Indicator, offices: list[Office], current: dict) -> bool:
    """Save each office's goal (flushing); False, with each refusal beside its field, if any is refused."""
    now, saved = _now(), True
    for office in offices:
        texts = {name: (form[goal_field_name(office.id, name)].data or "").strip() for name in GOAL_FIELDS}
        if not any(texts.values()) and office.id not in current:
            continue  # nothing there, nothing given
        goal, refused = services.Goal(), False
        for name, text in texts.items():
            if not text:
                continue
            try:
                if name.endswith("value"):
                    setattr(goal, name, services.parse_value(indicator.unit, text, field=name))
                else:
                    setattr(goal, name, services.parse_period(text, field=name))
            except WorkflowError as error:
                form[goal_field_name(office.id, name)].errors.append(error.message)
                refused = True
        if not refused:
            try:
                services.save_goal(current_user, indicator, office, goal, now)
            except WorkflowError as error:  # checked before anything of this office is written
                name = error.field if error.field in GOAL_FIELDS else "target_value"
                form[goal_field_name(office.id, name)].errors.append(error.message)
                refused = True
        saved = saved and not refused
    return saved
