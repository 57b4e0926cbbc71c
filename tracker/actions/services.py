"""Action items read for pages: one item, lists, My work, the review queue (changes: commands.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import aliased, joinedload, selectinload

from tracker import params
from tracker.actions import proposals as proposing
from tracker.actions.queries import (
    ActionFilters,
    action_page,
    assigned_clause,
    assigned_filters,
    due_soon_clause,
    overdue_clause,
    visible_actions,
)
from tracker.extensions import db
from tracker.indicators import review as indicator_review
from tracker.indicators.models import Measurement
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    ExtensionRequest,
    ExtensionState,
    HistoryEvent,
    Office,
    Recommendation,
    Status,
    User,
    UTCDateTime,
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


#: My work's filters (``?show=``), in the order the page shows their counts.
MY_WORK_FILTERS = ("overdue", "due_soon", "awaiting", "sent_back")
#: "Due soon" on My work: due today or within this many days (and not overdue).
DUE_SOON_DAYS = 14


def my_actions(user: User, now: datetime, page: int, per_page: int, show: str | None = None) -> Pagination:
    """Open items the user owns or deputises (all open items of their scope for a manager).

    Ordered by deadline, so what is overdue comes first and what is due soon next. ``show`` (one
    of :data:`MY_WORK_FILTERS`) keeps only the items one of :func:`my_work_counts` counts.
    """
    return action_page(user, now, _my_work_filters(user, now, show), page=page, per_page=per_page)


def _reported_by(user: User) -> sa.ColumnElement[bool]:
    """The user reported the item completed at some time (a history row moving it to completed)."""
    reports = sa.select(ActionUpdate.action_item_id).where(
        ActionUpdate.author_id == user.id,
        ActionUpdate.new_status == Status.COMPLETED.value,
        ActionUpdate.old_status.is_distinct_from(Status.COMPLETED.value),
    )
    return ActionItem.id.in_(reports)


def awaiting_clause(user: User) -> sa.ColumnElement[bool]:
    """Completed, awaiting verification, and the user's: owned or deputised (a manager: any in
    scope), or reported completed by the user."""
    return sa.and_(
        ActionItem.status == Status.COMPLETED.value, sa.or_(assigned_clause(user), _reported_by(user))
    )


def sent_back_clause() -> sa.ColumnElement[bool]:
    """In progress because a reviewer sent its completion back, and untouched in status since.

    Precisely: the item is in progress and the latest history row that changed its status (by
    time, then id) is the send-back. Notes, progress, evidence, extension requests and edits keep
    it "sent back"; reporting it completed again, blocking or withdrawing it ends that.
    """
    sent, later = aliased(ActionUpdate), aliased(ActionUpdate)
    status_moved_later = (
        sa.select(later.id)
        .where(
            later.action_item_id == sent.action_item_id,
            later.new_status.is_not(None),
            later.new_status.is_distinct_from(later.old_status),
            sa.or_(
                later.created_at > sent.created_at,
                sa.and_(later.created_at == sent.created_at, later.id > sent.id),
            ),
        )
        .exists()
    )
    send_back = (
        sa.select(sent.id)
        .where(
            sent.action_item_id == ActionItem.id,
            sent.event == HistoryEvent.SENT_BACK.value,
            ~status_moved_later,
        )
        .exists()
    )
    return sa.and_(ActionItem.status == Status.IN_PROGRESS.value, send_back)


def _my_work_filters(user: User, now: datetime, show: str | None) -> ActionFilters:
    """The list My work shows for ``show`` (None or unknown: every open item of the user's)."""
    if show == "overdue":
        return ActionFilters(open_only=True, assigned_to=user, overdue=True)
    if show == "due_soon":
        return ActionFilters(open_only=True, assigned_to=user, where=(due_soon_clause(now, DUE_SOON_DAYS),))
    if show == "awaiting":
        return ActionFilters(status=Status.COMPLETED.value, where=(awaiting_clause(user),))
    if show == "sent_back":
        return ActionFilters(status=Status.IN_PROGRESS.value, assigned_to=user, where=(sent_back_clause(),))
    return assigned_filters(user)


def my_work_counts(user: User, now: datetime) -> dict[str, int]:
    """filter name → how many items My work lists under it (:data:`MY_WORK_FILTERS`); one statement.

    Overdue and due soon (today or within :data:`DUE_SOON_DAYS` days, in the office's zone) are
    open items of the user's; awaiting and sent back as :func:`awaiting_clause` and
    :func:`sent_back_clause` say. The dates are constants (queries.office_days): no per-row date
    arithmetic, so the indexes on action_item serve the counts.
    """
    mine = assigned_clause(user)
    counted = {
        "overdue": sa.and_(mine, overdue_clause(now)),
        "due_soon": sa.and_(mine, due_soon_clause(now, DUE_SOON_DAYS)),
        "awaiting": awaiting_clause(user),
        "sent_back": sa.and_(mine, sent_back_clause()),
    }
    query = (
        sa.select(*(sa.func.count().filter(counted[name]) for name in MY_WORK_FILTERS))
        .select_from(ActionItem)
        .where(office_scope_clause(user, ActionItem.office_id), sa.or_(*counted.values()))
    )
    row = db.session.execute(query).one()
    return {name: int(n or 0) for name, n in zip(MY_WORK_FILTERS, row, strict=True)}


#: The kinds of work in the review queue, in the order the filter offers them (GET value).
QUEUE_KINDS = ("completions", "extensions", "proposals", indicator_review.QUEUE_KIND)


@dataclass(frozen=True)
class QueueFilters:
    """What the review queue is narrowed to; None means every office, recommendation or kind."""

    office_code: str | None = None
    recommendation_code: str | None = None
    kind: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> QueueFilters:
        """The filters of a query string; an unknown kind means every kind, overlong text none."""
        office = (args.get("office") or "").strip().upper()[:20] or None
        recommendation = (args.get("recommendation") or "").strip()[:50] or None
        kind = args.get("kind") if args.get("kind") in QUEUE_KINDS else None
        return cls(office, recommendation, kind)

    def args(self) -> dict[str, str]:
        """The filters as query parameters (for links back to the queue)."""
        values = {"office": self.office_code, "recommendation": self.recommendation_code, "kind": self.kind}
        return {k: v for k, v in values.items() if v}


@dataclass
class QueueEntry:
    """One piece of work in the review queue and since when it waits."""

    kind: str
    #: None for an indicator value (see ``measurement``).
    item: ActionItem | None
    #: When the completion was reported, the extension asked, or the action proposed (UTC).
    since: datetime
    #: Whole days waited, in the reviewer's own time zone (calendar days).
    waiting_days: int = 0
    #: Completions: the history row that reported it. Proposals: the row that proposed it.
    report: ActionUpdate | None = None
    extension: ExtensionRequest | None = None
    #: Indicator values: the value awaiting validation.
    measurement: Measurement | None = None


@dataclass
class ReviewQueue:
    """A page of the queue, with how much of each kind matches the office and recommendation filters."""

    page: Pagination
    counts: dict[str, int]
    #: The kinds this reviewer decides (the filter offers these).
    kinds: list[str]


def _reported_at() -> sa.ColumnElement[datetime]:
    """When the item was last reported completed (not a note added since); its last change if unknown."""
    reported = (
        sa.select(sa.func.max(ActionUpdate.created_at))
        .where(
            ActionUpdate.action_item_id == ActionItem.id,
            ActionUpdate.new_status == Status.COMPLETED.value,
            sa.or_(ActionUpdate.old_status.is_(None), ActionUpdate.old_status != Status.COMPLETED.value),
        )
        .scalar_subquery()
    )
    return sa.func.coalesce(reported, ActionItem.updated_at)


def _queue_selects(user: User, filters: QueueFilters) -> dict[str, sa.Select[Any]]:
    """kind → a select of (kind, entry id, since, item id) for each kind the user decides."""
    where: list[sa.ColumnElement[bool]] = [office_scope_clause(user, ActionItem.office_id)]
    if filters.office_code:
        where.append(ActionItem.office_id.in_(sa.select(Office.id).where(Office.code == filters.office_code)))
    if filters.recommendation_code:
        where.append(
            ActionItem.recommendation_id.in_(
                sa.select(Recommendation.id).where(Recommendation.code == filters.recommendation_code)
            )
        )

    def row(kind: str, entry_id: Any, since: Any) -> list[Any]:
        return [
            sa.literal(kind, sa.String).label("kind"),
            entry_id.label("entry_id"),
            sa.type_coerce(since, UTCDateTime).label("since"),
            ActionItem.id.label("item_id"),
        ]

    selects: dict[str, sa.Select[Any]] = {}
    if can(user, Perm.VERIFY_ACTION):
        selects["completions"] = sa.select(*row("completions", ActionItem.id, _reported_at())).where(
            ActionItem.status == Status.COMPLETED.value, *where
        )
    if can(user, Perm.DECIDE_EXTENSION):
        selects["extensions"] = (
            sa.select(*row("extensions", ExtensionRequest.id, ExtensionRequest.requested_at))
            .join(ExtensionRequest.action_item)
            .where(ExtensionRequest.state == ExtensionState.PENDING.value, *where)
        )
    if can(user, Perm.DECIDE_PROPOSAL):
        selects["proposals"] = sa.select(*row("proposals", ActionItem.id, ActionItem.created_at)).where(
            ActionItem.status == Status.PROPOSED.value, *where
        )
    values = indicator_review.queue_select(user, filters.office_code, filters.recommendation_code)
    if values is not None:
        selects[indicator_review.QUEUE_KIND] = values
    return selects


def review_queue(user: User, now: datetime, filters: QueueFilters, page: int, per_page: int) -> ReviewQueue:
    """The work awaiting this reviewer, the longest waiting first, one page of it.

    Completions awaiting verification (since reported), extension requests (since asked) and
    proposed actions (since proposed), each kind only for those who decide it, in the offices
    they see. A bounded number of statements whatever the queue's length: one count by kind,
    one page of (kind, id, since), then the page's items, reports, extensions and proposers.
    """
    selects = _queue_selects(user, filters)
    counts = dict.fromkeys(selects, 0)
    if selects:
        everything = sa.union_all(*selects.values()).subquery()
        found = db.session.execute(sa.select(everything.c.kind, sa.func.count()).group_by(everything.c.kind))
        counts.update({kind: int(number) for kind, number in found})
    shown = [kind for kind in selects if filters.kind in (None, kind)]

    def fetch(offset: int, limit: int) -> list[QueueEntry]:
        chosen = sa.union_all(*(selects[kind] for kind in shown)).subquery()
        rows = db.session.execute(
            sa.select(chosen)
            .order_by(chosen.c.since, chosen.c.kind, chosen.c.entry_id)
            .offset(offset)
            .limit(limit)
        ).all()
        return _queue_entries(user, now, rows)

    result = params.counted_page(
        lambda: sum(counts[kind] for kind in shown), fetch, page=page, per_page=per_page
    )
    return ReviewQueue(page=result, counts=counts, kinds=list(selects))


def _queue_entries(user: User, now: datetime, rows: list[Any]) -> list[QueueEntry]:
    """The entries of a page of queue rows, everything a row shows loaded in four or five statements."""
    if not rows:
        return []
    item_ids = sorted({r.item_id for r in rows if r.item_id is not None})
    items = {
        item.id: item
        for item in db.session.scalars(
            sa.select(ActionItem)
            .where(ActionItem.id.in_(item_ids))
            .options(
                joinedload(ActionItem.office),
                joinedload(ActionItem.recommendation),
                joinedload(ActionItem.owner),
                joinedload(ActionItem.deputy),
            )
        ).unique()
    }
    extension_ids = [r.entry_id for r in rows if r.kind == "extensions"]
    extensions = (
        {
            e.id: e
            for e in db.session.scalars(
                sa.select(ExtensionRequest)
                .where(ExtensionRequest.id.in_(extension_ids))
                .options(joinedload(ExtensionRequest.requested_by))
            )
        }
        if extension_ids
        else {}
    )
    completed = [r.item_id for r in rows if r.kind == "completions"]
    reports = completion_reports(completed) if completed else {}
    proposed = [r.item_id for r in rows if r.kind == "proposals"]
    proposals = proposing.proposers(proposed)
    measurements = indicator_review.queue_measurements(
        r.entry_id for r in rows if r.kind == indicator_review.QUEUE_KIND
    )
    today = now.astimezone(user.zone).date()
    entries = []
    for r in rows:
        entry = QueueEntry(kind=r.kind, item=items.get(r.item_id), since=r.since)
        entry.waiting_days = max(0, (today - r.since.astimezone(user.zone).date()).days)
        if r.kind == "completions":
            entry.report = reports.get(r.item_id)
        elif r.kind == "proposals":
            entry.report = proposals.get(r.item_id)
        elif r.kind == indicator_review.QUEUE_KIND:
            entry.measurement = measurements[r.entry_id]
        else:
            entry.extension = extensions[r.entry_id]
        entries.append(entry)
    return entries


def queue_recommendations() -> list[tuple[str, str]]:
    """(code, title) of every recommendation, by code: the queue's recommendation filter."""
    query = sa.select(Recommendation.code, Recommendation.title).order_by(Recommendation.code)
    return [(code, title) for code, title in db.session.execute(query)]


def verifiable(user: User, item_ids: list[int]) -> list[ActionItem]:
    """The items among ``item_ids`` that the user may see and verify, in the given order (one query).

    Those no longer awaiting verification are included (the confirmation page says so).
    """
    if not item_ids:
        return []
    found = {
        item.id: item
        for item in db.session.scalars(visible_actions(user).where(ActionItem.id.in_(item_ids))).unique()
        if can(user, Perm.VERIFY_ACTION, item)
    }
    return [found[i] for i in dict.fromkeys(item_ids) if i in found]


def completion_reports(item_ids: list[int]) -> dict[int, ActionUpdate]:
    """item id → the history entry that reported it completed most recently (one query)."""
    latest = (
        sa.select(sa.func.max(ActionUpdate.id))
        .where(
            ActionUpdate.action_item_id.in_(item_ids),
            ActionUpdate.new_status == Status.COMPLETED.value,
            # A note or evidence added while it awaits verification is not the report.
            sa.or_(ActionUpdate.old_status.is_(None), ActionUpdate.old_status != Status.COMPLETED.value),
        )
        .group_by(ActionUpdate.action_item_id)
    )
    updates = db.session.scalars(
        sa.select(ActionUpdate)
        .where(ActionUpdate.id.in_(latest))
        .options(joinedload(ActionUpdate.author), selectinload(ActionUpdate.files))
    )
    return {u.action_item_id: u for u in updates}
