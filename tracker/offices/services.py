"""Office pages and action plans: what each office committed to, adding and editing its actions,
and who may own them (reassigning a leaving person's actions: tracker/actions/reassign.py).

Reads take the user and check the scope; writes take the actor and ``now``, check permissions
through permissions.py, and flush: the request commits. Every write leaves a history row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import abort
from sqlalchemy.orm import contains_eager, joinedload

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
from tracker.actions.queries import overdue_clause
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    Office,
    OfficeResponse,
    Recommendation,
    Status,
    User,
)
from tracker.permissions import Perm, can, office_scope_clause, require

_OPEN = sorted(s.value for s in workflow.OPEN)
_DONE = [Status.COMPLETED.value, Status.VERIFIED.value]


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """An office's actions of recommendations in use: open, overdue (among open), done."""

    open: int = 0
    overdue: int = 0
    #: Completed or verified.
    done: int = 0


@dataclass
class PlanEntry:
    """One recommendation in an office's plan: the office's response and its actions."""

    recommendation: Recommendation
    response: OfficeResponse | None
    items: list[ActionItem] = field(default_factory=list)


def office_counts(user: User, now: datetime, only: Office | None = None) -> list[tuple[Office, Counts]]:
    """The offices the user may see (or just ``only``), by code, each with its counts; one query."""
    counts = (
        sa.select(
            ActionItem.office_id.label("office_id"),
            sa.func.count().filter(ActionItem.status.in_(_OPEN)).label("open"),
            sa.func.count().filter(overdue_clause(now)).label("overdue"),
            sa.func.count().filter(ActionItem.status.in_(_DONE)).label("done"),
        )
        .join(ActionItem.office)  # overdue_clause() compares with the date in the office's zone
        .join(ActionItem.recommendation)
        # Archived recommendations are left out, as on the dashboard and the plan.
        .where(Recommendation.archived_at.is_(None), office_scope_clause(user, ActionItem.office_id))
        .group_by(ActionItem.office_id)
        .subquery()
    )
    query = (
        sa.select(Office, counts.c.open, counts.c.overdue, counts.c.done)
        .outerjoin(counts, counts.c.office_id == Office.id)
        .where(office_scope_clause(user, Office.id))
        .order_by(Office.code)
    )
    if only is not None:
        query = query.where(Office.id == only.id)
    return [
        (office, Counts(open_ or 0, overdue or 0, done or 0))
        for office, open_, overdue, done in db.session.execute(query)
    ]


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


def action_plan(user: User, office: Office) -> list[PlanEntry]:
    """The office's plan: each recommendation in use, by code, with the response and the actions.

    Three queries whatever the size: recommendations, responses, and the actions with their
    owner, deputy and recommendation loaded in the same statement.
    """
    require(user, Perm.VIEW_OFFICE, office, hide=True)
    entries = {
        r.id: PlanEntry(r, None)
        for r in db.session.scalars(
            sa.select(Recommendation)
            .where(Recommendation.archived_at.is_(None))
            .order_by(Recommendation.code)
        )
    }
    for response in db.session.scalars(
        sa.select(OfficeResponse).where(OfficeResponse.office_id == office.id)
    ):
        if response.recommendation_id in entries:
            entries[response.recommendation_id].response = response
    for item in db.session.scalars(
        sa.select(ActionItem)
        .join(ActionItem.recommendation)
        .where(ActionItem.office_id == office.id, Recommendation.archived_at.is_(None))
        .options(
            contains_eager(ActionItem.recommendation),
            joinedload(ActionItem.owner),
            joinedload(ActionItem.deputy),
        )
        .order_by(ActionItem.deadline, ActionItem.id)
    ):
        entries[item.recommendation_id].items.append(item)
    return list(entries.values())


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
    found = list(
        db.session.scalars(
            sa.select(Recommendation)
            .where(Recommendation.archived_at.is_(None))
            .order_by(Recommendation.code)
        )
    )
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
