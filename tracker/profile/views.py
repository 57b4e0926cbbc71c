"""The profile page (language and time zone, absences, API tokens, the calendar link) and the
calendar feed itself."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from tracker.admin.forms import language_choices, timezone_choices
from tracker.admin.services import UserError
from tracker.api import auth as tokens
from tracker.auth import sessions, twofactor
from tracker.extensions import db
from tracker.forms import show_refusal
from tracker.models import User
from tracker.notifications.render import absolute_url
from tracker.permissions import may_record_absence
from tracker.profile import absences, calendar
from tracker.profile import sessions as own_sessions
from tracker.profile.forms import AbsenceForm, ConfirmForm, SettingsForm, TokenForm
from tracker.profile.settings import update_settings

bp = Blueprint("profile", __name__)

#: Cache-Control of the feed: calendar clients poll; shared caches must not keep a secret URL's answer.
FEED_CACHE_CONTROL = "private, max-age=900"


@bp.route("/profile")
@login_required
def index() -> str:
    """The user's absences, API tokens, calendar link, and where they are signed in."""
    return _page(TokenForm())


def _settings_form(submitted: bool = False) -> SettingsForm:
    """The language and time zone form: as submitted, else as the user has them now."""
    if submitted:
        form = SettingsForm()
    else:
        saved = {"language": current_user.language or "", "timezone": current_user.timezone or ""}
        form = SettingsForm(formdata=None, **saved)
    form.language.choices = language_choices(_("Default (the office’s language)"))
    form.timezone.choices = timezone_choices(_("Same as the office (UTC without an office)"))
    return form


@bp.route("/profile/settings", methods=["POST"])
@login_required
def settings() -> ResponseReturnValue:
    """Change one's own language and time zone."""
    form = _settings_form(submitted=True)
    if form.validate_on_submit():
        try:
            update_settings(
                current_user, language=form.language.data or None, timezone=form.timezone.data or None
            )
            db.session.commit()
        except UserError as exc:
            show_refusal(form, exc)
        else:
            flash(_("Your language and time zone are saved."), "success")
            return redirect(url_for(".index", _anchor="settings-heading"))
    flash(_("Nothing was saved: see the messages in the form."), "error")
    return _page(TokenForm(formdata=None), 422, settings_form=form)


def _page(
    form: TokenForm,
    status: int = 200,
    absence_form: AbsenceForm | None = None,
    settings_form: SettingsForm | None = None,
) -> ResponseReturnValue:
    now = _now()
    today = absences.today_of(current_user, now)
    return render_template(
        "profile/index.html",
        form=form,
        settings_form=settings_form or _settings_form(),
        absence_form=absence_form or AbsenceForm(formdata=None),
        absences=absences.absences_of(current_user, today),
        today=today,
        tokens=tokens.user_tokens(current_user),
        has_calendar=current_user.calendar_token_hash is not None,
        api_document=absolute_url("api.openapi_document"),
        second_factor=twofactor.status(current_user),
        sessions=own_sessions.listing(current_user, now),
        now=now,
    ), status


@bp.route("/profile/absences", methods=["POST"])
@login_required
def add_absence() -> ResponseReturnValue:
    """Record one of one's own absences (first and last day away, a note)."""
    form = AbsenceForm()
    if record_absence(current_user, form):
        return redirect(url_for(".index", _anchor="absences-heading"))
    flash(_("Nothing was saved: see the messages in the form."), "error")
    return _page(TokenForm(formdata=None), 422, absence_form=form)


def record_absence(person: User, form: AbsenceForm) -> bool:
    """Record the submitted absence of ``person`` for the signed-in user and commit; True if saved.

    Shared by the profile page and the admins' page of a user; a refusal goes next to its field.
    """
    if not form.validate_on_submit():
        return False
    try:
        absence = absences.add_absence(
            current_user, person, form.starts_on.data, form.ends_on.data, form.note.data, _now()
        )
        db.session.commit()
    except absences.AbsenceError as exc:
        show_refusal(form, exc)
        return False
    flash(absences.recorded_text(absence), "success")
    return True


@bp.route("/profile/absences/<int:absence_id>/delete", methods=["GET", "POST"])
@login_required
def delete_absence(absence_id: int) -> ResponseReturnValue:
    """Remove one of one's own absences, after a confirmation page (admins: anyone's)."""
    absence = absences.get_absence(absence_id) or abort(404)
    if not may_record_absence(current_user, absence.user):
        abort(403)
    form = ConfirmForm()
    if form.validate_on_submit():
        absences.delete_absence(current_user, absence, _now())
        db.session.commit()
        flash(_("The absence is removed."), "success")
        return redirect(url_for(".index", _anchor="absences-heading"))
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("Remove this absence?"),
        text=[absences.span_text(absence)],
        button=_("Remove absence"),
    )


@bp.route("/profile/tokens", methods=["POST"])
@login_required
def create_token() -> ResponseReturnValue:
    """Create a personal API token and show its secret, this once."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        token, secret = tokens.create_token(current_user, form.name.data, _now())
    except tokens.TokenError as exc:
        db.session.rollback()
        form.name.errors = [*form.name.errors, exc.message]
        return _page(form, 422)
    db.session.commit()
    response = make_response(render_template("profile/token_created.html", token=token, secret=secret))
    response.headers["Cache-Control"] = "no-store"  # the secret must not linger in a cache
    return response


@bp.route("/profile/tokens/<int:token_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    """Revoke one of one's own tokens, after a confirmation page."""
    token = tokens.get_own_token(current_user, token_id) or abort(404)
    if token.revoked_at is not None:
        flash(_("The token “%(name)s” is already revoked.", name=token.name), "info")
        return redirect(url_for(".index"))
    form = ConfirmForm()
    if form.validate_on_submit():
        tokens.revoke_token(token, _now())
        db.session.commit()
        flash(_("The token “%(name)s” is revoked: it no longer works.", name=token.name), "success")
        return redirect(url_for(".index"))
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("Revoke the token “%(name)s”?", name=token.name),
        text=[
            _("Whatever uses it stops working at once. This cannot be undone; you can create a new token.")
        ],
        button=_("Revoke token"),
    )


@bp.route("/profile/sessions/<int:session_id>/end", methods=["GET", "POST"])
@login_required
def end_session(session_id: int) -> ResponseReturnValue:
    """End one of one's own sessions elsewhere (a browser left signed in), after a confirmation page."""
    row = own_sessions.get_own(current_user, session_id, _now()) or abort(404)  # someone else's: 404 too
    back = url_for(".index", _anchor="sessions-heading")
    if row.id == sessions.current_id():
        flash(_("This is the session you are using: to end it, sign out."), "info")
        return redirect(back)
    form = ConfirmForm()
    if form.validate_on_submit():
        own_sessions.end_session(current_user, row, _now())
        db.session.commit()
        flash(_("The session is ended: that browser is signed out."), "success")
        return redirect(back)
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("End the session in %(browser)s?", browser=own_sessions.browser_summary(row.user_agent)),
        text=[
            _(
                "Whoever uses that browser is signed out at once, even if they chose “Keep me signed "
                "in”. If you do not recognise the session, change your password too."
            )
        ],
        button=_("End session"),
    )


@bp.route("/profile/sessions/end-others", methods=["GET", "POST"])
@login_required
def end_other_sessions() -> ResponseReturnValue:
    """End every session of one's own but this one, after a confirmation page."""
    back = url_for(".index", _anchor="sessions-heading")
    form = ConfirmForm()
    if form.validate_on_submit():
        own_sessions.end_other_sessions(current_user, _now())
        db.session.commit()
        flash(_("Your other sessions are ended: you are signed in here only."), "success")
        return redirect(back)
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("End all your other sessions?"),
        text=[
            _(
                "Every other browser and device signed in as you is signed out at once. "
                "You stay signed in here."
            )
        ],
        button=_("End all other sessions"),
    )


@bp.route("/profile/calendar", methods=["GET", "POST"])
@login_required
def calendar_link() -> ResponseReturnValue:
    """Create the calendar link, or regenerate it (after a confirmation); shows it this once."""
    form = ConfirmForm()
    has_calendar = current_user.calendar_token_hash is not None
    if form.validate_on_submit():
        secret = calendar.create_secret(current_user)
        db.session.commit()
        response = make_response(
            render_template(
                "profile/calendar_created.html", url=calendar.feed_url(secret), renewed=has_calendar
            )
        )
        response.headers["Cache-Control"] = "no-store"
        return response
    if not has_calendar:  # nothing to lose: the profile page posts here directly
        return redirect(url_for(".index"))
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("Make a new calendar link?"),
        text=[
            _("The link you have now stops working at once; calendars using it need the new one."),
        ],
        button=_("Make a new link"),
    )


@bp.route("/profile/calendar/off", methods=["GET", "POST"])
@login_required
def calendar_off() -> ResponseReturnValue:
    """Turn the calendar link off, after a confirmation page."""
    if current_user.calendar_token_hash is None:
        return redirect(url_for(".index"))
    form = ConfirmForm()
    if form.validate_on_submit():
        calendar.remove_secret(current_user)
        db.session.commit()
        flash(_("Your calendar link is turned off."), "success")
        return redirect(url_for(".index"))
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("Turn the calendar link off?"),
        text=[_("Calendars that use it stop showing your deadlines. You can make a new link at any time.")],
        button=_("Turn off"),
    )


@bp.route("/calendar/<token>.ics")
def calendar_feed(token: str) -> Response:
    """The iCalendar feed of a user's deadlines; the secret in the URL is the only credential."""
    user = calendar.user_for_secret(token)
    if user is None:
        abort(404)
    now = _now()
    body = calendar.build_feed(user, calendar.feed_items(user, now), now)
    response = Response(body, mimetype="text/calendar")
    response.headers["Cache-Control"] = FEED_CACHE_CONTROL
    response.headers["Content-Disposition"] = 'inline; filename="tracker.ics"'
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    response.set_etag(calendar.feed_etag(body))  # not add_etag(): each DTSTAMP is the time of the request
    return response.make_conditional(request)


def _now() -> datetime:
    return datetime.now(UTC)
