"""Recommendation list and page, writing and archiving them, office responses, and sources."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from wtforms import SelectChoice

from tracker import params
from tracker.extensions import db
from tracker.models import Office, Priority, Recommendation, ResponseRequest, Source, Status
from tracker.permissions import Perm, can, require
from tracker.recommendations import history, sending, services
from tracker.recommendations.forms import (
    ConfirmForm,
    NewRecommendationForm,
    RecommendationForm,
    ResponseForm,
    SendForm,
    SourceForm,
)

bp = Blueprint("recommendations", __name__)

#: How many changes the recommendation page shows (newest first); the API gives them all.
HISTORY_SHOWN = 50


@bp.app_template_global("open_response_requests")
def open_response_requests(user: object) -> list:
    """For templates/recommendations/_requests_panel.html: the user's office's unanswered requests."""
    return sending.open_response_requests(user) if getattr(user, "is_authenticated", False) else []


@bp.route("/recommendations")
@login_required
def index() -> str:
    """Search, filter, sort and page through recommendations; filters live in the URL."""
    require(current_user, Perm.VIEW_RECOMMENDATION)
    args = request.args
    filters = services.Filters(
        q=args.get("q", "").strip()[:200],
        source_id=params.int_arg("source"),
        theme=args.get("theme", ""),
        priority=args.get("priority", "") if args.get("priority") in set(Priority) else "",
        office_code=args.get("office", "")[:8],
        status=args.get("status", "") if args.get("status") in set(Status) else "",
        archived=args.get("archived") == "1",
        sort=args.get("sort", "code") if args.get("sort") in services.SORTS else "code",
    )
    page = services.list_recommendations(
        current_user, filters, params.page_arg(), current_app.config["TRACKER_PAGE_SIZE"]
    )
    from tracker.actions.services import visible_offices

    now = _now()
    return render_template(
        "recommendations/index.html",
        page=page,
        figures=services.list_figures(current_user, [r.id for r in page.items], now),
        today=now.astimezone(current_user.zone).date(),
        past_target=services.past_target,
        filters=filters,
        sources=services.sources(include_archived=True),
        themes=services.themes(),
        offices=visible_offices(current_user),
        sorts=services.SORTS,
    )


@bp.route("/recommendations/<int:recommendation_id>", methods=["GET", "POST"])
@login_required
def detail(recommendation_id: int) -> ResponseReturnValue:
    """A recommendation, each office's response and action items (within the user's scope)."""
    require(current_user, Perm.VIEW_RECOMMENDATION)
    recommendation = services.get_recommendation(recommendation_id) or abort(404)
    offices, responses, items = services.detail(current_user, recommendation)
    respondable = services.may_respond_for(current_user, offices)
    form = ResponseForm()
    form.office_id.choices = [SelectChoice(o.id, f"{o.code} — {o.name}") for o in respondable]
    if request.method == "POST":
        if not respondable:
            abort(403)
        if form.validate_on_submit():
            office = db.session.get(Office, form.office_id.data) or abort(404)
            services.respond(
                current_user, recommendation, office, form.response.data, form.comment.data or "", _now()
            )
            db.session.commit()
            flash(_("The response of %(office)s is saved.", office=office.code), "success")
            return redirect(url_for(".detail", recommendation_id=recommendation.id) + "#responses")
    else:
        chosen = params.int_arg("office")
        if chosen in {o.id for o in respondable}:
            form.office_id.data = chosen  # the "Respond" link of an office's row
        elif len(respondable) == 1 and respondable[0].id in responses:
            mine = responses[respondable[0].id]
            form.response.data, form.comment.data = mine.response, mine.comment
    requests = sending.requests_by_office(current_user, recommendation)
    changes = history.history(current_user, recommendation, limit=HISTORY_SHOWN)
    return render_template(
        "recommendations/detail.html",
        recommendation=recommendation,
        offices=offices,
        responses=responses,
        items=items,
        requests=requests,
        asked_of_me=[
            o
            for o in respondable
            if o.id == current_user.office_id and o.id in requests and o.id not in responses
        ],
        form=form,
        respondable=respondable,
        confirm=ConfirmForm(),
        now=_now(),
        changes=changes,
        changes_total=history.history_count(current_user, recommendation)
        if len(changes) == HISTORY_SHOWN
        else len(changes),
        change_label=history.field_label,
        change_value=history.value_label,
    ), (422 if request.method == "POST" else 200)


@bp.route("/recommendations/new", methods=["GET", "POST"])
@login_required
def create() -> ResponseReturnValue:
    """Write a new recommendation (reviewers and admins)."""
    return _edit(None)


@bp.route("/recommendations/<int:recommendation_id>/edit", methods=["GET", "POST"])
@login_required
def edit(recommendation_id: int) -> ResponseReturnValue:
    """Change a recommendation's text and attributes (reviewers and admins)."""
    return _edit(db.session.get(Recommendation, recommendation_id) or abort(404))


def _edit(recommendation: Recommendation | None) -> ResponseReturnValue:
    require(current_user, Perm.EDIT_RECOMMENDATION)
    # A new recommendation can be sent to the offices at once, by those who may send it.
    sends = recommendation is None and can(current_user, Perm.SEND_RECOMMENDATION)
    form = NewRecommendationForm() if sends else RecommendationForm(obj=recommendation)
    form.source_id.choices = [
        (s.id, s.title) for s in services.sources(include_archived=recommendation is not None)
    ]
    if not form.source_id.choices:
        flash(_("Add a source first: every recommendation comes from one."), "info")
        return redirect(url_for(".source_create"))
    if sends:
        _offer_offices(form)
    if form.validate_on_submit():
        now = _now()
        try:
            saved = services.save_recommendation(
                current_user,
                recommendation,
                code=form.code.data,
                title=form.title.data,
                text=form.text.data,
                theme=form.theme.data,
                priority=form.priority.data,
                source_id=form.source_id.data,
                target_date=form.target_date.data,
                now=now,
            )
            result = _send(form, saved, now) if sends and form.offices.data else None
            db.session.commit()
        except services.RecommendationError as exc:
            db.session.rollback()
            (getattr(form, exc.field).errors if exc.field else form.form_errors).append(exc.message)
        else:
            flash(_("Recommendation %(code)s is saved.", code=saved.code), "success")
            if result is not None:
                _report(result)
            return redirect(url_for(".detail", recommendation_id=saved.id))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "recommendations/form.html",
        form=form,
        recommendation=recommendation,
        themes=services.themes(),
        sends=sends,
        default_title=sending.DEFAULT_DRAFT_TITLE,
    ), status


@bp.route("/recommendations/<int:recommendation_id>/send", methods=["GET", "POST"])
@login_required
def send(recommendation_id: int) -> ResponseReturnValue:
    """Send a recommendation to offices: a response request each, optionally a first action drafted."""
    require(current_user, Perm.SEND_RECOMMENDATION)
    recommendation = services.get_recommendation(recommendation_id) or abort(404)
    form = SendForm()
    asked = _offer_offices(form, recommendation)
    if form.validate_on_submit():
        try:
            result = _send(form, recommendation, _now())
            db.session.commit()
        except services.RecommendationError as exc:
            db.session.rollback()
            (getattr(form, exc.field).errors if exc.field else form.form_errors).append(exc.message)
        else:
            _report(result)
            return redirect(url_for(".detail", recommendation_id=recommendation.id) + "#responses")
    status = 422 if request.method == "POST" else 200
    return render_template(
        "recommendations/send.html",
        form=form,
        recommendation=recommendation,
        asked=asked,
        default_title=sending.DEFAULT_DRAFT_TITLE,
    ), status


def _offer_offices(
    form: SendForm, recommendation: Recommendation | None = None
) -> dict[int, ResponseRequest]:
    """Offer every active office, all ticked at first but those already asked; returns office id →
    its request, for the offices already asked."""
    offices = sending.active_offices()
    asked = sending.requests_by_office(current_user, recommendation) if recommendation else {}
    form.offices.choices = [SelectChoice(o.id, f"{o.code} — {o.name}") for o in offices]
    if request.method == "GET":
        form.offices.data = [o.id for o in offices if o.id not in asked]
        form.draft_title.data = str(sending.DEFAULT_DRAFT_TITLE)
    return asked


def _send(form: SendForm, recommendation: Recommendation, now: datetime) -> sending.SendResult:
    return sending.send_to_offices(
        current_user,
        recommendation,
        form.offices.data or [],
        now,
        draft=form.draft.data,
        title_template=form.draft_title.data or "",
        deadline=form.draft_deadline.data,
    )


def _report(result: sending.SendResult) -> None:
    """Say what a send did, in one message (and one more for offices without a focal point)."""
    parts = [
        ngettext("Sent to %(num)d office", "Sent to %(num)d offices", len(result.sent)),
        ngettext("%(num)d already asked", "%(num)d already asked", len(result.already)),
        ngettext("%(num)d action drafted", "%(num)d actions drafted", len(result.drafted)),
    ]
    flash("; ".join(parts) + ".", "success")
    if result.already:
        flash(
            _("Asked before, skipped: %(offices)s.", offices=", ".join(o.code for o in result.already)),
            "info",
        )
    if result.without_focal_point:
        flash(
            _(
                "No active focal point in %(offices)s: nobody there was told and no action was drafted.",
                offices=", ".join(o.code for o in result.without_focal_point),
            ),
            "info",
        )


@bp.route("/recommendations/<int:recommendation_id>/archive", methods=["GET", "POST"])
@login_required
def archive(recommendation_id: int) -> ResponseReturnValue:
    """Archive or restore a recommendation, after a confirmation page."""
    require(current_user, Perm.EDIT_RECOMMENDATION)
    recommendation = db.session.get(Recommendation, recommendation_id) or abort(404)
    form = ConfirmForm()
    archiving = recommendation.archived_at is None
    if form.validate_on_submit():
        services.set_archived(current_user, recommendation, archiving, _now())
        db.session.commit()
        if archiving:
            flash(_("Recommendation %(code)s is archived.", code=recommendation.code), "success")
        else:
            flash(_("Recommendation %(code)s is restored.", code=recommendation.code), "success")
        return redirect(url_for(".detail", recommendation_id=recommendation.id))
    return render_template(
        "recommendations/confirm.html",
        form=form,
        title=_("Archive %(code)s?", code=recommendation.code)
        if archiving
        else _("Restore %(code)s?", code=recommendation.code),
        text=_("It disappears from the lists and the dashboard; its action items and history are kept.")
        if archiving
        else _("It comes back in the lists and the dashboard."),
        button=_("Archive") if archiving else _("Restore"),
        back=url_for(".detail", recommendation_id=recommendation.id),
    )


@bp.route("/sources")
@login_required
def sources() -> str:
    """Every source, archived ones included."""
    require(current_user, Perm.VIEW_RECOMMENDATION)
    return render_template("recommendations/sources.html", sources=services.sources(include_archived=True))


@bp.route("/sources/new", methods=["GET", "POST"])
@login_required
def source_create() -> ResponseReturnValue:
    """Add a source (reviewers and admins)."""
    return _edit_source(None)


@bp.route("/sources/<int:source_id>/edit", methods=["GET", "POST"])
@login_required
def source_edit(source_id: int) -> ResponseReturnValue:
    """Change a source (reviewers and admins)."""
    return _edit_source(db.session.get(Source, source_id) or abort(404))


def _edit_source(source: Source | None) -> ResponseReturnValue:
    require(current_user, Perm.EDIT_RECOMMENDATION)
    form = SourceForm(obj=source)
    if form.validate_on_submit():
        try:
            saved = services.save_source(
                current_user,
                source,
                title=form.title.data,
                place=form.place.data or "",
                starts_on=form.starts_on.data,
                ends_on=form.ends_on.data,
            )
            db.session.commit()
        except services.RecommendationError as exc:
            db.session.rollback()
            (getattr(form, exc.field).errors if exc.field else form.form_errors).append(exc.message)
        else:
            flash(_("The source “%(title)s” is saved.", title=saved.title), "success")
            return redirect(url_for(".sources"))
    status = 422 if request.method == "POST" else 200
    return render_template("recommendations/source_form.html", form=form, source=source), status


@bp.route("/sources/<int:source_id>/archive", methods=["GET", "POST"])
@login_required
def source_archive(source_id: int) -> ResponseReturnValue:
    """Archive or restore a source, after a confirmation page."""
    require(current_user, Perm.EDIT_RECOMMENDATION)
    source = db.session.get(Source, source_id) or abort(404)
    form = ConfirmForm()
    archiving = source.archived_at is None
    if form.validate_on_submit():
        services.set_source_archived(current_user, source, archiving, _now())
        db.session.commit()
        flash(_("The source is archived.") if archiving else _("The source is restored."), "success")
        return redirect(url_for(".sources"))
    return render_template(
        "recommendations/confirm.html",
        form=form,
        title=_("Archive “%(title)s”?", title=source.title)
        if archiving
        else _("Restore “%(title)s”?", title=source.title),
        text=_("It is no longer offered for new recommendations; existing ones keep it.")
        if archiving
        else _("It is offered again for new recommendations."),
        button=_("Archive") if archiving else _("Restore"),
        back=url_for(".sources"),
    )


def _now() -> datetime:
    return datetime.now(UTC)
