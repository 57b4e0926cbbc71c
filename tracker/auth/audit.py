"""The log of security events: who signed in, failed, enrolled or lost a second factor, ended a
session, changed a role or an office, created or revoked a token, linked an SSO identity.

Every event goes through :func:`record`, in the caller's transaction (so an event is kept exactly
when what it describes is); events older than ``TRACKER_AUDIT_DAYS`` are deleted by :func:`purge`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context, request
from flask_babel import lazy_gettext as _l

from tracker.auth import sessions
from tracker.extensions import db
from tracker.models import AuditEvent, User

log = logging.getLogger(__name__)

#: Every kind of event, with its label on the audit page.
EVENTS = {
    "sign_in": _l("Signed in"),
    "sign_in_failed": _l("Sign-in refused"),
    "sign_out": _l("Signed out"),
    "session_ended": _l("Session ended"),
    "second_factor_enrolled": _l("Second factor enrolled"),
    "second_factor_disabled": _l("Second factor removed"),
    "second_factor_reset": _l("Second factor reset by an admin"),
    "second_factor_failed": _l("Wrong second-factor code"),
    "recovery_code_used": _l("Recovery code used"),
    "recovery_codes_renewed": _l("Recovery codes renewed"),
    "password_changed": _l("Password changed"),
    "password_reset": _l("Password reset"),
    "user_created": _l("Account created"),
    "role_changed": _l("Role changed"),
    "office_changed": _l("Office changed"),
    "user_deactivated": _l("Account deactivated"),
    "user_reactivated": _l("Account reactivated"),
    "token_created": _l("API token created"),
    "token_revoked": _l("API token revoked"),
    "sso_linked": _l("Single sign-on linked"),
    "sso_refused": _l("Single sign-on refused"),
}

_DETAIL_MAX = 500


def record(
    kind: str,
    now: datetime,
    *,
    actor: User | None = None,
    subject: User | None = None,
    email: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """Add one event to the session (committed with the change it records)."""
    if kind not in EVENTS:
        raise ValueError(f"unknown audit event {kind!r}")
    address = request.remote_addr if has_request_context() else None
    event = AuditEvent(
        kind=kind,
        at=now,
        actor_id=actor.id if actor is not None else None,
        subject_id=subject.id if subject is not None else None,
        email=(email or None) and email[:254],
        address=address and address[:64],
        detail=detail and detail[:_DETAIL_MAX],
    )
    db.session.add(event)
    log.info(
        "audit %s actor=%s subject=%s %s",
        kind,
        event.actor_id,
        event.subject_id,
        detail or "",
    )
    return event


def purge(now: datetime) -> int:
    """Delete events older than TRACKER_AUDIT_DAYS; returns how many went."""
    cutoff = now - timedelta(days=current_app.config["TRACKER_AUDIT_DAYS"])
    result = db.session.execute(sa.delete(AuditEvent).where(AuditEvent.at < cutoff))
    return int(result.rowcount or 0)


def purge_security_records(now: datetime) -> tuple[int, int]:
    """Delete events and sessions older than TRACKER_AUDIT_DAYS (the daily job and its CLI twin).

    Returns (events, sessions) deleted. Flushes; the caller commits.
    """
    return purge(now), sessions.purge(now)
