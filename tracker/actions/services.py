"""Action items: what a user may see, which are overdue, and how they change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, g, has_request_context
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.datastructures import FileStorage

from tracker.actions import evidence, workflow
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    NotificationKind,
    Office,
    Recommendation,
    Role,
    Status,
    User,
)
from tracker.notifications import account
from tracker.permissions import Perm, can, office_scope_clause, require

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
    source_id: int | None = None,
    theme: str | None = None,
) -> Pagination:
    """One page of the items the user may see: open items first, then by deadline."""
    query = visible_actions(user)
    if office_code:
        query = query.where(Office.code == office_code.upper())
    if status:
        query = query.where(ActionItem.status == status)
    if recommendation_code:
        query = query.where(Recommendation.code == recommendation_code)
    if source_id:
        query = query.where(Recommendation.source_id == source_id)
    if theme:
        query = query.where(Recommendation.theme == theme)
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


class WorkflowError(ValueError):
    """A change is refused; ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConflictError(Exception):
    """The item changed since the form was loaded; ``missed`` lists the changes, oldest first."""

    def __init__(self, item: ActionItem, missed: list[ActionUpdate]) -> None:
        super().__init__(f"action {item.id} is at version {item.version}")
        self.item = item
        self.missed = missed


@dataclass
class UpdateRequest:
    """What an update form (or the API) asks for; None means "leave as it is"."""

    version: int
    status: str | None = None
    progress: int | None = None
    deadline: date | None = None
    note: str = ""
    evidence_url: str | None = None
    files: list[FileStorage] = field(default_factory=list)


def changes_since(item: ActionItem, version: int) -> list[ActionUpdate]:
    """The history entries saved after the item was at ``version``, oldest first."""
    return list(
        db.session.scalars(
            sa.select(ActionUpdate)
            .where(ActionUpdate.action_item_id == item.id, ActionUpdate.item_version > version)
            .options(joinedload(ActionUpdate.author))
            .order_by(ActionUpdate.item_version)
        )
    )


def record_update(actor: User, item: ActionItem, now: datetime, request: UpdateRequest) -> ActionUpdate:
    """Apply a status/progress/deadline change with its note and evidence, and write its history.

    Checks, in order: the actor may see the item (else 404), the form was based on the current
    version (else ConflictError), the workflow allows the move for this actor, and what the move needs
    (a note, evidence, a justification for a new deadline). Files are stored last; the caller
    commits, and discards the update's files from disk if the commit fails.
    """
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    if request.version != item.version:
        raise ConflictError(item, changes_since(item, request.version))

    current = Status(item.status)
    target = Status(request.status) if request.status else current
    note = (request.note or "").strip()
    evidence_url = (request.evidence_url or "").strip() or None
    files = [f for f in request.files if f and f.filename]
    has_evidence = bool(evidence_url or files)

    if target != current:
        move = workflow.move_for(current, target)
        if move is None or not can(actor, move.perm, item):
            require(actor, Perm.UPDATE_ACTION, item)  # no say at all over this item: 403
            raise WorkflowError(
                _(
                    "You cannot move this action from “%(old)s” to “%(new)s”.",
                    old=status_label(current),
                    new=status_label(target),
                ),
                "status",
            )
        if move.needs_note and not note:
            raise WorkflowError(_("Say why in the note."), "note")
        if move.needs_note_or_evidence and not (note or has_evidence):
            raise WorkflowError(_("Describe what was done in the note, or attach evidence."), "note")
    elif not workflow.may_update_in_place(actor, item):
        require(actor, Perm.UPDATE_ACTION, item)
        raise WorkflowError(_("This action is closed; it can no longer be changed."), "status")

    progress = item.progress if request.progress is None else request.progress
    if not 0 <= progress <= 100:
        raise WorkflowError(_("Progress is a percentage from 0 to 100."), "progress")
    if target in (Status.COMPLETED, Status.VERIFIED):
        progress = 100

    deadline = request.deadline or item.deadline
    if deadline != item.deadline:
        if current not in workflow.OPEN:
            raise WorkflowError(_("The deadline of a closed action cannot change."), "deadline")
        if not can(actor, Perm.EDIT_ACTION, item) and not note:
            raise WorkflowError(_("Give the reason for the new deadline in the note."), "note")

    if (
        target == current
        and progress == item.progress
        and deadline == item.deadline
        and not (note or has_evidence)
    ):
        raise WorkflowError(_("Nothing to save: change something or write a note."))

    most = current_app.config["TRACKER_MAX_FILES_PER_UPDATE"]
    if len(files) > most:
        raise WorkflowError(_("Attach at most %(num)d files at a time.", num=most), "files")
    try:
        checked = [evidence.check(f) for f in files]
    except evidence.EvidenceError as exc:
        raise WorkflowError(str(exc), "files") from None

    update = ActionUpdate(
        action_item=item,
        author=actor,
        created_at=now,
        old_status=current.value,
        new_status=target.value,
        old_progress=item.progress,
        new_progress=progress,
        old_deadline=item.deadline,
        new_deadline=deadline,
        note=note or None,
        evidence_url=evidence_url,
        # The version counter moves by one when the item's row is flushed below.
        item_version=item.version + 1,
    )
    item.status, item.progress, item.deadline, item.updated_at = target.value, progress, deadline, now
    db.session.add(update)
    for one in checked:
        stored_name = evidence.store(one)
        update.files.append(
            EvidenceFile(
                action_item=item,
                filename=one.filename,
                stored_name=stored_name,
                content_type=one.content_type,
                size=len(one.data),
                created_at=now,
            )
        )
    db.session.flush()
    # The owner hears of a reviewer's decision; the mail leaves after the caller's commit.
    if (current, target) == (Status.COMPLETED, Status.VERIFIED):
        account.notify_review_outcome(item, NotificationKind.VERIFIED, note or None, now)
    elif (current, target) == (Status.COMPLETED, Status.IN_PROGRESS):
        account.notify_review_outcome(item, NotificationKind.SENT_BACK, note, now)
    return update


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
    query = visible_actions(user).where(ActionItem.status.in_([s.value for s in workflow.OPEN]))
    if user.role != Role.MANAGER:
        query = query.where(sa.or_(ActionItem.owner_id == user.id, ActionItem.deputy_id == user.id))
    query = query.order_by(ActionItem.deadline, ActionItem.id)
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


def verification_queue(user: User, page: int, per_page: int) -> Pagination:
    """Items reported completed that the user may verify, the longest waiting first."""
    query = (
        visible_actions(user)
        .where(ActionItem.status == Status.COMPLETED.value)
        .order_by(ActionItem.updated_at, ActionItem.id)
    )
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


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
