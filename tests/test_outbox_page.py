"""The admin outbox page through HTTP: list and filters, a message as sent, retry, the scheduler's
heartbeat, and refusals for everyone but admins."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import Notification, NotificationKind, SchedulerLease, SchedulerRun, User
from tracker.notifications.outbox import Email, enqueue

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _add(
    app,
    world,
    who: str = "focal_sg",
    kind: NotificationKind = NotificationKind.OVERDUE,
    key: str | None = None,
    subject: str = "2 actions are overdue",
    html_body: str = "<p>Two actions are overdue.</p>",
    **columns,
) -> int:
    """One outbox row through enqueue(), then ``columns`` set on it; its id."""
    with app.app_context():
        user = db.session.get(User, world.user_ids[who])
        key = key or f"{kind.value}:user{user.id}:{NOW.date()}"
        enqueue(kind, user, key, Email(subject, "Two actions are overdue.\n", html_body), NOW)
        row = db.session.scalar(sa.select(Notification).where(Notification.idempotency_key == key))
        for name, value in columns.items():
            setattr(row, name, value)
        db.session.commit()
        return row.id


def _row(app, notification_id: int) -> Notification:
    with app.app_context():
        row = db.session.get(Notification, notification_id)
        db.session.expunge(row)
        return row


def _subjects(c, **query: str) -> list[str]:
    page = c.get("/admin/outbox", query_string=query)
    assert page.status_code == 200
    return [html.unescape(s) for s in re.findall(r'<a href="/admin/outbox/\d+">([^<]*)</a>', page.text)]


@pytest.fixture
def outbox(app, world) -> dict[str, int]:
    """Four messages: pending, sent, failed, and a digest to a manager."""
    return {
        "pending": _add(app, world, "focal_sg", subject="Pending to SG"),
        "sent": _add(app, world, "focal_my", subject="Sent to MY", state="sent", attempts=1, sent_at=NOW),
        "failed": _add(
            app,
            world,
            "reviewer",
            NotificationKind.REVIEW_QUEUE,
            subject="Failed to the reviewer",
            state="failed",
            attempts=1,
            last_error="550 5.1.1 No such user: " + "x" * 200,
        ),
        "digest": _add(
            app, world, "manager_sg", NotificationKind.DIGEST, key="digest:q3", subject="Digest for SG"
        ),
    }


# --- the list ----------------------------------------------------------------------------------


def test_admin_sees_the_outbox(app, world, login_as, outbox):
    c = login_as(world.users["admin"])
    page = c.get("/admin/outbox")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "4 messages" in text
    for label in (
        "Created",
        "Kind",
        "Recipient",
        "Subject",
        "State",
        "Attempts",
        "Next try / sent",
        "Last error",
    ):
        assert f">{label}</th>" in text
    assert "Failed to the reviewer" in text and world.users["reviewer"] in text
    assert "550 5.1.1 No such user" in text
    assert "x" * 200 not in text.split("<span title=")[1].split(">", 1)[1]  # shortened in the cell
    assert "the daily verification list" in text  # the kind, in words
    assert 'class="badge mail-failed">Failed<' in text
    assert f'href="/admin/outbox/{outbox["failed"]}"' in text
    # The scheduler has never run.
    assert "The scheduler has not run yet" in text
    # Without MAIL_SERVER the page says where the mail goes.
    assert ".eml files" in text


def test_newest_first_and_paginated(app, world, login_as, outbox):
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification)).all()
        for i, row in enumerate(rows):
            row.created_at = NOW + timedelta(minutes=i)
        db.session.commit()
        newest_first = [r.subject for r in sorted(rows, key=lambda r: r.created_at, reverse=True)]
    c = login_as(world.users["admin"])
    assert _subjects(c) == newest_first
    app.config["TRACKER_PAGE_SIZE"] = 3
    try:
        first = c.get("/admin/outbox?state=").text
        assert "Page 1 of 2" in first
        assert _subjects(c, page="2") == newest_first[3:]
        assert _subjects(c, page="9") == newest_first[3:]  # past the end: the last page
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50


def test_filters(app, world, login_as, outbox):
    c = login_as(world.users["admin"])
    assert set(_subjects(c)) == {"Pending to SG", "Sent to MY", "Failed to the reviewer", "Digest for SG"}
    assert _subjects(c, state="failed") == ["Failed to the reviewer"]
    assert _subjects(c, state="sent") == ["Sent to MY"]
    assert set(_subjects(c, state="pending")) == {"Pending to SG", "Digest for SG"}
    assert _subjects(c, kind="digest") == ["Digest for SG"]
    assert _subjects(c, kind="digest", state="sent") == []
    assert set(_subjects(c, recipient=".SG@")) == {"Pending to SG", "Digest for SG"}  # any case
    assert _subjects(c, recipient="%") == []  # a wildcard is a plain character
    # Unknown values are ignored rather than failing.
    assert len(_subjects(c, kind="spam", state="lost")) == 4
    page = c.get("/admin/outbox", query_string={"kind": "digest", "state": "pending", "recipient": "sg"}).text
    assert '<option value="digest" selected>' in page and '<option value="pending" selected>' in page
    assert 'name="recipient" value="sg"' in page
    assert "No message matches these filters." in c.get("/admin/outbox?recipient=nobody").text


def test_the_list_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            _add(app, world, key=f"overdue:bulk:{i}", subject=f"Bulk {i}")

    c = login_as(world.users["admin"])
    add(3, 0)
    with app.app_context():
        db.session.add(SchedulerLease(name="scheduler", holder="h", expires_at=NOW, heartbeat_at=NOW))
        db.session.commit()
    with count_queries() as few:
        assert "3 messages" in c.get("/admin/outbox").text
    add(30, 3)
    with count_queries() as many:
        assert "33 messages" in c.get("/admin/outbox").text
    assert len(many) == len(few) <= 9, (
        many
    )  # 7 (the jobs' last runs too), and the backlog: counts by state, the oldest pending


# --- one message -------------------------------------------------------------------------------


def test_a_message_as_sent(app, world, login_as):
    body = '<p class="x">Hi &amp; "you"</p><script>alert(1)</script>'
    notification_id = _add(app, world, "focal_sg", NotificationKind.DUE_SOON, html_body=body)
    page = login_as(world.users["admin"]).get(f"/admin/outbox/{notification_id}")
    assert page.status_code == 200
    text = page.text
    assert '<pre class="mail-text">Two actions are overdue.\n</pre>' in text
    # The HTML body is shown in a sandboxed frame, from its own URL: it never runs in the page.
    frame = re.search(r"<iframe[^>]*>", text).group(0)
    assert 'sandbox=""' in frame and f'src="/admin/outbox/{notification_id}/body.html"' in frame
    assert "alert(1)" not in text
    shown = login_as(world.users["admin"]).get(f"/admin/outbox/{notification_id}/body.html")
    assert shown.status_code == 200 and shown.mimetype == "text/html" and shown.text == body
    # Its own policy: inline styles of the mail apply; no script runs; only this site may frame it.
    policy = shown.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy and "frame-ancestors 'self'" in policy
    assert "script-src" not in policy and shown.headers["X-Frame-Options"] == "SAMEORIGIN"
    for label in ("reviewer", "focal_sg"):
        other = login_as(world.users[label])
        assert other.get(f"/admin/outbox/{notification_id}/body.html").status_code == 403
    # Headers as they go out.
    for name in ("From", "To", "Subject", "Message-ID", "Auto-Submitted", "List-Unsubscribe"):
        assert f"<dt>{name}</dt>" in text
    assert "auto-generated" in text and "List-Unsubscribe=One-Click" in text
    assert re.search(r"&lt;[0-9a-f]{32}@127\.0\.0\.1&gt;", text)
    assert "due_soon:user" in text  # the idempotency key
    assert "Send again" not in text  # not failed: nothing to retry


def test_a_message_without_unsubscribe_header(app, world, login_as):
    notification_id = _add(app, world, "focal_sg", NotificationKind.OVERDUE)
    text = login_as(world.users["admin"]).get(f"/admin/outbox/{notification_id}").text
    assert "<dt>Auto-Submitted</dt>" in text and "List-Unsubscribe" not in text


def test_an_unsafe_row_is_flagged(app, world, login_as):
    notification_id = _add(app, world)
    with app.app_context():
        db.session.get(Notification, notification_id).subject = "Hi\r\nBcc: x@evil.test"
        db.session.commit()
    text = login_as(world.users["admin"]).get(f"/admin/outbox/{notification_id}").text
    assert "contains a line break, so this message is never sent" in text


def test_an_unknown_message_is_404(world, login_as):
    assert login_as(world.users["admin"]).get("/admin/outbox/999999").status_code == 404


# --- retry -------------------------------------------------------------------------------------


def test_retry_a_failed_message(app, world, login_as, outbox):
    c = login_as(world.users["admin"])
    url = f"/admin/outbox/{outbox['failed']}"
    page = c.get(url)
    assert "Send again to reviewer@example.test" in page.text
    before = datetime.now(UTC)
    response = c.post(f"{url}/retry", data={"csrf_token": csrf_token(page.text)}, follow_redirects=True)
    assert response.status_code == 200 and response.request.path == url
    assert "will be sent again at the next dispatch" in response.text
    row = _row(app, outbox["failed"])
    assert (row.state, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert row.last_error.startswith("550 5.1.1")  # kept until the next try
    assert before - timedelta(seconds=1) <= row.next_attempt_at <= datetime.now(UTC)


def test_only_failed_messages_are_retried(app, world, login_as, outbox):
    c = login_as(world.users["admin"])
    token = csrf_token(c.get(f"/admin/outbox/{outbox['failed']}").text)
    response = c.post(
        f"/admin/outbox/{outbox['sent']}/retry", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Only a failed message can be sent again." in response.text
    row = _row(app, outbox["sent"])
    assert (row.state, row.sent_at) == ("sent", NOW)


def test_retry_needs_the_csrf_token(app, world, login_as, outbox):
    c = login_as(world.users["admin"])
    assert c.post(f"/admin/outbox/{outbox['failed']}/retry").status_code == 400
    assert _row(app, outbox["failed"]).state == "failed"


def test_retry_is_post_only(world, login_as, outbox):
    c = login_as(world.users["admin"])
    assert c.get(f"/admin/outbox/{outbox['failed']}/retry").status_code == 405


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reviewer", "manager", "manager_sg", "focal_sg"])
def test_others_are_refused(app, world, login_as, outbox, role):
    c = login_as(world.users[role])
    assert c.get("/admin/outbox").status_code == 403
    assert c.get(f"/admin/outbox/{outbox['failed']}").status_code == 403
    assert c.get("/admin/outbox/999999").status_code == 403  # existence does not matter
    token = csrf_token(c.get("/").text)
    response = c.post(f"/admin/outbox/{outbox['failed']}/retry", data={"csrf_token": token})
    assert response.status_code == 403
    assert _row(app, outbox["failed"]).state == "failed"
    assert 'href="/admin/outbox"' not in c.get("/").text


def test_anonymous_visitors_are_sent_to_sign_in(client, outbox):
    response = client.get("/admin/outbox")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_outbox_link_is_for_admins(world, login_as):
    assert 'href="/admin/outbox"' in login_as(world.users["admin"]).get("/").text


# --- the scheduler's heartbeat -----------------------------------------------------------------


def _lease(app, heartbeat_ago: timedelta, next_runs: str | None) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(
            SchedulerLease(
                name="scheduler",
                holder="web-1:4242:abcd",
                heartbeat_at=now - heartbeat_ago,
                expires_at=now - heartbeat_ago + timedelta(seconds=45),
                next_runs=next_runs,
            )
        )
        db.session.commit()


def test_heartbeat_of_a_running_scheduler(app, world, login_as):
    runs = {"dispatch": "2030-01-01T00:01:00+00:00", "compose": "2030-01-01T00:00:00+00:00"}
    _lease(app, timedelta(minutes=2), json.dumps(runs))
    text = html.unescape(login_as(world.users["admin"]).get("/admin/outbox").text)
    assert "Running" in text and "Stopped?" not in text
    assert "2 minutes ago" in text
    assert "web-1:4242:abcd" in text
    # Next runs, soonest first, in the admin's zone (UTC).
    assert re.search(r"<code>compose</code>: <time[^>]*>1/1/30, 12:00\sAM</time>", text)
    assert text.index("<code>compose</code>") < text.index("<code>dispatch</code>")
    assert "The scheduler has not run yet" not in text


def test_heartbeat_of_a_stopped_scheduler(app, world, login_as):
    _lease(app, timedelta(minutes=10), "not json")
    text = html.unescape(login_as(world.users["admin"]).get("/admin/outbox").text)
    assert "Stopped?" in text and "No heartbeat for more than 3 minutes." in text
    assert "10 minutes ago" in text
    assert "Not readable." in text


def test_heartbeat_without_planned_runs(app, world, login_as):
    _lease(app, timedelta(seconds=5), None)
    text = html.unescape(login_as(world.users["admin"]).get("/admin/outbox").text)
    assert "Running" in text and "None planned." in text


def test_last_run_of_each_job(app, world, login_as):
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add_all(
            [
                SchedulerRun(
                    job_id="dispatch",
                    holder="web-1:4242:abcd",
                    started_at=now - timedelta(seconds=3),
                    finished_at=now - timedelta(seconds=1),
                    duration_seconds=1.94,
                    succeeded=True,
                    detail="7 sent",
                ),
                SchedulerRun(
                    job_id="compose",
                    holder="web-1:4242:abcd",
                    started_at=now,
                    finished_at=now,
                    duration_seconds=0.02,
                    succeeded=False,
                    detail="OperationalError: database is locked",
                ),
            ]
        )
        db.session.commit()
    text = html.unescape(login_as(world.users["admin"]).get("/admin/outbox").text)
    assert "Last run of each job" in text
    compose, dispatch = text.index("<code>compose</code>"), text.index("<code>dispatch</code>")
    assert compose < dispatch  # by job id
    assert re.search(
        r"<code>compose</code>.*?0 s.*?Failed</span> OperationalError: database is locked", text, re.S
    )
    assert re.search(r"<code>dispatch</code>.*?1.9 s.*?Done</span> 7 sent", text, re.S)


def test_no_runs_no_table(app, world, login_as):
    text = html.unescape(login_as(world.users["admin"]).get("/admin/outbox").text)
    assert "Last run of each job" not in text
