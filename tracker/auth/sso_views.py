"""Single sign-on pages: leave for the OpenID Connect provider, and come back from it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, redirect, render_template, request
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from werkzeug.wrappers import Response

from tracker.auth import services, signin, sso
from tracker.extensions import db, limiter
from tracker.notifications.render import absolute_url

bp = Blueprint("sso", __name__, url_prefix="/auth/sso")


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    # At registration, so that create_app refuses bad settings before serving anything.
    sso.init_app(state.app)


@bp.app_template_global("sso_label")
def sso_label() -> str | None:
    """For templates: the provider's name on the sign-in button, or None when single sign-on is off."""
    return sso.label()


def _login_limit() -> str:
    return current_app.config["TRACKER_LOGIN_RATE_LIMIT"]


# A link, not a form: the CSP's form-action 'self' would stop a form's redirect to the provider.
@bp.get("/start")
@limiter.limit(_login_limit)
def start() -> Response | tuple[str, int]:
    """Send the browser to the provider, with PKCE, state and nonce; ``next`` survives the trip."""
    if not sso.enabled():
        abort(404)
    if current_user.is_authenticated:
        return redirect(services.home_for(current_user))
    try:
        url = sso.start(_callback_url(), request.args.get("next"), datetime.now(UTC))
    except sso.SsoError as exc:
        return _refused(exc)
    return redirect(url)


@bp.get("/callback")
@limiter.limit(_login_limit)
def callback() -> Response | tuple[str, int]:
    """Finish a sign-on: check the provider's answer, then go on to the second factor or in."""
    if not sso.enabled():
        abort(404)
    if current_user.is_authenticated:
        return redirect(services.home_for(current_user))
    now = datetime.now(UTC)
    try:
        user, next_url = sso.complete(request.args, now)
    except sso.SsoError as exc:
        db.session.commit()  # the refusal's audit event
        return _refused(exc)
    return signin.begin(user, "sso", False, next_url, now)


def _callback_url() -> str:
    """The redirect URI registered at the provider: TRACKER_BASE_URL + /auth/sso/callback."""
    return absolute_url("sso.callback")


def _refused(error: sso.SsoError) -> tuple[str, int]:
    return render_template("auth/sso_refused.html", message=error.message), error.status
