"""Faults stay with their message: a real SMTP server that misbehaves, frozen time, one process.

Counts deliveries per Message-ID: a poison message among good ones, an outage longer than the old
retry schedule, a late reply to the end of DATA, and a claim kept alive through a slow send.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Notification, RelayHealth
from tracker.notifications.dispatch import DispatchResult, dispatch

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def queue(
    app, count: int, *, now: datetime = NOW, prefix: str = "good", first: str | None = None
) -> list[int]:
    """``count`` outbox rows to <prefix><n>@example.test (``first`` gets the lowest id); their ids."""
    addresses = ([first] if first else []) + [f"{prefix}{n}@example.test" for n in range(count)]
    with app.app_context():
        rows = [
            Notification(
                kind="overdue",
                to_address=address,
                idempotency_key=f"test:{address}",
                subject=f"Mail for {address}",
                body_text="text",
                body_html="<p>html</p>",
                next_attempt_at=now,
                created_at=now,
            )
            for address in addresses
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def rows(app) -> dict[str, Notification]:
    """Every outbox row by address, detached."""
    with app.app_context():
        found = {row.to_address: row for row in db.session.scalars(sa.select(Notification))}
        db.session.expunge_all()
        return found


def health(app) -> RelayHealth | None:
    with app.app_context():
        row = db.session.get(RelayHealth, "smtp")
        if row is not None:
            db.session.expunge(row)
        return row


def run(app, now, **kwargs) -> DispatchResult:
    with app.app_context():
        return dispatch(now, **kwargs)


def test_a_poison_message_fails_alone_while_thirty_go_out(app, smtp_server):
    """The first message makes the relay drop the connection at the end of DATA, on every try."""
    poison = "poison@example.test"
    queue(app, 30, first=poison)
    smtp_server.handler.drop_at_data_end(poison)

    assert run(app, NOW) == DispatchResult(sent=30, retried=1)
    assert len(smtp_server.handler.deliveries()) == 30
    state = rows(app)
    assert (state[poison].attempts, state[poison].breaks, state[poison].state) == (1, 1, "pending")
    assert "Connection unexpectedly closed" in state[poison].last_error
    # The good ones were tried once each and never charged for the poison's fault.
    assert {(r.state, r.attempts, r.breaks) for a, r in state.items() if a != poison} == {("sent", 1, 0)}

    now = state[poison].next_attempt_at
    assert run(app, now) == DispatchResult(retried=1)
    now = rows(app)[poison].next_attempt_at
    assert run(app, now) == DispatchResult(failed=1)
    row = rows(app)[poison]
    assert (row.state, row.attempts, row.breaks) == ("failed", 3, 3)
    assert row.last_error.startswith("the connection broke 3 times while sending it")
    deliveries = smtp_server.handler.deliveries()
    assert len(deliveries) == 30 and set(deliveries.values()) == {1}  # 30 delivered, each once
    assert len(smtp_server.handler.dropped) == 3


def test_a_message_that_broke_the_connection_goes_after_the_others(app, smtp_server):
    """Claims order by breaks first: a suspect message no longer leads the batch."""
    poison = "poison@example.test"
    queue(app, 3, first=poison)
    smtp_server.handler.drop_at_data_end(poison)
    run(app, NOW, batch_size=1)  # the poison alone in the first batch, then the others
    later = NOW + timedelta(hours=1)
    queue(app, 2, now=later, prefix="new")  # queued after the poison's next try
    smtp_server.handler.messages.clear()
    run(app, later)
    order = [m.rcpt_tos[0] for m in smtp_server.handler.messages]
    assert order == ["new0@example.test", "new1@example.test"]  # offered before the poison's retry
    assert len(smtp_server.handler.dropped) == 2


def test_two_breaks_in_a_row_stop_the_run_and_charge_only_the_messages_in_flight(app, smtp_server):
    bad = ["bad1@example.test", "bad2@example.test"]
    ids = queue(app, 3, first=bad[0])
    queue(app, 0, first=bad[1])
    with app.app_context():  # make both bad ones lead the queue
        db.session.execute(
            sa.update(Notification)
            .where(Notification.to_address == bad[1])
            .values(next_attempt_at=NOW - timedelta(seconds=1))
        )
        db.session.commit()
    for address in bad:
        smtp_server.handler.drop_at_data_end(address)
    result = run(app, NOW)
    assert result == DispatchResult(retried=2, deferred=3)
    state = rows(app)
    assert [(state[a].attempts, state[a].breaks) for a in bad] == [(1, 1), (1, 1)]
    for n in range(3):  # untried: not charged, their place kept, free for the next run
        row = state[f"good{n}@example.test"]
        assert (row.attempts, row.next_attempt_at, row.claimed_by, row.last_error) == (0, NOW, None, None)
    assert ids[0] == state[bad[0]].id and health(app).failing_since == NOW


def _drain(app, until: datetime, limit: int = 200) -> int:
    """Dispatch at each next try until ``until``; the number of runs."""
    runs = 0
    while runs < limit:
        with app.app_context():
            due = db.session.scalar(
                sa.select(sa.func.min(Notification.next_attempt_at)).where(Notification.state == "pending")
            )
        if due is None or due > until:
            return runs
        run(app, due)
        runs += 1
    raise AssertionError("too many runs")


def test_an_outage_longer_than_the_old_schedule_loses_nothing(app, smtp_server):
    """The relay says 451 to everything for two days (the old schedule gave up after ~8.5 hours)."""
    queue(app, 5)
    smtp_server.handler.refuse_data("451 4.3.0 Relay busy", times=100_000)
    end = NOW + timedelta(days=2)
    runs = _drain(app, end)
    state = rows(app)
    assert {r.state for r in state.values()} == {"pending"}
    assert min(r.attempts for r in state.values()) > 10  # more tries than the old limit, none failed
    assert health(app).failing_since == NOW
    smtp_server.handler.heal()
    _drain(app, end + timedelta(hours=7))
    assert {r.state for r in rows(app).values()} == {"sent"}
    deliveries = smtp_server.handler.deliveries()
    assert len(deliveries) == 5 and set(deliveries.values()) == {1}
    assert health(app).failing_since is None and runs > 10


def test_an_unreachable_relay_for_two_days_then_back(app, smtp_server, mail_settings):
    """Nobody is charged while the relay cannot be reached; everything goes when it is back."""
    with __import__("socket").create_server(("127.0.0.1", 0)) as spare:
        closed = spare.getsockname()[1]
    mail_settings(MAIL_PORT=closed)
    queue(app, 5)
    for hours in range(0, 48, 6):
        assert run(app, NOW + timedelta(hours=hours)).deferred == 5
    mail_settings(MAIL_PORT=smtp_server.port)
    assert run(app, NOW + timedelta(hours=48)) == DispatchResult(sent=5)
    assert {(r.state, r.attempts) for r in rows(app).values()} == {("sent", 1)}
    assert health(app).failing_since is None


def test_temporary_failures_end_with_the_window(app, smtp_server, mail_settings):
    mail_settings(TRACKER_MAIL_RETRY_WINDOW=24 * 3600)
    queue(app, 2)
    smtp_server.handler.refuse_data("451 4.3.0 Relay busy", times=100_000)
    _drain(app, NOW + timedelta(days=3))
    state = rows(app)
    assert {r.state for r in state.values()} == {"failed"}
    assert all(r.last_error.startswith("gave up after") for r in state.values())
    assert all(r.first_tried_at == NOW for r in state.values())


def test_a_late_reply_to_the_end_of_data_is_one_copy_marked_sent(app, smtp_server, mail_settings):
    """The relay keeps the message and answers after 3 s: longer than MAIL_TIMEOUT, within
    MAIL_DATA_TIMEOUT. Meanwhile a second dispatcher runs: the claim, renewed, keeps it away."""
    mail_settings(MAIL_TIMEOUT=1, MAIL_DATA_TIMEOUT=10, TRACKER_DISPATCH_CLAIM_SECONDS=1)
    (row_id,) = queue(app, 1)
    smtp_server.handler.answer_late(3)
    other: list[DispatchResult] = []

    def second_dispatcher() -> None:
        time.sleep(1.8)  # the first claim (1 s) would have lapsed by now without its heartbeat
        with app.app_context():
            other.append(dispatch())  # the real clock, as a second process would read it

    thread = threading.Thread(target=second_dispatcher)
    thread.start()
    started = time.monotonic()
    with app.app_context():
        result = dispatch()
    elapsed = time.monotonic() - started
    thread.join()
    assert result == DispatchResult(sent=1) and other == [DispatchResult()]
    assert 3 <= elapsed < 6
    assert list(smtp_server.handler.deliveries().values()) == [1]
    row = rows(app)["good0@example.test"]
    assert (row.id, row.state, row.attempts, row.relay_reply) == (
        row_id,
        "sent",
        1,
        "250 Message accepted for delivery",
    )


def test_no_reply_within_the_data_timeout_is_a_break_of_that_message(app, smtp_server, mail_settings):
    """A relay that keeps the message and never answers: the one message in flight is charged, and
    its retry is the at-most-one duplicate (with the same Message-ID)."""
    mail_settings(MAIL_TIMEOUT=1, MAIL_DATA_TIMEOUT=1)
    queue(app, 1)
    smtp_server.handler.hang_at_data_end()
    started = time.monotonic()
    assert run(app, NOW) == DispatchResult(retried=1)
    assert time.monotonic() - started < 3
    row = rows(app)["good0@example.test"]
    assert (row.attempts, row.breaks) == (1, 1) and "timed out" in row.last_error
    smtp_server.handler.heal()
    assert run(app, row.next_attempt_at) == DispatchResult(sent=1)
    assert list(smtp_server.handler.deliveries().values()) == [2]  # one Message-ID, two copies
