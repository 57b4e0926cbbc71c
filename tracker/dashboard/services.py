"""The dashboard's figures for a user's scope and filters, from the programme's grouped aggregates.

aggregates.py reads the programme once per data version and set of local dates (a few grouped
statements whatever the number of items); this module selects a scope's (recommendation, office)
pairs from those rows and adds them up in Python, and reads the few most overdue items. The
figures are plain data cached per (scope, filters, local dates) at the current data version (see
cache.py), so a page asks the database for the version and little else until something is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from tracker.dashboard import cache
from tracker.dashboard.aggregates import DUE_SOON_DAYS as DUE_SOON_DAYS  # the pages read it here
from tracker.dashboard.aggregates import (
    Catalogue,
    Dates,
    OfficeInfo,
    Programme,
    RecommendationInfo,
    dates_at,
    load_catalogue,
    load_programme,
)
from tracker.extensions import db
from tracker.indicators.comparison import IndicatorTable, dashboard_table
from tracker.models import (
    CLOSED_STATUSES,
    DONE_STATUSES,
    UNCOUNTED_STATUSES,
    ActionItem,
    Recommendation,
    Source,
    Status,
    User,
    completion_rate,
)
from tracker.permissions import office_scope, office_scope_clause

#: Rows in the overdue list; the actions page lists them all.
OVERDUE_LIST_SIZE = 20

#: Matrix cells take the colour and label of the most severe status they hold, most severe first.
#: An overdue item outranks all of these: such a cell is marked overdue whatever its statuses.
SEVERITY = (
    Status.BLOCKED,
    Status.NOT_STARTED,
    Status.IN_PROGRESS,
    Status.COMPLETED,
    Status.VERIFIED,
    Status.CANCELLED,
    Status.PROPOSED,  # not in the plan yet: a cell of proposals only
)
_CLOSED = sorted(s.value for s in CLOSED_STATUSES)


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
    offices: list[OfficeInfo]


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

    office: OfficeInfo
    items: int = 0
    #: Items neither cancelled nor proposed: the base of the average and of the completion rate.
    counted: int = 0
    #: Completed or verified.
    done: int = 0
    overdue: int = 0
    #: Mean progress (0–100) of the items not cancelled; None without such items.
    average_progress: float | None = None
    #: Extension requests approved for the office's items.
    extensions_granted: int = 0
    #: Days by which current deadlines lie past the agreed ones, summed over the items not cancelled.
    days_slipped: int = 0

    @property
    def completion_rate(self) -> float | None:
        """Share (0–1) of the counted items that are completed or verified."""
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

    recommendations: list[RecommendationInfo]
    offices: list[OfficeInfo]
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
class OverdueItem:
    """An overdue item as the lists show it."""

    id: int
    title: str
    deadline: date
    status: str
    office_code: str
    recommendation_code: str
    recommendation_title: str
    #: Days past the deadline, in the office's time zone.
    days_late: int
    owner_id: int | None
    #: Filled in per request (people are renamed without a new data version); None: no owner.
    owner_name: str | None = None


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard page (and a report) shows; ``key`` names it in the cache."""

    key: Hashable
    totals: Totals
    offices: list[OfficeProgress]
    matrix: Matrix
    overdue_items: list[OverdueItem]
    quarters: list[QuarterCount]
    #: Offices shown × active indicators: latest validated values and progress to target.
    indicators: IndicatorTable | None = None


def catalogue() -> Catalogue:
    """Offices, recommendations not archived and themes, read once per data version."""
    return cache.cached(("catalogue",), load_catalogue)


def filter_choices(user: User) -> Choices:
    """Sources not archived, the themes of the recommendations not archived, the user's offices.

    Sources are read on every call: archiving one is not a change of programme data.
    """
    sources = db.session.scalars(
        sa.select(Source).where(Source.archived_at.is_(None)).order_by(Source.starts_on.desc(), Source.title)
    ).all()
    known = catalogue()
    return Choices(sources=list(sources), themes=list(known.themes), offices=_in_scope(user, known))


def _in_scope(user: User, known: Catalogue) -> list[OfficeInfo]:
    scope = office_scope(user)
    return [o for o in known.offices if scope is None or o.id in scope]


def build_dashboard(user: User, now: datetime, filters: Filters, limit: int = OVERDUE_LIST_SIZE) -> Dashboard:
    """Every figure of the dashboard for ``user`` at ``now``, from the cache while nothing changes.

    The cached figures are those of the user's office scope, the filters and every office's local
    date at ``now``; the owners' names in the overdue list are read per call (one small statement).
    """
    known = catalogue()
    dates = dates_at(now, known.offices)
    scope = office_scope(user)
    key = ("figures", None if scope is None else tuple(sorted(scope)), filters, dates, limit)
    figures = cache.cached(key, lambda: compute_dashboard(user, filters, dates, limit, known, key))
    return _with_owner_names(figures)


def programme(dates: Dates) -> Programme:
    """The programme's aggregates at ``dates``, read once per data version and set of dates."""
    return cache.cached(("programme", dates), lambda: load_programme(dates))


def compute_dashboard(
    user: User, filters: Filters, dates: Dates, limit: int, known: Catalogue, key: Hashable = None
) -> Dashboard:
    """The figures of ``user``'s scope under ``filters`` (the programme's aggregates from the cache)."""
    everything = programme(dates)
    recommendations = [r for r in known.recommendations if _keeps(filters, r)]
    shown = [o for o in _in_scope(user, known) if filters.office_code in (None, o.code)]
    rec_ids, office_ids = {r.id for r in recommendations}, {o.id for o in shown}
    groups = [g for g in everything.groups if g.recommendation_id in rec_ids and g.office_id in office_ids]
    progress = _office_progress(shown, groups, everything, rec_ids)
    return Dashboard(
        key=key,
        totals=_totals(groups),
        offices=progress,
        matrix=_matrix(recommendations, [p.office for p in progress], groups),
        overdue_items=_overdue_items(user, filters, dates, shown, known, limit),
        quarters=_quarters(everything, rec_ids, office_ids),
        # Validated values are everyone's; the table keeps the offices the dashboard shows.
        indicators=dashboard_table((p.office.id, p.office.code, p.office.name) for p in progress),
    )


def _quarters(everything: Programme, rec_ids: set[int], office_ids: set[int]) -> list[QuarterCount]:
    """Items first completed per quarter shown, zeros filled."""
    counts = dict.fromkeys(everything.quarters, 0)
    for (rec, office, year, quarter), n in everything.completions.items():
        if rec in rec_ids and office in office_ids:
            counts[(year, quarter)] += n
    return [QuarterCount(year=y, quarter=q, count=n) for (y, q), n in counts.items()]


def _keeps(filters: Filters, recommendation: RecommendationInfo) -> bool:
    return filters.source_id in (None, recommendation.source_id) and filters.theme in (
        None,
        recommendation.theme,
    )


def _totals(groups: Iterable) -> Totals:
    by_status = {s.value: 0 for s in Status}
    overdue = due_soon = 0
    for g in groups:
        by_status[g.status] = by_status.get(g.status, 0) + g.count
        overdue += g.overdue
        due_soon += g.due_soon
    return Totals(by_status=by_status, overdue=overdue, due_soon=due_soon)


def _office_progress(
    offices: list[OfficeInfo], groups: list, everything: Programme, rec_ids: set[int]
) -> list[OfficeProgress]:
    """Per office shown: items, average progress, completion rate, overdue, slippage.

    Inactive offices without items are left out. Cancelled and proposed items (UNCOUNTED_STATUSES)
    count as items, but not in the average, the completion rate or the days slipped.
    """
    sums: dict[int, list[int]] = {}  # office id → items, counted, done, overdue, progress, days slipped
    for g in groups:
        s = sums.setdefault(g.office_id, [0] * 6)
        s[0] += g.count
        s[3] += g.overdue
        if g.status not in UNCOUNTED_STATUSES:
            s[1] += g.count
            s[4] += g.progress
            s[5] += g.days_slipped
            if g.status in DONE_STATUSES:
                s[2] += g.count
    granted: dict[int, int] = {}
    for (rec, office), n in everything.extensions.items():
        if rec in rec_ids:
            granted[office] = granted.get(office, 0) + n
    result = []
    for office in offices:
        s = sums.get(office.id)
        if s is None:
            if office.active:
                result.append(OfficeProgress(office=office))
            continue
        items, counted, done, late, progress, days = s
        result.append(
            OfficeProgress(
                office=office,
                items=items,
                counted=counted,
                done=done,
                overdue=late,
                average_progress=progress / counted if counted else None,
                extensions_granted=granted.get(office.id, 0),
                days_slipped=days,
            )
        )
    return result


def _matrix(recommendations: list[RecommendationInfo], offices: list[OfficeInfo], groups: list) -> Matrix:
    """Recommendations × offices: counts per status and overdue per pair."""
    shown = {o.id for o in offices}
    sums: dict[tuple[int, int], tuple[list[int], dict[str, int]]] = {}  # pair → [count, overdue], by status
    for g in groups:
        if g.office_id in shown:
            counts, by_status = sums.setdefault(
                (g.recommendation_id, g.office_id), ([0, 0], {s.value: 0 for s in Status})
            )
            counts[0] += g.count
            counts[1] += g.overdue
            by_status[g.status] += g.count
    cells = {
        pair: Cell(count=c[0], overdue=c[1], by_status=by_status) for pair, (c, by_status) in sums.items()
    }
    return Matrix(recommendations=recommendations, offices=offices, cells=cells)


def _overdue_items(
    user: User, filters: Filters, dates: Dates, offices: list[OfficeInfo], known: Catalogue, limit: int
) -> list[OverdueItem]:
    """The most overdue items of ``offices`` (oldest deadline first) in one statement.

    Deadlines are compared with each office's date, offices of the same date together, a form the
    (office, status, deadline) index serves.
    """
    today = dates.office_today
    by_date: dict[date, list[int]] = {}
    for office in offices:
        by_date.setdefault(today[office.id], []).append(office.id)
    if not by_date:
        return []
    query = (
        sa.select(
            ActionItem.id,
            ActionItem.title,
            ActionItem.deadline,
            ActionItem.status,
            ActionItem.office_id,
            ActionItem.recommendation_id,
            ActionItem.owner_id,
        )
        .join(Recommendation, Recommendation.id == ActionItem.recommendation_id)
        .where(
            office_scope_clause(user, ActionItem.office_id),
            Recommendation.archived_at.is_(None),
            ActionItem.status.not_in(_CLOSED),
            sa.or_(
                *(
                    sa.and_(ActionItem.office_id.in_(ids), ActionItem.deadline < day)
                    for day, ids in sorted(by_date.items())
                )
            ),
        )
    )
    if filters.source_id is not None:
        query = query.where(Recommendation.source_id == filters.source_id)
    if filters.theme is not None:
        query = query.where(Recommendation.theme == filters.theme)
    rows = db.session.execute(query.order_by(ActionItem.deadline, ActionItem.id).limit(limit)).all()
    codes = {o.id: o.code for o in known.offices}
    recommendations = {r.id: r for r in known.recommendations}
    return [
        OverdueItem(
            id=id_,
            title=title,
            deadline=deadline,
            status=status,
            office_code=codes[office_id],
            recommendation_code=recommendations[rec_id].code,
            recommendation_title=recommendations[rec_id].title,
            days_late=(today[office_id] - deadline).days,
            owner_id=owner_id,
        )
        for id_, title, deadline, status, office_id, rec_id, owner_id in rows
    ]


def _with_owner_names(figures: Dashboard) -> Dashboard:
    """The figures with the owners' current names in the overdue list (a copy: the cache keeps its own).

    One statement always, even for an empty list, so that a page runs the same number whatever the
    data.
    """
    owners = sorted({item.owner_id for item in figures.overdue_items} - {None})
    names = dict(db.session.execute(sa.select(User.id, User.name).where(User.id.in_(owners))).all())
    items = [dataclasses.replace(item, owner_name=names.get(item.owner_id)) for item in figures.overdue_items]
    return dataclasses.replace(figures, overdue_items=items)
