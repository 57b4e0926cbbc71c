"""Reading action items: what a user may see, and which items are overdue."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload, selectinload

from tracker.extensions import db
from tracker.models import CLOSED_STATUSES, ActionItem, ActionUpdate, Office, User
from tracker.permissions import Perm, can, office_scope_clause

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL twin of ActionItem.is_overdue: needs ActionItem joined to its Office.

    The office's local date differs by zone, so it is computed once per distinct zone (a handful)
    and chosen with a CASE, which keeps the filter in SQL however many items there are.
    """
    zones = db.session.scalars(sa.select(Office.timezone).distinct()).all()
    if not zones:
        return sa.false()
    local_today = sa.case(
        {zone: now.astimezone(ZoneInfo(zone)).date() for zone in zones}, value=Office.timezone
    )
    return sa.and_(ActionItem.status.not_in(_CLOSED), ActionItem.deadline < local_today)


def visible_actions(user: User) -> sa.Select[tuple[ActionItem]]:
    """The action items the user may see, with what a list shows loaded in the same query."""
    return (
        sa.select(ActionItem)
        .join(ActionItem.office)
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
) -> Pagination:
    """One page of the items the user may see: open items first, then by deadline."""
    query = visible_actions(user)
    if office_code:
        query = query.where(Office.code == office_code.upper())
    if status:
        query = query.where(ActionItem.status == status)
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
