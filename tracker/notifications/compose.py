"""Compose: decide from database state and a moment who must be told what, and queue it in the outbox.

One outbox row per (kind, recipient, period) under a unique idempotency key, listing all of the
recipient's items: composing again inserts nothing new. The period of a daily kind is the
recipient's local date (``overdue:user42:2026-11-24``); a digest's is the quarter
(``digest:user7:2026Q3``). Rules, with n counted in whole days of the item's office's calendar:

- **Morning**: a recipient is composed for once their local time (their own zone, else their
  office's, else UTC) has reached ``TRACKER_MORNING_HOUR`` on their local date D; the job runs
  every 15 minutes and picks whoever's morning has come, so a run missed at 08:00 is caught up by
  the next one that day. Items are judged at that morning moment, in the item's office's zone
  (the rule of ``ActionItem.is_overdue``), so the answer does not depend on when the run happens.
- **due_soon**: an open item whose deadline is n days ahead, n in ``TRACKER_DUE_SOON_DAYS``.
- **overdue**: n = days since the deadline; on n = 1, then every ``TRACKER_OVERDUE_REPEAT_DAYS``
  (n = 1, 8, 15, … by default). Cannot be switched off.
- **stale**: an open item whose last change (``updated_at``) is a = N, 2N, 3N… days old, N =
  ``TRACKER_STALE_DAYS``: a nudge on the day it reaches N days, then every N days.
- **Recipient of those three**: the owner if active and allowed to see the item; else the deputy
  if so; else the office's active managers who may see it; else nobody. Optional kinds follow the
  recipient's preference (an owner who switched due-soon off gets none; it does not pass on).
- **escalation**: an open item overdue more than ``TRACKER_ESCALATION_DAYS`` days without an
  ``Escalation(level=1)`` row is reported to its office's active managers (office managers only,
  not programme-wide ones), once: the row is written in the same transaction as the mail. An
  escalation is one event per item shared by all its managers, so it is judged at the *office's*
  morning and every manager of the office gets it then (keyed on their own local date). An office
  without an active manager: the row is written anyway, with a warning in the log, and nobody is
  mailed. If every manager already had an escalation mail that day, the item waits until the next.
- **review_queue**: each active reviewer gets the list of completions awaiting verification (every
  office's, as on the verification page), when it is not empty.
- **digest**: see :func:`compose_digests` and ``digest.py``.

Items of archived recommendations are left out of reminders and digests (as on the dashboard).
Nobody is told about an item that ``permissions.can`` does not let them see. The number of SQL
statements is bounded: five SELECTs whatever the number of items (users, office zones, candidate
items streamed with their office, recommendation, owner and escalation, the review queue, the keys
already queued), then one INSERT per new mail and one for all the new escalation rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased, contains_eager, joinedload

from tracker.actions.services import office_today
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    ActionUpdate,
    Escalation,
    Notification,
    NotificationKind,
    Office,
    Recommendation,
    Role,
    Status,
    User,
)
from tracker.notifications.digest import LIST_LIMIT, Figures, Quarter, build_figures
from tracker.notifications.outbox import enqueue
from tracker.notifications.render import render_email
from tracker.permissions import Perm, can, office_scope

log = logging.getLogger(__name__)

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)
#: Keys looked up per statement when checking which mails exist already.
_KEY_CHUNK = 500
#: Rows fetched at a time from the candidate items.
_YIELD_PER = 500


class ComposeConfigError(ValueError):
    """A TRACKER_* reminder setting is out of range."""


@dataclass(frozen=True)
class Settings:
    """The reminder rules' numbers, from the configuration."""

    due_soon_days: tuple[int, ...]
    overdue_repeat_days: int
    escalation_days: int
    stale_days: int
    morning_hour: int

    @classmethod
    def from_config(cls) -> Settings:
        """Read and check the TRACKER_* settings."""
        config = current_app.config
        settings = cls(
            due_soon_days=tuple(sorted({int(d) for d in config["TRACKER_DUE_SOON_DAYS"]}, reverse=True)),
            overdue_repeat_days=int(config["TRACKER_OVERDUE_REPEAT_DAYS"]),
            escalation_days=int(config["TRACKER_ESCALATION_DAYS"]),
            stale_days=int(config["TRACKER_STALE_DAYS"]),
            morning_hour=int(config["TRACKER_MORNING_HOUR"]),
        )
        if any(d < 1 for d in settings.due_soon_days):
            raise ComposeConfigError("TRACKER_DUE_SOON_DAYS must be whole numbers of days, 1 or more")
        if settings.overdue_repeat_days < 1 or settings.stale_days < 1 or settings.escalation_days < 0:
            raise ComposeConfigError(
                "TRACKER_OVERDUE_REPEAT_DAYS and TRACKER_STALE_DAYS must be 1 or more, "
                "TRACKER_ESCALATION_DAYS 0 or more"
            )
        if not 0 <= settings.morning_hour <= 23:
            raise ComposeConfigError("TRACKER_MORNING_HOUR must be an hour from 0 to 23")
        return settings


@dataclass(frozen=True)
class Line:
    """One item in a mail, with the number of days that put it there."""

    item: ActionItem
    #: Days left (due soon), overdue (overdue, escalation), without update (stale), waiting (review).
    days: int
    #: The date of the last update (stale) or of the completion report (review queue).
    on: date | None = None


@dataclass(frozen=True)
class Planned:
    """One mail that this run queued (or, in a dry run, would queue)."""

    kind: NotificationKind
    recipient: User
    key: str
    subject: str
    #: Items listed (for a digest: items counted in its tables).
    items: int


@dataclass
class _Mail:
    """A mail being assembled: a kind, a recipient, their local date, the lines."""

    kind: NotificationKind
    recipient: User
    day: date
    lines: list[Line] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.kind.value}:user{self.recipient.id}:{self.day.isoformat()}"


def morning(day: date, zone: ZoneInfo, hour: int) -> datetime:
    """The moment of ``hour`` o'clock on ``day`` in ``zone``."""
    return datetime.combine(day, time(hour), tzinfo=zone)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The date it is in ``zone`` at ``moment``."""
    return moment.astimezone(zone).date()


class _Calendar:
    """Each recipient's local date and morning, computed once per run."""

    def __init__(self, now: datetime, today: date | None, hour: int) -> None:
        self.now, self.today, self.hour = now, today, hour
        self._days: dict[int, tuple[date, datetime] | None] = {}
        self._office_days: dict[int, date | None] = {}

    def day_of(self, user: User) -> tuple[date, datetime] | None:
        """(their date, its morning) if their morning has come (always with a forced ``today``)."""
        if user.id not in self._days:
            zone = user.zone
            day = self.today or local_date(self.now, zone)
            moment = morning(day, zone, self.hour)
            self._days[user.id] = (day, moment) if self.today or self.now >= moment else None
        return self._days[user.id]

    def date_of(self, user: User) -> date:
        """Their local date now (or the forced ``today``), morning or not."""
        return self.today or local_date(self.now, user.zone)

    def office_day(self, office: Office) -> date | None:
        """The office's date if its morning has come (the moment escalations are judged)."""
        if office.id not in self._office_days:
            zone = ZoneInfo(office.timezone)
            day = self.today or local_date(self.now, zone)
            come = self.today or self.now >= morning(day, zone, self.hour)
            self._office_days[office.id] = day if come else None
        return self._office_days[office.id]


def _active_users() -> dict[int, User]:
    query = sa.select(User).where(User.active).options(joinedload(User.office)).order_by(User.id)
    return {user.id: user for user in db.session.scalars(query)}


def _candidate_items(reference: datetime, settings: Settings) -> Iterator[tuple[ActionItem, bool]]:
    """Open items that may need a reminder at any morning up to ``reference``, with "escalated".

    A superset, filtered in SQL: due within the largest due-soon distance or overdue (by the
    office's date at ``reference``, never earlier than anyone's morning), or not updated for
    about the stale period. Streamed; office, recommendation and owner come in the same query.
    """
    owner = aliased(User)
    furthest = max((0, *settings.due_soon_days))
    stale_from = reference - timedelta(days=max(settings.stale_days - 2, 0))  # margin for zones/DST
    query = (
        sa.select(ActionItem, Escalation.id)
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .outerjoin(owner, ActionItem.owner_id == owner.id)
        .outerjoin(Escalation, sa.and_(Escalation.action_item_id == ActionItem.id, Escalation.level == 1))
        .where(
            ActionItem.status.not_in(_CLOSED),
            Recommendation.archived_at.is_(None),
            sa.or_(
                ActionItem.deadline <= office_today(reference, furthest), ActionItem.updated_at < stale_from
            ),
        )
        .options(
            contains_eager(ActionItem.office),
            contains_eager(ActionItem.recommendation),
            contains_eager(ActionItem.owner.of_type(owner)),
        )
        .order_by(ActionItem.id)
    )
    for item, escalation_id in db.session.execute(query, execution_options={"yield_per": _YIELD_PER}):
        yield item, escalation_id is not None


def _review_queue() -> list[tuple[ActionItem, datetime | None]]:
    """Items reported completed, with when (latest report in history), the longest waiting first."""
    reported = (
        sa.select(
            ActionUpdate.action_item_id.label("item_id"),
            sa.func.max(ActionUpdate.created_at).label("reported_at"),
        )
        .where(ActionUpdate.new_status == Status.COMPLETED.value)
        .group_by(ActionUpdate.action_item_id)
        .subquery()
    )
    owner = aliased(User)
    query = (
        sa.select(ActionItem, reported.c.reported_at)
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .outerjoin(owner, ActionItem.owner_id == owner.id)
        .outerjoin(reported, reported.c.item_id == ActionItem.id)
        .where(ActionItem.status == Status.COMPLETED.value)
        .options(
            contains_eager(ActionItem.office),
            contains_eager(ActionItem.recommendation),
            contains_eager(ActionItem.owner.of_type(owner)),
        )
        .order_by(sa.func.coalesce(reported.c.reported_at, ActionItem.updated_at), ActionItem.id)
    )
    return [(item, at) for item, at in db.session.execute(query)]


def responsible(item: ActionItem, users: dict[int, User], managers: dict[int, list[User]]) -> list[User]:
    """Who is reminded about ``item``: owner, else deputy, else the office's managers (see above)."""
    for person_id in (item.owner_id, item.deputy_id):
        person = users.get(person_id) if person_id else None
        if person is not None and can(person, Perm.VIEW_ACTION, item):
            return [person]
    return [m for m in managers.get(item.office_id, []) if can(m, Perm.VIEW_ACTION, item)]


def _existing_keys(keys: Iterable[str]) -> set[str]:
    keys = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        query = sa.select(Notification.idempotency_key).where(Notification.idempotency_key.in_(chunk))
        found.update(db.session.scalars(query))
    return found


def offices_label(lines: Iterable[Line]) -> str:
    """The office codes of the items, e.g. ``SG, MY`` (sorted), for subjects."""
    return ", ".join(sorted({line.item.office.code for line in lines}))


_SORT = {
    NotificationKind.DUE_SOON: lambda line: (line.item.deadline, line.item.office.code, line.item.id),
    NotificationKind.OVERDUE: lambda line: (line.item.deadline, line.item.office.code, line.item.id),
    NotificationKind.ESCALATION: lambda line: (line.item.deadline, line.item.office.code, line.item.id),
    NotificationKind.STALE: lambda line: (-line.days, line.item.office.code, line.item.id),
    NotificationKind.REVIEW_QUEUE: lambda line: (-line.days, line.item.office.code, line.item.id),
}


def compose_reminders(now: datetime, *, today: date | None = None, dry_run: bool = False) -> list[Planned]:
    """Queue today's due-soon, overdue, escalation, stale and review-queue mails; flushes, never commits.

    ``now`` is the moment of the run. Without ``today``, each recipient is composed for once their
    morning has come on their local date. With ``today`` (the CLI's ``--today``), everyone is
    composed for as of the morning of that date in their own zone, whatever the time. A dry run
    returns the plan and writes nothing.
    """
    settings = Settings.from_config()
    calendar = _Calendar(now, today, settings.morning_hour)
    users = _active_users()
    managers: dict[int, list[User]] = defaultdict(list)
    for user in users.values():
        if user.role == Role.MANAGER and user.office_id is not None:
            managers[user.office_id].append(user)

    mails: dict[tuple[NotificationKind, int], _Mail] = {}

    def add(kind: NotificationKind, user: User, day: date, line: Line) -> None:
        mail = mails.setdefault((kind, user.id), _Mail(kind, user, day))
        mail.lines.append(line)

    # The latest morning anyone is composed for: now, or the forced date's in the westernmost zone.
    reference = now
    if today is not None:
        reference = datetime.combine(today, time(settings.morning_hour), UTC) + timedelta(hours=14)
    to_escalate: dict[int, list[Line]] = defaultdict(list)
    unresolved = 0
    for item, escalated in _candidate_items(reference, settings):
        zone = ZoneInfo(item.office.timezone)
        people = responsible(item, users, managers)
        unresolved += not people
        for person in people:
            found = calendar.day_of(person)
            if found is None:
                continue  # their morning has not come yet
            day, moment = found
            office_day = local_date(moment, zone)
            left = (item.deadline - office_day).days
            if left in settings.due_soon_days and person.notify_due_soon:
                add(NotificationKind.DUE_SOON, person, day, Line(item, left))
            overdue = -left
            if overdue >= 1 and (overdue - 1) % settings.overdue_repeat_days == 0:
                add(NotificationKind.OVERDUE, person, day, Line(item, overdue))
            updated_on = local_date(item.updated_at, zone)
            age = (office_day - updated_on).days
            if age >= settings.stale_days and age % settings.stale_days == 0 and person.notify_stale:
                add(NotificationKind.STALE, person, day, Line(item, age, updated_on))
        if not escalated:
            office_day = calendar.office_day(item.office)
            if office_day is not None and (office_day - item.deadline).days > settings.escalation_days:
                to_escalate[item.office_id].append(Line(item, (office_day - item.deadline).days))
    if unresolved:
        log.debug("%d items due a reminder have nobody active to receive it", unresolved)

    # Escalations: every active manager of the office who may see the item, keyed on their own date.
    for office_id, lines in to_escalate.items():
        for manager in managers.get(office_id, []):
            visible = [line for line in lines if can(manager, Perm.VIEW_ACTION, line.item)]
            for line in visible:
                add(NotificationKind.ESCALATION, manager, calendar.date_of(manager), line)

    reviewers = [
        (user, found)
        for user in users.values()
        if user.role == Role.REVIEWER and user.notify_review_queue and (found := calendar.day_of(user))
    ]
    if reviewers:
        queue = _review_queue()
        for reviewer, (day, _moment) in reviewers:
            for item, reported_at in queue:
                if can(reviewer, Perm.VERIFY_ACTION, item):
                    reported_on = local_date(reported_at or item.updated_at, reviewer.zone)
                    add(
                        NotificationKind.REVIEW_QUEUE,
                        reviewer,
                        day,
                        Line(item, (day - reported_on).days, reported_on),
                    )

    existing = _existing_keys(mail.key for mail in mails.values())
    new = [mail for mail in mails.values() if mail.key not in existing]
    planned = [_queue(mail, settings, now, dry_run) for mail in sorted(new, key=_mail_order)]

    # Write the escalation rows of the items some manager is told about now (or that have nobody).
    told = {line.item.id for mail in new if mail.kind == NotificationKind.ESCALATION for line in mail.lines}
    escalate: list[int] = []
    for office_id, lines in to_escalate.items():
        if not managers.get(office_id):
            log.warning(
                "office %s has no active manager: %d item(s) %s without mail (ids %s)",
                lines[0].item.office.code,
                len(lines),
                "would be escalated" if dry_run else "escalated",
                ", ".join(str(line.item.id) for line in lines),
            )
            escalate.extend(line.item.id for line in lines)
        else:
            escalate.extend(line.item.id for line in lines if line.item.id in told)
    if escalate and not dry_run:
        _insert_escalations(escalate, now)
    if planned:
        log.info("compose: %d reminder mails %s", len(planned), "planned (dry run)" if dry_run else "queued")
    return planned


def _mail_order(mail: _Mail) -> tuple[str, str]:
    return (mail.recipient.email, mail.kind.value)


def _queue(mail: _Mail, settings: Settings, now: datetime, dry_run: bool) -> Planned:
    """Render one mail and insert it (unless a dry run)."""
    lines = sorted(mail.lines, key=_SORT[mail.kind])
    email = render_email(
        mail.kind.value,
        mail.recipient,
        lines=lines,
        offices=offices_label(lines),
        day=mail.day,
        settings=settings,
    )
    if not dry_run:
        enqueue(mail.kind, mail.recipient, mail.key, email, now)
    return Planned(mail.kind, mail.recipient, mail.key, email.subject, len(lines))


def _insert_escalations(item_ids: list[int], now: datetime) -> None:
    """One INSERT for all the new Escalation rows; a row that exists already is left alone."""
    dialect = db.session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](Escalation)
    rows = [{"action_item_id": item_id, "level": 1, "created_at": now} for item_id in sorted(set(item_ids))]
    db.session.execute(insert.values(rows).on_conflict_do_nothing(index_elements=["action_item_id", "level"]))


def compose_digests(quarter: Quarter | None, now: datetime, *, dry_run: bool = False) -> list[Planned]:
    """Queue each manager's quarterly digest; flushes, never commits.

    With ``quarter`` None (the scheduled job), a manager gets the digest of the quarter just ended
    on the first day of a quarter once their morning has come (catching up during that day only).
    With a ``quarter`` (the CLI), every manager gets that quarter's digest now. Keys are
    ``digest:user<id>:<YYYYQn>``, so either way each manager gets each quarter once. Managers with
    the digest switched off, and those with nothing in their scope, get none.
    """
    settings = Settings.from_config()
    managers = db.session.scalars(
        sa.select(User)
        .where(User.active, User.role == Role.MANAGER.value, User.notify_digest)
        .options(joinedload(User.office))
        .order_by(User.email)
    ).all()
    targets: list[tuple[User, Quarter]] = []
    for manager in managers:
        if quarter is not None:
            targets.append((manager, quarter))
            continue
        day = local_date(now, manager.zone)
        is_first_day = day.day == 1 and day.month in (1, 4, 7, 10)
        if is_first_day and now >= morning(day, manager.zone, settings.morning_hour):
            targets.append((manager, Quarter.containing(day).previous))
    keys = {manager.id: f"digest:user{manager.id}:{q}" for manager, q in targets}
    existing = _existing_keys(keys.values())
    targets = [(manager, q) for manager, q in targets if keys[manager.id] not in existing]
    if not targets:
        return []

    offices = list(db.session.scalars(sa.select(Office)))
    figures: dict[Quarter, Figures] = {}
    planned: list[Planned] = []
    for manager, q in targets:
        if q not in figures:
            figures[q] = build_figures(q, offices)
        digest = figures[q].for_user(manager)
        if digest is None:
            continue
        # A programme-wide manager's digest covers all offices; an office manager's, their office.
        office_code = manager.office.code if office_scope(manager) is not None and manager.office else None
        email = render_email(
            "digest", manager, digest=digest, quarter=q, office_code=office_code, limit=LIST_LIMIT
        )
        if not dry_run:
            enqueue(NotificationKind.DIGEST, manager, keys[manager.id], email, now)
        planned.append(
            Planned(NotificationKind.DIGEST, manager, keys[manager.id], email.subject, digest.item_count)
        )
    if planned:
        log.info("compose: %d digests %s", len(planned), "planned (dry run)" if dry_run else "queued")
    return planned


def compose_due_digests(now: datetime, *, dry_run: bool = False) -> list[Planned]:
    """The scheduled digest job: each manager's digest on a quarter's first day, in their morning."""
    return compose_digests(None, now, dry_run=dry_run)


def compose(now: datetime, *, dry_run: bool = False) -> list[Planned]:
    """The whole scheduled job: reminders for whoever's morning has come, and the digests that are due."""
    return compose_reminders(now, dry_run=dry_run) + compose_due_digests(now, dry_run=dry_run)
