"""Sign in, sign out, change password."""

from datetime import UTC, datetime

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from tracker.auth import services
from tracker.auth.forms import LoginForm, PasswordChangeForm
from tracker.extensions import db, limiter

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["TRACKER_LOGIN_RATE_LIMIT"], methods=["POST"])
def login() -> Response | str:
    """Show the sign-in form; sign the user in on a correct email and password."""
    if current_user.is_authenticated:
        return redirect(url_for("actions.home"))
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data, datetime.now(UTC))
        if user is None:
            flash(_("Invalid email or password."), "error")
        else:
            login_user(user, remember=form.remember.data)
            db.session.commit()
            target = services.safe_next_url(request.args.get("next"))
            return redirect(target or url_for("actions.home"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """Sign out: a POST (CSRF-checked by CSRFProtect) so that no other site can sign a user out."""
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> Response | str:
    """Change one's own password; other sessions of the user end."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if services.change_password(current_user, form.current.data, form.new.data):
            db.session.commit()
            login_user(current_user._get_current_object())  # the session token rotated; keep this session
            flash(_("Your password has been changed."), "success")
            return redirect(url_for("actions.home"))
        form.current.errors.append(_("The current password is not right."))
    return render_template("auth/password.html", form=form)


@bp.route("/language", methods=["POST"])
def language() -> Response:
    """Switch the interface language (remembered for the session, and on the account if signed in)."""
    chosen = request.form.get("language", "")
    if chosen in current_app.config["TRACKER_LANGUAGES"]:
        session["language"] = chosen
        if current_user.is_authenticated:
            current_user.language = chosen
            db.session.commit()
    return redirect(services.safe_next_url(request.form.get("next")) or url_for("actions.home"))
