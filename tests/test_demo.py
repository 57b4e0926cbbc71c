"""The demo looks like a programme in its second year whatever day it is loaded.

Seeds the demo at fixed days (mid-quarter, a quarter's first days) and at today's real date, runs
the reminder composition the scheduler runs, and checks what a new user would see: every kind of
mail has a case, the review queue and the stale nudges are recent, the last quarters show movement.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from tracker.demo import seed_demo
from tracker.extensions import db
from tracker.models import (
    Absence,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    HistoryEvent,
    Notification,
    NotificationKind,
    OfficeResponse,
    ResponseRequest,
    Status,
    User,
)
from tracker.notifications.candidates import offices_by_id, pending_extensions, review_queue
from tracker.notifications.compose import compose_due_digests, compose_reminders
from tracker.notifications.digest import Quarter, build_figures

#: Every kind of mail the demo's data causes: the scheduler's (composed today) and the ones its
#: recent events caused when they happened.
SCHEDULED = {
    NotificationKind.DUE_SOON,
    NotificationKind.OVERDUE,
    NotificationKind.ESCALATION,
    NotificationKind.STALE,
    NotificationKind.REVIEW_QUEUE,
}
HISTORY = {
    NotificationKind.DIGEST,
    NotificationKind.VERIFIED,
    NotificationKind.SENT_BACK,
    NotificationKind.REOPENED,
    NotificationKind.EXTENSION_DECIDED,
    NotificationKind.RESPONSE_REQUEST,
    NotificationKind.PROPOSAL_DECIDED,
}


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def _check_demo(today: date) -> None:
    """Seed at ``today``, compose as the scheduler would that day, and check the demo is credible."""
    seed_demo(today)
    db.session.commit()
    now = datetime.combine(today, time(12), UTC)
    assert all(u.created_at < _utc(today) - timedelta(days=400) for u in db.session.scalars(sa.select(User)))
    # Nothing in the history lies in the future or before the dialogue.
    first, last = db.session.execute(
        sa.select(sa.func.min(ActionUpdate.created_at), sa.func.max(ActionUpdate.created_at))
    ).one()
    assert _utc(today) - timedelta(days=560) < first and last < _utc(today)

    offices = offices_by_id()
    waiting = [reported for _item, reported in review_queue(offices)]
    assert 4 <= len(waiting) <= 12
    assert max((today - r.date()).days for r in waiting) < 45
    assert sum((today - r.date()).days <= 10 for r in waiting) >= 3
    pending = pending_extensions()
    assert 2 <= len(pending) <= 4
    assert all((today - p.requested_at.date()).days <= 14 for p in pending)

    # The last two full quarters and the current one: completions and verifications in history.
    q0 = Quarter.containing(today)
    quarters = [q0.previous.previous, q0.previous] + ([q0] if (today - q0.first_day).days >= 8 else [])
    for quarter in quarters:
        for status in (Status.COMPLETED, Status.VERIFIED):
            n = db.session.scalar(
                sa.select(sa.func.count(ActionUpdate.id)).where(
                    ActionUpdate.new_status == status.value,
                    ActionUpdate.old_status != status.value,
                    ActionUpdate.created_at >= quarter.starts_at,
                    ActionUpdate.created_at < min(quarter.ends_at, _utc(today)),
                )
            )
            assert n >= 5, (str(quarter), status, n)

    # The last quarter's digest shows movement.
    figures = build_figures(q0.previous, list(offices.values()))
    assert len(figures.completed) >= 10
    assert sum(e.status == Status.VERIFIED.value for e in figures.completed) >= 5
    changes = [f.change_points for f in figures.offices]
    assert sum(1 for c in changes if c) >= 8 and all(c is None or -30 < c < 60 for c in changes)

    # Overdue by days and weeks, not years.
    open_items = db.session.scalars(
        sa.select(ActionItem).where(ActionItem.status.in_(("in_progress", "not_started", "blocked")))
    ).all()
    assert max((today - i.deadline).days for i in open_items) <= 80
    assert any(1 <= (today - i.deadline).days <= 7 for i in open_items)

    # Each kind of mail has a case: compose as the scheduler does today, and read the outbox.
    compose_reminders(now, today=today)
    compose_due_digests(now)
    db.session.commit()
    kinds = set(db.session.scalars(sa.select(Notification.kind).distinct()))
    missing = {k.value for k in SCHEDULED | HISTORY} - kinds
    if today == q0.first_day:
        missing.discard(NotificationKind.VERIFIED.value)  # nothing verified in a quarter just begun
    assert not missing, missing
    stale = db.session.scalars(sa.select(Notification.body_text).where(Notification.kind == "stale")).all()
    ages = [int(n) for body in stale for n in re.findall(r"(\d+) days", body)]
    assert ages and max(ages) <= 120, ages
    assert "270 days" not in "".join(stale)
    # Every mail of the history was sent when its event happened, before today (on a quarter's
    # first day, the digest is the scheduler's: composed today, waiting to be sent).
    history = db.session.scalars(
        sa.select(Notification).where(Notification.kind.in_([k.value for k in HISTORY]))
    ).all()
    if today == q0.first_day:
        history = [n for n in history if n.kind != NotificationKind.DIGEST]
    assert all(n.state == "sent" and n.created_at < _utc(today) for n in history)


@pytest.mark.parametrize(
    "today",
    [date(2026, 11, 24), date(2027, 1, 1), date(2027, 4, 5), date(2026, 8, 15)],
    ids=["mid-quarter", "first-day", "early-quarter", "summer"],
)
def test_demo_is_credible_on_a_fixed_day(app, today):
    with app.app_context():
        _check_demo(today)


def test_demo_is_credible_today(app):
    with app.app_context():
        _check_demo(datetime.now(UTC).date())


def test_recent_recommendation_and_proposals(app):
    today = date(2026, 11, 24)
    with app.app_context():
        seed_demo(today)
        db.session.commit()
        requests = db.session.scalars(sa.select(ResponseRequest)).all()
        assert len(requests) == 12
        rec = requests[0].recommendation
        assert all((today - r.requested_at.date()).days == 21 for r in requests)
        answered = db.session.scalar(
            sa.select(sa.func.count()).where(OfficeResponse.recommendation_id == rec.id)
        )
        assert 4 <= answered <= 9
        items = db.session.scalars(sa.select(ActionItem).where(ActionItem.recommendation_id == rec.id)).all()
        statuses = sorted(i.status for i in items)
        assert statuses == ["cancelled", "not_started", "proposed", "proposed"]
        for item in items:
            events = [u.event for u in reversed(item.updates)]
            assert events[0] == HistoryEvent.PROPOSED.value
            assert (today - item.updates[0].created_at.date()).days <= 14
        # A focal point is away this week; another will be soon.
        absences = db.session.scalars(sa.select(Absence)).all()
        assert any(a.starts_on <= today <= a.ends_on for a in absences)
        assert any(a.starts_on > today for a in absences)
        # Loading again adds nothing.
        again = seed_demo(today)
        assert not any(again.values()), again
        assert db.session.scalar(sa.select(sa.func.count(ExtensionRequest.id))) == 6


def test_seed_demo_prints_every_account(app, runner):
    result = runner.invoke(args=["tracker", "seed-demo", "--password", "pw-for-the-demo"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        users = [
            (u.email, u.role, u.office.code if u.office else "—") for u in db.session.scalars(sa.select(User))
        ]
    lines = result.output.splitlines()
    assert any("pw-for-the-demo" in line for line in lines)
    assert len(users) == 30
    for email, role, office in users:
        (row,) = [line for line in lines if line.split()[:1] == [email]]
        assert row.split()[1:] == [role, office, "yes" if email.startswith("deputy.") else "no"]
    # `make run` on a loaded database: nothing loaded, the accounts still listed.
    again = runner.invoke(args=["tracker", "seed-demo", "--if-empty"])
    assert "already has data" in again.output
    assert sum(line.split()[:1] == [email] for line in again.output.splitlines() for email, *_ in users) == 30


def test_demo_pages_show_the_recent_history(app, runner, login_as):
    """The reviewer's queue lists the recent completions; the dashboard's chart has recent quarters."""
    runner.invoke(args=["tracker", "seed-demo", "--password", "pw-for-the-demo"])
    reviewer = login_as("reviewer@demo.test", "pw-for-the-demo")
    queue = reviewer.get("/verification")
    assert queue.status_code == 200
    with app.app_context():
        waiting = db.session.scalars(
            sa.select(ActionItem.title).where(ActionItem.status == "completed")
        ).all()
        assert waiting
    assert all(title in queue.text for title in waiting)
    manager = login_as("manager@demo.test", "pw-for-the-demo")
    page = manager.get("/dashboard")
    assert page.status_code == 200
    q0 = Quarter.containing(datetime.now(UTC).date())
    for quarter in (q0.previous.previous, q0.previous):  # the chart's table: actions completed
        row = re.search(rf'data-quarter="{quarter.year}-Q{quarter.number}">.*?<td>(\d+)</td>', page.text)
        assert row and int(row.group(1)) >= 10, quarter
