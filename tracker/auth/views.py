"""Sign in, sign out, change password, and the second factor (codes, enrolment, recovery codes)."""

from datetime import UTC, datetime

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, logout_user
from werkzeug.wrappers import Response

from tracker.auth import audit, services, sessions, signin, twofactor
from tracker.auth.forms import (
    LoginForm,
    PasswordChangeForm,
    RecoveryCodeForm,
    RemoveSecondFactorForm,
    SecondFactorForm,
)
from tracker.extensions import db, limiter
from tracker.models import User
from tracker.profile.forms import ConfirmForm

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["TRACKER_LOGIN_RATE_LIMIT"], methods=["POST"])
def login() -> Response | str:
    """Show the sign-in form; on a correct email and password, go on to the second factor or in."""
    if current_user.is_authenticated:
        return redirect(services.home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        now = datetime.now(UTC)
        user = services.authenticate(form.email.data, form.password.data, now)
        if user is None:
            flash(_("Invalid email or password."), "error")
        else:
            return signin.begin(user, "password", form.remember.data, request.args.get("next"), now)
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """Sign out: the server-side session ends for good (a saved cookie opens nothing afterwards).

    A POST (CSRF-checked by CSRFProtect) so that no other site can sign a user out.
    """
    now = datetime.now(UTC)
    if current_user.is_authenticated:
        row = sessions.get_open(current_user, sessions.current_id() or 0)
        if row is not None:
            sessions.end(row, "signed_out", now)
        audit.record("sign_out", now, actor=current_user, subject=current_user)
        db.session.commit()
    signin.fresh_session()
    logout_user()  # after emptying the session: it leaves the mark that deletes the remember cookie
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> Response | str:
    """Change one's own password; other sessions of the user end, this one stays."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if services.change_password(current_user, form.current.data, form.new.data, datetime.now(UTC)):
            db.session.commit()
            flash(_("Your password has been changed."), "success")
            return redirect(services.home_for(current_user))
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


# --- the second factor -------------------------------------------------------------------------

#: Wrong codes allowed in one pending sign-in; after that the person starts again with their password.
MAX_FAILURES = 5
#: The Flask-session key of an enrolment in progress: the new secret, until a code confirms it.
ENROLMENT_KEY = "_second_factor_enrolment"


def _pending_user_key() -> str:
    """Rate-limit key of the second-factor step: the person waiting for it, else the address."""
    marker = session.get(signin.PENDING_KEY)
    user_id = marker.get("user") if isinstance(marker, dict) else None
    if isinstance(user_id, int):
        return f"second-factor:user:{user_id}"
    return f"second-factor:address:{get_remote_address()}"


def _start_again(message: str) -> Response:
    """Drop the pending sign-in and send the person back to the sign-in form with ``message``."""
    session.pop(signin.PENDING_KEY, None)
    session.pop(ENROLMENT_KEY, None)
    flash(message, "error")
    return redirect(url_for("auth.login"))


def _expired() -> Response:
    return _start_again(_("Your sign-in was not finished within 10 minutes. Please sign in again."))


def _pending_since(marker: dict) -> datetime:
    return datetime.fromisoformat(marker["at"])  # checked by signin.pending


def _show_codes(codes: list[str], *, pending: bool, renewed: bool = False) -> Response:
    """The recovery codes, this once; never kept in a cache."""
    response = make_response(
        render_template("auth/recovery_codes.html", codes=codes, pending=pending, renewed=renewed)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/second-factor", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["TRACKER_2FA_RATE_LIMIT"], key_func=_pending_user_key, methods=["POST"]
)
@limiter.limit(lambda: current_app.config["TRACKER_LOGIN_RATE_LIMIT"], methods=["POST"])
def second_factor() -> ResponseReturnValue:
    """After the password: the code from the authenticator app (or a recovery code) opens the session."""
    if current_user.is_authenticated:
        return redirect(services.home_for(current_user))
    now = datetime.now(UTC)
    waiting = signin.pending(now)
    if waiting is None:
        return _expired()
    user, marker = waiting
    if not user.has_second_factor:  # an admin reset it meanwhile: the sign-in starts afresh
        return _start_again(_("Please sign in again."))
    use_recovery = request.args.get("use") == "recovery"
    form = RecoveryCodeForm() if use_recovery else SecondFactorForm()
    if form.validate_on_submit():
        how = twofactor.verify(user, form.code.data, now, recovery=use_recovery)
        if how is not None:
            method = f"{marker.get('method', 'password')}+{how}"
            return signin.finish(user, method, bool(marker.get("remember")), marker.get("next"), now)
        twofactor.record_failure(user, now, "recovery code at sign-in" if use_recovery else "code at sign-in")
        db.session.commit()
        if twofactor.failures_since(user, _pending_since(marker)) >= MAX_FAILURES:
            return _start_again(_("Too many wrong codes. Sign in again with your password."))
        form.code.errors.append(
            _("This recovery code is not right, or it has been used already.")
            if use_recovery
            else _("This code is not right, or it has been used already. Type the code your app shows now.")
        )
    return render_template("auth/second_factor.html", form=form, use_recovery=use_recovery)


def _enrolling(now: datetime) -> tuple[User, dict | None] | Response:
    """The person setting up a second factor (signed in, or waiting to sign in) with the pending
    marker, or where to send whoever this is instead."""
    if current_user.is_authenticated:
        if current_user.has_second_factor:
            flash(_("You already use a second factor."), "info")
            return redirect(url_for("profile.index", _anchor="second-factor-heading"))
        return current_user._get_current_object(), None
    waiting = signin.pending(now)
    if waiting is None:
        return _expired()
    user, marker = waiting
    if user.has_second_factor:
        return redirect(url_for("auth.second_factor"))
    return user, marker


@bp.route("/second-factor/enrol", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["TRACKER_2FA_RATE_LIMIT"], key_func=_pending_user_key, methods=["POST"]
)
def enrol_second_factor() -> ResponseReturnValue:
    """Set up an authenticator app: scan the QR code (or type the key), then prove it with a code.

    For a signed-in person (from the profile) and for one whose role requires a second factor,
    before their session opens. The secret waits in the Flask session until a code confirms it;
    then the ten recovery codes are shown, once.
    """
    now = datetime.now(UTC)
    found = _enrolling(now)
    if isinstance(found, Response):
        return found
    user, marker = found
    state = session.get(ENROLMENT_KEY)
    if not isinstance(state, dict) or state.get("user") != user.id or not state.get("secret"):
        state = {"user": user.id, "secret": twofactor.new_secret()}
        session[ENROLMENT_KEY] = state
    secret = state["secret"]
    form = SecondFactorForm()
    if form.validate_on_submit():
        try:
            codes = twofactor.enable(user, secret, form.code.data, now)
        except twofactor.TwoFactorError:  # finished meanwhile in another tab
            session.pop(ENROLMENT_KEY, None)
            return redirect(url_for("auth.second_factor") if marker is not None else url_for("profile.index"))
        if codes is not None:
            db.session.commit()
            session.pop(ENROLMENT_KEY, None)
            return _show_codes(codes, pending=marker is not None)
        twofactor.record_failure(user, now, "code at enrolment")
        db.session.commit()
        form.code.errors.append(
            _(
                "This code is not right. Check that the app was set up with this key, then type "
                "the code it shows now."
            )
        )
    uri = twofactor.provisioning_uri(user, secret)
    response = make_response(
        render_template(
            "auth/enrol_second_factor.html",
            form=form,
            pending=marker is not None,
            required=signin.second_factor_required(user),
            qr_code=twofactor.qr_code_svg(uri, _("QR code for your authenticator app")),
            secret=twofactor.grouped(secret),
            account=user.email,
            issuer=twofactor.ISSUER,
        ),
        422 if form.is_submitted() and form.errors else 200,
    )
    response.headers["Cache-Control"] = "no-store"  # the page shows the secret
    return response


@bp.route("/second-factor/enrol/done", methods=["POST"])
def enrolment_done() -> Response:
    """After the recovery codes were shown: open the session of the person who has just enrolled."""
    if current_user.is_authenticated:
        return redirect(url_for("profile.index", _anchor="second-factor-heading"))
    now = datetime.now(UTC)
    waiting = signin.pending(now)
    if waiting is None:
        return _expired()
    user, marker = waiting
    # Only an enrolment made during this very sign-in stands in for the code (checked in the database).
    if user.totp_enabled_at is None or user.totp_enabled_at < _pending_since(marker):
        return redirect(
            url_for("auth.second_factor" if user.has_second_factor else "auth.enrol_second_factor")
        )
    method = f"{marker.get('method', 'password')}+totp"
    return signin.finish(user, method, bool(marker.get("remember")), marker.get("next"), now)


@bp.route("/second-factor/recovery-codes", methods=["GET", "POST"])
@login_required
def renew_recovery_codes() -> ResponseReturnValue:
    """Replace one's recovery codes after a confirmation page; the new ones are shown once."""
    if not current_user.has_second_factor:
        return redirect(url_for("profile.index", _anchor="second-factor-heading"))
    form = ConfirmForm()
    if form.validate_on_submit():
        codes = twofactor.renew_recovery_codes(current_user, datetime.now(UTC))
        db.session.commit()
        return _show_codes(codes, pending=False, renewed=True)
    return render_template(
        "profile/confirm.html",
        form=form,
        title=_("Make new recovery codes?"),
        text=[
            _("Your current recovery codes stop working at once, used or not; ten new ones are shown once."),
        ],
        button=_("Make new recovery codes"),
    )


@bp.route("/second-factor/remove", methods=["GET", "POST"])
@login_required
def remove_second_factor() -> ResponseReturnValue:
    """Turn one's second factor off, with the password and a code (not when the role requires it)."""
    back = url_for("profile.index", _anchor="second-factor-heading")
    if not current_user.has_second_factor:
        return redirect(back)
    if not twofactor.may_remove(current_user):
        flash(_("Your role requires a second factor: it cannot be removed."), "error")
        return redirect(back)
    form = RemoveSecondFactorForm()
    if form.validate_on_submit():
        try:
            twofactor.disable(current_user, form.password.data, form.code.data, datetime.now(UTC))
        except twofactor.TwoFactorError as exc:
            db.session.commit()  # keeps the record of a wrong code; nothing else has changed
            field = getattr(form, exc.field) if exc.field else form.code
            field.errors.append(exc.message)
        else:
            db.session.commit()
            flash(_("Your second factor is removed: you sign in with your password alone."), "success")
            return redirect(back)
    return render_template("auth/remove_second_factor.html", form=form), 422 if form.errors else 200
