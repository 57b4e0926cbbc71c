"""Server-side sessions: each sign-in is a ``UserSession`` row that the cookie names.

The session cookie (and the "keep me signed in" cookie) carry ``<row id>.<secret>``; only the
secret's SHA-256 is stored. A session ends for good — a saved cookie opens nothing afterwards —
at sign-out, after ``TRACKER_SESSION_IDLE_HOURS`` without use (unless kept signed in), and in any
case ``TRACKER_SESSION_MAX_DAYS`` after sign-in; the person or an admin can end it at any time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, g, has_request_context, request
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from tracker.extensions import db
from tracker.models import User, UserSession

#: ``last_seen_at`` is written at most this often per session (one UPDATE, not one per request).
SEEN_RESOLUTION = timedelta(minutes=1)
#: Longest identity we issue is far shorter; longer input is refused without a query.
_IDENTITY_MAX = 120


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def start(user: User, method: str, remember: bool, now: datetime) -> str:
    """Open a session for ``user`` and return the identity its cookies carry."""
    secret = secrets.token_urlsafe(32)
    address = user_agent = None
    if has_request_context():
        address = (request.remote_addr or "")[:64] or None
        user_agent = (request.user_agent.string or "")[:300] or None
    row = UserSession(
        user_id=user.id,
        secret_hash=_hash(secret),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(days=current_app.config["TRACKER_SESSION_MAX_DAYS"]),
        remember=remember,
        method=method,
        address=address,
        user_agent=user_agent,
    )
    db.session.add(row)
    db.session.flush()
    g.user_session_id = row.id
    return f"{row.id}.{secret}"


def _ends_at_idle(row: UserSession) -> datetime | None:
    if row.remember:
        return None
    return row.last_seen_at + timedelta(hours=current_app.config["TRACKER_SESSION_IDLE_HOURS"])


def lapse_reason(row: UserSession, now: datetime) -> str | None:
    """Why an open session can no longer be used at ``now`` ("expired", "idle"), or None."""
    if now >= row.expires_at:
        return "expired"
    idle_end = _ends_at_idle(row)
    if idle_end is not None and now >= idle_end:
        return "idle"
    return None


def load(identity: str, now: datetime) -> User | None:
    """The active user of the open session ``identity`` names; None for anything else.

    A session found lapsed is closed on the spot (with its reason). Use is noted at most once a
    minute with a conditional UPDATE, committed at once, before the request loads anything else.
    """
    if not identity or len(identity) > _IDENTITY_MAX:
        return None
    row_id, _sep, secret = identity.partition(".")
    if not row_id.isdigit() or not secret or int(row_id) >= 2**31:
        return None
    row = db.session.scalar(
        sa.select(UserSession)
        .where(UserSession.id == int(row_id))
        .options(joinedload(UserSession.user).joinedload(User.office))
    )
    if row is None or row.ended_at is not None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    reason = lapse_reason(row, now)
    if reason is not None:
        end(row, reason, now)
        db.session.commit()
        return None
    if not row.user.active:
        return None
    if now - row.last_seen_at >= SEEN_RESOLUTION:
        db.session.execute(
            sa.update(UserSession)
            .where(UserSession.id == row.id, UserSession.last_seen_at <= now - SEEN_RESOLUTION)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(row, "last_seen_at", now)  # known now; not a change to flush a second time
        _commit_keeping_loaded()
    g.user_session_id = row.id
    return row.user


def _commit_keeping_loaded() -> None:
    """Commit without expiring what was just read: the user and office stay loaded for the request
    (expiring them would cost a query each on the next attribute read)."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = before


def current_id() -> int | None:
    """The id of the session this request was made in (None outside a signed-in request)."""
    return g.get("user_session_id") if has_request_context() else None


def end(row: UserSession, reason: str, now: datetime) -> None:
    """Close one session for good."""
    if row.ended_at is None:
        row.ended_at = now
        row.end_reason = reason


def end_all(user: User, reason: str, now: datetime, *, keep: int | None = None) -> int:
    """Close every open session of ``user`` (except the one numbered ``keep``); returns how many."""
    query = sa.update(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(UserSession.id != keep)
    result = db.session.execute(
        query.values(ended_at=now, end_reason=reason).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def open_sessions(user: User, now: datetime) -> list[UserSession]:
    """The person's sessions that can still be used, the most recently used first."""
    rows = db.session.scalars(
        sa.select(UserSession)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None), UserSession.expires_at > now)
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    )
    return [row for row in rows if lapse_reason(row, now) is None]


def get_open(user: User, session_id: int) -> UserSession | None:
    """One of ``user``'s sessions that is still open; None if missing, ended or someone else's."""
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return None
    return row


def purge(now: datetime) -> int:
    """Delete sessions that ended (or expired) more than TRACKER_AUDIT_DAYS ago."""
    cutoff = now - timedelta(days=current_app.config["TRACKER_AUDIT_DAYS"])
    result = db.session.execute(
        sa.delete(UserSession).where(sa.or_(UserSession.ended_at < cutoff, UserSession.expires_at < cutoff))
    )
    return int(result.rowcount or 0)
