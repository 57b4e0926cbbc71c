"""The one filter object and query for lists of action items: pages, exports, API, calendar.

:class:`ActionFilters` says what a list asks for; :func:`filtered_actions` turns it into one SELECT
of the items the user may see, with what a list shows loaded, open items first, then by deadline.
The Actions list, My work, the exports, the API and the calendar feed all call it; the dashboard
links to the Actions list with the same query-string names that :func:`action_filters` reads.
:func:`action_page` reads one page of it (a count, then the page's rows) without sorting or
joining more rows than the page shows; :func:`overdue_clause` and :func:`due_soon_clause` compare
deadlines with the offices' dates as constants, so that indexes on action_item serve them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import g, has_request_context
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.interfaces import ORMOption

from tracker import params
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    Office,
    Recommendation,
    Role,
    Status,
    User,
    normalise_email,
)
from tracker.params import whole_number
from tracker.permissions import office_scope_clause

_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f]")
_CLOSED = sorted(s.value for s in CLOSED_STATUSES)
_OPEN = sorted(s.value for s in Status if s not in CLOSED_STATUSES)


def _status_in(statuses: list[str]) -> sa.ColumnElement[bool]:
    """``status IN ('a', 'b', …)`` written with the values in the SQL text: they are constants, and
    a planner that sees them can use the partial index on open items (see ActionItem)."""
    return ActionItem.status.in_(
        sa.bindparam("statuses", statuses, expanding=True, literal_execute=True, unique=True)
    )


def open_clause() -> sa.ColumnElement[bool]:
    """The item is open: not started, in progress or blocked (the terms an index on open items matches)."""
    return _status_in(_OPEN)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    """The zone, kept for good: ZoneInfo's own cache holds only 8 strongly, fewer than the offices'
    zones, and reads a dropped one from disk again (this also keeps Office.today's lookups cached)."""
    return ZoneInfo(name)


def office_days(now: datetime) -> dict[date, list[int]]:
    """The date it is in each office at ``now``: date → the ids of the offices on that date.

    Offices span a few time zones, so there are one or two dates (three at most), each with a
    handful of offices; the offices are read once per request.
    """
    days: dict[date, list[int]] = {}
    for office_id, zone in _office_zones():
        days.setdefault(now.astimezone(_zone(zone)).date(), []).append(office_id)
    return days


def _office_zones() -> list[tuple[int, str]]:
    """(id, time zone) of every office, read once per request (or per call outside one)."""
    if has_request_context() and "office_zones" in g:
        return g.office_zones
    rows = db.session.execute(sa.select(Office.id, Office.timezone).order_by(Office.id))
    zones = [(office_id, zone) for office_id, zone in rows]
    if has_request_context():
        g.office_zones = zones
    return zones


def _by_office_day(
    days: dict[date, list[int]],
    term: Callable[[date], sa.ColumnElement[bool]],
    bound: Callable[[date, date], sa.ColumnElement[bool]],
) -> sa.ColumnElement[bool]:
    """``term(day)`` for each office's own date, in a form indexes on the deadline serve.

    One date (most of the day): just ``term(day)``. Several: ``bound(first, last)``, a range on the
    deadline that holds for every office (an index seeks it), AND one ``office_id IN (…) AND
    term(day)`` per date.
    """
    if not days:
        return sa.false()  # no office: no item either
    if len(days) == 1:
        return term(next(iter(days)))
    per_day = [sa.and_(ActionItem.office_id.in_(ids), term(day)) for day, ids in sorted(days.items())]
    return sa.and_(bound(min(days), max(days)), sa.or_(*per_day))


def _deadline_before(by_day: dict[date, list[int]], shift: timedelta) -> sa.ColumnElement[bool]:
    """Deadline before each office's own date at ``now`` plus ``shift``, in a form an index seeks.

    With dates d1 < d2 < … (one, most of the day): ``deadline < d_last`` (the range an index
    seeks) AND (``deadline < d1`` — true for every office, and for most rows, which decides them
    at once — OR ``deadline < d2 AND office_id IN (offices at d2 or later)`` OR …).
    """
    days = sorted(by_day.items())
    if not days:
        return sa.false()  # no office: no item either
    if len(days) == 1:
        return ActionItem.deadline < days[0][0] + shift
    later = [
        sa.and_(
            ActionItem.deadline < day + shift,
            ActionItem.office_id.in_(sorted(i for _d, ids in days[k:] for i in ids)),
        )
        for k, (day, _ids) in enumerate(days)
        if k
    ]
    first, last = days[0][0] + shift, days[-1][0] + shift
    return sa.and_(ActionItem.deadline < last, sa.or_(ActionItem.deadline < first, *later))


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL twin of ActionItem.is_overdue: open, and the deadline before the date in the office.

    Compares the deadline with constants (see :func:`_deadline_before`), so it needs no join and
    an index on (status, deadline) serves it.
    """
    return overdue_on(office_days(now))


def overdue_on(days: dict[date, list[int]]) -> sa.ColumnElement[bool]:
    """:func:`overdue_clause` for given office dates (date → office ids, as :func:`office_days`
    gives them), e.g. the dates a cache of figures is keyed on."""
    return sa.and_(open_clause(), _deadline_before(days, timedelta()))


def due_soon_clause(now: datetime, days: int = 14) -> sa.ColumnElement[bool]:
    """Open items due today or within ``days`` days in the office's zone (no join needed)."""
    return due_soon_on(office_days(now), days)


def due_soon_on(by_day: dict[date, list[int]], days: int = 14) -> sa.ColumnElement[bool]:
    """:func:`due_soon_clause` for given office dates (date → office ids)."""
    ahead = timedelta(days=days)
    within = _by_office_day(
        by_day,
        lambda day: ActionItem.deadline.between(day, day + ahead),
        lambda first, last: ActionItem.deadline.between(first, last + ahead),
    )
    return sa.and_(open_clause(), within)


def deadline_until(now: datetime, plus_days: int = 0) -> sa.ColumnElement[bool]:
    """Deadline on or before the office's date at ``now`` plus ``plus_days`` (no join needed)."""
    return _deadline_before(office_days(now), timedelta(days=plus_days + 1))


def visible_actions(user: User) -> sa.Select[tuple[ActionItem]]:
    """The action items the user may see, with what a list shows loaded in the same query.

    Office and recommendation come by outer joins of their own (aliased): filter on ActionItem's
    columns, or with subqueries, as :func:`filtered_actions` does.
    """
    return (
        sa.select(ActionItem)
        .where(office_scope_clause(user, ActionItem.office_id))
        .options(
            joinedload(ActionItem.office),
            joinedload(ActionItem.recommendation),
            joinedload(ActionItem.owner),
        )
    )


class FilterError(ValueError):
    """A filter of the query string is malformed (too long, control characters, absurd numbers)."""


@dataclass(frozen=True)
class ActionFilters:
    """What a list of actions asks for; None (or False) means "do not filter on it"."""

    office_code: str | None = None
    status: str | None = None
    #: True: only overdue items; False: only items not overdue; None: both.
    overdue: bool | None = None
    recommendation_code: str | None = None
    source_id: int | None = None
    theme: str | None = None
    owner_email: str | None = None
    due_before: date | None = None
    due_after: date | None = None
    #: Only open items (not started, in progress, blocked).
    open_only: bool = False
    #: Only the items this user owns or deputises (My work, the calendar); a manager: all of scope.
    assigned_to: User | None = None
    #: Further terms on action_item's own columns (My work's counts filter the list with them).
    where: tuple[sa.ColumnElement[bool], ...] = ()

    @property
    def overdue_only(self) -> bool:
        """The Actions list's "overdue only" box."""
        return self.overdue is True


def assigned_filters(user: User) -> ActionFilters:
    """My work and the calendar: the open items a person owns or deputises (a manager: their scope)."""
    return ActionFilters(open_only=True, assigned_to=user)


def assigned_clause(user: User) -> sa.ColumnElement[bool]:
    """The items a person owns or deputises; for a manager every item (their scope limits it)."""
    if user.role == Role.MANAGER:
        return sa.true()
    return sa.or_(ActionItem.owner_id == user.id, ActionItem.deputy_id == user.id)


def action_filters(args: Mapping[str, str]) -> ActionFilters:
    """The filters from a query string, read as the home page reads them; FilterError if malformed."""

    def text(name: str, limit: int) -> str | None:
        value = args.get(name) or ""
        if len(value) > limit or _CONTROL_OR_BREAK.search(value):
            raise FilterError(_("The filter “%(name)s” is not valid.", name=name))
        return value.strip() or None

    status = text("status", 40)
    raw_source = text("source", 20)
    source_id = whole_number(raw_source) if raw_source else None
    if source_id is None and raw_source and raw_source.lstrip("+-").isdigit():  # words are ignored
        raise FilterError(_("The filter “%(name)s” is not valid.", name="source"))
    owner = text("owner", 254)
    return ActionFilters(
        office_code=text("office", 8),
        status=status if status in {s.value for s in Status} else None,  # as the list: unknown is ignored
        overdue=True if args.get("overdue") == "1" else None,
        recommendation_code=text("recommendation", 32),
        source_id=source_id or None,
        theme=text("theme", 100),
        owner_email=normalise_email(owner) if owner else None,
    )


def _conditions(user: User, now: datetime, filters: ActionFilters) -> list[sa.ColumnElement[bool]]:
    """The WHERE terms of a list, all on action_item's own columns (subqueries for the rest), so
    that a count needs no join and an index on action_item can serve the filters."""
    terms = [office_scope_clause(user, ActionItem.office_id)]
    if filters.office_code:
        office = sa.select(Office.id).where(Office.code == filters.office_code.upper())
        terms.append(ActionItem.office_id == office.scalar_subquery())
    if filters.status:
        terms.append(ActionItem.status == filters.status)
    recommendation = [
        column == value
        for column, value in (
            (Recommendation.code, filters.recommendation_code),
            (Recommendation.source_id, filters.source_id),
            (Recommendation.theme, filters.theme),
        )
        if value
    ]
    if recommendation:
        terms.append(ActionItem.recommendation_id.in_(sa.select(Recommendation.id).where(*recommendation)))
    if filters.owner_email:
        terms.append(ActionItem.owner_id.in_(sa.select(User.id).where(User.email == filters.owner_email)))
    if filters.due_before:
        terms.append(ActionItem.deadline <= filters.due_before)
    if filters.due_after:
        terms.append(ActionItem.deadline >= filters.due_after)
    if filters.open_only:
        terms.append(open_clause())
    if filters.assigned_to is not None:
        terms.append(assigned_clause(filters.assigned_to))
    terms.extend(filters.where)
    if filters.overdue is not None:
        overdue = overdue_clause(now)
        terms.append(overdue if filters.overdue else sa.not_(overdue))
    return terms


def _one_side(filters: ActionFilters) -> bool:
    """True when the filters keep only open items, or only closed ones: then "open first" is
    just "by deadline", which an index on (deadline, id) delivers without sorting."""
    return bool(filters.open_only or filters.overdue or filters.status)


def _listed(user: User, terms: list[sa.ColumnElement[bool]]) -> sa.Select[tuple[ActionItem]]:
    return (
        visible_actions(user)
        .where(*terms)
        .options(
            joinedload(ActionItem.deputy),
            joinedload(ActionItem.recommendation).joinedload(Recommendation.source),
        )
    )


_OPEN_FIRST = sa.case((_status_in(_CLOSED), 1), else_=0)


def filtered_actions(user: User, now: datetime, filters: ActionFilters) -> sa.Select[tuple[ActionItem]]:
    """The items the user may see that pass the filters, ordered as the home list: open first, by deadline."""
    query = _listed(user, _conditions(user, now, filters))
    if _one_side(filters):
        return query.order_by(ActionItem.deadline, ActionItem.id)
    return query.order_by(_OPEN_FIRST, ActionItem.deadline, ActionItem.id)


def action_page(
    user: User,
    now: datetime,
    filters: ActionFilters,
    *,
    page: int,
    per_page: int,
    options: Sequence[ORMOption] = (),
    last_if_beyond: bool = True,
) -> Pagination:
    """One page of :func:`filtered_actions`, with the total, reading no more rows than it shows.

    Two statements, each on action_item's indexes: a count that reads action_item alone, then the
    page: its ids (by deadline, from an index) chosen in a subquery, and only those rows joined to
    what the list shows. Without a filter that keeps one side, open items come first: the count
    also says how many are open, and the page's ids come from the open items, the closed ones, or
    (the one page where they meet) both. A page past the end is the last page
    (``last_if_beyond``), else empty.
    """
    terms = _conditions(user, now, filters)
    one_side = _one_side(filters)
    counted = {"open": 0}

    def count() -> int:
        if one_side:
            return db.session.scalar(sa.select(sa.func.count()).select_from(ActionItem).where(*terms)) or 0
        total, open_ = db.session.execute(
            sa.select(sa.func.count(), sa.func.count().filter(open_clause()))
            .select_from(ActionItem)
            .where(*terms)
        ).one()
        counted["open"] = open_ or 0
        return total or 0

    def fetch(offset: int, limit: int) -> list[ActionItem]:
        if one_side:
            ids: sa.Executable = _ids(terms, offset, limit)
            order = (ActionItem.deadline, ActionItem.id)
        else:
            ids = _open_first_ids(terms, counted["open"], offset, limit)
            order = (_OPEN_FIRST, ActionItem.deadline, ActionItem.id)
        query = _listed(user, [ActionItem.id.in_(ids)]).options(*options).order_by(*order)
        return list(db.session.scalars(query))

    return params.counted_page(count, fetch, page=page, per_page=per_page, last_if_beyond=last_if_beyond)


def _ids(terms: list[sa.ColumnElement[bool]], offset: int, limit: int) -> sa.Select[tuple[int]]:
    """The ids of a stretch of the items passing ``terms``, by deadline: read from an index alone."""
    query = sa.select(ActionItem.id).where(*terms).order_by(ActionItem.deadline, ActionItem.id)
    return sa.select(query.offset(offset).limit(limit).subquery().c.id)


def _open_first_ids(
    terms: list[sa.ColumnElement[bool]], open_: int, offset: int, limit: int
) -> sa.Executable:
    """The ids on a page of "open first, then by deadline" (``open_``: how many open items pass
    the filters), each side read by deadline from where the page starts in it."""
    parts = []
    for statuses, start, end in ((_OPEN, 0, open_), (_CLOSED, open_, offset + limit)):
        first, last = max(offset, start), min(offset + limit, end)
        if first < last:
            parts.append(_ids([*terms, _status_in(statuses)], first - start, last - first))
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)
