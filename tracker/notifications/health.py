"""Watching the outbox: its backlog, a relay that keeps failing, and sending failed mail again in bulk.

The dispatcher records how the relay does (relay.py, the ``RelayHealth`` row ``smtp``); this module
reads it for the admin banner and queues one alert mail to the admins per outage, once it has lasted
``TRACKER_RELAY_ALERT_AFTER`` seconds. The alert waits in the outbox like any mail and leaves
through the first relay that works again. ``flask tracker outbox-status`` prints the same figures
for cron or a monitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from flask import current_app

from tracker.extensions import db
from tracker.models import Notification, NotificationKind, NotificationState, RelayHealth, Role, User
from tracker.notifications.dispatch import requeue_failed
from tracker.notifications.outbox import enqueue
from tracker.notifications.render import render_email

#: The RelayHealth row of the SMTP relay.
RELAY = "smtp"


@dataclass(frozen=True)
class OutboxStatus:
    """Counts by state, and the oldest message still waiting to be sent."""

    counts: dict[str, int]
    oldest_pending_at: datetime | None
    #: How long the oldest pending message has waited at ``now``; None when nothing waits.
    oldest_pending_age: timedelta | None


def outbox_status(now: datetime) -> OutboxStatus:
    """The outbox's counts by state and the age of its oldest pending message (two queries)."""
    rows = db.session.execute(
        sa.select(Notification.state, sa.func.count()).group_by(Notification.state)
    ).all()
    counts = {state.value: 0 for state in NotificationState} | {str(state): int(n) for state, n in rows}
    oldest = db.session.scalar(
        sa.select(sa.func.min(Notification.created_at)).where(
            Notification.state == NotificationState.PENDING.value
        )
    )
    if oldest is not None and oldest.tzinfo is None:  # an aggregate skips the column's type on SQLite
        oldest = oldest.replace(tzinfo=UTC)
    return OutboxStatus(counts, oldest, None if oldest is None else max(now - oldest, timedelta(0)))


def relay_trouble(now: datetime) -> RelayHealth | None:
    """The relay's health row if it has been failing for longer than TRACKER_RELAY_ALERT_AFTER."""
    health = db.session.get(RelayHealth, RELAY)
    if health is None or health.failing_since is None:
        return None
    after = timedelta(seconds=int(current_app.config["TRACKER_RELAY_ALERT_AFTER"]))
    return health if now - health.failing_since >= after else None


def alert_admins(now: datetime) -> int:
    """Queue one alert per active admin for the current outage, once; returns the mails queued.

    Flushes; the caller (the scheduler's dispatch job, or a CLI command) commits.
    """
    health = relay_trouble(now)
    if health is None or (health.alerted_at is not None and health.alerted_at >= health.failing_since):
        return 0
    admins = db.session.scalars(
        sa.select(User).where(User.active, User.role == Role.ADMIN.value).order_by(User.id)
    ).all()
    outage = health.failing_since.strftime("%Y%m%dT%H%M%S")
    queued = 0
    for admin in admins:
        email = render_email("relay_alert", admin, health=health, server=current_app.config["MAIL_SERVER"])
        queued += enqueue(
            NotificationKind.RELAY_ALERT, admin, f"relay_alert:user{admin.id}:{outage}", email, now
        )
    health.alerted_at = now
    db.session.flush()
    return queued


def failed_matching(kind: str | None, since: date | None, until: date | None) -> sa.ColumnElement[bool]:
    """SQL for the failed messages of a kind (all kinds: None) queued within [since, until] (UTC days)."""
    clauses = [Notification.state == NotificationState.FAILED.value]
    if kind:
        clauses.append(Notification.kind == kind)
    if since:
        clauses.append(Notification.created_at >= datetime.combine(since, time(), tzinfo=UTC))
    if until:
        clauses.append(
            Notification.created_at < datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)
        )
    return sa.and_(*clauses)


def count_failed(kind: str | None, since: date | None, until: date | None) -> int:
    """How many failed messages a bulk "send again" would put back in the queue."""
    query = sa.select(sa.func.count()).select_from(Notification).where(failed_matching(kind, since, until))
    return db.session.scalar(query) or 0


def retry_failed(kind: str | None, since: date | None, until: date | None, now: datetime) -> int:
    """Put every matching failed message back in the queue for a try at ``now``; flushes only."""
    return requeue_failed(failed_matching(kind, since, until), now)
