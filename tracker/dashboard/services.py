"""The dashboard's figures, each computed by a grouped SQL query within the user's scope.

Every query runs over the action items the user may see (``office_scope_clause``), of recommendations
that are not archived, narrowed by the filters (source, theme, office). The number of statements
does not depend on the number of items: Python only reshapes the aggregated rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from tracker.actions.queries import due_soon_clause, overdue_clause
from tracker.actions.services import visible_offices
from tracker.extensions import db
from tracker.models import (
    DONE_STATUSES,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    ExtensionState,
    Office,
    Recommendation,
    Source,
    Status,
    User,
    completion_rate,
)
from tracker.permissions import office_scope_clause

#: Days ahead in which an open item counts as due soon (the first reminder goes out as far ahead).
DUE_SOON_DAYS = 14
#: Rows in the overdue list; the actions page lists them all.
OVERDUE_LIST_SIZE = 20
#: Quarters shown in the completion chart, the current one included.
QUARTERS_SHOWN = 8

#: Matrix cells take the colour and label of the most severe status they hold, most severe first.
#: An overdue item outranks all of these: such a cell is marked overdue whatever its statuses.
SEVERITY = (
    Status.BLOCKED,
    Status.NOT_STARTED,
    Status.IN_PROGRESS,
    Status.COMPLETED,
    Status.VERIFIED,
    Status.CANCELLED,
)


@dataclass(frozen=True)
class Filters:
    """What the dashboard is narrowed to; None means no restriction."""

    source_id: int | None = None
    theme: str | None = None
    office_code: str | None = None


@dataclass(frozen=True)
class Choices:
    """The values the filter form offers."""

    sources: list[Source]
    themes: list[str]
    offices: list[Office]


@dataclass(frozen=True)
class Totals:
    """Item counts by status, and how many are overdue or due soon."""

    by_status: dict[str, int]
    overdue: int
    due_soon: int

    @property
    def total(self) -> int:
        """Every item, whatever its status."""
        return sum(self.by_status.values())


@dataclass(frozen=True)
class OfficeProgress:
    """One office's items: how many, how far along, how many done."""

    office: Office
    items: int = 0
    #: Items not cancelled: the base of the average and of the completion rate.
    counted: int = 0
    #: Completed or verified.
    done: int = 0
    overdue: int = 0
    #: Mean progress (0–100) of the items not cancelled; None without such items.
    average_progress: float | None = None
    #: Extension requests approved for the office's items.
    extensions_granted: int = 0
    #: Days by which current deadlines lie past the agreed ones, summed over the items.
    days_slipped: int = 0

    @property
    def completion_rate(self) -> float | None:
        """Share (0–1) of the items not cancelled that are completed or verified."""
        return completion_rate(self.done, self.counted)


@dataclass(frozen=True)
class Cell:
    """The items of one (recommendation, office) pair."""

    count: int
    overdue: int
    by_status: dict[str, int]

    @property
    def worst(self) -> Status:
        """The most severe status present (see SEVERITY)."""
        return next(s for s in SEVERITY if self.by_status.get(s.value))

    @property
    def colour(self) -> str:
        """The key of the cell's colour: ``overdue`` if any item is, else its worst status."""
        return "overdue" if self.overdue else self.worst.value


@dataclass(frozen=True)
class Matrix:
    """Recommendations (rows) × offices (columns), with a cell for every non-empty pair."""

    recommendations: list[Recommendation]
    offices: list[Office]
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)

    def cell(self, recommendation_id: int, office_id: int) -> Cell | None:
        """The cell of a pair, None when the office has no item for the recommendation."""
        return self.cells.get((recommendation_id, office_id))


@dataclass(frozen=True)
class QuarterCount:
    """How many items were first completed in one calendar quarter."""

    year: int
    quarter: int
    count: int


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard page shows."""

    totals: Totals
    offices: list[OfficeProgress]
    matrix: Matrix
    overdue_items: list[ActionItem]
    quarters: list[QuarterCount]


def days_between(later: Any, earlier: Any) -> sa.ColumnElement[int]:
    """SQL for the whole days from date ``earlier`` to date ``later`` (PostgreSQL and SQLite)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return later - earlier  # date - date is an integer of days
    return sa.cast(sa.func.julianday(later) - sa.func.julianday(earlier), sa.Integer)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    # COUNT skips NULLs: a CASE without ELSE counts the rows that meet the condition (0 if none).
    return sa.func.count(sa.case((condition, 1)))


def _items_in_view(query: sa.Select, user: User, filters: Filters) -> sa.Select:
    """Join Office and Recommendation to a query over ActionItem and keep what the user may see."""
    query = (
        query.join(ActionItem.office)
        .join(ActionItem.recommendation)
        .where(office_scope_clause(user, ActionItem.office_id), Recommendation.archived_at.is_(None))
    )
    if filters.office_code is not None:
        query = query.where(Office.code == filters.office_code)
    return _recommendation_filters(query, filters)


def _recommendation_filters(query: sa.Select, filters: Filters) -> sa.Select:
    if filters.source_id is not None:
        query = query.where(Recommendation.source_id == filters.source_id)
    if filters.theme is not None:
        query = query.where(Recommendation.theme == filters.theme)
    return query


def filter_choices(user: User) -> Choices:
    """Sources and themes of the recommendations not archived, and the offices the user may see."""
    sources = db.session.scalars(
        sa.select(Source).where(Source.archived_at.is_(None)).order_by(Source.starts_on.desc(), Source.title)
    ).all()
    themes = db.session.scalars(
        sa.select(Recommendation.theme)
        .where(Recommendation.archived_at.is_(None))
        .distinct()
        .order_by(Recommendation.theme)
    ).all()
    return Choices(sources=list(sources), themes=list(themes), offices=visible_offices(user))


def totals(
    user: User,
    filters: Filters,
    overdue: sa.ColumnElement[bool],
    due_soon: sa.ColumnElement[bool],
) -> Totals:
    """Counts by status, with the overdue and due-soon counts, in one GROUP BY query."""
    rows = db.session.execute(
        _items_in_view(
            sa.select(ActionItem.status, sa.func.count(), _count_if(overdue), _count_if(due_soon)),
            user,
            filters,
        ).group_by(ActionItem.status)
    ).all()
    by_status = {s.value: 0 for s in Status}
    by_status.update({status: count for status, count, _, _ in rows})
    return Totals(
        by_status=by_status,
        overdue=sum(row[2] for row in rows),
        due_soon=sum(row[3] for row in rows),
    )


def office_progress(
    user: User, filters: Filters, offices: list[Office], overdue: sa.ColumnElement[bool]
) -> list[OfficeProgress]:
    """Per office: items, average progress, completion rate, overdue, slippage; two GROUP BY queries.

    Slippage is the extensions granted and the days by which current deadlines lie past the
    agreed ones (items not cancelled). ``offices`` are the offices in the user's scope; those
    filtered out are left out, and so are inactive offices without items.
    """
    not_cancelled = ActionItem.status != Status.CANCELLED.value
    slipped = sa.and_(not_cancelled, ActionItem.deadline > ActionItem.agreed_deadline)
    rows = db.session.execute(
        _items_in_view(
            sa.select(
                ActionItem.office_id,
                sa.func.count(),
                _count_if(not_cancelled),
                _count_if(ActionItem.status.in_(DONE_STATUSES)),
                _count_if(overdue),
                sa.func.avg(sa.case((not_cancelled, ActionItem.progress))),
                sa.func.sum(
                    sa.case((slipped, days_between(ActionItem.deadline, ActionItem.agreed_deadline)))
                ),
            ),
            user,
            filters,
        ).group_by(ActionItem.office_id)
    ).all()
    granted = dict(
        db.session.execute(
            _items_in_view(
                sa.select(ActionItem.office_id, sa.func.count(ExtensionRequest.id)).join(
                    ExtensionRequest, ExtensionRequest.action_item_id == ActionItem.id
                ),
                user,
                filters,
            )
            .where(ExtensionRequest.state == ExtensionState.APPROVED.value)
            .group_by(ActionItem.office_id)
        ).all()
    )
    by_office = {row[0]: row for row in rows}
    result = []
    for office in _offices_shown(offices, filters):
        row = by_office.get(office.id)
        if row is None:
            if office.active:
                result.append(OfficeProgress(office=office))
            continue
        _, items, counted, done, late, average, days = row
        result.append(
            OfficeProgress(
                office=office,
                items=items,
                counted=counted,
                done=done,
                overdue=late,
                average_progress=None if average is None else float(average),  # Decimal on PostgreSQL
                extensions_granted=granted.get(office.id, 0),
                days_slipped=int(days or 0),
            )
        )
    return result


def _offices_shown(offices: list[Office], filters: Filters) -> list[Office]:
    return [o for o in offices if filters.office_code is None or o.code == filters.office_code]


def matrix(
    user: User, filters: Filters, progress: list[OfficeProgress], overdue: sa.ColumnElement[bool]
) -> Matrix:
    """Recommendations × offices: counts per status and overdue per pair, one grouped query.

    The columns are the offices of ``progress`` (see office_progress); the rows every recommendation
    not archived that the source and theme filters keep, with or without items.
    """
    recommendations = db.session.scalars(
        _recommendation_filters(
            sa.select(Recommendation).where(Recommendation.archived_at.is_(None)), filters
        ).order_by(Recommendation.code)
    ).all()
    statuses = [s.value for s in Status]
    rows = db.session.execute(
        _items_in_view(
            sa.select(
                ActionItem.recommendation_id,
                ActionItem.office_id,
                sa.func.count(),
                _count_if(overdue),
                *(_count_if(ActionItem.status == s) for s in statuses),
            ),
            user,
            filters,
        ).group_by(ActionItem.recommendation_id, ActionItem.office_id)
    ).all()
    cells = {
        (row[0], row[1]): Cell(
            count=row[2], overdue=row[3], by_status=dict(zip(statuses, row[4:], strict=True))
        )
        for row in rows
    }
    return Matrix(recommendations=list(recommendations), offices=[p.office for p in progress], cells=cells)


def overdue_items(
    user: User, filters: Filters, overdue: sa.ColumnElement[bool], limit: int = OVERDUE_LIST_SIZE
) -> list[ActionItem]:
    """The most overdue items (oldest deadline first), with what the list shows, in one query."""
    query = _items_in_view(sa.select(ActionItem), user, filters).where(overdue)
    query = query.options(
        joinedload(ActionItem.office), joinedload(ActionItem.recommendation), joinedload(ActionItem.owner)
    )
    return list(db.session.scalars(query.order_by(ActionItem.deadline, ActionItem.id).limit(limit)))


def quarter_of(moment: datetime) -> tuple[int, int]:
    """The (year, quarter) a moment falls in, in UTC."""
    moment = moment.astimezone(UTC)
    return moment.year, (moment.month - 1) // 3 + 1


def last_quarters(now: datetime, count: int = QUARTERS_SHOWN) -> list[tuple[int, int]]:
    """The ``count`` calendar quarters up to the current one (UTC), oldest first."""
    year, quarter = quarter_of(now)
    index = year * 4 + quarter - 1
    return [(i // 4, i % 4 + 1) for i in range(index - count + 1, index + 1)]


def completions_by_quarter(user: User, now: datetime, filters: Filters) -> list[QuarterCount]:
    """Items first completed (or verified) per calendar quarter (UTC), the last few, zeros filled.

    Counted from the history: each item once, in the quarter of its first update to ``completed``
    or ``verified``; an item sent back and completed again is not counted twice, and an item whose
    first completion is older than the window is not counted at all.
    """
    quarters = last_quarters(now)
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
        _items_in_view(
            sa.select(year, month, sa.func.count())
            .select_from(first_done)
            .join(ActionItem, ActionItem.id == first_done.c.action_item_id),
            user,
            filters,
        )
        .where(first_done.c.done_at >= window_start)
        .group_by(year, month)
    ).all()
    counts = dict.fromkeys(quarters, 0)
    for row_year, row_month, count in rows:  # at most three months per quarter shown
        key = (int(row_year), (int(row_month) - 1) // 3 + 1)
        if key in counts:
            counts[key] += count
    return [QuarterCount(year=y, quarter=q, count=n) for (y, q), n in counts.items()]


def build_dashboard(user: User, now: datetime, filters: Filters, offices: list[Office]) -> Dashboard:
    """Every figure of the dashboard for ``user`` at ``now``; ``offices`` are those in their scope."""
    # Each clause looks up the offices' time zones once; build them once and reuse them.
    overdue = overdue_clause(now)
    progress = office_progress(user, filters, offices, overdue)
    return Dashboard(
        totals=totals(user, filters, overdue, due_soon_clause(now, DUE_SOON_DAYS)),
        offices=progress,
        matrix=matrix(user, filters, progress, overdue),
        overdue_items=overdue_items(user, filters, overdue),
        quarters=completions_by_quarter(user, now, filters),
    )
