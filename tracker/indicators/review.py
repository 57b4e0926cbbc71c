"""Indicator values in other people's work lists: the review queue's "values" kind and the notice on
a focal point's My work (values missing or sent back).

Kept apart from the queries of pages so that tracker/actions/services.py imports only this small
module (no import cycle with the indicator commands).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.indicators.models import Indicator, Measurement, MeasurementState
from tracker.indicators.services import last_reportable
from tracker.models import Office, Recommendation, User, UTCDateTime
from tracker.permissions import Perm, can, office_scope_clause
from tracker.quarters import Quarter

#: The review queue's name (GET value of ``kind``) for values awaiting validation.
QUEUE_KIND = "values"


def queue_select(
    user: User, office_code: str | None, recommendation_code: str | None
) -> sa.Select[Any] | None:
    """The queue rows (kind, entry id, since, item id) of values awaiting validation, oldest first
    once ordered; None when the user validates none. Columns match the action kinds' for UNION ALL."""
    if not can(user, Perm.VALIDATE_MEASUREMENT):
        return None
    where: list[sa.ColumnElement[bool]] = [
        Measurement.state == MeasurementState.REPORTED.value,
        office_scope_clause(user, Measurement.office_id),
    ]
    if office_code:
        where.append(Measurement.office_id.in_(sa.select(Office.id).where(Office.code == office_code)))
    if recommendation_code:
        # A value belongs to a recommendation through the indicator that measures its effect.
        where.append(
            Measurement.indicator_id.in_(
                sa.select(Indicator.id)
                .join(Recommendation, Recommendation.id == Indicator.recommendation_id)
                .where(Recommendation.code == recommendation_code)
            )
        )
    return sa.select(
        sa.literal(QUEUE_KIND, sa.String).label("kind"),
        Measurement.id.label("entry_id"),
        sa.type_coerce(Measurement.reported_at, UTCDateTime).label("since"),
        sa.cast(sa.null(), sa.Integer).label("item_id"),
    ).where(*where)


def queue_measurements(ids: Iterable[int]) -> dict[int, Measurement]:
    """id → measurement with its indicator, office and reporter, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = db.session.scalars(
        sa.select(Measurement)
        .where(Measurement.id.in_(wanted))
        .options(
            joinedload(Measurement.indicator),
            joinedload(Measurement.office),
            joinedload(Measurement.reported_by),
        )
    )
    return {m.id: m for m in rows}


@dataclass(frozen=True)
class Due:
    """What a focal point's office still owes: values missing for the last reportable quarter, and
    values sent back (any quarter)."""

    office: Office
    period: Quarter
    missing: int
    sent_back: int

    def __bool__(self) -> bool:
        return bool(self.missing or self.sent_back)


def due(user: User, now: datetime) -> Due | None:
    """The indicator work of a focal point's office (one statement), or None for anyone else."""
    office = user.office
    if office is None or not can(user, Perm.REPORT_MEASUREMENT, office) or user.office_id is None:
        return None
    period = last_reportable(office, now)
    reported = sa.select(Measurement.indicator_id).where(
        Measurement.office_id == office.id, Measurement.period == str(period)
    )
    missing = (
        sa.select(sa.func.count())
        .select_from(Indicator)
        .where(Indicator.archived_at.is_(None), Indicator.id.not_in(reported))
        .scalar_subquery()
    )
    sent_back = (
        sa.select(sa.func.count())
        .select_from(Measurement)
        .join(Indicator, Indicator.id == Measurement.indicator_id)
        .where(
            Measurement.office_id == office.id,
            Measurement.state == MeasurementState.SENT_BACK.value,
            Indicator.archived_at.is_(None),
        )
        .scalar_subquery()
    )
    row = db.session.execute(sa.select(missing, sent_back)).one()
    return Due(office, period, int(row[0] or 0), int(row[1] or 0))
