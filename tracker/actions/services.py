"""Action items read for pages: one item, lists, My work, the review queue (changes: commands.py)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import contains_eager, joinedload, selectinload

from tracker import params
from tracker.actions.queries import ActionFilters, action_page, assigned_filters, visible_actions
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    ExtensionRequest,
    ExtensionState,
    Office,
    Status,
    User,
)
from tracker.permissions import Perm, can, office_scope_clause


def list_actions(
    user: User, now: datetime, filters: ActionFilters, *, page: int = 1, per_page: int = 50
) -> Pagination:
    """One page of the items the user may see that pass the filters: open items first, then by deadline."""
    return action_page(user, now, filters, page=page, per_page=per_page)


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
            selectinload(ActionItem.updates).options(
                joinedload(ActionUpdate.author), selectinload(ActionUpdate.files)
            ),
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


def get_evidence_file(user: User, file_id: int) -> EvidenceFile | None:
    """An evidence file if the user may see its item; None whether missing or forbidden."""
    query = sa.select(EvidenceFile).where(EvidenceFile.id == file_id)
    found = db.session.scalar(query.options(joinedload(EvidenceFile.action_item)))
    if found is None or not can(user, Perm.VIEW_ACTION, found.action_item):
        return None
    return found


def my_actions(user: User, now: datetime, page: int, per_page: int) -> Pagination:
    """Open items the user owns or deputises (all open items of their scope for a manager).

    Ordered by deadline, so what is overdue comes first and what is due soon next.
    """
    return action_page(user, now, assigned_filters(user), page=page, per_page=per_page)


def verification_queue(user: User, page: int, per_page: int) -> Pagination:
    """Items reported completed that the user may verify, the longest waiting first."""
    query = (
        visible_actions(user)
        .where(ActionItem.status == Status.COMPLETED.value)
        .order_by(ActionItem.updated_at, ActionItem.id)
    )
    return params.paginate(query, page=page, per_page=per_page)


def pending_extensions(user: User) -> list[ExtensionRequest]:
    """Extension requests waiting for a decision that the user may decide, the longest waiting first.

    Every pending request is listed (there is at most one per open action); one query.
    """
    if not can(user, Perm.DECIDE_EXTENSION):
        return []
    query = (
        sa.select(ExtensionRequest)
        .join(ExtensionRequest.action_item)
        .where(
            ExtensionRequest.state == ExtensionState.PENDING.value,
            office_scope_clause(user, ActionItem.office_id),
        )
        .options(
            contains_eager(ExtensionRequest.action_item).options(
                joinedload(ActionItem.office), joinedload(ActionItem.recommendation)
            ),
            joinedload(ExtensionRequest.requested_by),
        )
        .order_by(ExtensionRequest.requested_at, ExtensionRequest.id)
    )
    return list(db.session.scalars(query))


def completion_reports(item_ids: list[int]) -> dict[int, ActionUpdate]:
    """item id → the history entry that reported it completed most recently (one query)."""
    latest = (
        sa.select(sa.func.max(ActionUpdate.id))
        .where(ActionUpdate.action_item_id.in_(item_ids), ActionUpdate.new_status == Status.COMPLETED.value)
        .group_by(ActionUpdate.action_item_id)
    )
    updates = db.session.scalars(
        sa.select(ActionUpdate)
        .where(ActionUpdate.id.in_(latest))
        .options(joinedload(ActionUpdate.author), selectinload(ActionUpdate.files))
    )
    return {u.action_item_id: u for u in updates}
