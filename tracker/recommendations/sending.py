"""Sending a recommendation to offices in one step, and the requests an office has still to answer.

Each chosen office gets a ResponseRequest (one per pair: an office already asked is skipped and
reported, never asked twice, also when two submits race), optionally a first action drafted
through the same command as any new action (its rules and its "created" history row), and each of
its active focal points one mail asking for the office's response. Focal points only: they answer
for the office (Perm.RESPOND); managers read, and deputies belong to single actions, not to the
office. Everything is written in the caller's transaction: an error leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from tracker.actions import commands
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    Office,
    OfficeResponse,
    Recommendation,
    ResponseRequest,
    Role,
    User,
    mark_data_changed,
)
from tracker.notifications import account
from tracker.permissions import Perm, require
from tracker.recommendations import history
from tracker.recommendations.services import RecommendationError

#: The title a drafted action gets unless the sender writes another; %(code)s, %(title)s and
#: %(office)s stand for the recommendation's code and title and the office's code.
DEFAULT_DRAFT_TITLE = _l("Plan the response to %(code)s")
#: The most requests the "open requests" panel lists.
OPEN_REQUESTS_SHOWN = 50


@dataclass
class SendResult:
    """What a send did, for the page that reports it."""

    #: Offices asked now.
    sent: list[Office] = field(default_factory=list)
    #: Offices asked before: skipped.
    already: list[Office] = field(default_factory=list)
    drafted: list[ActionItem] = field(default_factory=list)
    #: Offices asked now that have no active focal point: no action drafted, nobody told.
    without_focal_point: list[Office] = field(default_factory=list)
    #: Mails queued (one per focal point told).
    mails: int = 0


def active_offices() -> list[Office]:
    """Every active office, by code: those a recommendation can be sent to."""
    return list(db.session.scalars(sa.select(Office).where(Office.active.is_(True)).order_by(Office.code)))


def focal_points(office_ids: Sequence[int]) -> dict[int, list[User]]:
    """office id → its active focal points by name (then id), in one statement."""
    people: dict[int, list[User]] = {}
    query = (
        sa.select(User)
        .where(
            User.office_id.in_(list(office_ids)),
            User.role == Role.FOCAL_POINT.value,
            User.active.is_(True),
        )
        .order_by(User.name, User.id)
    )
    for user in db.session.scalars(query):
        people.setdefault(user.office_id, []).append(user)
    return people


def draft_title(template: str, recommendation: Recommendation, office: Office) -> str:
    """The title of an office's drafted action: the placeholders replaced, at most 300 characters.

    Replaced one by one rather than with ``%``: the sender's text may hold a bare "%".
    """
    title = " ".join(template.split())
    values = {"code": recommendation.code, "title": recommendation.title, "office": office.code}
    for name, value in values.items():
        title = title.replace(f"%({name})s", value)
    return title[:300]


def requested_offices(recommendation: Recommendation) -> set[int]:
    """The ids of the offices this recommendation was sent to."""
    query = sa.select(ResponseRequest.office_id).where(ResponseRequest.recommendation_id == recommendation.id)
    return set(db.session.scalars(query))


def send_to_offices(
    actor: User,
    recommendation: Recommendation,
    office_ids: Sequence[int],
    now: datetime,
    *,
    draft: bool = False,
    title_template: str = "",
    deadline: date | None = None,
) -> SendResult:
    """Ask the chosen active offices to respond, draft a first action each if asked, tell their
    focal points; refuses (RecommendationError, naming the field) before writing anything."""
    require(actor, Perm.SEND_RECOMMENDATION)
    if recommendation.archived_at is not None:
        raise RecommendationError(_("An archived recommendation cannot be sent; restore it first."))
    offices = [o for o in active_offices() if o.id in set(office_ids)]
    if not offices:
        raise RecommendationError(_("Choose at least one office."), "offices")
    if draft:
        deadline = deadline or recommendation.target_date
        if deadline is None:
            raise RecommendationError(
                _("Give the deadline of the drafted actions: the recommendation has no target date."),
                "draft_deadline",
            )
        title_template = title_template.strip() or str(DEFAULT_DRAFT_TITLE)
    people = focal_points([o.id for o in offices])
    result = SendResult()
    for office in offices:
        if not _ask(recommendation, office, actor, now):
            result.already.append(office)
            continue
        result.sent.append(office)
        told = people.get(office.id, [])
        if not told:
            result.without_focal_point.append(office)
            continue
        item = None
        if draft:
            fields = commands.ActionFields(
                title=draft_title(title_template, recommendation, office),
                recommendation_id=recommendation.id,
                owner_id=told[0].id,
                deputy_id=None,
                deadline=deadline,
            )
            # No assignment mail: the request below tells the owner of the drafted action too.
            item = commands.create_action(actor, office, now, fields, notify=False)
            result.drafted.append(item)
        for person in told:
            result.mails += account.notify_response_request(person, recommendation, office, item, actor, now)
    return result


def _ask(recommendation: Recommendation, office: Office, actor: User, now: datetime) -> bool:
    """Insert the office's request unless it exists; True if inserted.

    ON CONFLICT DO NOTHING: a concurrent send of the same pair waits for the other transaction
    and then finds the row, so a double submit reports "already asked" instead of failing.
    """
    dialect = db.session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](ResponseRequest)
    statement = (
        insert.values(
            recommendation_id=recommendation.id,
            office_id=office.id,
            requested_by_id=actor.id,
            requested_at=now,
        )
        .on_conflict_do_nothing(index_elements=["recommendation_id", "office_id"])
        .returning(ResponseRequest.id)
    )
    inserted = db.session.execute(statement).first() is not None
    if inserted:
        mark_data_changed(db.session)  # a core insert: the ORM would not notice it
    return inserted


def requests_by_office(user: User, recommendation: Recommendation) -> dict[int, ResponseRequest]:
    """office id → the request sent to it for this recommendation, among the offices in scope."""
    query = sa.select(ResponseRequest).where(
        ResponseRequest.recommendation_id == recommendation.id,
        history.response_scope_clause(user, ResponseRequest.office_id),
    )
    return {r.office_id: r for r in db.session.scalars(query)}


def open_response_requests(user: User, limit: int = OPEN_REQUESTS_SHOWN) -> list[ResponseRequest]:
    """The requests sent to the user's office that it has not answered yet, oldest first (one
    statement; archived recommendations left out; nothing for users without an office)."""
    if user.office_id is None:
        return []
    answered = sa.select(OfficeResponse.id).where(
        OfficeResponse.recommendation_id == ResponseRequest.recommendation_id,
        OfficeResponse.office_id == ResponseRequest.office_id,
    )
    query = (
        sa.select(ResponseRequest)
        .join(Recommendation, Recommendation.id == ResponseRequest.recommendation_id)
        .where(
            ResponseRequest.office_id == user.office_id,
            Recommendation.archived_at.is_(None),
            ~answered.exists(),
        )
        .options(joinedload(ResponseRequest.recommendation))
        .order_by(ResponseRequest.requested_at, ResponseRequest.id)
        .limit(limit)
    )
    return list(db.session.scalars(query))
