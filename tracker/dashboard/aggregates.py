"""The programme's figures in a few grouped passes that do not grow with the data.

Every scope and filter of the dashboard and the reports is a selection of (recommendation, office)
pairs, so the programme is aggregated once per (recommendation, office, status) — at most
recommendations × offices × 6 rows however many actions there are — and services.py derives any
scope's totals, progress, matrix and completions from those rows in Python. The results are plain
data (no ORM object), cached by data version and local dates (see cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from tracker.actions.queries import due_soon_on, overdue_on
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    DONE_STATUSES,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    ExtensionState,
    Office,
    Recommendation,
)

#: Days ahead in which an open item counts as due soon (the first reminder goes out as far ahead).
DUE_SOON_DAYS = 14
#: Quarters shown in the completion chart, the current one included.
QUARTERS_SHOWN = 8

_CLOSED = frozenset(s.value for s in CLOSED_STATUSES)


@dataclass(frozen=True)
class OfficeInfo:
    """What the dashboard shows of an office."""

    id: int
    code: str
    name: str
    country: str
    timezone: str
    active: bool

    def today(self, now: datetime) -> date:
        """The date it is in this office at the moment ``now``."""
        return now.astimezone(ZoneInfo(self.timezone)).date()


@dataclass(frozen=True)
class RecommendationInfo:
    """What the dashboard shows of a recommendation (not archived), and what its filters read."""

    id: int
    code: str
    title: str
    source_id: int
    theme: str


@dataclass(frozen=True)
class Catalogue:
    """Every office (by code), the recommendations not archived (by code) and their themes."""

    offices: tuple[OfficeInfo, ...]
    recommendations: tuple[RecommendationInfo, ...]
    themes: tuple[str, ...]


@dataclass(frozen=True)
class Dates:
    """The dates the figures depend on: each office's today, and the UTC date (for quarters)."""

    utc: date
    by_office: tuple[tuple[int, date], ...]

    @property
    def office_today(self) -> dict[int, date]:
        """Office id → its local date."""
        return dict(self.by_office)


@dataclass(frozen=True)
class Group:
    """The items of one (recommendation, office, status); overdue and due soon are 0 when closed."""

    recommendation_id: int
    office_id: int
    status: str
    count: int
    overdue: int
    due_soon: int
    #: Sum of the items' progress (0–100 each).
    progress: int
    #: Days by which current deadlines lie past the agreed ones, summed over the items.
    days_slipped: int


@dataclass(frozen=True)
class Programme:
    """The whole programme's aggregates at one data version and one set of dates."""

    groups: tuple[Group, ...]
    #: (recommendation id, office id) → extension requests approved.
    extensions: dict[tuple[int, int], int]
    #: (recommendation id, office id, year, quarter) → items first completed then (window only).
    completions: dict[tuple[int, int, int, int], int]
    quarters: tuple[tuple[int, int], ...]


def load_catalogue() -> Catalogue:
    """Offices, recommendations not archived and their themes: three small statements."""
    offices = db.session.execute(
        sa.select(
            Office.id, Office.code, Office.name, Office.country, Office.timezone, Office.active
        ).order_by(Office.code)
    ).all()
    recommendations = db.session.execute(
        sa.select(
            Recommendation.id,
            Recommendation.code,
            Recommendation.title,
            Recommendation.source_id,
            Recommendation.theme,
        )
        .where(Recommendation.archived_at.is_(None))
        .order_by(Recommendation.code)
    ).all()
    themes = db.session.scalars(
        sa.select(Recommendation.theme)
        .where(Recommendation.archived_at.is_(None))
        .distinct()
        .order_by(Recommendation.theme)
    ).all()
    return Catalogue(
        offices=tuple(OfficeInfo(*row) for row in offices),
        recommendations=tuple(RecommendationInfo(*row) for row in recommendations),
        themes=tuple(themes),
    )


def dates_at(now: datetime, offices: tuple[OfficeInfo, ...]) -> Dates:
    """Each office's date at ``now`` (a new day anywhere changes what is overdue) and the UTC date."""
    zones = {zone: now.astimezone(ZoneInfo(zone)).date() for zone in {o.timezone for o in offices}}
    return Dates(utc=now.astimezone(UTC).date(), by_office=tuple((o.id, zones[o.timezone]) for o in offices))


def days_between(later: Any, earlier: Any) -> sa.ColumnElement[int]:
    """SQL for the whole days from date ``earlier`` to date ``later`` (PostgreSQL and SQLite)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return later - earlier  # date - date is an integer of days
    return sa.cast(sa.func.julianday(later) - sa.func.julianday(earlier), sa.Integer)


def offices_on(dates: Dates) -> dict[date, list[int]]:
    """The offices by their local date (date → office ids), as the action queries take them."""
    days: dict[date, list[int]] = {}
    for office, today in dates.by_office:
        days.setdefault(today, []).append(office)
    return days


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    # COUNT skips NULLs: a CASE without ELSE counts the rows that meet the condition (0 if none).
    return sa.func.count(sa.case((condition, 1)))


def _not_archived(query: sa.Select) -> sa.Select:
    return query.join(Recommendation, Recommendation.id == ActionItem.recommendation_id).where(
        Recommendation.archived_at.is_(None)
    )


def load_programme(dates: Dates) -> Programme:
    """The programme's aggregates at ``dates``: three grouped statements over every item."""
    days = offices_on(dates)
    slipped = ActionItem.deadline > ActionItem.agreed_deadline
    rows = db.session.execute(
        _not_archived(
            sa.select(
                ActionItem.recommendation_id,
                ActionItem.office_id,
                ActionItem.status,
                sa.func.count(),
                # The one definition of overdue and due soon (tracker.actions.queries).
                _count_if(overdue_on(days)),
                _count_if(due_soon_on(days, DUE_SOON_DAYS)),
                sa.func.sum(ActionItem.progress),
                sa.func.sum(
                    sa.case((slipped, days_between(ActionItem.deadline, ActionItem.agreed_deadline)))
                ),
            )
        ).group_by(ActionItem.recommendation_id, ActionItem.office_id, ActionItem.status)
    ).all()
    groups = tuple(
        Group(
            recommendation_id=rec,
            office_id=office,
            status=status,
            count=count,
            overdue=0 if status in _CLOSED else late,
            due_soon=0 if status in _CLOSED else soon,
            progress=int(progress or 0),
            days_slipped=int(days or 0),
        )
        for rec, office, status, count, late, soon, progress, days in rows
    )
    extensions = db.session.execute(
        _not_archived(
            sa.select(
                ActionItem.recommendation_id, ActionItem.office_id, sa.func.count(ExtensionRequest.id)
            ).join(ExtensionRequest, ExtensionRequest.action_item_id == ActionItem.id)
        )
        .where(ExtensionRequest.state == ExtensionState.APPROVED.value)
        .group_by(ActionItem.recommendation_id, ActionItem.office_id)
    ).all()
    quarters = last_quarters(dates.utc)
    return Programme(
        groups=groups,
        extensions={(rec, office): n for rec, office, n in extensions},
        completions=_completions(quarters),
        quarters=tuple(quarters),
    )


def last_quarters(today: date, count: int = QUARTERS_SHOWN) -> list[tuple[int, int]]:
    """The ``count`` calendar quarters up to the one of ``today`` (a UTC date), oldest first."""
    index = today.year * 4 + (today.month - 1) // 3
    return [(i // 4, i % 4 + 1) for i in range(index - count + 1, index + 1)]


def _completions(quarters: list[tuple[int, int]]) -> dict[tuple[int, int, int, int], int]:
    """Items first completed (or verified) per (recommendation, office, quarter) within the window.

    Counted from the history: each item once, in the quarter (UTC) of its first update to
    ``completed`` or ``verified``; an item sent back and completed again is not counted twice, and
    an item whose first completion is older than the window is not counted at all.
    """
    first_year, first_quarter = quarters[0]
    window_start = datetime(first_year, 3 * first_quarter - 2, 1, tzinfo=UTC)
    first_done = (
        sa.select(ActionUpdate.action_item_id, sa.func.min(ActionUpdate.created_at).label("done_at"))
        .where(ActionUpdate.new_status.in_(DONE_STATUSES))
        .group_by(ActionUpdate.action_item_id)
        .subquery()
    )
    year = sa.extract("year", first_done.c.done_at)
    month = sa.extract("month", first_done.c.done_at)
    rows = db.session.execute(
        _not_archived(
            sa.select(ActionItem.recommendation_id, ActionItem.office_id, year, month, sa.func.count())
            .select_from(first_done)
            .join(ActionItem, ActionItem.id == first_done.c.action_item_id)
        )
        .where(first_done.c.done_at >= window_start)
        .group_by(ActionItem.recommendation_id, ActionItem.office_id, year, month)
    ).all()
    shown = set(quarters)
    counts: dict[tuple[int, int, int, int], int] = {}
    for rec, office, row_year, row_month, n in rows:  # at most three months per quarter
        quarter = (int(row_year), (int(row_month) - 1) // 3 + 1)
        if quarter in shown:
            key = (rec, office, *quarter)
            counts[key] = counts.get(key, 0) + n
    return counts
