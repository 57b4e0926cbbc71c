"""Reading action items: what a user may see, and which items are overdue."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload, selectinload

from tracker.extensions import db
from tracker.models import CLOSED_STATUSES, ActionItem, ActionUpdate, Office, Recommendation, User
from tracker.permissions import Perm, can, office_scope_clause

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


def office_today(now: datetime, plus_days: int = 0) -> sa.ColumnElement[date]:
    """SQL for "today (plus some days) in the office's time zone"; needs Office in the query.

    The local date differs by zone, so it is computed once per distinct zone (a handful, one
    query) and chosen with a CASE, which keeps filters in SQL however many items there are.
    """
    zones = db.session.scalars(sa.select(Office.timezone).distinct()).all()
    shift = timedelta(days=plus_days)
    if not zones:
        return sa.literal(now.date() + shift)
    return sa.case(
        {zone: now.astimezone(ZoneInfo(zone)).date() + shift for zone in zones}, value=Office.timezone
    )


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL twin of ActionItem.is_overdue: needs ActionItem joined to its Office."""
    return sa.and_(ActionItem.status.not_in(_CLOSED), ActionItem.deadline < office_today(now))


def due_soon_clause(now: datetime, days: int = 14) -> sa.ColumnElement[bool]:
    """Open items due today or within ``days`` days in the office's zone; needs Office joined."""
    return sa.and_(
        ActionItem.status.not_in(_CLOSED),
        ActionItem.deadline >= office_today(now),
        ActionItem.deadline <= office_today(now, days),
    )


def visible_actions(user: User) -> sa.Select[tuple[ActionItem]]:
    """The action items the user may see, with what a list shows loaded in the same query."""
    return (
        sa.select(ActionItem)
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .where(office_scope_clause(user, ActionItem.office_id))
        .options(
            joinedload(ActionItem.office),
            joinedload(ActionItem.recommendation),
            joinedload(ActionItem.owner),
        )
    )


def list_actions(
    user: User,
    now: datetime,
    *,
    page: int = 1,
    per_page: int = 50,
    office_code: str | None = None,
    status: str | None = None,
    overdue_only: bool = False,
    recommendation_code: str | None = None,
) -> Pagination:
    """One page of the items the user may see: open items first, then by deadline."""
    query = visible_actions(user)
    if office_code:
        query = query.where(Office.code == office_code.upper())
    if status:
        query = query.where(ActionItem.status == status)
    if recommendation_code:
        query = query.where(Recommendation.code == recommendation_code)
    if overdue_only:
        query = query.where(overdue_clause(now))
    query = query.order_by(
        sa.case((ActionItem.status.in_(_CLOSED), 1), else_=0), ActionItem.deadline, ActionItem.id
    )
    return db.paginate(query, page=page, per_page=per_page, error_out=False, count=True)


def get_action(user: User, action_id: int) -> ActionItem | None:
    """The item with its history if the user may see it; None whether missing or forbidden."""
    item = db.session.scalar(
        sa.select(ActionItem)
        .where(ActionItem.id == action_id, office_scope_clause(user, ActionItem.office_id))
        .options(
            joinedload(ActionItem.office),
            joinedload(ActionItem.recommendation),
            joinedload(ActionItem.owner),
            joinedload(ActionItem.deputy),
            selectinload(ActionItem.updates).joinedload(ActionUpdate.author),
        )
    )
    if item is None or not can(user, Perm.VIEW_ACTION, item):
        return None
    return item


def visible_offices(user: User) -> list[Office]:
    """The offices whose items the user may see, by code (for filters)."""
    return list(
        db.session.scalars(
            sa.select(Office).where(office_scope_clause(user, Office.id)).order_by(Office.code)
        )
    )
