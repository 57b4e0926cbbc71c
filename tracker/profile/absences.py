"""Absences: who is away when, and who covers for them.

During an absence a person's reminders and review mail go to their deputies (each action's deputy,
else the office's other focal points), My work shows the deputies what they cover, and a change a
deputy makes to an absent owner's action is recorded as made for the owner.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from flask import abort
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy.orm import aliased, contains_eager, joinedload

from tracker.actions import workflow
from tracker.extensions import db
from tracker.models import Absence, ActionItem, Role, User
from tracker.permissions import may_record_absence, office_scope_clause

#: The longest note an absence keeps (the column's size).
NOTE_MAX = 300


class Away:
    """The absences of a span of days, read in one query, answering "is this person away on that day"."""

    def __init__(self, first: date, last: date) -> None:
        self._spans: dict[int, list[tuple[date, date]]] = defaultdict(list)
        query = sa.select(Absence.user_id, Absence.starts_on, Absence.ends_on).where(
            Absence.starts_on <= last, Absence.ends_on >= first
        )
        for user_id, starts_on, ends_on in db.session.execute(query):
            self._spans[user_id].append((starts_on, ends_on))

    def is_away(self, user_id: int | None, day: date) -> bool:
        """True if the person has an absence covering ``day``."""
        return user_id is not None and any(s <= day <= e for s, e in self._spans.get(user_id, ()))

    def user_ids(self) -> set[int]:
        """Everyone with an absence in the span."""
        return set(self._spans)


def is_away(user: User | None, day: date) -> bool:
    """True if ``user`` has an absence covering ``day`` (one query)."""
    return user is not None and Away(day, day).is_away(user.id, day)


def acting_for(actor: User, item: ActionItem, now: datetime) -> User | None:
    """The absent owner an actor stands in for when changing ``item`` at ``now``, else None.

    Someone of the owner's office other than the owner who changes an absent owner's action acts
    for them; the history says so. Reviewers and admins act in their own right. Decided from the
    ids first, so that a reviewer's change (a bulk one too) loads nothing.
    """
    if item.owner_id is None or item.owner_id == actor.id or actor.office_id != item.office_id:
        return None
    owner = item.owner
    return owner if is_away(owner, item.office.today(now)) else None


# --- recording absences ----------------------------------------------------------------------


class AbsenceError(ValueError):
    """An absence is refused; ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def today_of(person: User, now: datetime) -> date:
    """The date ``now`` in the person's own calendar (their zone, else their office's, else UTC)."""
    return now.astimezone(person.zone).date()


def absences_of(person: User, today: date) -> list[Absence]:
    """The person's current and future absences, the earliest first; one query."""
    return list(
        db.session.scalars(
            sa.select(Absence)
            .where(Absence.user_id == person.id, Absence.ends_on >= today)
            .order_by(Absence.starts_on, Absence.id)
        )
    )


def get_absence(absence_id: int) -> Absence | None:
    """The absence with this id (with its person), or None."""
    return db.session.scalar(
        sa.select(Absence).where(Absence.id == absence_id).options(joinedload(Absence.user))
    )


def add_absence(
    actor: User, person: User, starts_on: date | None, ends_on: date | None, note: str | None, now: datetime
) -> Absence:
    """Record that ``person`` is away from ``starts_on`` to ``ends_on`` (inclusive).

    Refused: someone else's absence unless an admin (403); a missing day, an end before the start,
    an absence wholly in the past, or one overlapping another of the same person (AbsenceError).
    """
    if not may_record_absence(actor, person):
        abort(403)
    if starts_on is None:
        raise AbsenceError(_("Give the first day of the absence."), "starts_on")
    if ends_on is None:
        raise AbsenceError(_("Give the last day of the absence."), "ends_on")
    if ends_on < starts_on:
        raise AbsenceError(_("The last day cannot be before the first day."), "ends_on")
    if ends_on < today_of(person, now):
        raise AbsenceError(
            _("This absence is wholly in the past: the last day must be today or later."), "ends_on"
        )
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise AbsenceError(_("Keep the note to %(num)d characters or fewer.", num=NOTE_MAX), "note")
    overlap = db.session.scalar(
        sa.select(Absence)
        .where(Absence.user_id == person.id, Absence.starts_on <= ends_on, Absence.ends_on >= starts_on)
        .order_by(Absence.starts_on)
        .limit(1)
    )
    if overlap is not None:
        raise AbsenceError(
            _(
                "This overlaps the absence from %(start)s to %(end)s: change that one, or choose other days.",
                start=format_date(overlap.starts_on, "medium"),
                end=format_date(overlap.ends_on, "medium"),
            ),
            "starts_on",
        )
    absence = Absence(
        user_id=person.id,
        starts_on=starts_on,
        ends_on=ends_on,
        note=note,
        created_by_id=actor.id,
        created_at=now,
    )
    db.session.add(absence)
    db.session.flush()
    return absence


def delete_absence(actor: User, absence: Absence, now: datetime) -> None:
    """Remove an absence: one's own, or anyone's for an admin (else 403)."""
    if not may_record_absence(actor, absence.user):
        abort(403)
    db.session.delete(absence)
    db.session.flush()


def span_text(absence: Absence) -> str:
    """The sentence “Name: away from D1 to D2.”, for a confirmation."""
    return _("%(name)s: away from %(start)s to %(end)s.", **_span(absence))


def recorded_text(absence: Absence) -> str:
    """The message after an absence is recorded."""
    return _("The absence of %(name)s from %(start)s to %(end)s is recorded.", **_span(absence))


def _span(absence: Absence) -> dict[str, str]:
    return {
        "name": absence.user.name,
        "start": format_date(absence.starts_on, "medium"),
        "end": format_date(absence.ends_on, "medium"),
    }


# --- what a deputy covers --------------------------------------------------------------------


@dataclass
class Covered:
    """An absent owner and the open actions the viewer covers for them."""

    owner: User
    #: The last day of the owner's absence that covers today.
    away_until: date
    items: list[ActionItem] = field(default_factory=list)


def covered_for(viewer: User, today: date) -> list[Covered]:
    """The open actions of people away today that ``viewer`` covers, grouped by owner; one query.

    The viewer covers an item whose owner is away today when they are its deputy; or, when the
    item has no deputy or its deputy is away too, when they are a focal point of the item's office.
    """
    deputy_absence = aliased(Absence)
    owner_away_until = (
        sa.select(sa.func.max(Absence.ends_on))
        .where(Absence.user_id == ActionItem.owner_id, Absence.starts_on <= today, Absence.ends_on >= today)
        .correlate(ActionItem)
        .scalar_subquery()
    )
    deputy_away = (
        sa.select(deputy_absence.id)
        .where(
            deputy_absence.user_id == ActionItem.deputy_id,
            deputy_absence.starts_on <= today,
            deputy_absence.ends_on >= today,
        )
        .correlate(ActionItem)
        .exists()
    )
    covers = ActionItem.deputy_id == viewer.id
    if viewer.role == Role.FOCAL_POINT.value and viewer.office_id is not None:
        covers = sa.or_(
            covers,
            sa.and_(
                ActionItem.office_id == viewer.office_id,
                sa.or_(ActionItem.deputy_id.is_(None), deputy_away),
            ),
        )
    query = (
        sa.select(ActionItem, owner_away_until.label("away_until"))
        .join(ActionItem.owner)
        .where(
            ActionItem.status.in_([s.value for s in workflow.OPEN]),
            ActionItem.owner_id != viewer.id,
            owner_away_until.is_not(None),
            office_scope_clause(viewer, ActionItem.office_id),
            covers,
        )
        .options(
            contains_eager(ActionItem.owner),
            joinedload(ActionItem.office),
            joinedload(ActionItem.recommendation),
        )
        .order_by(User.name, ActionItem.owner_id, ActionItem.deadline, ActionItem.id)
    )
    groups: dict[int, Covered] = {}
    for item, away_until in db.session.execute(query).unique():
        group = groups.setdefault(item.owner_id, Covered(item.owner, away_until))
        group.items.append(item)
    return list(groups.values())
