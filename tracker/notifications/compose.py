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
  is written only with a mail that reports the item (a recipient who already had an escalation mail
  that day makes the item wait for the next).
- **review_queue**: each active reviewer who is not away gets the completions awaiting
  verification, the actions proposed by offices and the pending extension requests, when there
  are any.
- **digest**: see :func:`compose_digests` and ``digest.py``.
- **indicators_due**: see ``indicators_due.py`` (run by :func:`compose`, the scheduler and the CLI).

**Bounded mails.** A mail lists at most :data:`LIST_LIMIT` items, the most urgent first (the
oldest deadline; for the stale and review lists, the longest waiting), then says "… and N more"
with a link to the Actions list filtered to show them (``/?overdue=1&owner=…`` or ``office=``;
the review queue's page for the review list), built from TRACKER_BASE_URL. No list filter selects
exactly "due in 3 days" or "escalated to me", so the mail says that the list may show others too.
No mail passes 200 KB (:data:`MAIL_BYTES`) as sent, whatever the backlog: one whose fifty lines
would (the longest titles and names, in a script of three bytes a character) lists fewer.

A mail *reports* every item it counts: the ones it lists and the ones in its "N more", which its
link shows. What a mail records (the first overdue notice, the stale period, the escalation rung)
is recorded for every item it reports, listed or counted: the recipient was told of each, and an
item is escalated once per rung even when the mail only counted it.

Items of archived recommendations are left out of reminders and digests (as on the dashboard).
Nobody is told about an item that ``permissions.can`` does not let them see. The rules judge light
rows (``rules.Item``); only the items the mails list are loaded in full. The number of SQL
statements is bounded: users, offices, absences, candidate items (with the notices given), their
escalation rungs, the review list (two), the keys already queued (per 1,000), the listed items
with their last update and extensions (per 1,000, at most :data:`LIST_LIMIT` a mail); then one
INSERT per new mail and one per 1,000 rows recorded (``tracker.batches``: no statement grows with
the backlog).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import joinedload

from tracker.batches import chunks, size
from tracker.extensions import db
from tracker.models import (
    Escalation,
    ItemNotice,
    Notification,
    NotificationKind,
    Office,
    Role,
    User,
)
from tracker.notifications import candidates
from tracker.notifications.digest import LIST_LIMIT, Figures, build_figures
from tracker.notifications.outbox import Email, enqueue
from tracker.notifications.render import MAIL_BYTES, links, render_email, render_fitting
from tracker.notifications.rules import (
    AUDIENCES,
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
from tracker.quarters import Quarter

log = logging.getLogger(__name__)

__all__ = [
    "LIST_LIMIT",
    "MAIL_BYTES",
    "ComposeConfigError",
    "Line",
    "Planned",
    "Settings",
    "compose",
    "compose_reminders",
]

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
    """Load what the rules read: people, offices, absences, candidate items."""
    calendar = Calendar(now, today, settings.morning_hour)
    # The latest morning anyone is composed for: now, or the forced date's in the westernmost zone.
    reference = now
    if today is not None:
        reference = datetime.combine(today, time(settings.morning_hour), UTC) + timedelta(hours=14)
    users = candidates.active_users()
    offices = candidates.offices_by_id()
    return Context(
        settings=settings,
        calendar=calendar,
        users=users,
        away=Absences(*calendar.absences_span()),
        items=candidates.candidate_items(reference, settings, offices),
        load_completions=lambda: candidates.review_queue(offices),
        load_extensions=candidates.pending_extensions,
        offices=offices,
    )


def compose_reminders(now: datetime, *, today: date | None = None, dry_run: bool = False) -> list[Planned]:
    """Queue today's due-soon, overdue, escalation, stale and review-queue mails; flushes, never commits.

    ``now`` is the moment of the run. Without ``today``, each recipient is composed for once their
    morning has come on their local date. With ``today`` (the CLI's ``--today``), everyone is
    composed for as of the morning of that date in their own zone, whatever the time. A dry run
    returns the plan and writes nothing. Each mail lists at most :data:`LIST_LIMIT` items and
    counts the rest; it records what it reports, listed or counted (see the module's docstring).
    """
    settings = Settings.from_config()
    ctx = _context(now, today, settings)
    mails: dict[tuple[NotificationKind, int], _Mail] = {}
    for rule in RULES:
        for tell in rule.find(ctx):
            mail = mails.get((tell.kind, tell.recipient.id))
            if mail is None:
                mail = mails[(tell.kind, tell.recipient.id)] = _Mail(tell.kind, tell.recipient, tell.day)
            mail.add(tell)

    existing = _existing_keys(mail.key for mail in mails.values())
    new = sorted((mail for mail in mails.values() if mail.key not in existing), key=_mail_order)
    listed = {mail.key: sorted(mail.lines.values(), key=_ORDER[mail.kind])[:LIST_LIMIT] for mail in new}
    details = candidates.details(
        {line.item.id for lines in listed.values() for line in lines},
        {line.item.id for lines in listed.values() for line in lines if line.level is not None},
        ctx.offices,
    )
    planned = [_queue(mail, listed[mail.key], details, settings, now, dry_run) for mail in new]
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


def _detailed(line: Line, details: dict[int, candidates.Details]) -> Line:
    """The line with its item loaded; an escalation's also with its last update and extensions."""
    known = details[line.item.id]
    if line.level is None:
        return replace(line, item=known.item)
    zone = ZoneInfo(known.item.office.timezone)
    facts = replace(
        line.facts or Facts(),
        extensions=known.extensions,
        last_update_at=known.last_update_at,
        last_note=known.last_note,
    )
    on = local_date(known.last_update_at, zone) if known.last_update_at else None
    return replace(line, item=known.item, on=on, facts=facts)


def _more_url(mail: _Mail, listed: list[Line]) -> str:
    """The list that shows what a mail counts beyond the ones it lists, from TRACKER_BASE_URL.

    The review list's own page; else the Actions list, overdue only for the overdue kinds, narrowed
    to the one owner or office all the mail's items share (the listed items carry the owner).
    """
    site = links()
    if mail.kind is NotificationKind.REVIEW_QUEUE:
        return site.url("actions.verification")
    filters: dict[str, str] = {}
    if mail.kind in (NotificationKind.OVERDUE, NotificationKind.ESCALATION):
        filters["overdue"] = "1"
    offices = {line.item.office.code for line in mail.lines.values()}
    if len(offices) == 1:
        filters["office"] = offices.pop()
    owners = {line.item.owner_id for line in mail.lines.values()}
    owner = listed[0].item.owner if listed else None
    if len(owners) == 1 and owner is not None:
        filters["owner"] = owner.email
    return site.actions_list(**filters)


def _queue(
    mail: _Mail,
    listed: list[Line],
    details: dict[int, candidates.Details],
    settings: Settings,
    now: datetime,
    dry_run: bool,
) -> Planned:
    """Render one mail (its first LIST_LIMIT lines, and how many more) and insert it (unless a dry run).

    Fifty lines of the longest titles, names and notes, in a script of three bytes a character,
    would pass :data:`MAIL_BYTES`: such a mail lists fewer lines, as many as fit.
    """
    lines = [_detailed(line, details) for line in listed]
    total = len(mail.lines)

    def render(count: int) -> Email:
        more = total - count
        return render_email(
            mail.kind.value,
            mail.recipient,
            lines=lines[:count],
            total=total,
            more=more,
            more_url=_more_url(mail, lines[:count]) if more else None,
            offices=offices_label(mail.lines.values()),
            day=mail.day,
            settings=settings,
        )

    email, _listed = render_fitting(render, len(lines))
    if not dry_run:
        enqueue(mail.kind, mail.recipient, mail.key, email, now)
    return Planned(mail.kind, mail.recipient, mail.key, email.subject, total)


def _insert_rows(model: type[db.Model], rows: list[dict], unique: list[str]) -> None:
    """INSERT … ON CONFLICT DO NOTHING in batches of rows (see tracker.batches).

    SQLite: one executemany per batch. PostgreSQL: one ``INSERT … SELECT unnest(…)`` per batch,
    a parameter per column holding the batch's values as an array: a first run over a backlog
    records tens of thousands of rows, and a statement of 3,000 parameters is parsed and planned
    anew for each batch (three times slower, measured on 66,000 escalations).
    """
    if not rows:
        return
    dialect = db.session.get_bind().dialect
    table = model.__table__
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect.name](table)
    if dialect.name == "postgresql":
        names = list(rows[0])
        for chunk in chunks(rows, size(1, dialect)):
            columns = []
            for name in names:
                values = [row[name] for row in chunk]
                column = table.c[name]
                if all(value == values[0] for value in values):  # e.g. created_at: one parameter
                    columns.append(sa.bindparam(f"v_{name}", values[0], type_=column.type))
                else:  # an array written as text: psycopg dumps a list of values in Python
                    text = sa.bindparam(f"v_{name}", _array_text(values), type_=sa.Text())
                    columns.append(sa.func.unnest(sa.cast(text, ARRAY(column.type))))
            statement = insert.from_select(names, sa.select(*columns))
            db.session.execute(statement.on_conflict_do_nothing(index_elements=unique))
        return
    statement = insert.on_conflict_do_nothing(index_elements=unique)
    # Not .values(rows): a multi-row VALUES is one statement of every row's parameters, compiled
    # anew each time. An executemany is compiled once and cut to the database's limit.
    for chunk in chunks(rows, size(len(rows[0]), dialect)):
        db.session.execute(statement, chunk)


def _array_text(values: list) -> str:
    """A PostgreSQL array literal of ints, dates or strings (quoted, backslashes and quotes escaped)."""
    first = values[0]
    if isinstance(first, str):
        return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    if isinstance(first, int | date) and not isinstance(first, bool | datetime):
        return "{" + ",".join(map(str, values)) + "}"
    raise TypeError(f"no array literal for {type(first).__name__} values; pass one value per batch")


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
    """The whole scheduled job: reminders for whoever's morning has come (also of indicator values
    due), and the digests that are due."""
    from tracker.notifications.indicators_due import compose_indicators_due  # it imports this module

    return (
        compose_reminders(now, dry_run=dry_run)
        + compose_indicators_due(now, dry_run=dry_run)
        + compose_due_digests(now, dry_run=dry_run)
    )
