"""The "indicators due" reminder: focal points whose office still owes values for the quarter just ended.

A quarter's values are due :data:`DUE_AFTER_DAYS` days after its last day, in the office's time
zone. From that day until the next quarter's values fall due, each active focal point of an active
office that still lacks values (an active indicator without a measurement for the quarter, or with
one sent back) gets **one** mail per quarter listing them, with a link to the office's reporting
page. Like the daily kinds, a focal point is composed for once their morning has come (their
calendar as ``rules.Calendar`` says), and judged at that moment in their office's zone; someone
away that day, or with ``notify_indicators_due`` off, is not told (the mail comes on a later
morning, once back). The key ``indicators_due:user<id>:<YYYYQn>`` makes it once per quarter.

Statements do not grow with offices, people or indicators: indicators, focal points, absences,
the quarter's measurements, the keys already queued (per 1,000), then one INSERT per new mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.indicators.models import Indicator, Measurement, MeasurementState
from tracker.indicators.queries import active_indicators
from tracker.models import NotificationKind, Office, Role, User
from tracker.notifications.compose import Planned, Settings, _existing_keys
from tracker.notifications.digest_indicators import indicator_url, site_base
from tracker.notifications.outbox import enqueue
from tracker.notifications.render import render_email
from tracker.notifications.rules import Absences, Calendar, local_date
from tracker.quarters import Quarter

log = logging.getLogger(__name__)

#: Days after a quarter's last day (office time) from which its missing values are reminded.
DUE_AFTER_DAYS = 14


@dataclass(frozen=True)
class Owed:
    """One indicator an office still owes for the quarter: never reported, or sent back."""

    indicator: Indicator
    #: The measurement sent back (with the reviewer's note), None when nothing was reported.
    sent_back: Measurement | None = None


def due_quarter(office_day: date) -> Quarter | None:
    """The quarter whose values are due on ``office_day`` (the last ended, 14 days on), else None."""
    quarter = Quarter.last_ended(office_day)
    return quarter if office_day >= quarter.last_day + timedelta(days=DUE_AFTER_DAYS) else None


def report_url(office: Office, quarter: Quarter) -> str:
    """The office's reporting page for the quarter, from TRACKER_BASE_URL."""
    return f"{site_base()}/indicators/report?{urlencode({'office': office.code, 'period': str(quarter)})}"


def _focal_points() -> list[User]:
    """Active focal points of active offices who want the reminder, with their office."""
    query = (
        sa.select(User)
        .join(User.office)
        .where(
            User.active,
            User.role == Role.FOCAL_POINT.value,
            User.notify_indicators_due,
            Office.active,
        )
        .options(joinedload(User.office))
        .order_by(User.email)
    )
    return list(db.session.scalars(query))


def _owed(
    indicators: list[Indicator], wanted: set[tuple[int, Quarter]]
) -> dict[tuple[int, Quarter], list[Owed]]:
    """Per (office, quarter) asked, the active indicators still owed, in one statement."""
    ids = [i.id for i in indicators]
    offices = sorted({office_id for office_id, _q in wanted})
    periods = sorted({str(q) for _o, q in wanted})
    query = sa.select(Measurement).where(
        Measurement.indicator_id.in_(ids), Measurement.office_id.in_(offices), Measurement.period.in_(periods)
    )
    found = {(m.indicator_id, m.office_id, m.period): m for m in db.session.scalars(query)}
    owed: dict[tuple[int, Quarter], list[Owed]] = {}
    for office_id, quarter in wanted:
        lines = []
        for indicator in indicators:
            measurement = found.get((indicator.id, office_id, str(quarter)))
            if measurement is None:
                lines.append(Owed(indicator))
            elif measurement.state == MeasurementState.SENT_BACK:
                lines.append(Owed(indicator, measurement))
        owed[(office_id, quarter)] = lines
    return owed


def compose_indicators_due(
    now: datetime, *, today: date | None = None, dry_run: bool = False
) -> list[Planned]:
    """Queue the "indicators due" mails of whoever's morning has come; flushes, never commits.

    With ``today`` (the CLI's ``--today``), everyone is composed for as of that date's morning in
    their zone. A dry run returns the plan and writes nothing.
    """
    indicators = active_indicators()
    if not indicators:
        return []
    settings = Settings.from_config()
    calendar = Calendar(now, today, settings.morning_hour)
    # (focal point, their date, the quarter due in their office at their morning)
    candidates: list[tuple[User, date, Quarter]] = []
    for person in _focal_points():
        when = calendar.day_of(person)
        if when is None:
            continue
        day, moment = when
        quarter = due_quarter(local_date(moment, ZoneInfo(person.office.timezone)))
        if quarter is not None:
            candidates.append((person, day, quarter))
    if not candidates:
        return []
    keys = {person.id: f"indicators_due:user{person.id}:{quarter}" for person, _day, quarter in candidates}
    existing = _existing_keys(keys.values())
    candidates = [c for c in candidates if keys[c[0].id] not in existing]
    if not candidates:
        return []
    away = Absences(*calendar.span())
    candidates = [c for c in candidates if not away.is_away(c[0].id, c[1])]
    if not candidates:
        return []
    owed = _owed(indicators, {(person.office_id, quarter) for person, _day, quarter in candidates})
    planned: list[Planned] = []
    for person, _day, quarter in candidates:
        lines = owed[(person.office_id, quarter)]
        if not lines:
            continue
        office = person.office
        email = render_email(
            NotificationKind.INDICATORS_DUE.value,
            person,
            lines=lines,
            office=office,
            quarter=quarter,
            due_on=quarter.last_day + timedelta(days=DUE_AFTER_DAYS),
            report_url=report_url(office, quarter),
            indicator_url=indicator_url,
        )
        if not dry_run:
            enqueue(NotificationKind.INDICATORS_DUE, person, keys[person.id], email, now)
        planned.append(
            Planned(NotificationKind.INDICATORS_DUE, person, keys[person.id], email.subject, len(lines))
        )
    if planned:
        log.info(
            "compose: %d indicators-due mails %s", len(planned), "planned (dry run)" if dry_run else "queued"
        )
    return planned
