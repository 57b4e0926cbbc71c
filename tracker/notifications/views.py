"""Mail preferences, one-click unsubscribe, and the pages behind invitation and reset links."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from tracker.auth import audit, sessions, signin
from tracker.extensions import csrf, db, limiter
from tracker.models import User
from tracker.notifications import account, tokens
from tracker.notifications.forms import ForgotPasswordForm, PreferencesForm, SetPasswordForm, UnsubscribeForm
from tracker.notifications.tokens import OPTIONAL_KINDS

bp = Blueprint("notifications", __name__)

#: How long an unsubscribe link works (they sit in old mail).
UNSUBSCRIBE_MAX_AGE = 400 * 86400


@bp.route("/preferences", methods=["GET", "POST"])
@login_required
def preferences() -> ResponseReturnValue:
    """Switch optional mail on or off; overdue, escalation and sent-back mail always go out."""
    form = PreferencesForm(obj=current_user)
    if form.validate_on_submit():
        for column in OPTIONAL_KINDS.values():
            setattr(current_user, column, getattr(form, column).data)
        db.session.commit()
        flash(_("Your mail preferences are saved."), "success")
        return redirect(url_for(".preferences"))
    return render_template("notifications/preferences.html", form=form)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # RFC 8058 one-click: mail clients POST without a form token; the signed token is the proof
def unsubscribe(token: str) -> ResponseReturnValue:
    """Stop one kind of optional mail from a link in that mail, without signing in."""
    try:
        payload = tokens.read("unsubscribe", token, max_age=UNSUBSCRIBE_MAX_AGE)
        user = db.session.get(User, payload["u"]) if isinstance(payload, dict) else None
        column = OPTIONAL_KINDS[payload["k"]]
    except (tokens.InvalidToken, KeyError, TypeError):
        user = None
    if user is None:
        return render_template("notifications/invalid_link.html"), 400
    if request.method == "POST":
        setattr(user, column, False)
        db.session.commit()
        return render_template("notifications/unsubscribed.html", user=user, kind=payload["k"])
    return render_template(
        "notifications/unsubscribe.html", user=user, kind=payload["k"], form=UnsubscribeForm()
    )


@bp.route("/account/welcome/<token>", methods=["GET", "POST"])
def welcome(token: str) -> ResponseReturnValue:
    """Choose a first password from an invitation link."""
    return _set_password(token, "invite")


@bp.route("/account/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """Choose a new password from a reset link."""
    return _set_password(token, "reset")


def _set_password(token: str, purpose: str) -> ResponseReturnValue:
    try:
        user = account.user_for_password_token(token, purpose)
    except tokens.InvalidToken:
        return render_template("notifications/invalid_link.html"), 400
    form = SetPasswordForm()
    if form.validate_on_submit():
        now = datetime.now(UTC)
        user.set_password(form.new.data)  # rotates the session token: this link stops working
        sessions.end_all(user, "password_changed", now)
        audit.record(
            "password_reset" if purpose == "reset" else "password_changed", now, actor=user, subject=user
        )
        flash(_("Your password is set. Welcome."), "success")
        # The link proves the mailbox only: a second factor is still asked for.
        return signin.begin(user, "password", False, None, now)
    return render_template("notifications/set_password.html", form=form, user=user, purpose=purpose)


@bp.route("/auth/forgot", methods=["GET", "POST"])
@limiter.limit("5 per minute; 20 per hour", methods=["POST"])
def forgot_password() -> ResponseReturnValue:
    """Ask for a reset link; the answer is the same whether the address is known or not."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        account.request_password_reset(form.email.data, datetime.now(UTC))
        db.session.commit()
        flash(_("If this address belongs to an account, a link to set a new password is on its way."), "info")
        return redirect(url_for("auth.login"))
    return render_template("notifications/forgot.html", form=form)
