"""Actions proposed by an office: a focal point puts one forward, a reviewer accepts or declines it.

Commands in the sense of commands.py (actor and moment in, checks, history, mail, flush). A
proposal is an ActionItem in status "proposed": outside the plan (never overdue, out of every
rate's denominator) until accepted (→ not started, its deadline agreed) or declined (→ cancelled,
with a note). Whoever proposed it (the author of its "proposed" history row) is told either way.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.actions.commands import (
    ActionFields,
    ConflictError,
    StateConflict,
    WorkflowError,
    changes_since,
    check_proposed_action,
    history_row,
)
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import ActionItem, ActionUpdate, HistoryEvent, Office, Status, User
from tracker.notifications import account
from tracker.permissions import Perm, require


def propose_action(actor: User, office: Office, now: datetime, fields: ActionFields) -> ActionItem:
    """Put an action forward for the office's own plan (focal points): status "proposed", history PROPOSED.

    The same fields and rules as a reviewer's new action (commands.create_action); nobody is
    assigned yet, so no mail leaves until a reviewer accepts it.
    """
    title, recommendation, owner, deputy = check_proposed_action(actor, office, fields)
    item = ActionItem(
        recommendation=recommendation,
        office=office,
        owner=owner,
        deputy=deputy,
        title=title,
        description=(fields.description or "").strip() or None,
        deadline=fields.deadline,
        agreed_deadline=fields.deadline,
        status=Status.PROPOSED.value,
        progress=0,
        created_at=now,
        updated_at=now,
    )
    db.session.add(item)
    note = _("Proposed by the office. Owner: %(owner)s.", owner=owner.name)
    if deputy is not None:
        note += " " + _("Deputy: %(deputy)s.", deputy=deputy.name)
    db.session.add(
        ActionUpdate(
            action_item=item,
            author=actor,
            created_at=now,
            item_version=1,  # a new row starts at version 1
            new_status=Status.PROPOSED.value,
            new_progress=0,
            new_deadline=item.deadline,
            note=note,
            event=HistoryEvent.PROPOSED.value,
        )
    )
    db.session.flush()
    return item


def proposers(item_ids: list[int]) -> dict[int, ActionUpdate]:
    """item id → the history row that proposed it, with its author (one query)."""
    if not item_ids:
        return {}
    rows = db.session.scalars(
        sa.select(ActionUpdate)
        .where(ActionUpdate.action_item_id.in_(item_ids), ActionUpdate.event == HistoryEvent.PROPOSED.value)
        .options(joinedload(ActionUpdate.author))
        .order_by(ActionUpdate.id)
    )
    return {row.action_item_id: row for row in rows}


def _check_decidable(actor: User, item: ActionItem, version: int | None) -> None:
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.DECIDE_PROPOSAL, item)
    if item.status != Status.PROPOSED:
        raise StateConflict(
            _(
                "This action is no longer a proposal: it is “%(status)s”.",
                status=status_label(item.status),
            )
        )
    if version is not None and version != item.version:
        raise ConflictError(item, changes_since(item, version))


def accept_proposal(
    actor: User, item: ActionItem, now: datetime, note: str, version: int | None
) -> ActionUpdate:
    """Accept a proposal into the plan (reviewers): not started, its deadline agreed; history ACCEPTED.

    The owner and deputy get the assignment mail a new action sends; the proposer is told.
    """
    _check_decidable(actor, item, version)
    note = (note or "").strip()
    update = history_row(
        item,
        actor,
        now,
        old_status=item.status,
        new_status=Status.NOT_STARTED.value,
        old_progress=item.progress,
        new_progress=0,
        new_deadline=item.deadline,
        note=note or None,
        event=HistoryEvent.ACCEPTED.value,
    )
    item.status, item.progress, item.agreed_deadline, item.updated_at = (
        Status.NOT_STARTED.value,
        0,
        item.deadline,
        now,
    )
    db.session.flush()
    if item.owner is not None:
        account.notify_assignment([item], item.owner, "owner", now)
    if item.deputy is not None:
        account.notify_assignment([item], item.deputy, "deputy", now)
    _tell_proposer(item, True, note, now)
    return update


def decline_proposal(
    actor: User, item: ActionItem, now: datetime, note: str, version: int | None
) -> ActionUpdate:
    """Decline a proposal with a note (reviewers): cancelled, history DECLINED; the proposer is told."""
    _check_decidable(actor, item, version)
    note = (note or "").strip()
    if not note:
        raise WorkflowError(_("Say why the proposal is declined."), "note")
    update = history_row(
        item,
        actor,
        now,
        old_status=item.status,
        new_status=Status.CANCELLED.value,
        note=note,
        event=HistoryEvent.DECLINED.value,
    )
    item.status, item.updated_at = Status.CANCELLED.value, now
    db.session.flush()
    _tell_proposer(item, False, note, now)
    return update


def _tell_proposer(item: ActionItem, accepted: bool, note: str, now: datetime) -> None:
    row = proposers([item.id]).get(item.id)
    if row is not None and row.author is not None:
        account.notify_proposal_decision(item, row.author, accepted, note or None, now)
