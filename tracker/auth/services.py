"""Sign-in rules: who may sign in, password changes, where to go after signing in."""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from tracker.extensions import db
from tracker.models import User, normalise_email

log = logging.getLogger(__name__)

# Checked against when the email is unknown, so that a miss costs as much time as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="scrypt")

MIN_PASSWORD_LENGTH = 10


def load_user(identity: str) -> User | None:
    """Flask-Login loader: the active user whose id and session token match the cookie."""
    user_id, _, token = identity.partition(":")
    if not user_id.isdigit() or not token:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_token != token:
        return None
    return user


def authenticate(email: str, password: str, now: datetime) -> User | None:
    """The active user with this email and password, or None; the reason is not revealed."""
    user = db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        log.info("sign-in refused: unknown email or no password set")
        return None
    if not user.check_password(password) or not user.active:
        log.info("sign-in refused for user %s", user.id)
        return None
    user.last_login_at = now
    return user


def change_password(user: User, current: str, new: str) -> bool:
    """Set a new password if ``current`` is right; ends the user's other sessions."""
    if not user.check_password(current):
        return False
    user.set_password(new)
    db.session.flush()
    return True


def safe_next_url(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
