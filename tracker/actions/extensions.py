"""Deadline extensions: the office asks for a later date with a reason, a reviewer decides.

Commands in the sense of commands.py (actor and moment in, checks, history, mail, flush): the
current deadline holds until a request is approved; the agreed deadline never moves.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload

from tracker.actions import workflow
from tracker.actions.commands import StateConflict, WorkflowError, history_row
from tracker.extensions import db
from tracker.labels import extension_state_label, status_label
from tracker.models import ActionItem, ExtensionRequest, ExtensionState, HistoryEvent, Status, User
from tracker.notifications import account
from tracker.permissions import Perm, can, require


def pending_extension(item: ActionItem) -> ExtensionRequest | None:
    """The item's request waiting for a decision, if any (one query)."""
    return db.session.scalar(
        sa.select(ExtensionRequest).where(
            ExtensionRequest.action_item_id == item.id, ExtensionRequest.state == ExtensionState.PENDING.value
        )
    )


def request_extension(
    actor: User, item: ActionItem, now: datetime, deadline: date | None, reason: str
) -> ExtensionRequest:
    """Ask for a later deadline with a reason; the current deadline holds until a reviewer decides."""
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.REQUEST_EXTENSION, item)
    if Status(item.status) not in workflow.OPEN:
        raise StateConflict(
            _(
                "Only an open action's deadline can be extended; this one is “%(status)s”.",
                status=status_label(item.status),
            )
        )
    waiting = pending_extension(item)
    if waiting is not None:
        raise StateConflict(
            _(
                "A request for %(date)s is already waiting for a decision.",
                date=format_date(waiting.requested_deadline, "medium"),
            )
        )
    if deadline is None:
        raise WorkflowError(_("Give the new deadline you ask for."), "deadline")
    if deadline <= item.deadline:
        raise WorkflowError(
            _(
                "The new deadline must be after the current one, %(date)s.",
                date=format_date(item.deadline, "medium"),
            ),
            "deadline",
        )
    reason = (reason or "").strip()
    if not reason:
        raise WorkflowError(_("Give the reason for the extension."), "reason")
    extension = ExtensionRequest(
        action_item=item,
        requested_by=actor,
        requested_at=now,
        current_deadline=item.deadline,
        requested_deadline=deadline,
        reason=reason,
        state=ExtensionState.PENDING.value,
    )
    db.session.add(extension)
    history_row(
        item,
        actor,
        now,
        old_deadline=item.deadline,
        new_deadline=deadline,
        note=reason,
        event=HistoryEvent.EXTENSION_REQUESTED.value,
        extension=extension,
    )
    item.updated_at = now
    db.session.flush()
    return extension


def decide_extension(
    actor: User, extension: ExtensionRequest, now: datetime, decision: str, note: str
) -> ExtensionRequest:
    """Approve (the current deadline moves) or reject (it holds) a pending request; the requester is told.

    A rejection needs a note. Deciding a request already decided, or one whose action closed
    meanwhile, is a StateConflict.
    """
    item = extension.action_item
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.DECIDE_EXTENSION, item)
    if extension.state != ExtensionState.PENDING:
        raise StateConflict(
            _("This request was already decided: %(state)s.", state=extension_state_label(extension.state))
        )
    if decision not in (ExtensionState.APPROVED, ExtensionState.REJECTED):
        raise WorkflowError(_("Approve or reject the request."), "decision")
    note = (note or "").strip()
    if decision == ExtensionState.REJECTED and not note:
        raise WorkflowError(_("Say why the request is rejected."), "note")
    approved = decision == ExtensionState.APPROVED
    if approved and Status(item.status) not in workflow.OPEN:
        raise StateConflict(
            _(
                "The action is now “%(status)s”; its deadline can no longer move.",
                status=status_label(item.status),
            )
        )
    extension.state = ExtensionState(decision).value
    extension.decided_by, extension.decided_at, extension.decision_note = actor, now, note or None
    old = item.deadline
    history_row(
        item,
        actor,
        now,
        old_deadline=old,
        new_deadline=extension.requested_deadline if approved else old,
        note=note or None,
        event=(HistoryEvent.EXTENSION_APPROVED if approved else HistoryEvent.EXTENSION_REJECTED).value,
        extension=extension,
    )
    if approved:
        item.deadline = extension.requested_deadline
    item.updated_at = now
    db.session.flush()
    account.notify_extension_decision(extension, now)
    return extension


def get_extension(user: User, extension_id: int) -> ExtensionRequest | None:
    """An extension request if the user may see its action; None whether missing or forbidden."""
    found = db.session.scalar(
        sa.select(ExtensionRequest)
        .where(ExtensionRequest.id == extension_id)
        .options(joinedload(ExtensionRequest.action_item).joinedload(ActionItem.office))
    )
    if found is None or not can(user, Perm.VIEW_ACTION, found.action_item):
        return None
    return found
