"""The quarterly digest's figures: where each office stood at a quarter's end, reconstructed from history.

An item's status at a moment is the ``new_status`` of its last history entry (``ActionUpdate``)
written before that moment; an item created after the moment does not count. Quarters are calendar
quarters in UTC, like the dashboard's chart. Every figure comes from a grouped or windowed SQL
query over all offices at once, so the number of statements depends neither on the number of items
nor on the number of managers; each manager's digest is then a slice of those figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import contains_eager

from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    DONE_STATUSES,
    UNCOUNTED_STATUSES,
    ActionItem,
    ActionUpdate,
    Office,
    Recommendation,
    Status,
    User,
    completion_rate,
)
from tracker.notifications.digest_indicators import IndicatorFigures, IndicatorSection, indicator_figures
from tracker.permissions import Perm, can
from tracker.quarters import Quarter

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)
#: Rows shown per list in one digest; the rest is summed up with a link to the actions page.
LIST_LIMIT = 50


@dataclass(frozen=True)
class OfficeFigures:
    """One office at the quarter's end: items by status and the completion rate, now and before."""

    #: None for the line that adds up several offices.
    office: Office | None
    by_status: dict[str, int]
    #: The same counts at the end of the previous quarter.
    previous_by_status: dict[str, int]

    @property
    def total(self) -> int:
        """Items that existed at the quarter's end."""
        return sum(self.by_status.values())

    @property
    def rate(self) -> float | None:
        """Completed or verified share (0–1) of the items not cancelled at the quarter's end."""
        return _rate(self.by_status)

    @property
    def previous_rate(self) -> float | None:
        """The same share at the end of the previous quarter."""
        return _rate(self.previous_by_status)

    @property
    def change_points(self) -> float | None:
        """Change of the completion rate since the previous quarter, in percentage points."""
        if self.rate is None or self.previous_rate is None:
            return None
        return round((self.rate - self.previous_rate) * 100, 1)


def _rate(by_status: dict[str, int]) -> float | None:
    counted = sum(n for s, n in by_status.items() if s not in UNCOUNTED_STATUSES)
    done = sum(by_status.get(s, 0) for s in DONE_STATUSES)
    return completion_rate(done, counted)


@dataclass(frozen=True)
class Entry:
    """An item in one of the digest's lists, with the date that put it there."""

    item: ActionItem
    on: date
    #: Completions: completed or verified; became overdue: the status at the quarter's end.
    status: str | None = None


@dataclass(frozen=True)
class Figures:
    """Every office's figures and lists for one quarter; :meth:`for_user` slices them."""

    quarter: Quarter
    offices: list[OfficeFigures]
    completed: list[Entry]
    became_overdue: list[Entry]
    due_next: list[Entry]
    indicators: IndicatorFigures | None = None

    def for_user(self, user: User) -> Digest | None:
        """The digest of what ``user`` may see; None when no action in it concerns their scope."""
        offices = [f for f in self.offices if can(user, Perm.VIEW_OFFICE, f.office)]
        lists = [
            [e for e in entries if can(user, Perm.VIEW_ACTION, e.item)]
            for entries in (self.completed, self.became_overdue, self.due_next)
        ]
        if not offices and not any(lists):
            return None
        sections = self.indicators.for_user(user) if self.indicators else []
        return Digest(self.quarter, offices, *lists, indicators=sections)


@dataclass(frozen=True)
class Digest:
    """What one manager's digest shows."""

    quarter: Quarter
    offices: list[OfficeFigures]
    completed: list[Entry]
    became_overdue: list[Entry]
    due_next: list[Entry]
    #: The indicators of the manager's scope (see digest_indicators.py).
    indicators: list[IndicatorSection] = field(default_factory=list)

    @property
    def totals(self) -> OfficeFigures | None:
        """The offices added up, when there are several."""
        if len(self.offices) < 2:
            return None
        statuses = [s.value for s in Status]
        return OfficeFigures(
            office=None,
            by_status={s: sum(f.by_status[s] for f in self.offices) for s in statuses},
            previous_by_status={s: sum(f.previous_by_status[s] for f in self.offices) for s in statuses},
        )

    @property
    def item_count(self) -> int:
        """Items listed or counted, for the dry-run summary."""
        return sum(f.total for f in self.offices)


def _latest_status(moment: datetime) -> sa.Subquery:
    """Per item, its history entries that set a status before ``moment``, the latest ranked 1."""
    return (
        sa.select(
            ActionUpdate.action_item_id.label("item_id"),
            ActionUpdate.new_status.label("status"),
            sa.func.row_number()
            .over(
                partition_by=ActionUpdate.action_item_id,
                order_by=(ActionUpdate.created_at.desc(), ActionUpdate.id.desc()),
            )
            .label("rank"),
        )
        .where(ActionUpdate.new_status.is_not(None), ActionUpdate.created_at < moment)
        .subquery()
    )


def _status_at(moment: datetime) -> tuple[sa.Subquery, sa.ColumnElement[bool]]:
    ranked = _latest_status(moment)
    return ranked, sa.and_(ranked.c.item_id == ActionItem.id, ranked.c.rank == 1)


def status_counts_at(moment: datetime) -> dict[int, dict[str, int]]:
    """office id → status → items at ``moment`` (from history), in one grouped query.

    Items created after ``moment`` are left out; an item without a status in its history before
    ``moment`` counts as not started. Items of archived recommendations are left out (as on the
    dashboard).
    """
    ranked, latest = _status_at(moment)
    rows = db.session.execute(
        sa.select(ActionItem.office_id, ranked.c.status, sa.func.count())
        .select_from(ActionItem)
        .join(ActionItem.recommendation)
        .outerjoin(ranked, latest)
        .where(ActionItem.created_at < moment, Recommendation.archived_at.is_(None))
        .group_by(ActionItem.office_id, ranked.c.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for office_id, status, n in rows:
        by_status = counts.setdefault(office_id, {s.value: 0 for s in Status})
        by_status[status or Status.NOT_STARTED.value] += n
    return counts


def _items(query: sa.Select) -> sa.Select:
    """Join what the lists show (office, recommendation) and leave archived recommendations out."""
    return (
        query.join(ActionItem.office)
        .join(ActionItem.recommendation)
        .where(Recommendation.archived_at.is_(None))
        .options(contains_eager(ActionItem.office), contains_eager(ActionItem.recommendation))
    )


def completed_in(quarter: Quarter) -> list[Entry]:
    """Items reported completed or verified during the quarter (from history), the latest such date.

    Each item once; it is marked verified if it was verified during the quarter.
    """
    done = (
        sa.select(
            ActionUpdate.action_item_id.label("item_id"),
            sa.func.max(ActionUpdate.created_at).label("done_at"),
            sa.func.max(sa.case((ActionUpdate.new_status == Status.VERIFIED.value, 1), else_=0)).label(
                "verified"
            ),
        )
        .where(
            ActionUpdate.new_status.in_(DONE_STATUSES),
            ActionUpdate.created_at >= quarter.starts_at,
            ActionUpdate.created_at < quarter.ends_at,
        )
        .group_by(ActionUpdate.action_item_id)
        .subquery()
    )
    rows = db.session.execute(
        _items(
            sa.select(ActionItem, done.c.done_at, done.c.verified).join(done, done.c.item_id == ActionItem.id)
        )
    )
    entries = [
        Entry(item, at.date(), Status.VERIFIED.value if verified else Status.COMPLETED.value)
        for item, at, verified in rows
    ]
    return sorted(entries, key=lambda e: (e.item.office.code, e.on, e.item.id))


def became_overdue_in(quarter: Quarter) -> list[Entry]:
    """Items that became overdue during the quarter and were still not done at its end.

    "Became overdue during the quarter": the first overdue day (the day after the deadline) falls
    within the quarter, i.e. the current deadline is between the day before the quarter and its
    second-to-last day. "Not done": status at the quarter's end (from history) not completed,
    verified or cancelled. ``on`` is the first overdue day, ``status`` the one at the quarter's end.
    """
    ranked, latest = _status_at(quarter.ends_at)
    status = sa.func.coalesce(ranked.c.status, Status.NOT_STARTED.value)
    query = _items(sa.select(ActionItem, status).outerjoin(ranked, latest)).where(
        ActionItem.created_at < quarter.ends_at,
        ActionItem.deadline >= quarter.first_day - timedelta(days=1),
        ActionItem.deadline <= quarter.last_day - timedelta(days=1),
        status.not_in(_CLOSED),
    )
    rows = db.session.execute(query.order_by(Office.code, ActionItem.deadline, ActionItem.id))
    return [Entry(item, item.deadline + timedelta(days=1), status_then) for item, status_then in rows]


def due_in(quarter: Quarter) -> list[Entry]:
    """Items open now whose deadline falls within the quarter (the next one, for a digest)."""
    query = _items(sa.select(ActionItem)).where(
        ActionItem.status.not_in(_CLOSED),
        ActionItem.deadline >= quarter.first_day,
        ActionItem.deadline <= quarter.last_day,
    )
    items = db.session.scalars(query.order_by(Office.code, ActionItem.deadline, ActionItem.id))
    return [Entry(item, item.deadline) for item in items]


def build_figures(quarter: Quarter, offices: list[Office]) -> Figures:
    """Every office's figures and lists for ``quarter``: eight queries, whatever the data's size.

    ``offices`` are all the offices (loaded by the caller); those without an item at the quarter's
    end are left out of the table.
    """
    at_end = status_counts_at(quarter.ends_at)
    at_previous_end = status_counts_at(quarter.previous.ends_at)
    empty = {s.value: 0 for s in Status}
    figures = [
        OfficeFigures(office, at_end[office.id], at_previous_end.get(office.id, empty))
        for office in sorted(offices, key=lambda o: o.code)
        if office.id in at_end
    ]
    return Figures(
        quarter=quarter,
        offices=figures,
        completed=completed_in(quarter),
        became_overdue=became_overdue_in(quarter),
        due_next=due_in(quarter.next),
        indicators=indicator_figures(quarter, offices),
    )
