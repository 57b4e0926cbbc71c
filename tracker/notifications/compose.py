"""Compose: decide from database state and a moment who must be told what, and queue it in the outbox.

One outbox row per (kind, recipient, period) under a unique idempotency key, listing all of the
recipient's items: composing again inserts nothing new. The period of a daily kind is the
recipient's local date (``overdue:user42:2026-11-24``); a digest's is the quarter
(``digest:user7:2026Q3``). The daily kinds are the rules of ``rules.py`` (one function per kind, in
one table); this module loads what they read, runs them, and queues and records what they found.
With n counted in whole days of the item's office's calendar:

- **Morning**: a recipient is composed for once their local time (their own zone, else their
  office's, else UTC) has reached ``TRACKER_MORNING_HOUR`` on their local date D; the job runs
  every 15 minutes and picks whoever's morning has come. Items are judged at that morning moment,
  in the item's office's zone, so the answer does not depend on when the run happens.
- **due_soon**: an open item whose deadline is n days ahead, n in ``TRACKER_DUE_SOON_DAYS``.
- **overdue**: the first notice on the first run after the deadline passed, whatever day that is
  (``ItemNotice("overdue", period=deadline)`` remembers it), then on n = 1 + k ×
  ``TRACKER_OVERDUE_REPEAT_DAYS`` (1, 8, 15, … by default). A scheduler back after days away
  sends the missed first notice once, never the missed repeats. Cannot be switched off.
- **stale**: no update (``updated_at``) for ``TRACKER_STALE_DAYS`` days, then every
  ``TRACKER_STALE_REPEAT_DAYS``: one nudge per idle period whatever day the job runs
  (``ItemNotice("stale", period=first day of the period)``).
- **Recipient of those three**: the owner if active and allowed to see the item; else the deputy
  if so; else the office's active managers who may see it; else nobody. Someone away that day
  (``Absence``, their own date) is covered by the action's deputy if active and here, else by the
  office's other active focal points who are here; the line says whom it covers and until when.
  Optional kinds follow the recipient's preference.
- **escalation**: ``TRACKER_ESCALATION_LADDER`` (``30:office_managers,60:programme_managers,
  90:reviewers``): an open item overdue more than a rung's days is reported once per rung to that
  rung's people who may see it and are not away; a rung with nobody falls through to the next
  rung's audience, the last to the admins. Judged at the office's morning; the ``Escalation`` row
  is written only with a mail that lists the item (a recipient who already had an escalation mail
  that day makes the item wait for the next).
- **review_queue**: each active reviewer who is not away gets the completions awaiting
  verification and the pending extension requests, when there are any.
- **digest**: see :func:`compose_digests` and ``digest.py``.

Items of archived recommendations are left out of reminders and digests (as on the dashboard).
Nobody is told about an item that ``permissions.can`` does not let them see. The number of SQL
statements is bounded: users, absences, candidate items (with office, recommendation, owner,
notices, extensions and last update in the same query), their escalation rungs, the review list
(two), the keys already queued (per 1,000); then one INSERT per new mail and one per 1,000 rows
recorded (``tracker.batches``: no statement grows with the backlog).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased, contains_eager, joinedload

from tracker.actions.queries import office_today
from tracker.batches import chunks, size
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    ActionUpdate,
    Escalation,
    ExtensionRequest,
    ExtensionState,
    ItemNotice,
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
from tracker.notifications.rules import (
    AUDIENCES,
    NOTICE_OVERDUE,
    NOTICE_STALE,
    RULES,
    Absences,
    Calendar,
    Context,
    Facts,
    Line,
    Rung,
    Tell,
    local_date,
    morning,
)
from tracker.permissions import office_scope

log = logging.getLogger(__name__)

__all__ = ["ComposeConfigError", "Line", "Planned", "Settings", "compose", "compose_reminders"]

_CLOSED = sorted(s.value for s in CLOSED_STATUSES)
_RUNG = re.compile(r"^\s*(\d+)\s*:\s*([a-z_]+)\s*$")


class ComposeConfigError(ValueError):
    """A TRACKER_* reminder setting is out of range."""


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """``30:office_managers,60:programme_managers`` → rungs; raises ComposeConfigError naming the setting."""
    example = "30:office_managers,60:programme_managers,90:reviewers"
    rungs = []
    for part in str(text).split(","):
        match = _RUNG.match(part)
        if not match or match.group(2) not in AUDIENCES:
            raise ComposeConfigError(
                f"TRACKER_ESCALATION_LADDER must be days:audience pairs separated by commas, e.g. {example} "
                f"(audiences: {', '.join(AUDIENCES)}), not {text!r}"
            )
        rungs.append(Rung(int(match.group(1)), match.group(2)))
    if any(later.days <= earlier.days for earlier, later in pairwise(rungs)):
        raise ComposeConfigError(
            f"TRACKER_ESCALATION_LADDER must list its days in increasing order, not {text!r}"
        )
    return tuple(rungs)


@dataclass(frozen=True)
class Settings:
    """The reminder rules' numbers, from the configuration."""

    due_soon_days: tuple[int, ...]
    overdue_repeat_days: int
    escalation_ladder: tuple[Rung, ...]
    stale_days: int
    stale_repeat_days: int
    morning_hour: int

    @classmethod
    def from_config(cls) -> Settings:
        """Read and check the TRACKER_* settings."""
        config = current_app.config
        settings = cls(
            due_soon_days=tuple(sorted({int(d) for d in config["TRACKER_DUE_SOON_DAYS"]}, reverse=True)),
            overdue_repeat_days=int(config["TRACKER_OVERDUE_REPEAT_DAYS"]),
            escalation_ladder=parse_ladder(config["TRACKER_ESCALATION_LADDER"]),
            stale_days=int(config["TRACKER_STALE_DAYS"]),
            stale_repeat_days=int(config["TRACKER_STALE_REPEAT_DAYS"]),
            morning_hour=int(config["TRACKER_MORNING_HOUR"]),
        )
        if any(d < 1 for d in settings.due_soon_days):
            raise ComposeConfigError("TRACKER_DUE_SOON_DAYS must be whole numbers of days, 1 or more")
        if min(settings.overdue_repeat_days, settings.stale_days, settings.stale_repeat_days) < 1:
            raise ComposeConfigError(
                "TRACKER_OVERDUE_REPEAT_DAYS, TRACKER_STALE_DAYS and TRACKER_STALE_REPEAT_DAYS "
                "must be 1 or more"
            )
        if not 0 <= settings.morning_hour <= 23:
            raise ComposeConfigError("TRACKER_MORNING_HOUR must be an hour from 0 to 23")
        return settings

    @property
    def escalation_days(self) -> int:
        """The first rung's days (overdue more than this is escalated at all)."""
        return self.escalation_ladder[0].days


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
    """A mail being assembled: a kind, a recipient, their local date, the lines, what they record."""

    kind: NotificationKind
    recipient: User
    day: date
    lines: dict[int, Line] = field(default_factory=dict)
    notices: set[tuple[int, str, date]] = field(default_factory=set)
    escalations: set[tuple[int, int]] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.kind.value}:user{self.recipient.id}:{self.day.isoformat()}"

    def add(self, tell: Tell) -> None:
        """One line per item (an escalation at several rungs: the highest); remember what to record."""
        item_id = tell.line.item.id
        known = self.lines.get(item_id)
        if known is None or (tell.line.level or 0) > (known.level or 0):
            self.lines[item_id] = tell.line
        if tell.notice is not None:
            self.notices.add((item_id, *tell.notice))
        if tell.escalation is not None:
            self.escalations.add((item_id, tell.escalation))


def _active_users() -> dict[int, User]:
    query = sa.select(User).where(User.active).options(joinedload(User.office)).order_by(User.id)
    return {user.id: user for user in db.session.scalars(query)}


def _candidate_items(reference: datetime, settings: Settings) -> list[tuple[ActionItem, Facts]]:
    """Open items that may need a reminder at any morning up to ``reference``, with their facts.

    A superset, filtered in SQL: due within the largest due-soon distance or overdue (by the
    office's date at ``reference``), or not updated for about the stale period. Office,
    recommendation, owner, the notices given, approved extensions and the last history entry come
    in the same query; the escalation rungs already reported in one more.
    """
    owner = aliased(User)
    furthest = max((0, *settings.due_soon_days))
    stale_from = reference - timedelta(days=max(settings.stale_days - 2, 0))  # margin for zones/DST
    overdue_notice = aliased(ItemNotice)
    stale_notice = (
        sa.select(ItemNotice.action_item_id.label("item_id"), sa.func.max(ItemNotice.period).label("period"))
        .where(ItemNotice.kind == NOTICE_STALE)
        .group_by(ItemNotice.action_item_id)
        .subquery()
    )
    extensions = (
        sa.select(sa.func.count(ExtensionRequest.id))
        .where(
            ExtensionRequest.action_item_id == ActionItem.id,
            ExtensionRequest.state == ExtensionState.APPROVED.value,
        )
        .correlate(ActionItem)
        .scalar_subquery()
    )
    last_id = (
        sa.select(ActionUpdate.id)
        .where(ActionUpdate.action_item_id == ActionItem.id)
        .order_by(ActionUpdate.created_at.desc(), ActionUpdate.id.desc())
        .limit(1)
        .correlate(ActionItem)
        .scalar_subquery()
    )
    last = aliased(ActionUpdate)
    query = (
        sa.select(
            ActionItem, overdue_notice.id, stale_notice.c.period, extensions, last.created_at, last.note
        )
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .outerjoin(owner, ActionItem.owner_id == owner.id)
        .outerjoin(
            overdue_notice,
            sa.and_(
                overdue_notice.action_item_id == ActionItem.id,
                overdue_notice.kind == NOTICE_OVERDUE,
                overdue_notice.period == ActionItem.deadline,
            ),
        )
        .outerjoin(stale_notice, stale_notice.c.item_id == ActionItem.id)
        .outerjoin(last, last.id == last_id)
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
    rows = db.session.execute(query).all()
    escalated: dict[int, set[int]] = {}
    if rows:
        levels = sa.select(Escalation.action_item_id, Escalation.level).join(
            ActionItem, ActionItem.id == Escalation.action_item_id
        )
        for item_id, level in db.session.execute(levels.where(ActionItem.status.not_in(_CLOSED))):
            escalated.setdefault(item_id, set()).add(level)
    return [
        (
            item,
            Facts(
                overdue_noticed=noticed is not None,
                stale_period=stale_period,
                extensions=extension_count or 0,
                escalated=frozenset(escalated.get(item.id, ())),
                last_update_at=last_at,
                last_note=last_note,
            ),
        )
        for item, noticed, stale_period, extension_count, last_at, last_note in rows
    ]


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


def _pending_extensions() -> list[ExtensionRequest]:
    """Extension requests waiting for a reviewer, the oldest first, with their action and requester."""
    query = (
        sa.select(ExtensionRequest)
        .join(ExtensionRequest.action_item)
        .join(ActionItem.office)
        .join(ActionItem.recommendation)
        .where(ExtensionRequest.state == ExtensionState.PENDING.value)
        .options(
            contains_eager(ExtensionRequest.action_item).contains_eager(ActionItem.office),
            contains_eager(ExtensionRequest.action_item).contains_eager(ActionItem.recommendation),
            joinedload(ExtensionRequest.requested_by),
        )
        .order_by(ExtensionRequest.requested_at, ExtensionRequest.id)
    )
    return list(db.session.scalars(query).unique())


def _existing_keys(keys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(sorted(set(keys)), size()):
        query = sa.select(Notification.idempotency_key).where(Notification.idempotency_key.in_(chunk))
        found.update(db.session.scalars(query))
    return found


def offices_label(lines: Iterable[Line]) -> str:
    """The office codes of the items, e.g. ``SG, MY`` (sorted), for subjects."""
    return ", ".join(sorted({line.item.office.code for line in lines}))


def offices_without_manager() -> list[Office]:
    """Active offices without an active manager of their own: their escalations skip a rung."""
    has_manager = (
        sa.select(User.id)
        .where(User.office_id == Office.id, User.active, User.role == Role.MANAGER.value)
        .exists()
    )
    return list(
        db.session.scalars(sa.select(Office).where(Office.active, ~has_manager).order_by(Office.code))
    )


def _context(now: datetime, today: date | None, settings: Settings) -> Context:
    """Load what the rules read: people, absences, candidate items."""
    calendar = Calendar(now, today, settings.morning_hour)
    # The latest morning anyone is composed for: now, or the forced date's in the westernmost zone.
    reference = now
    if today is not None:
        reference = datetime.combine(today, time(settings.morning_hour), UTC) + timedelta(hours=14)
    users = _active_users()
    return Context(
        settings=settings,
        calendar=calendar,
        users=users,
        away=Absences(*calendar.absences_span()),
        items=_candidate_items(reference, settings),
        load_completions=_review_queue,
        load_extensions=_pending_extensions,
    )


def compose_reminders(now: datetime, *, today: date | None = None, dry_run: bool = False) -> list[Planned]:
    """Queue today's due-soon, overdue, escalation, stale and review-queue mails; flushes, never commits.

    ``now`` is the moment of the run. Without ``today``, each recipient is composed for once their
    morning has come on their local date. With ``today`` (the CLI's ``--today``), everyone is
    composed for as of the morning of that date in their own zone, whatever the time. A dry run
    returns the plan and writes nothing.
    """
    settings = Settings.from_config()
    ctx = _context(now, today, settings)
    mails: dict[tuple[NotificationKind, int], _Mail] = {}
    for rule in RULES:
        for tell in rule.find(ctx):
            mail = mails.setdefault(
                (tell.kind, tell.recipient.id), _Mail(tell.kind, tell.recipient, tell.day)
            )
            mail.add(tell)

    existing = _existing_keys(mail.key for mail in mails.values())
    new = sorted((mail for mail in mails.values() if mail.key not in existing), key=_mail_order)
    planned = [_queue(mail, settings, now, dry_run) for mail in new]
    if not dry_run:
        notices = {notice for mail in new for notice in mail.notices}
        _insert_rows(
            ItemNotice,
            [{"action_item_id": i, "kind": k, "period": p, "created_at": now} for i, k, p in sorted(notices)],
            ["action_item_id", "kind", "period"],
        )
        escalations = {escalation for mail in new for escalation in mail.escalations}
        _insert_rows(
            Escalation,
            [{"action_item_id": i, "level": level, "created_at": now} for i, level in sorted(escalations)],
            ["action_item_id", "level"],
        )
    if planned:
        log.info("compose: %d reminder mails %s", len(planned), "planned (dry run)" if dry_run else "queued")
    return planned


def _mail_order(mail: _Mail) -> tuple[str, str]:
    return (mail.recipient.email, mail.kind.value)


_ORDER = {rule.kind: rule.order for rule in RULES}


def _queue(mail: _Mail, settings: Settings, now: datetime, dry_run: bool) -> Planned:
    """Render one mail and insert it (unless a dry run)."""
    lines = sorted(mail.lines.values(), key=_ORDER[mail.kind])
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


def _insert_rows(model: type[db.Model], rows: list[dict], unique: list[str]) -> None:
    """INSERT … ON CONFLICT DO NOTHING, one executemany per batch of rows (see tracker.batches)."""
    if not rows:
        return
    dialect = db.session.get_bind().dialect
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect.name](model.__table__)
    statement = insert.on_conflict_do_nothing(index_elements=unique)
    # Not .values(rows): a multi-row VALUES is one statement of every row's parameters, compiled
    # anew each time. An executemany is compiled once and cut to the database's limit.
    for chunk in chunks(rows, size(len(rows[0]), dialect)):
        db.session.execute(statement, chunk)


def compose_digests(quarter: Quarter | None, now: datetime, *, dry_run: bool = False) -> list[Planned]:
    """Queue each manager's quarterly digest; flushes, never commits.

    With ``quarter`` None (the scheduled job), a manager gets the digest of the quarter just ended
    on the first day of a quarter once their morning has come; a scheduler that missed that day
    sends it on any later day of the quarter (saying it is late) to managers whose account existed
    before the quarter ended. With a ``quarter`` (the CLI), every manager gets that quarter's
    digest now. Keys are
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
    late: set[int] = set()
    for manager in managers:
        if quarter is not None:
            targets.append((manager, quarter))
            continue
        day = local_date(now, manager.zone)
        previous = Quarter.containing(day).previous
        if now < morning(day, manager.zone, settings.morning_hour):
            continue
        if day == previous.next.first_day:
            targets.append((manager, previous))
        elif manager.created_at < previous.ends_at:  # late: only for who was there when it was due
            targets.append((manager, previous))
            late.add(manager.id)
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
            "digest",
            manager,
            digest=digest,
            quarter=q,
            office_code=office_code,
            limit=LIST_LIMIT,
            late=manager.id in late,
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
    """The scheduled digest job: each manager's digest on a quarter's first day (or, late, a later one)."""
    return compose_digests(None, now, dry_run=dry_run)


def compose(now: datetime, *, dry_run: bool = False) -> list[Planned]:
    """The whole scheduled job: reminders for whoever's morning has come, and the digests that are due."""
    return compose_reminders(now, dry_run=dry_run) + compose_due_digests(now, dry_run=dry_run)
