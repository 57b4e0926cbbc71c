"""The admin home: who has not signed in for a while, offices without a manager, the outbox's health.

Each panel reads a fixed number of statements, however many users, offices or messages there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.models import Notification, NotificationKind, Office, RelayHealth, User
from tracker.notifications.compose import offices_without_manager
from tracker.notifications.health import RELAY, OutboxStatus, outbox_status

#: Accounts without a sign-in for this long are listed.
DORMANT_AFTER = timedelta(days=90)
#: The panel lists this many at most, then says how many more there are.
DORMANT_SHOWN = 20


@dataclass(frozen=True)
class DormantUser:
    """An active account without a recent sign-in, with when it was last invited (if ever)."""

    user: User
    invited_at: datetime | None


@dataclass(frozen=True)
class AdminHome:
    """What the admin home shows."""

    dormant: list[DormantUser]
    #: How many dormant accounts there are in all (the panel shows the first DORMANT_SHOWN).
    dormant_total: int
    unmanaged: list[Office]
    outbox: OutboxStatus
    #: The relay's record as the dispatcher keeps it; None before the first delivery try.
    relay: RelayHealth | None


def _utc(value: datetime | None) -> datetime | None:
    """An aggregate's datetime, which SQLite returns without its zone."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def dormant_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Active accounts that have not signed in since ``now`` - DORMANT_AFTER, or never."""
    return sa.and_(
        User.active,
        sa.or_(User.last_login_at.is_(None), User.last_login_at < now - DORMANT_AFTER),
    )


def dormant_users(now: datetime, limit: int = DORMANT_SHOWN) -> tuple[list[DormantUser], int]:
    """The first ``limit`` dormant accounts (never signed in first, then the longest since), and
    how many there are in all; two statements."""
    invited = (
        sa.select(sa.func.max(Notification.created_at))
        .where(Notification.recipient_id == User.id, Notification.kind == NotificationKind.INVITATION.value)
        .scalar_subquery()
    )
    rows = db.session.execute(
        sa.select(User, invited)
        .where(dormant_clause(now))
        .options(joinedload(User.office))
        .order_by(User.last_login_at.is_not(None), User.last_login_at, User.created_at, User.id)
        .limit(limit)
    ).all()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(User).where(dormant_clause(now))) or 0
    return [DormantUser(user, _utc(at)) for user, at in rows], total


def admin_home(now: datetime) -> AdminHome:
    """Everything the admin home shows, in six statements."""
    dormant, total = dormant_users(now)
    return AdminHome(
        dormant=dormant,
        dormant_total=total,
        unmanaged=offices_without_manager(),
        outbox=outbox_status(now),
        relay=db.session.get(RelayHealth, RELAY),
    )
