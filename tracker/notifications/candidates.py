"""What compose reads: the people, the offices, the candidate items as light rows, the review list,
and, for the items the mails list, the items in full.

The rules judge every candidate from a few columns (``rules.Item``); loading tens of thousands of
ORM objects with their office, recommendation and owner took most of a reminder run at 120,000
actions. Only the items a mail lists (at most ``LIST_LIMIT`` a mail) are loaded in full, in
batches of ids (``tracker.batches``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import aliased, contains_eager, joinedload

from tracker.batches import chunks, size
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    ActionUpdate,
    Escalation,
    ExtensionRequest,
    ExtensionState,
    ItemNotice,
    Office,
    Recommendation,
    Status,
    User,
)
from tracker.notifications.rules import NOTICE_OVERDUE, NOTICE_STALE, Facts, Item

if TYPE_CHECKING:
    from tracker.notifications.compose import Settings

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


def active_users() -> dict[int, User]:
    """Every active user by id, with their office."""
    query = sa.select(User).where(User.active).options(joinedload(User.office)).order_by(User.id)
    return {user.id: user for user in db.session.scalars(query)}


def offices_by_id() -> dict[int, Office]:
    """Every office by id (a dozen or so: each candidate item points to its own)."""
    return {office.id: office for office in db.session.scalars(sa.select(Office))}


#: The columns of ``rules.Item``, in its order after the office.
ITEM_COLUMNS = (
    ActionItem.id,
    ActionItem.office_id,
    ActionItem.owner_id,
    ActionItem.deputy_id,
    ActionItem.deadline,
    ActionItem.status,
    ActionItem.updated_at,
)


def item_of(row: sa.Row, offices: dict[int, tuple[Office, int, ZoneInfo]]) -> Item:
    """A ``rules.Item`` from the first columns of a row selected with :data:`ITEM_COLUMNS`."""
    return Item(row[0], *offices[row[1]], *row[2 : len(ITEM_COLUMNS)])


def office_keys(offices: dict[int, Office]) -> dict[int, tuple[Office, int, ZoneInfo]]:
    """Each office with its id and zone, as items carry them."""
    return {key: (office, key, ZoneInfo(office.timezone)) for key, office in offices.items()}


def candidate_items(
    reference: datetime, settings: Settings, offices: dict[int, Office]
) -> list[tuple[Item, Facts]]:
    """Open items that may need a reminder at any morning up to ``reference``, with their facts.

    A superset, filtered in SQL on plain values the (status, deadline) index serves: due within the
    largest due-soon distance or overdue at the easternmost office's date (UTC+14) at
    ``reference``, or not updated for about the stale period; the rules then judge each item in
    its own office's calendar. Light rows with the notices given; the escalation rungs already
    reported in one more query.
    """
    furthest = max((0, *settings.due_soon_days))
    latest_deadline = (reference + timedelta(hours=14)).date() + timedelta(days=furthest)
    stale_from = reference - timedelta(days=max(settings.stale_days - 2, 0))  # margin for zones/DST
    overdue_notice = aliased(ItemNotice)
    stale_notice = (
        sa.select(ItemNotice.action_item_id.label("item_id"), sa.func.max(ItemNotice.period).label("period"))
        .where(ItemNotice.kind == NOTICE_STALE)
        .group_by(ItemNotice.action_item_id)
        .subquery()
    )
    query = (
        sa.select(*ITEM_COLUMNS, overdue_notice.id, stale_notice.c.period)
        .join(ActionItem.recommendation)
        .outerjoin(
            overdue_notice,
            sa.and_(
                overdue_notice.action_item_id == ActionItem.id,
                overdue_notice.kind == NOTICE_OVERDUE,
                overdue_notice.period == ActionItem.deadline,
            ),
        )
        .outerjoin(stale_notice, stale_notice.c.item_id == ActionItem.id)
        .where(
            ActionItem.status.not_in(_CLOSED),
            Recommendation.archived_at.is_(None),
            sa.or_(ActionItem.deadline <= latest_deadline, ActionItem.updated_at < stale_from),
        )
        .order_by(ActionItem.id)
    )
    rows = db.session.execute(query).all()
    escalated: dict[int, set[int]] = {}
    if rows:
        levels = sa.select(Escalation.action_item_id, Escalation.level).join(
            ActionItem, ActionItem.id == Escalation.action_item_id
        )
        for item_id, level in db.session.execute(levels.where(ActionItem.status.not_in(_CLOSED))):
            escalated.setdefault(item_id, set()).add(level)
    width = len(ITEM_COLUMNS)
    keys = office_keys(offices)
    # Few distinct facts among tens of thousands of items: one object for each.
    facts: dict[tuple[bool, date | None, frozenset[int]], Facts] = {}
    found = []
    for row in rows:
        key = (row[width] is not None, row[width + 1], frozenset(escalated.get(row[0], ())))
        known = facts.get(key)
        if known is None:
            known = facts[key] = Facts(overdue_noticed=key[0], stale_period=key[1], escalated=key[2])
        found.append((item_of(row, keys), known))
    return found


#: What waits for a reviewer's decision as an item's status: a completion, or an office's proposal.
_AWAITING_REVIEW = (Status.COMPLETED.value, Status.PROPOSED.value)


def review_queue(offices: dict[int, Office]) -> list[tuple[Item, datetime | None]]:
    """Items reported completed or proposed, with when (the latest such row in history), the longest
    waiting first."""
    reported = (
        sa.select(
            ActionUpdate.action_item_id.label("item_id"),
            sa.func.max(ActionUpdate.created_at).label("reported_at"),
        )
        .where(ActionUpdate.new_status.in_(_AWAITING_REVIEW))
        .group_by(ActionUpdate.action_item_id)
        .subquery()
    )
    query = (
        sa.select(*ITEM_COLUMNS, reported.c.reported_at)
        .join(ActionItem.recommendation)
        .outerjoin(reported, reported.c.item_id == ActionItem.id)
        .where(ActionItem.status.in_(_AWAITING_REVIEW))
        .order_by(sa.func.coalesce(reported.c.reported_at, ActionItem.updated_at), ActionItem.id)
    )
    keys = office_keys(offices)
    return [(item_of(row, keys), row[-1]) for row in db.session.execute(query)]


def pending_extensions() -> list[ExtensionRequest]:
    """Extension requests waiting for a reviewer, the oldest first, with their action and requester."""
    query = (
        sa.select(ExtensionRequest)
        .join(ExtensionRequest.action_item)
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .where(ExtensionRequest.state == ExtensionState.PENDING.value)
        .options(
            contains_eager(ExtensionRequest.action_item).contains_eager(ActionItem.office),
            contains_eager(ExtensionRequest.action_item).contains_eager(ActionItem.recommendation),
            joinedload(ExtensionRequest.requested_by),
        )
        .order_by(ExtensionRequest.requested_at, ExtensionRequest.id)
    )
    return list(db.session.scalars(query).unique())


class Named(NamedTuple):
    """The owner of a listed item, as a mail names them (a link filters by the email)."""

    name: str
    email: str


class Recommended(NamedTuple):
    """The recommendation of a listed item, as a mail shows it."""

    code: str
    title: str


class Listed(NamedTuple):
    """A listed item with what the mail templates read of it, under ActionItem's names."""

    id: int
    title: str
    office: Office
    office_id: int
    recommendation: Recommended
    owner_id: int | None
    owner: Named | None
    status: str
    progress: int
    deadline: date


@dataclass(frozen=True)
class Details:
    """A listed item, with its approved extensions and its latest history entry."""

    item: Listed
    extensions: int
    last_update_at: datetime | None
    last_note: str | None


def details(ids: set[int], histories: set[int], offices: dict[int, Office]) -> dict[int, Details]:
    """The items the mails list, with recommendation and owner, per batch of ids; for those in
    ``histories`` (an escalation's lines) also the approved extensions and the last update.

    Plain columns rather than ORM objects: a run lists thousands of items.
    """
    owner = aliased(User)
    query = (
        sa.select(
            ActionItem.id,
            ActionItem.title,
            ActionItem.office_id,
            Recommendation.code,
            Recommendation.title,
            ActionItem.owner_id,
            owner.name,
            owner.email,
            ActionItem.status,
            ActionItem.progress,
            ActionItem.deadline,
        )
        .join(ActionItem.recommendation)
        .outerjoin(owner, ActionItem.owner_id == owner.id)
    )
    items: dict[int, Listed] = {}
    for chunk in chunks(sorted(ids), size()):
        for row in db.session.execute(query.where(ActionItem.id.in_(chunk))):
            item_id, title, office_id, code, rec_title, owner_id, name, email, *rest = row
            owned = Named(name, email) if owner_id is not None else None
            office = offices[office_id]
            items[item_id] = Listed(
                item_id, title, office, office_id, Recommended(code, rec_title), owner_id, owned, *rest
            )
    extensions: dict[int, int] = {}
    last: dict[int, tuple[datetime, str | None]] = {}
    for chunk in chunks(sorted(histories & ids), size()):
        approved = (
            sa.select(ExtensionRequest.action_item_id, sa.func.count(ExtensionRequest.id))
            .where(
                ExtensionRequest.action_item_id.in_(chunk),
                ExtensionRequest.state == ExtensionState.APPROVED.value,
            )
            .group_by(ExtensionRequest.action_item_id)
        )
        extensions.update((item_id, n) for item_id, n in db.session.execute(approved))
        latest = (
            sa.select(
                ActionUpdate.action_item_id.label("item_id"), sa.func.max(ActionUpdate.created_at).label("at")
            )
            .where(ActionUpdate.action_item_id.in_(chunk))
            .group_by(ActionUpdate.action_item_id)
            .subquery()
        )
        entries = (
            sa.select(ActionUpdate.action_item_id, ActionUpdate.created_at, ActionUpdate.note)
            .join(latest, latest.c.item_id == ActionUpdate.action_item_id)
            .where(ActionUpdate.created_at == latest.c.at)
            .order_by(ActionUpdate.id)  # of two entries at the same moment, the later one wins
        )
        for item_id, at, note in db.session.execute(entries):
            last[item_id] = (at, note)
    return {
        item_id: Details(item, extensions.get(item_id, 0), *last.get(item_id, (None, None)))
        for item_id, item in items.items()
    }
