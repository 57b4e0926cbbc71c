"""Reassigning a leaving person's actions: plan (preview), then apply what was confirmed.

The owner and deputy of an action are never silently dropped: when the move would clear an item's
deputy (the successor already deputises an item they now own, or deputises for the leaving person
an item the successor owns), the preview asks for a new deputy of that item, or an explicit
"none", and the confirmation is refused until every one is answered.

Services take the actor and ``now``, check permissions through permissions.py, and flush: the
request commits. Every changed item gets a history row (event "reassigned").
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import contains_eager, joinedload

from tracker.actions import workflow
from tracker.actions.commands import history_row
from tracker.extensions import db
from tracker.models import ActionItem, HistoryEvent, Office, Recommendation, User
from tracker.notifications import account
from tracker.offices.services import PlanError, assignable_people, may_be_assigned
from tracker.permissions import Perm, require

_OPEN = sorted(s.value for s in workflow.OPEN)

#: The value of a deputy select that clears the deputy on purpose.
NO_DEPUTY = "none"


def deputy_field(item_id: int) -> str:
    """The name of the form field that answers "who deputises this item now"."""
    return f"deputy-{item_id}"


@dataclass
class Change:
    """What a reassignment does to one item."""

    item: ActionItem
    #: The leaving person owns it: the successor becomes the owner.
    owner: bool
    #: The deputy changes: to ``new_deputy``, or to the person's answer when ``ask_deputy``.
    deputy: bool
    #: The successor, when they take over as deputy.
    new_deputy: User | None = None
    #: The item would be left without a deputy (the owner cannot be their own deputy): ask who.
    ask_deputy: bool = False


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
    #: Who may become the new deputy of an item that needs one (never the new owner or the leaver).
    deputy_choices: list[User] = field(default_factory=list)

    @property
    def questions(self) -> list[Change]:
        """The changes that need a new deputy (or an explicit "none") before they can be applied."""
        return [c for c in self.changes if c.ask_deputy]


class DeputyChoiceError(PlanError):
    """Some items that need a new deputy were not answered, or wrongly: ``errors`` by item id."""

    def __init__(self, errors: dict[int, str]) -> None:
        super().__init__(_("Choose a new deputy, or “none”, for every action listed under “New deputies”."))
        self.errors = errors


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
            # The successor owns it now and is not their own deputy (nor is the leaver kept): ask.
            ask = item.deputy_id in (successor.id, leaving.id)
            changes.append(Change(item, owner=True, deputy=ask, ask_deputy=ask))
        elif item.owner_id == successor.id:
            # The successor owns it already: their deputy leaves, and they cannot replace themselves.
            changes.append(Change(item, owner=False, deputy=True, ask_deputy=True))
        else:
            changes.append(Change(item, owner=False, deputy=True, new_deputy=successor))
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
        deputy_choices=[u for u in assignable_people(office) if u.id not in (leaving.id, successor.id)],
    )


def _chosen_deputies(plan: Reassignment, answers: Mapping[int, str]) -> dict[int, User | None]:
    """item id → the new deputy (None for an explicit "none") of each item that needs one.

    ``answers`` holds the submitted value by item id: a user id, NO_DEPUTY, or empty.
    Raises DeputyChoiceError naming each item left unanswered or answered with someone not offered.
    """
    offered = {str(u.id): u for u in plan.deputy_choices}
    chosen: dict[int, User | None] = {}
    errors: dict[int, str] = {}
    for change in plan.questions:
        item, answer = change.item, (answers.get(change.item.id) or "").strip()
        if answer == NO_DEPUTY:
            chosen[item.id] = None
        elif answer in offered:
            chosen[item.id] = offered[answer]
        elif not answer:
            errors[item.id] = _("New deputy of “%(title)s”: choose someone, or “none”.", title=item.title)
        else:
            errors[item.id] = _(
                "New deputy of “%(title)s”: choose someone from the list, or “none”.", title=item.title
            )
    if errors:
        raise DeputyChoiceError(errors)
    return chosen


def apply_reassignment(
    actor: User,
    plan: Reassignment,
    now: datetime,
    fingerprint: str,
    deputies: Mapping[int, str] | None = None,
) -> int:
    """Apply a planned reassignment if it lists what the person confirmed; returns the items changed.

    ``deputies`` answers, by item id, who deputises each item the preview asked about (a user id
    or NO_DEPUTY). The items are those loaded by plan_reassignment() (one query); here each gets
    one UPDATE, with its version check, and a history row. A concurrent change fails the flush
    (StaleDataError).
    """
    require(actor, Perm.EDIT_ACTION, plan.office)
    if not plan.changes:
        raise PlanError(_("Nothing to reassign: no action matches."))
    if fingerprint != plan.fingerprint:
        raise PlanError(_("The actions changed since the preview. Check the new list and confirm again."))
    chosen = _chosen_deputies(plan, deputies or {})
    new_deputies: dict[int, list[ActionItem]] = defaultdict(list)
    people = {u.id: u for u in plan.deputy_choices}
    for change in plan.changes:
        item = change.item
        lines = []
        if change.owner:
            lines.append(_("Owner: %(old)s → %(new)s", old=plan.leaving.name, new=plan.successor.name))
            item.owner_id = plan.successor.id
        if change.deputy:
            # The old deputy is one of the two people at hand: no query per item for a name.
            old_deputy = plan.leaving if item.deputy_id == plan.leaving.id else plan.successor
            new_deputy = chosen[item.id] if change.ask_deputy else change.new_deputy
            new_name = new_deputy.name if new_deputy is not None else _("none")
            lines.append(_("Deputy: %(old)s → %(new)s", old=old_deputy.name, new=new_name))
            item.deputy_id = new_deputy.id if new_deputy is not None else None
            if new_deputy is not None:
                new_deputies[new_deputy.id].append(item)
        history_row(item, actor, now, note="; ".join(lines), event=HistoryEvent.REASSIGNED.value)
        item.updated_at = now
    db.session.flush()
    # One mail per person and role, listing all their new actions, not one per action.
    account.notify_assignment([c.item for c in plan.changes if c.owner], plan.successor, "owner", now)
    people[plan.successor.id] = plan.successor
    for user_id, items in new_deputies.items():
        account.notify_assignment(items, people[user_id], "deputy", now)
    return len(plan.changes)
