"""Watching the outbox as an operator: `outbox-status` for monitors, the relay banner and the alert
mail to admins (delivered over real SMTP once the relay works again), and sending failed mail
again in bulk after a confirmation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import Notification, NotificationKind, RelayHealth, User
from tracker.notifications import health
from tracker.notifications.dispatch import dispatch
from tracker.notifications.outbox import Email, enqueue

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _add(app, world, key: str, kind=NotificationKind.OVERDUE, created=NOW, **columns) -> int:
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        enqueue(kind, user, key, Email(f"Subject {key}", "Text\n", "<p>Text</p>"), created)
        row = db.session.scalar(sa.select(Notification).where(Notification.idempotency_key == key))
        for name, value in columns.items():
            setattr(row, name, value)
        db.session.commit()
        return row.id


def _failing_since(app, since: datetime, error: str = "Connection refused") -> None:
    with app.app_context():
        db.session.merge(RelayHealth(name="smtp", failing_since=since, last_failure_at=NOW, last_error=error))
        db.session.commit()


@time_machine.travel(NOW, tick=False)
def test_outbox_status_prints_counts_and_fails_past_the_age(app, world, runner):
    _add(app, world, "a", created=NOW - timedelta(minutes=50))
    _add(app, world, "b", created=NOW - timedelta(minutes=5))
    _add(app, world, "c", state="sent", attempts=1, sent_at=NOW)
    _add(app, world, "d", state="failed", attempts=3)
    result = runner.invoke(args=["tracker", "outbox-status"])
    assert result.exit_code == 0, result.output
    assert "pending=2 sent=1 failed=1" in result.output
    assert "oldest pending: 3000 s" in result.output
    assert runner.invoke(args=["tracker", "outbox-status", "--max-age", "3600"]).exit_code == 0
    late = runner.invoke(args=["tracker", "outbox-status", "--max-age", "600"])
    assert late.exit_code == 1 and "more than 600 s" in late.output


@time_machine.travel(NOW, tick=False)
def test_outbox_status_of_an_empty_outbox(app, runner):
    result = runner.invoke(args=["tracker", "outbox-status", "--max-age", "1"])
    assert result.exit_code == 0 and "oldest pending: none" in result.output


@time_machine.travel(NOW, tick=False)
def test_banner_on_admin_pages_only_after_an_hour_of_failure(app, world, login_as):
    admin = login_as(world.users["admin"])
    _failing_since(app, NOW - timedelta(minutes=20))
    assert "mail relay has been failing" not in admin.get("/admin/outbox").text
    _failing_since(app, NOW - timedelta(hours=2), "421 Service not available")
    page = admin.get("/admin/users").text
    assert "mail relay has been failing" in page and "421 Service not available" in page
    assert "mail relay has been failing" in admin.get("/admin/outbox").text
    # Not on other pages, and never for other roles.
    assert "mail relay has been failing" not in admin.get("/dashboard").text
    reviewer = login_as(world.users["reviewer"])
    assert "mail relay has been failing" not in reviewer.get("/dashboard").text


def test_admins_are_told_once_per_outage_through_the_relay_that_works_again(app, world, smtp_server):
    with time_machine.travel(NOW, tick=False):
        _failing_since(app, NOW - timedelta(minutes=30))
        with app.app_context():
            assert health.alert_admins(NOW) == 0  # not an hour yet
    later = NOW + timedelta(hours=1)
    with time_machine.travel(later, tick=False), app.app_context():
        assert health.alert_admins(later) == 1  # one active admin in the world
        db.session.commit()
        assert health.alert_admins(later + timedelta(minutes=5)) == 0  # once per outage
        db.session.commit()
        # The relay is back: the alert leaves with the rest of the queue.
        assert dispatch(later).sent == 1
    (message,) = smtp_server.messages
    assert message.rcpt_tos == [world.users["admin"]]
    parsed = message.parsed()
    assert "Mail relay failing since" in parsed["Subject"]
    assert "Connection refused" in parsed.get_body(("plain",)).get_content()
    # A new outage (after a success) is told again.
    with time_machine.travel(later + timedelta(hours=3), tick=False), app.app_context():
        db.session.merge(RelayHealth(name="smtp", failing_since=later + timedelta(hours=1), alerted_at=later))
        db.session.commit()
        assert health.alert_admins(later + timedelta(hours=3)) == 1


@time_machine.travel(NOW, tick=False)
def test_failed_messages_of_a_kind_and_period_are_sent_again_after_a_confirmation(app, world, login_as):
    old = _add(app, world, "old", created=NOW - timedelta(days=10), state="failed", attempts=5)
    recent = _add(app, world, "recent", created=NOW - timedelta(days=1), state="failed", attempts=5)
    digest = _add(
        app, world, "digest", NotificationKind.DIGEST, created=NOW - timedelta(days=1), state="failed"
    )
    sent = _add(app, world, "sent", created=NOW - timedelta(days=1), state="sent", attempts=1)
    admin = login_as(world.users["admin"])
    index = admin.get("/admin/outbox").text
    assert 'data-figure="failed">3<' in index

    query = {"resend": "1", "kind": "overdue", "since": (NOW.date() - timedelta(days=3)).isoformat()}
    confirm = admin.get("/admin/outbox/resend", query_string=query)
    assert confirm.status_code == 200 and "1 failed message matches" in confirm.text
    # Asking changes nothing; a POST without the form's token is refused.
    assert admin.post("/admin/outbox/resend", query_string=query).status_code == 400
    with app.app_context():
        assert {db.session.get(Notification, i).state for i in (old, recent, digest)} == {"failed"}
    done = admin.post(
        "/admin/outbox/resend", query_string=query, data={"csrf_token": csrf_token(confirm.text)}
    )
    assert done.status_code == 302
    with app.app_context():
        states = {i: db.session.get(Notification, i) for i in (old, recent, digest, sent)}
        assert states[recent].state == "pending" and states[recent].next_attempt_at == NOW
        assert states[recent].first_tried_at is None  # a fresh retry window
        assert (states[old].state, states[digest].state, states[sent].state) == ("failed", "failed", "sent")

    # A period that ends before it starts is refused, naming the field.
    bad = admin.get(
        "/admin/outbox/resend",
        query_string={"resend": "1", "since": date(2026, 11, 20).isoformat(), "until": "2026-11-10"},
    )
    assert bad.status_code == 422 and "The last day cannot be before the first day." in bad.text
    # Other roles: refused.
    reviewer = login_as(world.users["reviewer"])
    assert reviewer.get("/admin/outbox/resend", query_string=query).status_code == 403


def test_the_dispatch_job_and_send_mail_alert_the_admins_once(app, world, runner, mail_settings):
    """The scheduler's dispatch job (and its CLI twin) queue the alert; the relay is still down."""
    from tracker import scheduler

    now = datetime.now(UTC)
    _failing_since(app, now - timedelta(hours=2), "Connection refused")
    mail_settings(MAIL_SERVER="127.0.0.1", MAIL_PORT=9)  # the discard port: nobody listens
    with app.app_context():
        scheduler.dispatch_job(now)
    result = runner.invoke(args=["tracker", "send-mail"])
    with app.app_context():
        alerts = db.session.scalars(
            sa.select(Notification).where(Notification.kind == NotificationKind.RELAY_ALERT.value)
        ).all()
        assert [a.to_address for a in alerts] == [world.users["admin"]]
        assert alerts[0].state == "pending"  # it waits for a relay that works
    assert result.exit_code == 1 and "the relay failed" in result.output
