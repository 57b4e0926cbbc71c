"""The demo's history, placed relative to the day it is loaded (tracker/demo.py calls it).

Everything is derived from "today" (T) so that, whenever the demo is loaded, the programme looks
like one in its second year: the dialogue was held about 18 months before T, the plans agreed a
few months later; the last two full quarters and the current one hold completions and
verifications; a few completions and extension requests wait for a reviewer (none for more than
about a month); a few actions are overdue by days or weeks, a few went without an update for a
little over the stale period; recent decisions (verified, sent back, reopened, extensions) are in
the outbox as the mails they caused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    HistoryEvent,
    Notification,
    NotificationKind,
    NotificationState,
    Status,
    User,
)
from tracker.quarters import Quarter

#: What happened to one demo action, by name (see :func:`place`).
KINDS = (
    "verified_early",  # completed and verified before the last two quarters
    "verified_q2",  # completed and verified in the quarter before last
    "verified_q1",  # … in the last quarter
    "verified_q0",  # … in the current quarter
    "verified_q2_late",  # completed late in the quarter before last, verified in the next
    "verified_q1_late",  # completed late in the last quarter, verified in this one
    "awaiting",  # reported completed 10–30 days ago, awaiting verification
    "awaiting_recent",  # reported completed 1–9 days ago
    "due_soon",  # in progress, due in 3, 4 or 14 days
    "overdue_days",  # in progress, 1–6 days overdue (the first overdue notice)
    "overdue_weeks",  # 8–25 days overdue
    "overdue_rung1",  # 32–45 days overdue: the first rung of the escalation ladder
    "overdue_rung2",  # 62–75 days overdue: the second rung
    "later",  # in progress, due in one to twelve months, updated lately
    "stale",  # in progress, no update for 92–110 days (a stale nudge)
    "not_started",  # due in two to twelve months
    "not_started_overdue",  # never started, 2–20 days overdue
    "blocked",
    "sent_back",  # reported completed, sent back by the reviewer a few days ago
    "reopened",  # verified last quarter, reopened by the reviewer a few days ago
)

# Why each thing happened, in the owner's or the reviewer's words.
STARTED = "Work started; the project team is named."
PROGRESS = "Progress report: the work is on schedule."
PLANNED = "Start planned once the budget of the new financial year is released."
WAITING = "Waiting for the tender to close before starting."
BLOCKED = "Waiting for the budget to be approved."
DONE = "Done; the announcement is published on the office website."
VERIFIED = "Verified against the evidence."
SENT_BACK = "Please attach the published list: the link in the report is not public yet."
REOPENED = "The electronic certificates cannot be checked online yet; reopened until they can."
AGREED = "Action agreed with the office in its action plan."


@dataclass(frozen=True)
class Timeline:
    """The demo's dates, all derived from ``today``."""

    today: date

    @property
    def dialogue(self) -> date:
        """First day of the dialogue the recommendations come from: a Monday about 18 months ago."""
        day = self.today - timedelta(days=540)
        return day - timedelta(days=day.weekday())

    @property
    def adopted(self) -> date:
        """The day the recommendations were adopted (and the demo accounts made)."""
        return self.dialogue + timedelta(days=14)

    @property
    def plans(self) -> date:
        """Around when the offices' action plans were agreed."""
        return self.dialogue + timedelta(days=70)

    @property
    def meeting(self) -> date:
        """First day of the recent meeting whose recommendation was sent to every office: a Monday."""
        day = self.today - timedelta(days=45)
        return day - timedelta(days=day.weekday())

    @property
    def quarter(self) -> Quarter:
        """The current quarter (Q0); ``.previous`` is the last full one."""
        return Quarter.containing(self.today)

    def days_ago(self, n: int) -> date:
        """The date ``n`` days before today."""
        return self.today - timedelta(days=n)


def at(day: date, rng: random.Random) -> datetime:
    """A moment in the region's working day (01:00–09:59 UTC) on ``day``."""
    return datetime.combine(day, time(rng.randint(1, 9), rng.choice((0, 10, 25, 40, 55))), UTC)


@dataclass
class Step:
    """One history entry to write: on ``day``, by the owner or the reviewer."""

    day: date
    by_reviewer: bool
    old: Status | None
    new: Status | None
    old_progress: int | None
    new_progress: int | None
    note: str
    event: HistoryEvent | None = None


@dataclass
class Placed:
    """An action's deadline, status, progress and the steps that led there (after "agreed")."""

    deadline: date
    status: Status
    progress: int
    created: date
    steps: list[Step]


def _between(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, max(0, (last - first).days)))


def _done(
    rng: random.Random, first: date, last: date, created: date, until: date | None = None
) -> list[Step]:
    """Started, progressed, reported completed within [first, last] and verified 3–14 days later.

    The verification falls on ``until`` at the latest (``last`` if not given): a completion late in
    a quarter may be verified in the next one, as it happens.
    """
    last = max(first, last)
    completed = _between(rng, first, last - timedelta(days=4))
    verified = min(until or last, completed + timedelta(days=rng.randint(3, 14)))
    verified = max(verified, completed + timedelta(days=1))
    return [
        *_reported(rng, completed, created),
        _step(verified, True, Status.COMPLETED, Status.VERIFIED, 100, 100, VERIFIED, HistoryEvent.VERIFIED),
    ]


def _reported(rng: random.Random, completed: date, created: date) -> list[Step]:
    """Started after ``created``, a progress report, reported completed on ``completed``."""
    started = _between(
        rng, created + timedelta(days=5), max(created + timedelta(days=5), completed - timedelta(days=60))
    )
    middle = _between(
        rng, started + timedelta(days=1), max(started + timedelta(days=1), completed - timedelta(days=2))
    )
    half = rng.choice((50, 60, 70))
    return [
        _step(started, False, Status.NOT_STARTED, Status.IN_PROGRESS, 0, 20, STARTED),
        _step(middle, False, Status.IN_PROGRESS, Status.IN_PROGRESS, 20, half, PROGRESS),
        _step(completed, False, Status.IN_PROGRESS, Status.COMPLETED, half, 100, DONE),
    ]


def _open(rng: random.Random, created: date, last_update: date, progress: int) -> list[Step]:
    """Started after ``created``, last reported on ``last_update`` at ``progress``."""
    started = _between(
        rng, created + timedelta(days=5), max(created + timedelta(days=5), last_update - timedelta(days=30))
    )
    first = min(progress, 20)
    steps = [_step(started, False, Status.NOT_STARTED, Status.IN_PROGRESS, 0, first, STARTED)]
    if progress > first or last_update > started:
        steps.append(
            _step(
                max(last_update, started + timedelta(days=1)),
                False,
                Status.IN_PROGRESS,
                Status.IN_PROGRESS,
                first,
                progress,
                PROGRESS,
            )
        )
    return steps


def _step(
    day: date,
    by_reviewer: bool,
    old: Status | None,
    new: Status | None,
    old_progress: int | None,
    new_progress: int | None,
    note: str,
    event: HistoryEvent | None = None,
) -> Step:
    return Step(day, by_reviewer, old, new, old_progress, new_progress, note, event)


def place(kind: str, line: Timeline, rng: random.Random) -> Placed:
    """Deadline, status, progress and history of one action of ``kind`` (one of :data:`KINDS`)."""
    t = line.today
    created = line.plans + timedelta(days=rng.randint(0, 30))
    q0, q1 = line.quarter, line.quarter.previous
    q2 = q1.previous
    days = lambda low, high: timedelta(days=rng.randint(low, high))  # noqa: E731 - short and local
    if kind == "verified_q0" and (t - q0.first_day).days < 8:
        kind = "verified_q1"  # the quarter has only begun: nothing could be verified in it yet
    if kind == "verified_early":
        steps = _done(rng, created + timedelta(days=60), q2.first_day - timedelta(days=20), created)
    elif kind in ("verified_q2", "verified_q1"):
        quarter = q2 if kind == "verified_q2" else q1
        first, until = quarter.first_day + timedelta(days=3), t - timedelta(days=1)
        steps = _done(rng, first, quarter.last_day, created, until)
    elif kind in ("verified_q2_late", "verified_q1_late"):
        quarter = q2 if kind == "verified_q2_late" else q1
        completed = quarter.last_day - days(1, 12)
        verified = min(t - timedelta(days=1), completed + days(5, 20))
        steps = _reported(rng, completed, created)
        steps.append(
            _step(
                verified, True, Status.COMPLETED, Status.VERIFIED, 100, 100, VERIFIED, HistoryEvent.VERIFIED
            )
        )
    elif kind == "verified_q0":
        steps = _done(rng, q0.first_day + timedelta(days=1), t - timedelta(days=1), created)
    elif kind in ("awaiting", "awaiting_recent"):
        completed = t - (days(1, 9) if kind == "awaiting_recent" else days(10, 30))
        steps = _reported(rng, completed, created)
        return Placed(completed + days(-5, 30), Status.COMPLETED, 100, created, steps)
    elif kind == "sent_back":
        steps = _reported(rng, t - days(8, 14), created)
        note = _step(
            t - days(1, 5),
            True,
            Status.COMPLETED,
            Status.IN_PROGRESS,
            100,
            80,
            SENT_BACK,
            HistoryEvent.SENT_BACK,
        )
        return Placed(t + days(10, 40), Status.IN_PROGRESS, 80, created, [*steps, note])
    elif kind == "reopened":
        steps = _done(rng, q1.first_day + timedelta(days=3), q1.last_day - timedelta(days=3), created)
        steps.append(
            _step(
                t - days(2, 6),
                True,
                Status.VERIFIED,
                Status.IN_PROGRESS,
                100,
                80,
                REOPENED,
                HistoryEvent.REOPENED,
            )
        )
        return Placed(t + days(20, 40), Status.IN_PROGRESS, 80, created, steps)
    else:
        return _place_open(kind, line, rng, created)
    completed = next(s.day for s in steps if s.new is Status.COMPLETED)
    return Placed(completed + days(-15, 45), Status.VERIFIED, 100, created, steps)


def _place_open(kind: str, line: Timeline, rng: random.Random, created: date) -> Placed:
    """An action still open: in progress, not started or blocked."""
    t = line.today
    days = lambda low, high: timedelta(days=rng.randint(low, high))  # noqa: E731
    progress = rng.choice((30, 40, 50, 60, 70))
    overdue = {
        "overdue_days": (1, 6),
        "overdue_weeks": (8, 25),
        "overdue_rung1": (32, 45),
        "overdue_rung2": (62, 75),
    }
    if kind in overdue:
        low, high = overdue[kind]
        return Placed(
            t - days(low, high),
            Status.IN_PROGRESS,
            progress,
            created,
            _open(rng, created, t - days(5, 40), progress),
        )
    if kind == "due_soon":
        deadline = t + timedelta(days=rng.choice((3, 4, 14)))
        return Placed(
            deadline,
            Status.IN_PROGRESS,
            progress + 20,
            created,
            _open(rng, created, t - days(3, 30), progress + 20),
        )
    if kind == "later":
        return Placed(
            t + days(30, 365),
            Status.IN_PROGRESS,
            progress - 20,
            created,
            _open(rng, created, t - days(5, 60), progress - 20),
        )
    if kind == "stale":
        return Placed(
            t + days(40, 200), Status.IN_PROGRESS, 30, created, _open(rng, created, t - days(92, 110), 30)
        )
    if kind == "blocked":
        steps = _open(rng, created, t - days(40, 80), 30)
        steps.append(_step(t - days(15, 35), False, Status.IN_PROGRESS, Status.BLOCKED, 30, 30, BLOCKED))
        return Placed(t + days(10, 90), Status.BLOCKED, 30, created, steps)
    if kind == "not_started_overdue":
        note = _step(t - days(20, 60), False, None, None, None, None, WAITING)
        return Placed(t - days(2, 20), Status.NOT_STARTED, 0, created, [note])
    if kind == "not_started":
        note = _step(t - days(10, 70), False, None, None, None, None, PLANNED)
        return Placed(t + days(60, 365), Status.NOT_STARTED, 0, created, [note])
    raise ValueError(f"unknown demo action kind {kind!r}")


def office_kinds(index: int) -> list[str]:
    """What happened to each action of the ``index``-th office, in the order its actions are made.

    Every office has done, overdue and due-soon work; the overdue actions' ages, the review queue,
    stale, blocked, sent-back and reopened actions vary from office to office.
    """
    i = index
    overdue = {
        2: "overdue_rung2",
        7: "overdue_rung2",
        0: "overdue_rung1",
        4: "overdue_rung1",
        9: "overdue_rung1",
    }
    weeks = {3, 6, 10}
    waiting = ("awaiting_recent", "awaiting", "verified_q0")[i % 3]
    kinds = [
        "verified_early",
        "due_soon",
        "verified_q1",
        overdue.get(i, "overdue_weeks" if i in weeks else "overdue_days"),
        "verified_q2",
        waiting,
        "sent_back" if i in (1, 6) else "reopened" if i == 5 else "later",
        "verified_q0",
        "stale" if i % 4 == 1 else "later",
        "not_started",
        ("not_started_overdue", "later", "blocked")[i % 3],
        "verified_q1_late" if i % 2 else "verified_q2_late",
        "verified_early",
    ]
    # Rotated, so that each kind falls on other recommendations in other offices; an office with
    # thirteen actions leaves out the last, an action "later" like others.
    turn = 5 * i % len(kinds)
    return [*kinds[turn:], *kinds[:turn], "later"]


def write_item(item: ActionItem, placed: Placed, owner: User, reviewer: User, rng: random.Random) -> int:
    """Set the item's dates from ``placed`` and add its history; returns the rows added."""
    agreed = at(placed.created, rng)
    item.created_at = agreed
    history = [
        ActionUpdate(
            author=reviewer,
            created_at=agreed,
            new_status=Status.NOT_STARTED.value,
            new_progress=0,
            new_deadline=placed.deadline,
            note=AGREED,
            event=HistoryEvent.CREATED.value,
        )
    ]
    moment = agreed
    for step in sorted(placed.steps, key=lambda s: s.day):
        moment = max(at(step.day, rng), moment + timedelta(minutes=30))
        history.append(
            ActionUpdate(
                author=reviewer if step.by_reviewer else owner,
                created_at=moment,
                old_status=step.old.value if step.old else None,
                new_status=step.new.value if step.new else None,
                old_progress=step.old_progress,
                new_progress=step.new_progress,
                note=step.note,
                event=step.event.value if step.event else None,
            )
        )
    item.updated_at = moment
    item.updates = history
    return len(history)


def mark_sent(after_id: int) -> None:
    """The mails the demo's history queued (ids above ``after_id``) left a minute after they were made."""
    db.session.flush()
    rows = db.session.scalars(sa.select(Notification).where(Notification.id > after_id)).all()
    for row in rows:
        row.state = NotificationState.SENT.value
        row.attempts = 1
        row.first_tried_at = row.sent_at = row.created_at + timedelta(minutes=1)
        row.relay_reply = "250 2.0.0 Ok: queued (demo)"


def recent_decision_mails(line: Timeline) -> None:
    """The mails recent verifications, sent-backs and reopenings caused (the last 14 days)."""
    from tracker.notifications.account import notify_review_outcome

    kinds = {
        HistoryEvent.VERIFIED.value: NotificationKind.VERIFIED,
        HistoryEvent.SENT_BACK.value: NotificationKind.SENT_BACK,
        HistoryEvent.REOPENED.value: NotificationKind.REOPENED,
    }
    since = datetime.combine(line.days_ago(14), time(0), UTC)
    rows = db.session.execute(
        sa.select(ActionItem, ActionUpdate.event, ActionUpdate.note, ActionUpdate.created_at)
        .join(ActionUpdate.action_item)
        .where(ActionUpdate.event.in_(kinds), ActionUpdate.created_at >= since)
        .order_by(ActionUpdate.created_at)
    )
    for item, event, note, moment in rows:
        notify_review_outcome(item, kinds[event], note, moment)
