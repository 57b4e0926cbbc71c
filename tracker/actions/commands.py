"""The commands that change an action item: every page, the API, the import and the CLI call these.

Each command takes the acting user and the moment, checks the permission (permissions.py), the
workflow (workflow.py) and the plan rules, writes the change and its history row in the session,
queues the mail it causes and flushes; the caller commits. A refusal raises before anything is
written: :class:`WorkflowError` (422, names the field), :class:`StateConflict` (409, says what
the state is now) or :class:`ConflictError` (the form was based on an older version).
Deadline extensions are in extensions.py and reassigning a leaving person's actions in
reassign.py; both follow the same shape and use :func:`history_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import FileStorage

from tracker.actions import evidence, workflow
from tracker.extensions import db
from tracker.labels import status_label
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    HistoryEvent,
    NotificationKind,
    Office,
    Recommendation,
    Role,
    Status,
    User,
)
from tracker.notifications import account
from tracker.permissions import Perm, can, require
from tracker.profile.absences import acting_for


class WorkflowError(ValueError):
    """A change is refused; ``field`` names the form field the message belongs to (422)."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StateConflict(WorkflowError):  # noqa: N818 - a refusal, like WorkflowError
    """The thing is no longer in the state the request assumes (already decided, not verified…): 409."""

    status = 409


#: The plan's refusals are workflow refusals too (422, naming the field).
PlanError = WorkflowError

#: An office's own people own and deputise its actions; programme staff do not.
ASSIGNABLE_ROLES = (Role.FOCAL_POINT.value, Role.MANAGER.value)
#: Statuses in which an action's plan (title, owner, deadline…) is settled for good.
FINAL = frozenset({Status.VERIFIED.value, Status.CANCELLED.value})


def may_be_assigned(user: User, office: Office) -> bool:
    """True if ``user`` is an active focal point or manager of ``office``."""
    return user.active and user.office_id == office.id and user.role in ASSIGNABLE_ROLES


class ConflictError(Exception):
    """The item changed since the form was loaded; ``missed`` lists the changes, oldest first."""

    def __init__(self, item: ActionItem, missed: list[ActionUpdate]) -> None:
        super().__init__(f"action {item.id} is at version {item.version}")
        self.item = item
        self.missed = missed


#: The history event of each status move that has its own wording.
MOVE_EVENTS = {
    (Status.COMPLETED, Status.VERIFIED): HistoryEvent.VERIFIED,
    (Status.COMPLETED, Status.IN_PROGRESS): HistoryEvent.SENT_BACK,
    (Status.VERIFIED, Status.IN_PROGRESS): HistoryEvent.REOPENED,
}


#: The mail a reviewer's decision sends to the owner (and deputy).
DECISION_MAIL = {
    HistoryEvent.VERIFIED: NotificationKind.VERIFIED,
    HistoryEvent.SENT_BACK: NotificationKind.SENT_BACK,
    HistoryEvent.REOPENED: NotificationKind.REOPENED,
}


@dataclass
class UpdateRequest:
    """What an update form (or the API, or an import row) asks for; None means "leave as it is"."""

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


def progress_before_report(item: ActionItem) -> int:
    """The progress recorded just before the item's latest completion report (the default after it).

    Read from history: the old progress of the latest move to "completed"; 0 if there is none.
    """
    before = db.session.scalar(
        sa.select(ActionUpdate.old_progress)
        .where(ActionUpdate.action_item_id == item.id, ActionUpdate.new_status == Status.COMPLETED.value)
        .where(ActionUpdate.old_status != Status.COMPLETED.value)
        .order_by(ActionUpdate.created_at.desc(), ActionUpdate.id.desc())
        .limit(1)
    )
    return before if before is not None and before < 100 else 0


def _check_version(item: ActionItem, version: int | None) -> None:
    if version is not None and version != item.version:
        raise ConflictError(item, changes_since(item, version))


def history_row(item: ActionItem, actor: User | None, now: datetime, **values: object) -> ActionUpdate:
    """A history row for a change of ``item`` about to be flushed (its version moves by one)."""
    if actor is not None and "on_behalf_of" not in values:
        values["on_behalf_of"] = acting_for(actor, item, now)
    update = ActionUpdate(
        action_item=item,
        author=actor,
        created_at=now,
        item_version=item.version + 1,
        **values,
    )
    db.session.add(update)
    return update


def check_update(
    actor: User, item: ActionItem, request: UpdateRequest, *, has_evidence: bool = False
) -> tuple[Status, int, date, HistoryEvent | None]:
    """The rules of a status, progress or deadline change; returns (status, progress, deadline, event).

    The workflow's move for this actor, what it needs (a note, evidence), the progress of the
    target status, and who may set a deadline. Raises WorkflowError (or 403) and writes nothing:
    :func:`record_update` calls it, and so does the import's bulk path for a new action's first
    move.
    """
    current = Status(item.status)
    target = Status(request.status) if request.status else current
    note = (request.note or "").strip()

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
        if current == Status.PROPOSED:
            raise StateConflict(_("This action is only proposed: it can change once a reviewer accepts it."))
        raise WorkflowError(_("This action is closed; it can no longer be changed."), "status")

    if request.progress is None:
        # Sent back or reopened: back to where the office stood before it reported completion.
        progress = (
            progress_before_report(item)
            if target == Status.IN_PROGRESS
            and current
            in (
                Status.COMPLETED,
                Status.VERIFIED,
            )
            else item.progress
        )
    else:
        progress = request.progress
    if not 0 <= progress <= 100:
        raise WorkflowError(_("Progress is a percentage from 0 to 100."), "progress")
    if target in (Status.COMPLETED, Status.VERIFIED):
        progress = 100
    elif target == Status.IN_PROGRESS and current in (Status.COMPLETED, Status.VERIFIED) and progress >= 100:
        raise WorkflowError(_("Give the progress the action is back at, below 100 %."), "progress")

    deadline = request.deadline or item.deadline
    event = MOVE_EVENTS.get((current, target))
    if deadline != item.deadline:
        if current not in workflow.OPEN or target not in workflow.OPEN:
            raise WorkflowError(_("The deadline of a closed action cannot change."), "deadline")
        if not can(actor, Perm.DECIDE_EXTENSION, item):
            raise WorkflowError(
                _("Ask for a later deadline with “Request an extension”; a reviewer decides."), "deadline"
            )
        event = event or HistoryEvent.DEADLINE_SET

    if (
        target == current
        and progress == item.progress
        and deadline == item.deadline
        and not (note or has_evidence)
    ):
        raise WorkflowError(_("Nothing to save: change something or write a note."))
    return target, progress, deadline, event


def record_update(actor: User, item: ActionItem, now: datetime, request: UpdateRequest) -> ActionUpdate:
    """Apply a status/progress change (or a reviewer's new deadline) with its note and evidence.

    Checks, in order: the actor may see the item (else 404), the form was based on the current
    version (else ConflictError), the workflow allows the move for this actor, and what the move
    needs (a note, evidence). Only those who decide extensions set a deadline directly (recorded
    as theirs); the office asks with :func:`request_extension`. While a completion awaits
    verification the office may add notes and evidence only. Every file is checked before any is
    stored; they are stored last, in the database, so the caller's commit (or rollback) keeps (or
    drops) them with the rest of the update.
    """
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    _check_version(item, request.version)

    note = (request.note or "").strip()
    evidence_url = (request.evidence_url or "").strip() or None
    files = [f for f in request.files if f and f.filename]
    current = Status(item.status)
    has_evidence = bool(evidence_url or files)
    target, progress, deadline, event = check_update(actor, item, request, has_evidence=has_evidence)

    if evidence_url and (problem := evidence.link_problem(evidence_url)):
        raise WorkflowError(problem, "evidence_url")
    most = current_app.config["TRACKER_MAX_FILES_PER_UPDATE"]
    if len(files) > most:
        raise WorkflowError(_("Attach at most %(num)d files at a time.", num=most), "files")
    try:
        checked = [evidence.check(f) for f in files]
    except evidence.EvidenceError as exc:
        raise WorkflowError(str(exc), "files") from None

    update = history_row(
        item,
        actor,
        now,
        old_status=current.value,
        new_status=target.value,
        old_progress=item.progress,
        new_progress=progress,
        old_deadline=item.deadline,
        new_deadline=deadline,
        note=note or None,
        evidence_url=evidence_url,
        event=event.value if event else None,
    )
    item.status, item.progress, item.deadline, item.updated_at = target.value, progress, deadline, now
    for one in checked:
        stored = evidence.store(one)
        update.files.append(
            EvidenceFile(
                action_item=item,
                filename=one.filename,
                stored_file_id=stored.id,
                content_type=one.content_type,
                size=one.size,
                created_at=now,
            )
        )
    db.session.flush()
    # The owner hears of a reviewer's decision; the mail leaves after the caller's commit.
    if event in DECISION_MAIL:
        account.notify_review_outcome(item, DECISION_MAIL[event], note or None, now)
    return update


def reopen(
    actor: User, item: ActionItem, now: datetime, note: str, version: int | None, progress: int | None = None
) -> ActionUpdate:
    """Move a verified action back to in progress with a note (reviewers); the owner is told."""
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.REOPEN_ACTION, item)
    if item.status != Status.VERIFIED:
        raise StateConflict(
            _(
                "Only a verified action can be reopened; this one is “%(status)s”.",
                status=status_label(item.status),
            )
        )
    request = UpdateRequest(
        version=version if version is not None else item.version,
        status=Status.IN_PROGRESS.value,
        progress=progress,
        note=note,
    )
    return record_update(actor, item, now, request)


def withdraw_completion(
    actor: User, item: ActionItem, now: datetime, note: str, version: int | None
) -> ActionUpdate:
    """The office withdraws its completion report before it is verified: back to in progress."""
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.UPDATE_ACTION, item)
    if item.status != Status.COMPLETED:
        raise StateConflict(
            _(
                "Only a completion awaiting verification can be withdrawn; this action is “%(status)s”.",
                status=status_label(item.status),
            )
        )
    _check_version(item, version)
    progress = progress_before_report(item)
    update = history_row(
        item,
        actor,
        now,
        old_status=item.status,
        new_status=Status.IN_PROGRESS.value,
        old_progress=item.progress,
        new_progress=progress,
        note=(note or "").strip() or None,
        event=HistoryEvent.WITHDRAWN.value,
    )
    item.status, item.progress, item.updated_at = Status.IN_PROGRESS.value, progress, now
    db.session.flush()
    return update


# --- the plan: adding and editing actions ---------------------------------------------------


@dataclass
class ActionFields:
    """What the action form asks for; ids as submitted (None when left empty)."""

    title: str
    recommendation_id: int | None
    owner_id: int | None
    deputy_id: int | None
    deadline: date | None
    description: str = ""
    #: Added to the history row of an edit: why it was made.
    note: str = ""
    #: The agreed (baseline) deadline of a new action when it differs from ``deadline`` (an import).
    agreed_deadline: date | None = None


def _name(user: User | None) -> str:
    return user.name if user is not None else _("nobody")


class Lookups:
    """How the plan rules find the recommendation and the people a form names: by id, in the session.

    The import's bulk path passes its own, read once for the whole file, so that checking a
    hundred thousand rows costs no statement per row.
    """

    def recommendation(self, recommendation_id: int) -> Recommendation | None:
        """The recommendation with this id, or None."""
        return db.session.get(Recommendation, recommendation_id)

    def user(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        return db.session.get(User, user_id)


SESSION_LOOKUPS = Lookups()


def _checked(
    office: Office, fields: ActionFields, item: ActionItem | None, lookups: Lookups = SESSION_LOOKUPS
) -> tuple[str, Recommendation, User, User | None]:
    """Validate the fields against the office; people and recommendations an item already has may stay."""
    title = (fields.title or "").strip()
    if not title:
        raise PlanError(_("Give the action a title."), "title")
    if fields.deadline is None:
        raise PlanError(_("Give the deadline."), "deadline")
    recommendation = lookups.recommendation(fields.recommendation_id) if fields.recommendation_id else None
    keeps_recommendation = (
        item is not None and recommendation is not None and item.recommendation_id == recommendation.id
    )
    if recommendation is None or (recommendation.archived_at is not None and not keeps_recommendation):
        raise PlanError(_("Choose a recommendation from the list."), "recommendation_id")

    owner = lookups.user(fields.owner_id) if fields.owner_id else None
    if owner is None:
        raise PlanError(_("Choose the owner from the list."), "owner_id")
    if not may_be_assigned(owner, office) and not (item is not None and item.owner_id == owner.id):
        raise PlanError(
            _("Only an active focal point or manager of %(office)s can own its actions.", office=office.code),
            "owner_id",
        )
    deputy = lookups.user(fields.deputy_id) if fields.deputy_id else None
    if fields.deputy_id and deputy is None:
        raise PlanError(_("Choose the deputy from the list, or no deputy."), "deputy_id")
    if deputy is not None:
        if deputy.id == owner.id:
            raise PlanError(_("The deputy must be someone other than the owner."), "deputy_id")
        if not may_be_assigned(deputy, office) and not (item is not None and item.deputy_id == deputy.id):
            raise PlanError(
                _(
                    "Only an active focal point or manager of %(office)s can be the deputy of its actions.",
                    office=office.code,
                ),
                "deputy_id",
            )
    return title, recommendation, owner, deputy


def check_new_action(
    actor: User, office: Office, fields: ActionFields, lookups: Lookups = SESSION_LOOKUPS
) -> tuple[str, Recommendation, User, User | None]:
    """The rules of a new action: who may add it, and its fields; returns (title, recommendation,
    owner, deputy). Raises WorkflowError (or 404/403) and writes nothing.

    :func:`create_action` calls it, and so does the import's bulk path (with its own ``lookups``).
    """
    require(actor, Perm.VIEW_OFFICE, office, hide=True)
    require(actor, Perm.CREATE_ACTION, office)
    return _checked(office, fields, None, lookups)


def check_proposed_action(
    actor: User, office: Office, fields: ActionFields
) -> tuple[str, Recommendation, User, User | None]:
    """The rules of an action an office proposes for its own plan: the same fields as a new action
    (:func:`check_new_action`), put forward by one of the office's focal points."""
    require(actor, Perm.VIEW_OFFICE, office, hide=True)
    require(actor, Perm.PROPOSE_ACTION, office)
    return _checked(office, fields, None)


def new_action_values(fields: ActionFields, title: str, now: datetime) -> dict[str, object]:
    """The columns of a new action's row, but for its recommendation, office and people (not started)."""
    return {
        "title": title,
        "description": (fields.description or "").strip() or None,
        "deadline": fields.deadline,
        "agreed_deadline": fields.agreed_deadline or fields.deadline,
        "status": Status.NOT_STARTED.value,
        "progress": 0,
        "created_at": now,
        "updated_at": now,
    }


def created_history_values(
    deadline: date | None, owner: User, deputy: User | None, now: datetime
) -> dict[str, object]:
    """The columns of a new action's first history row (event "created"), but for the action and author."""
    note = _("Action added to the plan. Owner: %(owner)s.", owner=owner.name)
    if deputy is not None:
        note += " " + _("Deputy: %(deputy)s.", deputy=deputy.name)
    return {
        "created_at": now,
        "item_version": 1,  # a new row starts at version 1
        "new_status": Status.NOT_STARTED.value,
        "new_progress": 0,
        "new_deadline": deadline,
        "note": note,
        "event": HistoryEvent.CREATED.value,
    }


def create_action(
    actor: User, office: Office, now: datetime, fields: ActionFields, *, notify: bool = True
) -> ActionItem:
    """Add an action to the office's plan, not started, with its first history row.

    ``notify=False``: the caller tells the owner and deputy itself (an import: one mail per person).
    """
    title, recommendation, owner, deputy = check_new_action(actor, office, fields)
    item = ActionItem(
        recommendation=recommendation,
        office=office,
        owner=owner,
        deputy=deputy,
        **new_action_values(fields, title, now),
    )
    db.session.add(item)
    db.session.add(
        ActionUpdate(
            action_item=item, author=actor, **created_history_values(item.deadline, owner, deputy, now)
        )
    )
    db.session.flush()
    if notify:
        account.notify_assignment([item], owner, "owner", now)
        if deputy is not None:
            account.notify_assignment([item], deputy, "deputy", now)
    return item


def may_edit(item: ActionItem) -> bool:
    """An action's plan can change until it is verified or cancelled."""
    return item.status not in FINAL


def edit_action(
    actor: User, item: ActionItem, now: datetime, fields: ActionFields, version: int, *, notify: bool = True
) -> ActionUpdate:
    """Change an action's title, description, recommendation, owner, deputy or deadline, with history.

    Refused: another office's item (404), no right to edit (403), an item verified or cancelled,
    a form based on an older version (ConflictError), invalid fields, or nothing to change.
    """
    require(actor, Perm.VIEW_ACTION, item, hide=True)
    require(actor, Perm.EDIT_ACTION, item)
    if not may_edit(item):
        raise PlanError(_("This action is verified or cancelled; it can no longer be edited."))
    if version != item.version:
        raise ConflictError(item, changes_since(item, version))
    title, recommendation, owner, deputy = _checked(item.office, fields, item)
    description = (fields.description or "").strip() or None
    if fields.deadline != item.deadline and item.status not in workflow.OPEN:
        raise PlanError(_("The deadline of a closed action cannot change."), "deadline")

    # Written out in the history note, on one line (the history shows notes as one paragraph);
    # deadlines have their own columns.
    changes: list[str] = []
    if title != item.title:
        changes.append(_("Title: %(old)s → %(new)s", old=item.title, new=title))
    if description != item.description:
        changes.append(_("Description changed"))
    if recommendation.id != item.recommendation_id:
        changes.append(
            _("Recommendation: %(old)s → %(new)s", old=item.recommendation.code, new=recommendation.code)
        )
    if owner.id != item.owner_id:
        changes.append(_("Owner: %(old)s → %(new)s", old=_name(item.owner), new=owner.name))
    if (deputy.id if deputy else None) != item.deputy_id:
        changes.append(_("Deputy: %(old)s → %(new)s", old=_name(item.deputy), new=_name(deputy)))
    moved = fields.deadline != item.deadline
    if not changes and not moved:
        raise PlanError(_("Nothing to save: change something first."))

    summary, note = "; ".join(changes), (fields.note or "").strip()
    update = history_row(
        item,
        actor,
        now,
        old_deadline=item.deadline if moved else None,
        new_deadline=fields.deadline if moved else None,
        note=(f"{summary}. {note}" if summary and note else summary or note) or None,
        # A reviewer's new deadline is recorded as theirs (the office asks for an extension instead).
        event=(HistoryEvent.EDITED if changes else HistoryEvent.DEADLINE_SET).value,
    )
    item.title, item.description, item.recommendation = title, description, recommendation
    new_owner = owner.id != item.owner_id
    new_deputy = deputy is not None and deputy.id != item.deputy_id
    item.owner, item.deputy, item.deadline, item.updated_at = owner, deputy, fields.deadline, now
    db.session.flush()
    if new_owner and notify:
        account.notify_assignment([item], owner, "owner", now)
    if new_deputy and notify:
        account.notify_assignment([item], deputy, "deputy", now)
    return update
