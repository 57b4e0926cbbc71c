"""Recommendations, their sources and the offices' responses: listing, writing, archiving."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy.orm import joinedload

from tracker import params
from tracker.actions.queries import overdue_clause
from tracker.extensions import db
from tracker.models import (
    DONE_STATUSES,
    UNCOUNTED_STATUSES,
    ActionItem,
    Office,
    OfficeResponse,
    Priority,
    Recommendation,
    ResponseKind,
    Source,
    User,
)
from tracker.permissions import Perm, can, office_scope_clause, require
from tracker.recommendations import history

#: ?sort= values → ORDER BY; the first is the default.
SORTS = {
    "code": (Recommendation.code,),
    "title": (Recommendation.title, Recommendation.code),
    "priority": (
        sa.case({"high": 0, "medium": 1, "low": 2}, value=Recommendation.priority),
        Recommendation.code,
    ),
    "target": (Recommendation.target_date, Recommendation.code),
    "theme": (Recommendation.theme, Recommendation.code),
}


class RecommendationError(ValueError):
    """A change is refused; ``field`` names the form field the message belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Filters:
    """The list's filters, as they come from the URL (all optional)."""

    q: str = ""
    source_id: int | None = None
    theme: str = ""
    priority: str = ""
    office_code: str = ""
    status: str = ""
    archived: bool = False
    sort: str = "code"


def list_recommendations(user: User, filters: Filters, page: int, per_page: int) -> Pagination:
    """One page of recommendations matching the filters (see list_figures() for their numbers)."""
    scope = office_scope_clause(user, ActionItem.office_id)
    query = sa.select(Recommendation).options(joinedload(Recommendation.source))
    if filters.archived:
        query = query.where(Recommendation.archived_at.is_not(None))
    else:
        query = query.where(Recommendation.archived_at.is_(None))
    if filters.q:
        like = f"%{filters.q.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(Recommendation.code).like(like),
                sa.func.lower(Recommendation.title).like(like),
                sa.func.lower(Recommendation.text).like(like),
            )
        )
    if filters.source_id:
        query = query.where(Recommendation.source_id == filters.source_id)
    if filters.theme:
        query = query.where(Recommendation.theme == filters.theme)
    if filters.priority:
        query = query.where(Recommendation.priority == filters.priority)
    if filters.office_code or filters.status:
        has_items = sa.select(ActionItem.id).where(ActionItem.recommendation_id == Recommendation.id, scope)
        if filters.office_code:
            has_items = has_items.join(ActionItem.office).where(Office.code == filters.office_code.upper())
        if filters.status:
            has_items = has_items.where(ActionItem.status == filters.status)
        query = query.where(has_items.exists())
    query = query.order_by(*SORTS.get(filters.sort, SORTS["code"]))
    return params.paginate(query, page=page, per_page=per_page)


@dataclass(frozen=True)
class ListFigures:
    """What the list shows of one recommendation, within the user's scope."""

    #: Active offices (in scope) that responded, and how many active offices are in scope.
    responded: int
    offices: int
    #: Actions done (models.DONE_STATUSES) and counted (all but models.UNCOUNTED_STATUSES).
    done: int
    counted: int
    overdue: int

    @property
    def all_done(self) -> bool:
        """Every counted action is done (and there is at least one)."""
        return self.counted > 0 and self.done == self.counted


def list_figures(user: User, recommendation_ids: list[int], now: datetime) -> dict[int, ListFigures]:
    """recommendation id → its figures, counting only the offices and actions the user may see.

    Three grouped statements whatever the number of recommendations and actions (plus the offices'
    zones, read once per request, for "overdue"); the same scope as the dashboard's.
    """
    offices = (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Office)
            .where(Office.active.is_(True), office_scope_clause(user, Office.id))
        )
        or 0
    )
    responded = dict(
        db.session.execute(
            sa.select(OfficeResponse.recommendation_id, sa.func.count())
            .where(
                OfficeResponse.recommendation_id.in_(recommendation_ids),
                history.response_scope_clause(user, OfficeResponse.office_id),
            )
            .group_by(OfficeResponse.recommendation_id)
        ).all()
    )
    counted = ActionItem.status.not_in(UNCOUNTED_STATUSES)
    rows = db.session.execute(
        sa.select(
            ActionItem.recommendation_id,
            sa.func.count().filter(counted),
            sa.func.count().filter(ActionItem.status.in_(DONE_STATUSES)),
            sa.func.count().filter(overdue_clause(now)),
        )
        .where(
            ActionItem.recommendation_id.in_(recommendation_ids),
            office_scope_clause(user, ActionItem.office_id),
        )
        .group_by(ActionItem.recommendation_id)
    )
    items = {rid: (total, done, overdue) for rid, total, done, overdue in rows}
    figures = {}
    for rid in recommendation_ids:
        total, done, overdue = items.get(rid, (0, 0, 0))
        figures[rid] = ListFigures(
            responded=responded.get(rid, 0), offices=offices, done=done, counted=total, overdue=overdue
        )
    return figures


def past_target(recommendation: Recommendation, figures: ListFigures, today: date) -> bool:
    """The target date has passed while not every action is done."""
    return (
        recommendation.target_date is not None and recommendation.target_date < today and not figures.all_done
    )


def themes() -> list[str]:
    """Every theme in use, for the filter."""
    return list(db.session.scalars(sa.select(Recommendation.theme).distinct().order_by(Recommendation.theme)))


def sources(include_archived: bool = False) -> list[Source]:
    """Sources by date, newest first."""
    query = sa.select(Source).order_by(Source.starts_on.desc().nulls_last(), Source.title)
    if not include_archived:
        query = query.where(Source.archived_at.is_(None))
    return list(db.session.scalars(query))


def get_recommendation(recommendation_id: int) -> Recommendation | None:
    """A recommendation with its source."""
    return db.session.scalar(
        sa.select(Recommendation)
        .where(Recommendation.id == recommendation_id)
        .options(joinedload(Recommendation.source))
    )


def detail(user: User, recommendation: Recommendation) -> tuple[list[Office], dict, dict]:
    """The offices in scope, their responses and their items for one recommendation."""
    offices = list(
        db.session.scalars(
            sa.select(Office)
            .where(office_scope_clause(user, Office.id), Office.active.is_(True))
            .order_by(Office.code)
        )
    )
    responses = {
        r.office_id: r
        for r in db.session.scalars(
            sa.select(OfficeResponse)
            .where(
                OfficeResponse.recommendation_id == recommendation.id,
                history.response_scope_clause(user, OfficeResponse.office_id),
            )
            .options(joinedload(OfficeResponse.responded_by))
        )
    }
    items: dict[int, list[ActionItem]] = {}
    for item in db.session.scalars(
        sa.select(ActionItem)
        .where(
            ActionItem.recommendation_id == recommendation.id,
            office_scope_clause(user, ActionItem.office_id),
        )
        .options(joinedload(ActionItem.owner), joinedload(ActionItem.office))
        .order_by(ActionItem.deadline, ActionItem.id)
    ):
        items.setdefault(item.office_id, []).append(item)
    return offices, responses, items


def save_recommendation(
    actor: User,
    recommendation: Recommendation | None,
    *,
    code: str,
    title: str,
    text: str,
    theme: str,
    priority: str,
    source_id: int,
    target_date: date | None,
    now: datetime,
) -> Recommendation:
    """Create (``recommendation`` None) or edit a recommendation, with its history; reviewers, admins."""
    require(actor, Perm.EDIT_RECOMMENDATION)
    code = code.strip()
    clash = db.session.scalar(sa.select(Recommendation.id).where(Recommendation.code == code))
    if clash is not None and (recommendation is None or clash != recommendation.id):
        raise RecommendationError(
            _("Another recommendation already has the code %(code)s.", code=code), "code"
        )
    source = db.session.get(Source, source_id)
    if source is None:
        raise RecommendationError(_("Choose a source."), "source_id")
    Priority(priority)
    # A new recommendation records every initial value (old: none) except "not archived".
    before: dict = {"archived": False}
    if recommendation is None:
        recommendation = Recommendation(created_at=now)
        db.session.add(recommendation)
    else:
        before = history.recommendation_values(recommendation)
    recommendation.code, recommendation.title, recommendation.text = code, title.strip(), text.strip()
    recommendation.theme, recommendation.priority = theme.strip(), priority
    recommendation.source, recommendation.target_date = source, target_date
    recommendation.updated_at = now
    db.session.flush()
    history.record_changes(actor, recommendation, now, before, history.recommendation_values(recommendation))
    return recommendation


def set_archived(actor: User, recommendation: Recommendation, archived: bool, now: datetime) -> None:
    """Archive (hide from lists and the dashboard) or restore a recommendation, with its history."""
    require(actor, Perm.EDIT_RECOMMENDATION)
    was_archived = recommendation.archived_at is not None
    recommendation.archived_at = now if archived else None
    db.session.flush()
    history.record_changes(actor, recommendation, now, {"archived": was_archived}, {"archived": archived})


def respond(
    actor: User, recommendation: Recommendation, office: Office, response: str, comment: str, now: datetime
) -> OfficeResponse:
    """Record an office's response (one per pair; later ones replace it), with its history."""
    require(actor, Perm.RESPOND, office)
    ResponseKind(response)
    found = db.session.scalar(
        sa.select(OfficeResponse).where(
            OfficeResponse.recommendation_id == recommendation.id, OfficeResponse.office_id == office.id
        )
    )
    before = history.response_values(found)
    if found is None:
        found = OfficeResponse(recommendation=recommendation, office=office)
        db.session.add(found)
    found.response, found.comment = response, comment.strip() or None
    found.responded_by, found.responded_at = actor, now
    db.session.flush()
    history.record_changes(actor, recommendation, now, before, history.response_values(found), office)
    return found


def save_source(
    actor: User,
    source: Source | None,
    *,
    title: str,
    place: str,
    starts_on: date | None,
    ends_on: date | None,
) -> Source:
    """Create or edit a source; reviewers and admins only."""
    require(actor, Perm.EDIT_RECOMMENDATION)
    title = title.strip()
    clash = db.session.scalar(sa.select(Source.id).where(Source.title == title))
    if clash is not None and (source is None or clash != source.id):
        raise RecommendationError(_("Another source already has this title."), "title")
    if starts_on and ends_on and ends_on < starts_on:
        raise RecommendationError(_("The end comes before the start."), "ends_on")
    if source is None:
        source = Source()
        db.session.add(source)
    source.title, source.place, source.starts_on, source.ends_on = (
        title,
        place.strip() or None,
        starts_on,
        ends_on,
    )
    db.session.flush()
    return source


def set_source_archived(actor: User, source: Source, archived: bool, now: datetime) -> None:
    """Archive or restore a source (its recommendations stay as they are)."""
    require(actor, Perm.EDIT_RECOMMENDATION)
    source.archived_at = now if archived else None
    db.session.flush()


def may_respond_for(user: User, offices: list[Office]) -> list[Office]:
    """The offices among ``offices`` whose response the user may set."""
    return [o for o in offices if can(user, Perm.RESPOND, o)]
