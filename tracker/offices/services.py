"""Office pages and action plans: what each office committed to, adding and editing its actions,
and who may own them (reassigning a leaving person's actions: tracker/actions/reassign.py).

Reads take the user and check the scope; writes take the actor and ``now``, check permissions
through permissions.py, and flush: the request commits. Every write leaves a history row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import abort
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload

from tracker.actions import workflow
from tracker.actions.commands import (  # noqa: F401 - the plan's commands, re-exported for the views
    ASSIGNABLE_ROLES,
    ActionFields,
    PlanError,
    create_action,
    edit_action,
    may_be_assigned,
    may_edit,
)
from tracker.actions.queries import ActionFilters, filtered_actions, overdue_clause
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    Office,
    OfficeResponse,
    Recommendation,
    Status,
    User,
)
from tracker.params import paginate
from tracker.permissions import Perm, can, office_scope_clause, require

_OPEN = sorted(s.value for s in workflow.OPEN)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """An office's actions of recommendations in use: open, overdue (among open), done."""

    open: int = 0
    overdue: int = 0
    #: Completed or verified.
    done: int = 0


@dataclass
class ActionCounts:
    """Actions (of a recommendation or an office) by where they stand; ``actions`` counts cancelled too."""

    actions: int = 0
    open: int = 0
    #: Open and past the deadline in the office's zone.
    overdue: int = 0
    #: Reported completed, awaiting a reviewer's verification.
    awaiting: int = 0
    verified: int = 0

    def add(self, status: str, number: int, overdue: int) -> None:
        """Count ``number`` more actions of ``status``, ``overdue`` of them overdue."""
        self.actions += number
        self.overdue += overdue
        if status in _OPEN:
            self.open += number
        elif status == Status.COMPLETED.value:
            self.awaiting += number
        elif status == Status.VERIFIED.value:
            self.verified += number

    def subtract(self, other: ActionCounts) -> None:
        """Take ``other``'s actions out of these counts."""
        for name in ("actions", "open", "overdue", "awaiting", "verified"):
            setattr(self, name, getattr(self, name) - getattr(other, name))

    def summary(self) -> Counts:
        """Open, overdue and done (completed or verified), as the offices list shows them."""
        return Counts(open=self.open, overdue=self.overdue, done=self.awaiting + self.verified)


@dataclass
class PlanEntry:
    """One recommendation in an office's plan: the office's response, its counts, maybe its first items."""

    recommendation: Recommendation
    response: OfficeResponse | None
    counts: ActionCounts
    #: The first items (as the Actions list orders them) when this recommendation is shown, else None.
    items: list[ActionItem] | None = None


@dataclass
class PlanPage:
    """A page of an office's plan: recommendations in use (paginated) and the office's totals."""

    entries: list[PlanEntry]
    #: The page of recommendations (number, pages, total) for the pager.
    page: Pagination
    totals: Counts


#: Recommendations per page of an office's plan.
PLAN_PAGE_SIZE = 20
#: Items listed under a recommendation that is shown; the rest are in the Actions list.
ITEMS_SHOWN = 20


def office_counts(user: User, now: datetime) -> list[tuple[Office, Counts]]:
    """The offices the user may see, by code, each with its counts (archived recommendations left
    out, as on the dashboard and the plan); three small queries."""
    counts = _counts_in_use(now, ActionItem.office_id, office_scope_clause(user, ActionItem.office_id))
    offices = db.session.scalars(
        sa.select(Office).where(office_scope_clause(user, Office.id)).order_by(Office.code)
    )
    return [(office, counts.get(office.id, ActionCounts()).summary()) for office in offices]


def find_office(code: str) -> Office | None:
    """The office with this code, whatever its case; None if there is none."""
    if not code or len(code) > 8:  # no office code is longer; spare the database
        return None
    return db.session.scalar(sa.select(Office).where(Office.code == code.upper()))


def get_office(user: User, code: str) -> Office:
    """The office if the user may see it; 404 whether it is missing or out of their scope."""
    office = find_office(code)
    if office is None:
        abort(404)
    require(user, Perm.VIEW_OFFICE, office, hide=True)
    return office


def _recommendations_in_use() -> sa.Select[tuple[Recommendation]]:
    """The recommendations an office's plan lists (not archived), in the plan's order."""
    return (
        sa.select(Recommendation)
        .where(Recommendation.archived_at.is_(None))
        .order_by(Recommendation.code, Recommendation.id)
    )


def plan_page(
    user: User,
    office: Office,
    now: datetime,
    *,
    page: int = 1,
    show: int | None = None,
    per_page: int = PLAN_PAGE_SIZE,
) -> PlanPage:
    """A page of the office's plan: recommendations in use by code, each with the office's response
    and the counts of its actions; the office's totals; the first items of ``show`` if on the page.

    The same statements whatever the number of items: the page of recommendations and its count,
    the page's counts, the office's totals, the page's responses and (when a recommendation is
    shown) at most ``ITEMS_SHOWN`` items.
    """
    require(user, Perm.VIEW_OFFICE, office, hide=True)
    found = paginate(_recommendations_in_use(), page=page, per_page=per_page)
    ids = [r.id for r in found.items]
    counts = _count(
        now,
        ActionItem.recommendation_id,
        ActionItem.office_id == office.id,
        ActionItem.recommendation_id.in_(ids),
    )
    responses = {
        r.recommendation_id: r
        for r in db.session.scalars(
            sa.select(OfficeResponse).where(
                OfficeResponse.office_id == office.id, OfficeResponse.recommendation_id.in_(ids)
            )
        )
    }
    entries = [PlanEntry(r, responses.get(r.id), counts.get(r.id, ActionCounts())) for r in found.items]
    for entry in entries:
        if entry.recommendation.id == show and entry.counts.actions:
            entry.items = _first_items(user, office, entry.recommendation, now)
    totals = _counts_in_use(now, ActionItem.office_id, ActionItem.office_id == office.id)
    return PlanPage(entries, found, totals.get(office.id, ActionCounts()).summary())


def plan_page_number(recommendation: Recommendation, per_page: int = PLAN_PAGE_SIZE) -> int:
    """The page of an office's plan that lists this recommendation (1 if it is archived)."""
    if recommendation.archived_at is not None:
        return 1
    before = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Recommendation)
        .where(
            Recommendation.archived_at.is_(None),
            sa.or_(
                Recommendation.code < recommendation.code,
                sa.and_(Recommendation.code == recommendation.code, Recommendation.id < recommendation.id),
            ),
        )
    )
    return (before or 0) // per_page + 1


def _count(
    now: datetime, key: Any, *where: sa.ColumnElement[bool], by_recommendation: bool = False
) -> dict[int, ActionCounts]:
    """The actions that pass ``where``, counted per ``key`` (an id column of action_item); one query.

    ``by_recommendation`` groups by recommendation first, so that the (recommendation, office)
    index serves a filter on a few recommendations (SQLite would otherwise take another).
    """
    first = [ActionItem.recommendation_id] if by_recommendation else []
    rows = db.session.execute(
        sa.select(key, ActionItem.status, sa.func.count(), sa.func.count().filter(overdue_clause(now)))
        .where(*where)
        .group_by(*first, key, ActionItem.status)
    )
    found: dict[int, ActionCounts] = {}
    for value, status, number, overdue in rows:
        found.setdefault(value, ActionCounts()).add(status, number, overdue)
    return found


def _counts_in_use(now: datetime, key: Any, *where: sa.ColumnElement[bool]) -> dict[int, ActionCounts]:
    """As :func:`_count`, for recommendations in use only; two grouped queries.

    All the actions by status (read from the (office, status, deadline) index alone), less those
    of archived recommendations (from the (recommendation, office) index): filtering on each
    action's recommendation instead would read every row.
    """
    found = _count(now, key, *where)
    archived = sa.select(Recommendation.id).where(Recommendation.archived_at.is_not(None))
    less = _count(now, key, *where, ActionItem.recommendation_id.in_(archived), by_recommendation=True)
    for value, counts in less.items():
        found[value].subtract(counts)
    return found


def _first_items(
    user: User, office: Office, recommendation: Recommendation, now: datetime
) -> list[ActionItem]:
    """The office's first ``ITEMS_SHOWN`` items for the recommendation, in the Actions list's order."""
    filters = ActionFilters(office_code=office.code, recommendation_code=recommendation.code)
    return list(db.session.scalars(filtered_actions(user, now, filters).limit(ITEMS_SHOWN)))


def assignable_people(office: Office) -> list[User]:
    """Who may own or deputise the office's actions: its active focal points and managers, by name."""
    return list(
        db.session.scalars(
            sa.select(User)
            .where(User.office_id == office.id, User.active.is_(True), User.role.in_(ASSIGNABLE_ROLES))
            .order_by(User.name, User.id)
        )
    )


def recommendations_for_plan(current: Recommendation | None = None) -> list[Recommendation]:
    """The recommendations an action may be attached to (those in use), plus ``current`` if archived."""
    found = list(db.session.scalars(_recommendations_in_use()))
    if current is not None and current.archived_at is not None:
        found.append(current)
    return found


def get_item(user: User, action_id: int) -> ActionItem | None:
    """The item with its office, recommendation, owner and deputy; None if missing or not visible."""
    item = db.session.scalar(
        sa.select(ActionItem)
        .where(ActionItem.id == action_id, office_scope_clause(user, ActionItem.office_id))
        .options(
            joinedload(ActionItem.office),
            joinedload(ActionItem.recommendation),
            joinedload(ActionItem.owner),
            joinedload(ActionItem.deputy),
        )
    )
    if item is None or not can(user, Perm.VIEW_ACTION, item):
        return None
    return item
