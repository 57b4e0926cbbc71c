"""The one way into a session: after a password, a reset link or single sign-on has named the
person, :func:`begin` asks for the second factor when they have one (or makes them enrol when
their role requires it), and :func:`finish` opens the server-side session.

Between the two steps the Flask session holds only a short-lived "pending" marker: the person is
not signed in until the second factor is given.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, redirect, session, url_for
from flask_login import login_user
from werkzeug.wrappers import Response

from tracker.auth import audit, sessions
from tracker.extensions import db
from tracker.models import User

#: The Flask-session key of a sign-in waiting for its second factor.
PENDING_KEY = "_pending_sign_in"
#: How long a person has to give the second factor (or enrol) after the first step.
PENDING_FOR = timedelta(minutes=10)


def second_factor_required(user: User) -> bool:
    """True if the person's role must use a second factor (TRACKER_2FA_REQUIRED_ROLES)."""
    return user.role in current_app.config["TRACKER_2FA_REQUIRED_ROLES"]


def begin(user: User, method: str, remember: bool, next_url: str | None, now: datetime) -> Response:
    """Sign ``user`` in, or send them to the second-factor step first; returns the redirect."""
    skip = method.startswith("sso") and current_app.config["TRACKER_SSO_SKIPS_2FA"]
    if not skip and (user.has_second_factor or second_factor_required(user)):
        fresh_session()  # nothing of an earlier visit survives into the new sign-in
        session[PENDING_KEY] = {
            "user": user.id,
            "method": method,
            "remember": bool(remember),
            "next": next_url,
            "at": now.isoformat(),
        }
        db.session.commit()  # e.g. last_login_at, an SSO link: kept even if the second step is never done
        if user.has_second_factor:
            return redirect(url_for("auth.second_factor"))
        return redirect(url_for("auth.enrol_second_factor"))
    return finish(user, method, remember, next_url, now)


def pending(now: datetime) -> tuple[User, dict] | None:
    """The active person waiting for their second factor in this browser, with the marker; else None."""
    marker = session.get(PENDING_KEY)
    if not isinstance(marker, dict):
        return None
    try:
        started = datetime.fromisoformat(marker["at"])
        user_id = int(marker["user"])
    except (KeyError, TypeError, ValueError):
        session.pop(PENDING_KEY, None)
        return None
    if started.tzinfo is None or now - started > PENDING_FOR or now < started - timedelta(minutes=1):
        session.pop(PENDING_KEY, None)
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        session.pop(PENDING_KEY, None)
        return None
    return user, marker


def finish(user: User, method: str, remember: bool, next_url: str | None, now: datetime) -> Response:
    """Open a server-side session for ``user``, record the sign-in, and redirect onwards."""
    from tracker.auth.services import landing

    fresh_session()  # nothing planted before sign-in carries over
    user.session_identity = sessions.start(user, method, remember, now)
    # The "keep me signed in" cookie lives no longer than the session it names, whatever
    # REMEMBER_COOKIE_DURATION says.
    max_days = timedelta(days=current_app.config["TRACKER_SESSION_MAX_DAYS"])
    login_user(user, remember=remember, duration=max_days)
    user.last_login_at = now
    audit.record("sign_in", now, actor=user, subject=user, detail=method)
    db.session.commit()
    return redirect(landing(user, next_url))


def fresh_session() -> None:
    """Empty the Flask session, keeping only the chosen language and the messages to show."""
    keep = {key: session[key] for key in ("language", "_flashes") if key in session}
    session.clear()
    session.update(keep)
