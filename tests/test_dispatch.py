"""Dispatch through a real SMTP server on loopback: each message once, retries with back-off,
permanent failures, timeouts, header safety, the .eml fallback and the `send-mail` command."""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Notification, NotificationKind, RelayHealth, User
from tracker.notifications import tokens
from tracker.notifications.dispatch import DispatchResult, claim, dispatch, retry_delay
from tracker.notifications.outbox import Email, enqueue

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _enqueue(
    app,
    world,
    who: str = "focal_sg",
    kind: NotificationKind = NotificationKind.OVERDUE,
    key: str | None = None,
    subject: str = "2 actions are overdue",
    text: str = "Hello,\n\nTwo actions are overdue.\n",
    html: str = "<p>Hello,</p><p>Two actions are overdue.</p>",
    now: datetime = NOW,
) -> int:
    """Put one message in the outbox through the real enqueue() and commit; its id."""
    with app.app_context():
        user = db.session.get(User, world.user_ids[who])
        key = key or f"{kind.value}:user{user.id}:{now.date()}"
        assert enqueue(kind, user, key, Email(subject, text, html), now)
        db.session.commit()
        return db.session.scalar(sa.select(Notification.id).where(Notification.idempotency_key == key))


def _insert_raw(app, world, subject: str, key: str = "raw:1", who: str = "focal_sg") -> int:
    """A row written directly, bypassing enqueue() and its checks (as a bug or an old row might)."""
    with app.app_context():
        user = db.session.get(User, world.user_ids[who])
        row = Notification(
            kind="overdue",
            recipient_id=user.id,
            to_address=user.email,
            idempotency_key=key,
            subject=subject,
            body_text="text",
            body_html="<p>html</p>",
            next_attempt_at=NOW,
            created_at=NOW,
        )
        db.session.add(row)
        db.session.commit()
        return row.id


def _row(app, notification_id: int) -> Notification:
    with app.app_context():
        row = db.session.get(Notification, notification_id)
        db.session.expunge(row)
        return row


def _dispatch(app, now: datetime = NOW, **kwargs) -> DispatchResult:
    with app.app_context():
        return dispatch(now, **kwargs)


def _closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


# --- sending -----------------------------------------------------------------------------------


def test_dispatch_sends_each_message_once(app, world, smtp_server):
    ids = [
        _enqueue(app, world, "focal_sg"),
        _enqueue(app, world, "focal_my"),
        _enqueue(app, world, "manager_sg", NotificationKind.ESCALATION),
    ]
    assert _dispatch(app) == DispatchResult(sent=3)
    assert _dispatch(app) == DispatchResult()  # back to back: nothing is due any more
    assert _dispatch(app, NOW + timedelta(days=1)) == DispatchResult()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        [world.users["focal_sg"], world.users["focal_my"], world.users["manager_sg"]]
    )
    for message in smtp_server.messages:
        assert len(message.rcpt_tos) == 1  # one message per recipient
        assert message.mail_from == app.config["MAIL_DEFAULT_SENDER"]
    for notification_id in ids:
        row = _row(app, notification_id)
        assert (row.state, row.attempts, row.sent_at, row.claimed_until, row.claimed_by) == (
            "sent",
            1,
            NOW,
            None,
            None,
        )
        assert row.relay_reply == "250 Message accepted for delivery" and row.first_tried_at == NOW
    with app.app_context():
        health = db.session.get(RelayHealth, "smtp")
        assert (health.last_success_at, health.failing_since) == (NOW, None)


def test_one_connection_per_batch(app, world, smtp_server):
    for who in ("focal_sg", "focal_my", "manager_sg", "manager", "reviewer"):
        _enqueue(app, world, who)
    # Batches of two: 2 + 2 + 1, all sent by one call, over three connections.
    assert _dispatch(app, batch_size=2) == DispatchResult(sent=5)
    assert smtp_server.handler.connections == 3
    peers = [m.peer for m in smtp_server.messages]
    assert peers[0] == peers[1] and peers[2] == peers[3] and len(set(peers)) == 3


def test_a_batch_uses_one_connection(app, world, smtp_server):
    for who in ("focal_sg", "focal_my", "manager_sg"):
        _enqueue(app, world, who)
    assert _dispatch(app) == DispatchResult(sent=3)
    assert smtp_server.handler.connections == 1
    assert len({m.peer for m in smtp_server.messages}) == 1


def test_nothing_due_opens_no_connection(app, world, smtp_server):
    _enqueue(app, world, now=NOW + timedelta(hours=1))  # not due yet
    assert _dispatch(app) == DispatchResult()
    assert smtp_server.handler.connections == 0


def test_451_twice_then_delivered_on_the_third_try(app, world, smtp_server):
    notification_id = _enqueue(app, world)
    smtp_server.handler.refuse_data("451 4.3.0 Try again later", times=2)

    assert _dispatch(app) == DispatchResult(retried=1)
    row = _row(app, notification_id)
    assert (row.state, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert row.next_attempt_at == NOW + timedelta(seconds=60)
    assert row.last_error.startswith("451 4.3.0 Try again later")
    assert _dispatch(app, NOW + timedelta(seconds=59)) == DispatchResult()  # not yet

    second = NOW + timedelta(seconds=60)
    assert _dispatch(app, second) == DispatchResult(retried=1)
    row = _row(app, notification_id)
    assert (row.attempts, row.next_attempt_at) == (2, second + timedelta(seconds=120))

    third = second + timedelta(seconds=120)
    assert _dispatch(app, third) == DispatchResult(sent=1)
    row = _row(app, notification_id)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 3, third)
    assert len(smtp_server.messages) == 1 and len(smtp_server.handler.refused_messages) == 2
    # The Message-ID is the same on every try, so a duplicate is recognisable.
    ids = {m.parsed()["Message-ID"] for m in smtp_server.handler.refused_messages + smtp_server.messages}
    assert len(ids) == 1


def test_550_fails_and_is_not_retried(app, world, smtp_server):
    notification_id = _enqueue(app, world)
    smtp_server.handler.refuse_data("550 5.7.1 Message rejected")
    assert _dispatch(app) == DispatchResult(failed=1)
    row = _row(app, notification_id)
    assert (row.state, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error == "550 5.7.1 Message rejected"
    assert _dispatch(app, NOW + timedelta(days=2)) == DispatchResult()
    assert smtp_server.messages == [] and len(smtp_server.handler.refused) == 1


def test_a_refused_recipient_uses_its_code_and_the_connection_goes_on(app, world, smtp_server):
    gone = _enqueue(app, world, "focal_sg")
    busy = _enqueue(app, world, "focal_my")
    fine = _enqueue(app, world, "manager_sg")
    smtp_server.handler.refuse_rcpt(world.users["focal_sg"], "550 5.1.1 No such user")
    smtp_server.handler.refuse_rcpt(world.users["focal_my"], "452 4.2.2 Mailbox full")
    assert _dispatch(app) == DispatchResult(sent=1, retried=1, failed=1)
    assert (_row(app, gone).state, _row(app, gone).last_error) == ("failed", "550 5.1.1 No such user")
    assert (_row(app, busy).state, _row(app, busy).last_error) == ("pending", "452 4.2.2 Mailbox full")
    assert _row(app, fine).state == "sent"
    assert smtp_server.handler.connections == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [[world.users["manager_sg"]]]


def test_back_off_doubles_up_to_the_cap_and_the_last_try_ends_the_window(
    app, world, smtp_server, mail_settings
):
    mail_settings(TRACKER_MAIL_RETRY_BASE=60, TRACKER_MAIL_RETRY_MAX=300, TRACKER_MAIL_RETRY_WINDOW=1000)
    smtp_server.handler.refuse_data("451 4.3.0 Try again later", times=10)
    notification_id = _enqueue(app, world)
    now, waits = NOW, []
    for attempt in range(1, 6):
        assert _dispatch(app, now) == DispatchResult(retried=1)
        row = _row(app, notification_id)
        assert (row.attempts, row.first_tried_at, row.breaks) == (attempt, NOW, 0)
        waits.append(int((row.next_attempt_at - now).total_seconds()))
        now = row.next_attempt_at
    assert waits == [60, 120, 240, 300, 280]  # the last try falls on the end of the window
    assert now == NOW + timedelta(seconds=1000)
    assert _dispatch(app, now) == DispatchResult(failed=1)
    row = _row(app, notification_id)
    assert row.state == "failed" and row.attempts == 6
    assert row.last_error.startswith("gave up after 6 attempts since 2026-11-24 01:00 UTC: 451 4.3.0")


def test_default_back_off_schedule(app):
    config = app.config
    assert config["TRACKER_MAIL_RETRY_BASE"] == 60
    assert config["TRACKER_MAIL_RETRY_WINDOW"] == 3 * 24 * 3600 and config["TRACKER_MAIL_MAX_BREAKS"] == 3
    minutes = [retry_delay(n, config).total_seconds() / 60 for n in range(1, 11)]
    assert minutes == [1, 2, 4, 8, 16, 32, 64, 128, 256, 360]  # capped at six hours
    assert retry_delay(10_000, config) == timedelta(hours=6)


def test_an_unreachable_relay_charges_nobody(app, world, mail_settings):
    """No message was in flight: every row keeps its attempts and its place; the relay is failing."""
    mail_settings(MAIL_SERVER="127.0.0.1", MAIL_PORT=_closed_port())
    ids = [_enqueue(app, world, who) for who in ("focal_sg", "focal_my", "manager_sg")]
    result = _dispatch(app)
    assert result == DispatchResult(deferred=3) and "ConnectionRefusedError" in result.relay_error
    for notification_id in ids:
        row = _row(app, notification_id)
        assert (row.state, row.attempts, row.next_attempt_at, row.first_tried_at) == ("pending", 0, NOW, None)
        assert (row.claimed_until, row.claimed_by, row.breaks) == (None, None, 0)
    with app.app_context():
        health = db.session.get(RelayHealth, "smtp")
        assert (health.failing_since, health.last_failure_at, health.last_success_at) == (NOW, NOW, None)
        assert "ConnectionRefusedError" in health.last_error
    later = NOW + timedelta(minutes=5)
    assert _dispatch(app, later).deferred == 3
    with app.app_context():
        health = db.session.get(RelayHealth, "smtp")
        assert (health.failing_since, health.last_failure_at) == (NOW, later)  # one outage


def test_a_silent_server_cannot_hold_dispatch(app, world, silent_server):
    ids = [_enqueue(app, world, who) for who in ("focal_sg", "focal_my")]
    assert app.config["MAIL_TIMEOUT"] == 1
    started = time.monotonic()
    result = _dispatch(app)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3, elapsed  # one wait for the greeting, then the batch waits for later
    assert result == DispatchResult(deferred=2) and "timed out" in result.relay_error
    for notification_id in ids:
        row = _row(app, notification_id)
        assert (row.state, row.attempts, row.last_error) == ("pending", 0, None)


def test_mail_timeout_bounds_the_wait(app, world, silent_server, mail_settings):
    mail_settings(MAIL_TIMEOUT=2)
    _enqueue(app, world)
    started = time.monotonic()
    assert _dispatch(app) == DispatchResult(deferred=1)
    assert 1.9 <= time.monotonic() - started < 4


# --- claims ------------------------------------------------------------------------------------


def test_a_claimed_row_is_left_alone_until_the_claim_expires(app, world, smtp_server):
    notification_id = _enqueue(app, world)
    lease = timedelta(seconds=app.config["TRACKER_DISPATCH_CLAIM_SECONDS"])
    with app.app_context():
        # A dispatcher claims the row and dies before sending it.
        assert [r.id for r in claim(NOW, 10, lease, "dead")] == [notification_id]
        assert claim(NOW, 10, lease, "other") == []  # a second dispatcher does not get it
    assert (_row(app, notification_id).claimed_until, _row(app, notification_id).claimed_by) == (
        NOW + lease,
        "dead",
    )
    assert _dispatch(app, NOW + lease - timedelta(seconds=1)) == DispatchResult()
    assert smtp_server.messages == []
    # Once the claim has expired, the row is taken again and sent, once.
    assert _dispatch(app, NOW + lease + timedelta(seconds=1)) == DispatchResult(sent=1)
    assert _dispatch(app, NOW + lease + timedelta(seconds=2)) == DispatchResult()
    assert len(smtp_server.messages) == 1
    row = _row(app, notification_id)
    assert (row.state, row.attempts, row.claimed_until, row.claimed_by) == ("sent", 1, None, None)


def test_rows_locked_by_another_dispatcher_are_skipped_not_waited_for(app, world):
    ids = [_enqueue(app, world, who) for who in ("focal_sg", "focal_my", "manager_sg")]
    lease = timedelta(minutes=5)
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks (FOR UPDATE SKIP LOCKED) exist on PostgreSQL only")
        with db.engine.connect() as other:
            # Another dispatcher is in the middle of claiming the first row.
            other.execute(sa.select(Notification.id).where(Notification.id == ids[0]).with_for_update())
            started = time.monotonic()
            claimed = claim(NOW, 10, lease, "me")
            assert time.monotonic() - started < 2
            other.rollback()
        assert [r.id for r in claimed] == ids[1:]
        assert [r.id for r in claim(NOW, 10, lease, "me")] == ids[:1]


def test_a_claim_takes_at_most_a_batch(app, world):
    ids = [_enqueue(app, world, who) for who in ("focal_sg", "focal_my", "manager_sg", "manager", "reviewer")]
    with app.app_context():
        assert [r.id for r in claim(NOW, 2, timedelta(minutes=5), "me")] == ids[:2]
        assert [r.id for r in claim(NOW, 2, timedelta(minutes=5), "me")] == ids[2:4]
        assert [r.id for r in claim(NOW, 2, timedelta(minutes=5), "me")] == ids[4:]
        assert claim(NOW, 2, timedelta(minutes=5), "me") == []


def test_oldest_due_first(app, world, smtp_server):
    late = _enqueue(app, world, "focal_sg", now=NOW - timedelta(minutes=1))
    early = _enqueue(app, world, "focal_my", now=NOW - timedelta(hours=1))
    assert _dispatch(app, batch_size=1) == DispatchResult(sent=2)
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == [world.users["focal_my"], world.users["focal_sg"]]
    assert _row(app, late).state == _row(app, early).state == "sent"


# --- the message -------------------------------------------------------------------------------


def test_headers_and_parts(app, world, smtp_server):
    _enqueue(
        app,
        world,
        "focal_sg",
        NotificationKind.DUE_SOON,
        subject="Überfällig — “two” actions",
        text="Señora,\nüñí\n",
        html="<p>Señora, <b>üñí</b></p>",
    )
    _enqueue(app, world, "focal_my", NotificationKind.OVERDUE)
    assert _dispatch(app) == DispatchResult(sent=2)
    by_address = {m.rcpt_tos[0]: m for m in smtp_server.messages}

    due_soon = by_address[world.users["focal_sg"]].parsed()
    assert due_soon["Subject"] == "Überfällig — “two” actions"
    assert due_soon["To"] == world.users["focal_sg"]
    assert due_soon["From"] == app.config["MAIL_DEFAULT_SENDER"]
    assert due_soon["Auto-Submitted"] == "auto-generated"
    assert re.fullmatch(r"<[0-9a-f]{32}@127\.0\.0\.1>", due_soon["Message-ID"])
    assert due_soon["Date"]
    unsubscribe = due_soon["List-Unsubscribe"]
    match = re.fullmatch(r"<(http://127\.0\.0\.1:5000/\S*unsubscribe/)([\w.-]+)>", unsubscribe)
    assert match, unsubscribe
    with app.app_context():
        assert tokens.read("unsubscribe", match.group(2)) == {
            "u": world.user_ids["focal_sg"],
            "k": "due_soon",
        }
    assert due_soon["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The raw header carries the plain URL (not RFC 2047-encoded), as mail clients expect.
    raw = by_address[world.users["focal_sg"]].raw
    assert f"List-Unsubscribe: {unsubscribe}\r\n".encode() in raw
    assert raw.isascii()  # 7-bit clean: any relay takes it
    assert due_soon.get_content_type() == "multipart/alternative"
    text, html = due_soon.iter_parts()
    assert (text.get_content_type(), text.get_content_charset()) == ("text/plain", "utf-8")
    assert (html.get_content_type(), html.get_content_charset()) == ("text/html", "utf-8")
    assert text.get_content().replace("\r\n", "\n") == "Señora,\nüñí\n"  # CRLF on the wire
    assert "<b>üñí</b>" in html.get_content()

    overdue = by_address[world.users["focal_my"]].parsed()
    assert overdue["Auto-Submitted"] == "auto-generated"
    assert overdue["List-Unsubscribe"] is None and overdue["List-Unsubscribe-Post"] is None
    assert overdue["Message-ID"] != due_soon["Message-ID"]


def test_message_id_is_derived_from_the_key(app, world, smtp_server):
    import hashlib

    _enqueue(app, world, key="overdue:user1:2026-11-24")
    _dispatch(app)
    expected = hashlib.sha256(b"overdue:user1:2026-11-24").hexdigest()[:32]
    assert smtp_server.messages[0].parsed()["Message-ID"] == f"<{expected}@127.0.0.1>"


def test_a_line_break_in_a_stored_subject_is_never_sent(app, world, smtp_server):
    """A row written past enqueue() with CR LF in its subject is marked failed, not sent."""
    bad = _insert_raw(app, world, "Overdue\r\nBcc: x@evil.test")
    good = _enqueue(app, world, "focal_my")
    assert _dispatch(app) == DispatchResult(sent=1, failed=1)
    row = _row(app, bad)
    assert row.state == "failed" and "unsafe header" in row.last_error and row.sent_at is None
    assert _row(app, good).state == "sent"
    assert len(smtp_server.messages) == 1
    for message in smtp_server.messages:
        assert message.rcpt_tos == [world.users["focal_my"]]
        assert b"evil" not in message.raw
        assert message.parsed()["Bcc"] is None


def test_a_line_break_in_a_title_folds_into_the_subject(app, world, smtp_server):
    """Through enqueue(), user text with CR LF becomes one line: no extra header appears."""
    _enqueue(app, world, subject="Action “E-filing\r\nBcc: x@evil.test” is overdue")
    assert _dispatch(app) == DispatchResult(sent=1)
    (message,) = smtp_server.messages
    parsed = message.parsed()
    assert parsed["Bcc"] is None and message.rcpt_tos == [world.users["focal_sg"]]
    assert parsed["Subject"] == "Action “E-filing Bcc: x@evil.test” is overdue"
    header_names = [line.split(b":")[0] for line in message.raw.split(b"\r\n\r\n")[0].split(b"\r\n")]
    assert b"Bcc" not in header_names


# --- without an SMTP server --------------------------------------------------------------------


def test_without_a_server_mail_is_written_as_eml_files(app, world, tmp_path, mail_settings):
    mail_dir = tmp_path / "mail"
    mail_settings(MAIL_SERVER=None, TRACKER_MAIL_DIR=str(mail_dir))
    notification_id = _enqueue(
        app, world, kind=NotificationKind.DUE_SOON, text="Text ✓\n", html="<p>HTML ✓</p>"
    )
    assert _dispatch(app) == DispatchResult(sent=1)
    assert _dispatch(app) == DispatchResult()
    files = sorted(mail_dir.iterdir())
    assert [f.name for f in files] == [f"20261124T010000Z-{notification_id}.eml"]
    message = message_from_bytes(Path(files[0]).read_bytes(), policy=policy.default)
    assert message["To"] == world.users["focal_sg"]
    assert message["Auto-Submitted"] == "auto-generated" and message["List-Unsubscribe"]
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content().strip() for p in message.iter_parts()] == ["Text ✓", "<p>HTML ✓</p>"]
    row = _row(app, notification_id)
    assert (row.state, row.sent_at, row.attempts) == ("sent", NOW, 1)


def test_an_unwritable_mail_folder_is_a_temporary_failure(app, world, tmp_path, mail_settings):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    mail_settings(MAIL_SERVER=None, TRACKER_MAIL_DIR=str(blocker / "mail"))
    notification_id = _enqueue(app, world)
    assert _dispatch(app) == DispatchResult(retried=1)
    assert "cannot write" in _row(app, notification_id).last_error


# --- the command -------------------------------------------------------------------------------


def test_send_mail_command(app, world, runner, smtp_server):
    now = datetime.now(UTC)
    _enqueue(app, world, "focal_sg", now=now)
    _enqueue(app, world, "focal_my", now=now)
    dry = runner.invoke(args=["tracker", "send-mail", "--dry-run"])
    assert (dry.exit_code, dry.output) == (0, "2 due; nothing sent (dry run).\n")
    assert smtp_server.messages == []
    result = runner.invoke(args=["tracker", "send-mail"])
    assert (result.exit_code, result.output) == (0, "sent 2, retried 0, failed 0\n")
    assert len(smtp_server.messages) == 2
    again = runner.invoke(args=["tracker", "send-mail"])
    assert (again.exit_code, again.output) == (0, "sent 0, retried 0, failed 0\n")


def test_send_mail_command_reports_failures(app, world, runner, smtp_server):
    now = datetime.now(UTC)
    _enqueue(app, world, "focal_sg", now=now)
    _enqueue(app, world, "focal_my", now=now)
    smtp_server.handler.refuse_data("451 4.3.0 Later")
    smtp_server.handler.refuse_data("554 5.7.1 No")
    result = runner.invoke(args=["tracker", "send-mail"])
    assert (result.exit_code, result.output) == (0, "sent 0, retried 1, failed 1\n")


def test_send_mail_command_refuses_a_broken_configuration(app, world, runner, mail_settings):
    _enqueue(app, world, now=datetime.now(UTC))
    mail_settings(MAIL_SERVER="127.0.0.1", MAIL_USE_TLS=True, MAIL_USE_SSL=True)
    result = runner.invoke(args=["tracker", "send-mail"])
    assert result.exit_code == 1
    assert "MAIL_USE_TLS and MAIL_USE_SSL" in result.output
    with app.app_context():  # nothing was claimed or tried
        row = db.session.scalar(sa.select(Notification))
        assert (row.state, row.attempts, row.claimed_until) == ("pending", 0, None)
