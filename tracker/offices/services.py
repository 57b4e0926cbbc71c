"""Office pages and action plans: what each office committed to, adding and editing its actions,
and handing a leaving person's actions to someone else.

Reads take the user and check the scope; writes take the actor and ``now``, check permissions
through permissions.py, and flush: the request commits. Every write leaves a history row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from flask import abort
from flask_babel import gettext as _
from sqlalchemy.orm import contains_eager, joinedload

from tracker.actions import workflow
from tracker.actions.services import ConflictError, changes_since, overdue_clause
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    Office,
    OfficeResponse,
    Recommendation,
    Role,
    Status,
    User,
)
from tracker.notifications import account
from tracker.permissions import Perm, can, office_scope_clause, require

_OPEN = sorted(s.value for s in workflow.OPEN)
_DONE = [Status.COMPLETED.value, Status.VERIFIED.value]
#: An office's own people own and deputise its actions; programme staff do not.
ASSIGNABLE_ROLES = (Role.FOCAL_POINT.value, Role.MANAGER.value)
#: Statuses in which an action's plan (title, owner, deadline…) is settled for good.
FINAL = frozenset({Status.VERIFIED.value, Status.CANCELLED.value})


class PlanError(ValueError):
    """A change is refused; ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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


def may_be_assigned(user: User, office: Office) -> bool:
    """True if ``user`` is an active focal point or manager of ``office``."""
    return user.active and user.office_id == office.id and user.role in ASSIGNABLE_ROLES


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


# --- adding and editing actions -----------------------------------------------------------------


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


def _name(user: User | None) -> str:
    return user.name if user is not None else _("nobody")


def _checked(
    office: Office, fields: ActionFields, item: ActionItem | None
) -> tuple[str, Recommendation, User, User | None]:
    """Validate the fields against the office; people and recommendations an item already has may stay."""
    title = (fields.title or "").strip()
    if not title:
        raise PlanError(_("Give the action a title."), "title")
    if fields.deadline is None:
        raise PlanError(_("Give the deadline."), "deadline")
    recommendation = (
        db.session.get(Recommendation, fields.recommendation_id) if fields.recommendation_id else None
    )
    keeps_recommendation = (
        item is not None and recommendation is not None and item.recommendation_id == recommendation.id
    )
    if recommendation is None or (recommendation.archived_at is not None and not keeps_recommendation):
        raise PlanError(_("Choose a recommendation from the list."), "recommendation_id")

    owner = db.session.get(User, fields.owner_id) if fields.owner_id else None
    if owner is None:
        raise PlanError(_("Choose the owner from the list."), "owner_id")
    if not may_be_assigned(owner, office) and not (item is not None and item.owner_id == owner.id):
        raise PlanError(
            _("Only an active focal point or manager of %(office)s can own its actions.", office=office.code),
            "owner_id",
        )
    deputy = db.session.get(User, fields.deputy_id) if fields.deputy_id else None
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


def create_action(actor: User, office: Office, now: datetime, fields: ActionFields) -> ActionItem:
    """Add an action to the office's plan, not started, with its first history row."""
    require(actor, Perm.VIEW_OFFICE, office, hide=True)
    require(actor, Perm.CREATE_ACTION, office)
    title, recommendation, owner, deputy = _checked(office, fields, None)
    item = ActionItem(
        recommendation=recommendation,
        office=office,
        title=title,
        description=(fields.description or "").strip() or None,
        owner=owner,
        deputy=deputy,
        deadline=fields.deadline,
        status=Status.NOT_STARTED.value,
        progress=0,
        created_at=now,
        updated_at=now,
    )
    db.session.add(item)
    note = _("Action added to the plan. Owner: %(owner)s.", owner=owner.name)
    if deputy is not None:
        note += " " + _("Deputy: %(deputy)s.", deputy=deputy.name)
    db.session.add(
        ActionUpdate(
            action_item=item,
            author=actor,
            created_at=now,
            item_version=1,  # a new row starts at version 1
            new_status=item.status,
            new_progress=0,
            new_deadline=item.deadline,
            note=note,
        )
    )
    db.session.flush()
    account.notify_assignment([item], owner, "owner", now)
    if deputy is not None:
        account.notify_assignment([item], deputy, "deputy", now)
    return item


def may_edit(item: ActionItem) -> bool:
    """An action's plan can change until it is verified or cancelled."""
    return item.status not in FINAL


def edit_action(
    actor: User, item: ActionItem, now: datetime, fields: ActionFields, version: int
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
    update = ActionUpdate(
        action_item_id=item.id,
        author=actor,
        created_at=now,
        old_deadline=item.deadline if moved else None,
        new_deadline=fields.deadline if moved else None,
        note=(f"{summary}. {note}" if summary and note else summary or note) or None,
        # The version counter moves by one when the item's row is flushed below.
        item_version=item.version + 1,
    )
    item.title, item.description, item.recommendation = title, description, recommendation
    new_owner = owner.id != item.owner_id
    new_deputy = deputy is not None and deputy.id != item.deputy_id
    item.owner, item.deputy, item.deadline, item.updated_at = owner, deputy, fields.deadline, now
    db.session.add(update)
    db.session.flush()
    if new_owner:
        account.notify_assignment([item], owner, "owner", now)
    if new_deputy:
        account.notify_assignment([item], deputy, "deputy", now)
    return update


# --- reassigning a leaving person's actions ---------------------------------------------------


@dataclass
class Change:
    """What a reassignment does to one item."""

    item: ActionItem
    #: The leaving person owns it: the successor becomes the owner.
    owner: bool
    #: The deputy changes, to ``new_deputy``.
    deputy: bool
    #: The successor, or None when the deputy is cleared (an owner is not their own deputy).
    new_deputy: User | None = None


@dataclass
class Reassignment:
    """A planned reassignment: who leaves, who takes over, and each item it changes."""

    office: Office
    leaving: User
    successor: User
    include_closed: bool
    changes: list[Change]
    #: Items the leaving person owns, and deputises, before the change.
    as_owner: int = 0
    as_deputy: int = 0
    #: Identifies the items and their versions: a confirmation of another list is refused.
    fingerprint: str = ""


def leaving_candidates(office: Office) -> list[User]:
    """Everyone who owns or deputises an item of the office, active or not, by name; one query."""
    involved = sa.select(ActionItem.id).where(
        ActionItem.office_id == office.id,
        sa.or_(ActionItem.owner_id == User.id, ActionItem.deputy_id == User.id),
    )
    return list(
        db.session.scalars(
            sa.select(User)
            .where(involved.exists())
            .options(joinedload(User.office))
            .order_by(User.name, User.id)
        )
    )


def plan_reassignment(
    actor: User, office: Office, leaving_id: int | None, successor_id: int | None, include_closed: bool
) -> Reassignment:
    """Check the choice and list the items of the office it would change (open ones unless asked)."""
    require(actor, Perm.VIEW_OFFICE, office, hide=True)
    require(actor, Perm.EDIT_ACTION, office)
    leaving = db.session.get(User, leaving_id) if leaving_id else None
    if leaving is None:
        raise PlanError(_("Choose the person who is leaving."), "leaving_id")
    successor = db.session.get(User, successor_id) if successor_id else None
    if successor is None:
        raise PlanError(_("Choose who takes over."), "successor_id")
    if successor.id == leaving.id:
        raise PlanError(_("Choose someone other than the person who is leaving."), "successor_id")
    if not may_be_assigned(successor, office):
        raise PlanError(
            _("Only an active focal point or manager of %(office)s can take over.", office=office.code),
            "successor_id",
        )
    query = (
        sa.select(ActionItem)
        .join(ActionItem.recommendation)
        .where(
            ActionItem.office_id == office.id,
            sa.or_(ActionItem.owner_id == leaving.id, ActionItem.deputy_id == leaving.id),
        )
        .options(contains_eager(ActionItem.recommendation))
        .order_by(Recommendation.code, ActionItem.deadline, ActionItem.id)
    )
    if not include_closed:
        query = query.where(ActionItem.status.in_(_OPEN))
    changes = []
    for item in db.session.scalars(query):
        if item.owner_id == leaving.id:
            # An owner is not their own deputy: the successor stops deputising what they now own.
            clear = item.deputy_id in (successor.id, leaving.id)
            changes.append(Change(item, owner=True, deputy=clear))
        else:
            keeps_owner = item.owner_id == successor.id
            changes.append(
                Change(item, owner=False, deputy=True, new_deputy=None if keeps_owner else successor)
            )
    listed = ",".join(f"{c.item.id}:{c.item.version}" for c in changes)
    return Reassignment(
        office,
        leaving,
        successor,
        include_closed,
        changes,
        as_owner=sum(1 for c in changes if c.item.owner_id == leaving.id),
        as_deputy=sum(1 for c in changes if c.item.deputy_id == leaving.id),
        fingerprint=hashlib.sha256(listed.encode()).hexdigest()[:40],
    )


def apply_reassignment(actor: User, plan: Reassignment, now: datetime, fingerprint: str) -> int:
    """Apply a planned reassignment if it lists what the person confirmed; returns the items changed.

    The items are those loaded by plan_reassignment() (one query); here each gets one UPDATE, with
    its version check, and a history row. A concurrent change fails the flush (StaleDataError).
    """
    require(actor, Perm.EDIT_ACTION, plan.office)
    if not plan.changes:
        raise PlanError(_("Nothing to reassign: no action matches."))
    if fingerprint != plan.fingerprint:
        raise PlanError(_("The actions changed since the preview. Check the new list and confirm again."))
    for change in plan.changes:
        item = change.item
        lines = []
        if change.owner:
            lines.append(_("Owner: %(old)s → %(new)s", old=plan.leaving.name, new=plan.successor.name))
            item.owner_id = plan.successor.id
        if change.deputy:
            # The old deputy is one of the two people at hand: no query per item for a name.
            old_deputy = plan.leaving if item.deputy_id == plan.leaving.id else plan.successor
            lines.append(_("Deputy: %(old)s → %(new)s", old=old_deputy.name, new=_name(change.new_deputy)))
            item.deputy_id = change.new_deputy.id if change.new_deputy else None
        db.session.add(
            ActionUpdate(
                action_item_id=item.id,
                author_id=actor.id,
                created_at=now,
                note="; ".join(lines),
                item_version=item.version + 1,
            )
        )
        item.updated_at = now
    db.session.flush()
    # One mail for all of them, not one per action.
    account.notify_assignment([c.item for c in plan.changes if c.owner], plan.successor, "owner", now)
    account.notify_assignment(
        [c.item for c in plan.changes if c.deputy and c.new_deputy is not None], plan.successor, "deputy", now
    )
    return len(plan.changes)
