"""Completion rates over time: per office, at the end of each of the last quarters and now.

The rates are reconstructed from the history in one grouped statement over the programme (the
recommendations not archived), counted per (recommendation, office) pair — at most
recommendations × offices rows however many items and history rows there are — and cached by data
version and quarter (see cache.py). Any scope and filter of the dashboard is a selection of those
pairs, added up in Python as services.py does for the other figures.

**An item's status at a moment.** The moments are the ends of quarters: the end of a quarter is
the last instant before the next quarter begins (00:00 UTC on its first day), so a change stamped
in that first instant belongs to the next quarter, as in the completions per quarter. At the end
``T`` of a quarter:

1. an item exists at ``T`` if it was created before ``T`` (``ActionItem.created_at``); one
   created later is not counted at ``T``;
2. its status is the ``new_status`` of its latest history row that carries one and was written
   before ``T`` (``ActionUpdate.created_at``; of two rows stamped in the same instant, the one
   written last — the higher id — wins);
3. without such a row, its creation status: the ``old_status`` of its first history row carrying
   a ``new_status`` (the status before the first recorded change); if that row has no old status
   (it records the creation, as every new action's first row does), its ``new_status``; and if no
   row records a status at all, the item's current status (it never changed).

An existing item is **done** at ``T`` if that status is in ``models.DONE_STATUSES`` and
**counted** unless it is in ``models.UNCOUNTED_STATUSES`` (proposed or cancelled); the rate is
``models.completion_rate(done, counted)``. The last point, **now**, takes the items' current
statuses, exactly as the dashboard's progress per office does.

How: each history row's status holds from its own time until the next row's (a window function,
``lead``), and an item's creation status from its creation until its first row, so that after an
item's creation every moment falls in exactly one of these spans. The statement turns each span
into the range of moments it covers, once per row, and counts per moment the spans covering it.
At 120,000 actions (216,000 history rows) it takes about 2 s on PostgreSQL and 4 s on SQLite on a
busy two-core machine.

**Caching.** The past quarters' figures change only when something dated before the current
quarter's start changes, so the pages never run that statement after an ordinary write: they
combine the past quarters (the statement without "now", kept per app under a **fingerprint** of
what decides them, whatever the data version) with "now" (one grouped statement over the items'
current statuses, per data version as the other aggregates). The fingerprint (one statement of
aggregates, per data version) covers every input of the past figures that can change:

- the status rows dated before the quarter (count, highest id, and checksums of their item and
  statuses): history rows are only ever added, never edited or deleted, and a row dated later
  changes no past status;
- the items created before the quarter (count, highest id) and their recommendation, office and
  quarter of creation (checksums: editing an action may move it to another recommendation);
- the archived recommendations (count and checksums of their ids): archiving and unarchiving
  change the programme's items;
- of the items created before the quarter without a status row before it, the kind of their
  creation status (which comes from their first row, dated later, or their current status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from flask import current_app

from tracker.dashboard import cache
from tracker.dashboard.aggregates import last_quarters
from tracker.dashboard.services import Dashboard
from tracker.extensions import db
from tracker.models import (
    DONE_STATUSES,
    UNCOUNTED_STATUSES,
    ActionItem,
    ActionUpdate,
    Recommendation,
    completion_rate,
)

#: Past quarters whose ends are points of the series; "now" follows them.
QUARTERS_BACK = 8


class _Office(Protocol):
    """What a line needs of an office (an Office or the dashboard's OfficeInfo)."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class Point:
    """Items done and counted at one moment; the rate is None when nothing counts."""

    done: int = 0
    counted: int = 0

    @property
    def rate(self) -> float | None:
        """The completion rate (0–1) at this moment (models.completion_rate)."""
        return completion_rate(self.done, self.counted)

    def __add__(self, other: Point) -> Point:
        return Point(self.done + other.done, self.counted + other.counted)


@dataclass(frozen=True)
class RateHistory:
    """The programme's figures: per (recommendation, office), one Point per moment."""

    #: The quarters (year, number) whose ends are the first points, oldest first; "now" follows.
    quarters: tuple[tuple[int, int], ...]
    pairs: dict[tuple[int, int], tuple[Point, ...]]


@dataclass(frozen=True)
class Line:
    """One line of the chart: an office's (or the programme's) points, oldest first, now last."""

    code: str
    name: str
    points: tuple[Point, ...]
    #: The comparison line of all offices, drawn apart from the offices' lines.
    programme: bool = False


@dataclass(frozen=True)
class RatesOverTime:
    """What the chart and its table show: the moments and one line per office (and the programme's)."""

    quarters: tuple[tuple[int, int], ...]
    offices: tuple[Line, ...]
    programme: Line | None

    @property
    def lines(self) -> tuple[Line, ...]:
        """Every line, the offices' first and the programme's last."""
        return self.offices + ((self.programme,) if self.programme is not None else ())


def past_quarters(today: date, count: int = QUARTERS_BACK) -> list[tuple[int, int]]:
    """The ``count`` whole quarters before the one of ``today`` (a UTC date), oldest first."""
    return last_quarters(today, count + 1)[:-1]


def quarter_end(year: int, quarter: int) -> datetime:
    """The first instant (UTC) after the quarter: its status figures are those just before it."""
    return datetime(year + quarter // 4, quarter % 4 * 3 + 1, 1, tzinfo=UTC)


def rate_history(today: date) -> RateHistory:
    """The programme's history figures for the quarters before ``today``, once per data version:
    the past quarters' from the fingerprinted cache (recomputed only when they change), now's
    computed afresh."""
    quarters = tuple(past_quarters(today))

    def combined() -> RateHistory:
        key = (quarters, cache.cached(("rate-fingerprint", quarters), lambda: fingerprint(quarters)))
        past = cache.cache_of(current_app, "rate_history_past", PAST_ENTRIES).get_or_compute(
            _PAST_VERSION, key, lambda: load_past_rates(quarters)
        )
        now = load_current_rates()
        empty = (Point(),) * len(quarters)
        pairs = {pair: (*past.get(pair, empty), now.get(pair, Point())) for pair in past.keys() | now.keys()}
        return RateHistory(quarters=quarters, pairs=pairs)

    return cache.cached(("rate-history", quarters), combined)


def load_rate_history(quarters: Sequence[tuple[int, int]]) -> RateHistory:
    """Done and counted per (recommendation, office) at each quarter's end and now: one statement.

    See the module's docstring for how an item's status at a past moment is derived. Each status
    row is read once, with the moments it holds at as a range of indexes (computed once per row:
    comparing small integers per moment costs far less than comparing timestamps).
    """
    return RateHistory(quarters=tuple(quarters), pairs=_load(quarters, with_now=True))


def load_past_rates(quarters: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple[Point, ...]]:
    """Done and counted per (recommendation, office) at each quarter's end (no "now"): one statement."""
    return _load(quarters, with_now=False)


def load_current_rates() -> dict[tuple[int, int], Point]:
    """Done and counted per (recommendation, office) from the items' current statuses: one statement."""
    done = _count_if(ActionItem.status.in_(DONE_STATUSES))
    counted = _count_if(ActionItem.status.not_in(UNCOUNTED_STATUSES))
    rows = db.session.execute(
        sa.select(ActionItem.recommendation_id, ActionItem.office_id, done, counted)
        .join(Recommendation, Recommendation.id == ActionItem.recommendation_id)
        .where(Recommendation.archived_at.is_(None))
        .group_by(ActionItem.recommendation_id, ActionItem.office_id)
    ).all()
    return {(rec, office): Point(d, c) for rec, office, d, c in rows}


def _load(quarters: Sequence[tuple[int, int]], with_now: bool) -> dict[tuple[int, int], tuple[Point, ...]]:
    ends = [quarter_end(year, quarter) for year, quarter in quarters]
    last = len(ends)

    moment, kind = _moment(ends), _kind

    window = {
        "partition_by": ActionUpdate.action_item_id,
        "order_by": (ActionUpdate.created_at, ActionUpdate.id),
    }
    first_row = sa.func.row_number().over(**window) == 1
    in_plan = Recommendation.archived_at.is_(None)
    # One row per status row: its item's pair, the item's first moment (``born``), the span of
    # moments at which this row's status holds (``since`` to ``until``, the next row's first
    # moment) and its kind; on an item's first row also the creation status's kind (it holds from
    # ``born`` to ``since``) and the current status's kind (for now).
    spans = (
        sa.select(
            ActionItem.recommendation_id.label("rec"),
            ActionItem.office_id.label("office"),
            moment(ActionItem.created_at).label("born"),
            moment(ActionUpdate.created_at).label("since"),
            sa.func.coalesce(sa.func.lead(moment(ActionUpdate.created_at)).over(**window), last).label(
                "until"
            ),
            kind(ActionUpdate.new_status).label("kind"),
            sa.case(
                (first_row, kind(sa.func.coalesce(ActionUpdate.old_status, ActionUpdate.new_status)))
            ).label("creation"),
            sa.case((first_row, kind(ActionItem.status))).label("current"),  # read if with_now
        )
        .join(ActionItem, ActionItem.id == ActionUpdate.action_item_id)
        .join(Recommendation, Recommendation.id == ActionItem.recommendation_id)
        .where(in_plan, ActionUpdate.new_status.is_not(None))
    )
    has_status_row = (
        sa.select(ActionUpdate.id)
        .where(ActionUpdate.action_item_id == ActionItem.id, ActionUpdate.new_status.is_not(None))
        .exists()
    )
    # An item without any status row: its current status from its creation on.
    unchanged = (
        sa.select(
            ActionItem.recommendation_id,
            ActionItem.office_id,
            moment(ActionItem.created_at),
            moment(ActionItem.created_at),
            sa.literal(last),
            kind(ActionItem.status),
            sa.null(),
            kind(ActionItem.status),
        )
        .join(Recommendation, Recommendation.id == ActionItem.recommendation_id)
        .where(in_plan, ~has_status_row)
    )
    r = sa.union_all(spans, unchanged).subquery("spans").c
    columns: list[sa.ColumnElement[int]] = []
    for k in range(last):
        own = sa.and_(r.born <= k, r.since <= k, r.until > k)
        before = sa.and_(r.born <= k, r.since > k)  # the creation span (``creation`` is NULL but on
        # an item's first row, so that the span counts once per item)
        columns += [
            _count_if(sa.or_(sa.and_(own, r.kind == 2), sa.and_(before, r.creation == 2))),
            _count_if(sa.or_(sa.and_(own, r.kind >= 1), sa.and_(before, r.creation >= 1))),
        ]
    if with_now:
        columns += [_count_if(r.current == 2), _count_if(r.current >= 1)]
    rows = db.session.execute(sa.select(r.rec, r.office, *columns).group_by(r.rec, r.office)).all()
    return {
        (rec, office): tuple(Point(figures[i], figures[i + 1]) for i in range(0, len(figures), 2))
        for rec, office, *figures in rows
    }


def fingerprint(quarters: Sequence[tuple[int, int]]) -> tuple[Any, ...]:
    """What decides the past quarters' figures (see the module's docstring), in one statement:
    equal fingerprints, equal figures."""
    start = quarter_end(*quarters[-1]) if quarters else datetime.max.replace(tzinfo=UTC)
    before = sa.literal(start, ActionItem.created_at.type)
    big = sa.BigInteger()
    moment = _moment([quarter_end(year, quarter) for year, quarter in quarters])
    # Checksums of what is read, weighted by id (small factors: no overflow at millions of rows),
    # so that an emptied and refilled database with the same counts has another fingerprint.
    row_id = sa.cast(ActionUpdate.id, big)
    # (Not the rows' quarters: a CASE on a timestamp per row costs more than the rest together.)
    read = _kind(ActionUpdate.new_status) * 4 + _kind(
        sa.func.coalesce(ActionUpdate.old_status, ActionUpdate.new_status)
    )
    rows = (
        sa.select(
            sa.func.count().label("n"),
            sa.func.max(ActionUpdate.id).label("top"),
            sa.func.sum(row_id * read).label("read"),
            sa.func.sum(row_id * (ActionUpdate.action_item_id % 65521)).label("items"),
        )
        .where(ActionUpdate.new_status.is_not(None), ActionUpdate.created_at < before)
        .subquery("rows")
    )
    item_id = sa.cast(ActionItem.id, big)
    items = (
        sa.select(
            sa.func.count().label("n"),
            sa.func.max(ActionItem.id).label("top"),
            sa.func.sum(item_id * (ActionItem.recommendation_id % 65521)).label("recs"),
            sa.func.sum(item_id * (ActionItem.office_id % 65521)).label("offices"),
            sa.func.sum(item_id * moment(ActionItem.created_at)).label("born"),
        )
        .where(ActionItem.created_at < before)
        .subquery("items")
    )
    rec_id = sa.cast(Recommendation.id, big)
    archived = (
        sa.select(
            sa.func.count().label("n"),
            sa.func.sum(rec_id).label("ids"),
            sa.func.sum(rec_id * rec_id).label("squares"),
        )
        .where(Recommendation.archived_at.is_not(None))
        .subquery("archived")
    )
    # Items without a status row before the quarter: their creation status decides their past.
    # Their first status row, if any, is dated in this quarter: a join, not a subquery per item
    # (whose estimated cost would have PostgreSQL compile the statement, for seconds).
    late = (
        sa.select(
            ActionUpdate.action_item_id.label("item"),
            sa.func.coalesce(ActionUpdate.old_status, ActionUpdate.new_status).label("status"),
            sa.func.row_number()
            .over(
                partition_by=ActionUpdate.action_item_id, order_by=(ActionUpdate.created_at, ActionUpdate.id)
            )
            .label("n"),
        )
        .where(ActionUpdate.new_status.is_not(None), ActionUpdate.created_at >= before)
        .subquery("late")
    )
    first = late.c.status
    creation = sa.func.coalesce(first, ActionItem.status)
    done, counted = creation.in_(DONE_STATUSES), creation.not_in(UNCOUNTED_STATUSES)
    square = sa.cast(ActionItem.id % 65521, big) * (ActionItem.id % 65521)  # no overflow
    unchanged = (
        sa.select(
            _count_if(done).label("done"),
            sa.func.sum(sa.case((done, item_id))).label("done_ids"),
            sa.func.sum(sa.case((done, square))).label("done_squares"),
            _count_if(counted).label("counted"),
            sa.func.sum(sa.case((counted, item_id))).label("counted_ids"),
            sa.func.sum(sa.case((counted, square))).label("counted_squares"),
        )
        .select_from(ActionItem)
        .outerjoin(late, sa.and_(late.c.item == ActionItem.id, late.c.n == 1))
        .where(
            ActionItem.created_at < before,
            # NOT IN, not NOT EXISTS: PostgreSQL hashes the ids once instead of a probe per item.
            ActionItem.id.not_in(
                sa.select(ActionUpdate.action_item_id).where(
                    ActionUpdate.new_status.is_not(None), ActionUpdate.created_at < before
                )
            ),
        )
        .subquery("unchanged")
    )
    parts = (rows, items, archived, unchanged)
    joined = sa.join(rows, items, sa.true()).join(archived, sa.true()).join(unchanged, sa.true())
    found = db.session.execute(sa.select(*(c for p in parts for c in p.c)).select_from(joined)).one()
    return tuple(found)


#: Past figures kept per app: a few fingerprints (the quarters roll over, the data changes).
PAST_ENTRIES = 4
#: The past figures' cache is not tied to the data version (the fingerprint in the key says when
#: they no longer hold), so every lookup passes this one constant version.
_PAST_VERSION = 0


def _moment(ends: Sequence[datetime]) -> Any:
    def moment(column: Any) -> sa.ColumnElement[int]:
        # The index of the first quarter end after ``column`` (``len(ends)``: none, so only now).
        stamp = ActionItem.created_at.type
        return sa.case(*((column < sa.literal(e, stamp), k) for k, e in enumerate(ends)), else_=len(ends))

    return moment


def _kind(column: Any) -> sa.ColumnElement[int]:
    # 2: done, 1: counted but not done, 0: not counted.
    return sa.case((column.in_(DONE_STATUSES), 2), (column.not_in(UNCOUNTED_STATUSES), 1), else_=0)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    # COUNT skips NULLs: a CASE without ELSE counts the rows that meet the condition (0 if none).
    return sa.func.count(sa.case((condition, 1)))


def rates_over_time(
    history: RateHistory, offices: Sequence[_Office], rec_ids: set[int] | None
) -> RatesOverTime:
    """A line per office of ``offices`` and the programme's line, over the recommendations ``rec_ids``.

    ``offices`` must be those the reader may see. The programme's line adds up every office: it
    shows a rate only, from which no single office's figures can be told. ``rec_ids`` None: every
    recommendation not archived.
    """
    size = len(history.quarters) + 1
    shown: dict[int, list[Point]] = {o.id: [Point()] * size for o in offices}
    total = [Point()] * size
    for (rec, office), points in history.pairs.items():
        if rec_ids is not None and rec not in rec_ids:
            continue
        total = _added(total, points)
        if office in shown:
            shown[office] = _added(shown[office], points)
    return RatesOverTime(
        quarters=history.quarters,
        offices=tuple(Line(o.code, o.name, tuple(shown[o.id])) for o in offices),
        programme=Line("", "", tuple(total), programme=True),
    )


def for_dashboard(figures: Dashboard, today: date) -> RatesOverTime:
    """The lines of the dashboard's offices (its scope and filters) and of the programme, under the
    dashboard's recommendation filters; ``today`` is the UTC date."""
    rec_ids = frozenset(r.id for r in figures.matrix.recommendations)
    return _lines(today, [p.office for p in figures.offices], rec_ids)


def for_office(office: _Office, today: date) -> RatesOverTime:
    """The line of ``office`` (one the reader may see) and the programme's; ``today`` is the UTC date."""
    return _lines(today, [office], None)


def _lines(today: date, offices: Sequence[_Office], rec_ids: frozenset[int] | None) -> RatesOverTime:
    # Adding up every (recommendation, office) pair costs tens of milliseconds in Python: once per
    # data version, quarter, offices and recommendations (an office's rename raises the version).
    key = ("rates-over-time", tuple(past_quarters(today)), tuple(o.id for o in offices), rec_ids)
    return cache.cached(key, lambda: rates_over_time(rate_history(today), offices, rec_ids))


def _added(sums: Sequence[Point], points: Sequence[Point]) -> list[Point]:
    return [a + b for a, b in zip(sums, points, strict=True)]
