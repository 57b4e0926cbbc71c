"""Sign-in rules: who may sign in, password changes, where to go after signing in."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import url_for
from werkzeug.security import check_password_hash, generate_password_hash

from tracker.auth import audit, sessions
from tracker.extensions import db
from tracker.models import Role, User, normalise_email

log = logging.getLogger(__name__)


@cache
def _dummy_hash() -> str:
    """A hash checked against when the email is unknown, so that a miss costs as much as a wrong password.

    Made on first use, not at import: scrypt takes most of a second, which every ``flask`` command
    (the reminder run, the CLI) would otherwise pay without ever signing anyone in. Only the first
    miss of each process pays for making it too.
    """
    return generate_password_hash("not-a-real-password", method="scrypt")


MIN_PASSWORD_LENGTH = 10


def load_user(identity: str) -> User | None:
    """Flask-Login loader: the active user of the open server-side session the cookie names."""
    return sessions.load(identity, datetime.now(UTC))


def authenticate(email: str, password: str, now: datetime) -> User | None:
    """The active user with this email and password, or None; the reason is not revealed.

    A refusal is recorded in the audit log (with the account when the email is known).
    """
    user = db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))
    if user is None or not user.password_hash:
        check_password_hash(_dummy_hash(), password)
        log.info("sign-in refused: unknown email or no password set")
        audit.record(
            "sign_in_failed",
            now,
            subject=user,
            email=normalise_email(email)[:254],
            detail="unknown email" if user is None else "no password set",
        )
        db.session.commit()
        return None
    if not user.check_password(password) or not user.active:
        log.info("sign-in refused for user %s", user.id)
        reason = "wrong password" if user.active else "account deactivated"
        audit.record("sign_in_failed", now, subject=user, email=user.email, detail=reason)
        db.session.commit()
        return None
    return user


def change_password(user: User, current: str, new: str, now: datetime) -> bool:
    """Set a new password if ``current`` is right; ends the user's other sessions."""
    if not user.check_password(current):
        return False
    user.set_password(new)
    sessions.end_all(user, "password_changed", now, keep=sessions.current_id())
    audit.record("password_changed", now, actor=user, subject=user)
    db.session.flush()
    return True


#: Where each role's work is: the page a person lands on after signing in.
HOME_BY_ROLE = {
    Role.FOCAL_POINT: "actions.my_work",
    Role.REVIEWER: "actions.verification",
    Role.MANAGER: "dashboard.index",
    Role.ADMIN: "admin.home",
}


def home_for(user: User) -> str:
    """Where a person starts after signing in: their role's page (:data:`HOME_BY_ROLE`)."""
    return url_for(HOME_BY_ROLE.get(user.role, "actions.home"))


def landing(user: User, next_url: str | None) -> str:
    """Where to go once signed in: a safe ``next`` page, else the person's home.

    The bare site root counts as no wish: signing in after opening the site's address (which
    asks for ``/``) lands on the person's home, not on the Actions list the root shows.
    """
    target = safe_next_url(next_url)
    return home_for(user) if target in (None, "/") else target


def safe_next_url(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
