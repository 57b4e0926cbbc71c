"""History of a recommendation and of the offices' responses to it: who changed which field, when.

Every writer (the pages, the API, the import) calls :func:`record_changes` with the values before
and after its change, in the same transaction; :func:`history` reads back what a user may see.
Values are stored as text: dates ISO (``2026-11-24``), enums as their value (``accepted``),
booleans ``true``/``false``, the source as its title. :func:`recommendation_values` and
:func:`response_values` build the dicts in that shape.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.labels import priority_label, response_label
from tracker.models import Office, OfficeResponse, Recommendation, RecommendationChange, Source, User
from tracker.permissions import office_scope_clause

#: The recommendation's own fields, in the order the page lists them.
RECOMMENDATION_FIELDS = ("code", "title", "text", "theme", "priority", "target_date", "source", "archived")
#: An office response's fields.
RESPONSE_FIELDS = ("response", "comment")

_LABELS = {
    "code": _l("Code"),
    "title": _l("Title"),
    "text": _l("Text"),
    "theme": _l("Theme"),
    "priority": _l("Priority"),
    "target_date": _l("Target date"),
    "source": _l("Source"),
    "archived": _l("Archived"),
}


def response_scope_clause(user: User | Any, office_id_column: Any) -> sa.ColumnElement[bool]:
    """Whose responses (and their history) the user sees: active offices within their scope."""
    active = sa.select(Office.id).where(Office.active.is_(True))
    return sa.and_(office_scope_clause(user, office_id_column), office_id_column.in_(active))


def as_text(value: Any) -> str | None:
    """A value as the history stores it (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Source):
        return value.title
    return str(value)


def recommendation_values(recommendation: Recommendation) -> dict[str, Any]:
    """The recommendation's tracked fields, ready for ``before``/``after``."""
    return {
        "code": recommendation.code,
        "title": recommendation.title,
        "text": recommendation.text,
        "theme": recommendation.theme,
        "priority": recommendation.priority,
        "target_date": recommendation.target_date,
        "source": recommendation.source,
        "archived": recommendation.archived_at is not None,
    }


def response_values(response: OfficeResponse | None) -> dict[str, Any]:
    """An office response's tracked fields ({} when there is none yet)."""
    if response is None:
        return {}
    return {"response": response.response, "comment": response.comment}


def record_changes(
    actor: User | None,
    recommendation: Recommendation,
    now: datetime,
    before: dict[str, Any],
    after: dict[str, Any],
    office: Office | None = None,
) -> list[RecommendationChange]:
    """Add one row per field whose value differs between ``before`` and ``after``; flush only.

    ``actor`` None means the system. ``office`` is set for a change of that office's response,
    None for the recommendation itself. A field missing from ``before`` counts as None, so a
    creation passes ``before={}`` and records the initial values. Values may be text, dates,
    enums, booleans or a Source; see :func:`as_text`. Returns the rows added.
    """
    rows = []
    for field in dict.fromkeys([*after, *before]):
        old, new = as_text(before.get(field)), as_text(after.get(field))
        if old == new:
            continue
        rows.append(
            RecommendationChange(
                recommendation=recommendation,
                office_id=office.id if office is not None else None,
                author_id=actor.id if actor is not None else None,
                created_at=now,
                field=field,
                old_value=old,
                new_value=new,
            )
        )
    db.session.add_all(rows)
    db.session.flush()
    return rows


def _visible(user: User | Any, recommendation: Recommendation) -> sa.ColumnElement[bool]:
    return sa.and_(
        RecommendationChange.recommendation_id == recommendation.id,
        sa.or_(
            RecommendationChange.office_id.is_(None),
            response_scope_clause(user, RecommendationChange.office_id),
        ),
    )


def history(
    user: User | Any, recommendation: Recommendation, limit: int | None = None
) -> list[RecommendationChange]:
    """The changes the user may see, newest first, with authors and offices (one query).

    The recommendation's own changes go to whoever may view it (the caller checks that); a
    response's changes only to those who see that response on the page.
    """
    query = (
        sa.select(RecommendationChange)
        .where(_visible(user, recommendation))
        .options(joinedload(RecommendationChange.author), joinedload(RecommendationChange.office))
        .order_by(RecommendationChange.created_at.desc(), RecommendationChange.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def history_count(user: User | Any, recommendation: Recommendation) -> int:
    """How many changes the user may see."""
    query = sa.select(sa.func.count()).select_from(RecommendationChange).where(_visible(user, recommendation))
    return db.session.scalar(query) or 0


def field_label(change: RecommendationChange) -> str:
    """The changed field's name for people, e.g. “Title” or “Response of SG”."""
    if change.office_id is not None:
        office = change.office.code if change.office else "?"
        if change.field == "response":
            return _("Response of %(office)s", office=office)
        if change.field == "comment":
            return _("Comment of %(office)s", office=office)
        return f"{change.field} ({office})"
    label = _LABELS.get(change.field)
    return str(label) if label is not None else change.field


def value_label(change: RecommendationChange, value: str | None) -> str | None:
    """A stored value for people: labels for enums, dates in the viewer's language."""
    if value is None:
        return None
    try:
        if change.field == "priority":
            return priority_label(value)
        if change.field == "response" and change.office_id is not None:
            return response_label(value)
        if change.field == "target_date":
            return format_date(date.fromisoformat(value), "medium")
    except ValueError:
        return value
    if change.field == "archived":
        return _("Yes") if value == "true" else _("No")
    return value
