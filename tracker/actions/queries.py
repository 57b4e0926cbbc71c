"""The one filter object and query for lists of action items: pages, exports, API, calendar.

:class:`ActionFilters` says what a list asks for; :func:`filtered_actions` turns it into one SELECT
of the items the user may see, with what a list shows loaded, open items first, then by deadline.
The Actions list, My work, the exports, the API and the calendar feed all call it; the dashboard
links to the Actions list with the same query-string names that :func:`action_filters` reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import g, has_request_context
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    Office,
    Recommendation,
    Role,
    Status,
    User,
    normalise_email,
)
from tracker.params import whole_number
from tracker.permissions import office_scope_clause

_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f]")
_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


def office_today(now: datetime, plus_days: int = 0) -> sa.ColumnElement[date]:
    """SQL for "today (plus some days) in the office's time zone"; needs Office in the query.

    The local date differs by zone, so it is computed once per distinct zone (a handful, one
    query) and chosen with a CASE, which keeps filters in SQL however many items there are.
    """
    zones = _office_zones()
    shift = timedelta(days=plus_days)
    if not zones:
        return sa.literal(now.date() + shift)
    return sa.case(
        {zone: now.astimezone(ZoneInfo(zone)).date() + shift for zone in zones}, value=Office.timezone
    )


def _office_zones() -> list[str]:
    """The distinct office time zones, read once per request (or per call outside one)."""
    if has_request_context() and "office_zones" in g:
        return g.office_zones
    zones = list(db.session.scalars(sa.select(Office.timezone).distinct()))
    if has_request_context():
        g.office_zones = zones
    return zones


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


class FilterError(ValueError):
    """A filter of the query string is malformed (too long, control characters, absurd numbers)."""


@dataclass(frozen=True)
class ActionFilters:
    """What a list of actions asks for; None (or False) means "do not filter on it"."""

    office_code: str | None = None
    status: str | None = None
    #: True: only overdue items; False: only items not overdue; None: both.
    overdue: bool | None = None
    recommendation_code: str | None = None
    source_id: int | None = None
    theme: str | None = None
    owner_email: str | None = None
    due_before: date | None = None
    due_after: date | None = None
    #: Only open items (not started, in progress, blocked).
    open_only: bool = False
    #: Only the items this user owns or deputises (My work, the calendar); a manager: all of scope.
    assigned_to: User | None = None

    @property
    def overdue_only(self) -> bool:
        """The Actions list's "overdue only" box."""
        return self.overdue is True


def assigned_filters(user: User) -> ActionFilters:
    """My work and the calendar: the open items a person owns or deputises (a manager: their scope)."""
    return ActionFilters(open_only=True, assigned_to=user)


def action_filters(args: Mapping[str, str]) -> ActionFilters:
    """The filters from a query string, read as the home page reads them; FilterError if malformed."""

    def text(name: str, limit: int) -> str | None:
        value = args.get(name) or ""
        if len(value) > limit or _CONTROL_OR_BREAK.search(value):
            raise FilterError(_("The filter “%(name)s” is not valid.", name=name))
        return value.strip() or None

    status = text("status", 40)
    raw_source = text("source", 20)
    source_id = whole_number(raw_source) if raw_source else None
    if source_id is None and raw_source and raw_source.lstrip("+-").isdigit():  # words are ignored
        raise FilterError(_("The filter “%(name)s” is not valid.", name="source"))
    owner = text("owner", 254)
    return ActionFilters(
        office_code=text("office", 8),
        status=status if status in {s.value for s in Status} else None,  # as the list: unknown is ignored
        overdue=True if args.get("overdue") == "1" else None,
        recommendation_code=text("recommendation", 32),
        source_id=source_id or None,
        theme=text("theme", 100),
        owner_email=normalise_email(owner) if owner else None,
    )


def filtered_actions(user: User, now: datetime, filters: ActionFilters) -> sa.Select[tuple[ActionItem]]:
    """The items the user may see that pass the filters, ordered as the home list: open first, by deadline."""
    query = visible_actions(user).options(
        joinedload(ActionItem.deputy), joinedload(ActionItem.recommendation).joinedload(Recommendation.source)
    )
    if filters.office_code:
        query = query.where(Office.code == filters.office_code.upper())
    if filters.status:
        query = query.where(ActionItem.status == filters.status)
    if filters.recommendation_code:
        query = query.where(Recommendation.code == filters.recommendation_code)
    if filters.source_id:
        query = query.where(Recommendation.source_id == filters.source_id)
    if filters.theme:
        query = query.where(Recommendation.theme == filters.theme)
    if filters.owner_email:
        query = query.where(
            ActionItem.owner_id.in_(sa.select(User.id).where(User.email == filters.owner_email))
        )
    if filters.due_before:
        query = query.where(ActionItem.deadline <= filters.due_before)
    if filters.due_after:
        query = query.where(ActionItem.deadline >= filters.due_after)
    if filters.open_only:
        query = query.where(ActionItem.status.not_in(_CLOSED))
    if filters.assigned_to is not None and filters.assigned_to.role != Role.MANAGER:
        person = filters.assigned_to.id
        query = query.where(sa.or_(ActionItem.owner_id == person, ActionItem.deputy_id == person))
    if filters.overdue is not None:
        overdue = overdue_clause(now)
        query = query.where(overdue if filters.overdue else sa.not_(overdue))
    return query.order_by(
        sa.case((ActionItem.status.in_(_CLOSED), 1), else_=0), ActionItem.deadline, ActionItem.id
    )
