"""Mail under process faults: real scheduler and send-mail processes, a real (slow) SMTP server.

Counts deliveries per Message-ID: ``kill -9`` of the dispatching scheduler mid-batch then a restart,
the same with a standby taking over, and two dispatchers whose runs outlast the claim time. Lease
and claim times are shortened (3 s, 6 s) and the dispatch period is long (30 s), so the mail that
follows a kill comes from the takeover of the lease and then of the claims (the new holder
dispatches the moment the dead one's claims lapse), not from polling. With the defaults
(lease 45 s renewed every 15 s, claims 60 s renewed every 20 s) the same sequence sends the first
mail at most ~61 s after the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.mailserver import SmtpServer, start_smtp_server
from tests.test_mail_faults import queue
from tracker.extensions import db
from tracker.models import Notification, SchedulerLease

ROOT = Path(__file__).resolve().parent.parent

#: Settings for the child processes: short lease and claims, a long dispatch period.
FAST = {
    "TRACKER_LEASE_SECONDS": "3",
    "TRACKER_LEASE_RENEW_SECONDS": "1",
    "TRACKER_DISPATCH_CLAIM_SECONDS": "6",
    "TRACKER_DISPATCH_EVERY_SECONDS": "30",
    "TRACKER_COMPOSE_EVERY_SECONDS": "3600",
    "TRACKER_DISPATCH_BATCH": "20",
}


@pytest.fixture
def relay() -> SmtpServer:
    with start_smtp_server() as server:
        yield server


def _start(command: list[str], database_url: str, server: SmtpServer, log: Path, **extra: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "MAIL_"))}
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="mail-process-test-secret",
        MAIL_SERVER=server.host,
        MAIL_PORT=str(server.port),
        MAIL_TIMEOUT="5",
        TRACKER_MAIL_DIR=str(log.parent / "mail"),
        **{**FAST, **extra},
    )
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", *command],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _wait_for(predicate, seconds: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tails = {p.name: p.read_text()[-3000:] for p in logs.glob("*.log")}
    raise AssertionError(f"timed out waiting for {what}: {tails}")


def _holder_pid(app) -> int | None:
    with app.app_context():
        lease = db.session.get(SchedulerLease, "main")
        db.session.remove()
    if lease is None or lease.expires_at < datetime.now(UTC):
        return None
    return int(lease.holder.split(":")[1])


def _states(app) -> dict[str, int]:
    with app.app_context():
        counts = dict(
            db.session.execute(
                sa.select(Notification.state, sa.func.count()).group_by(Notification.state)
            ).all()
        )
        db.session.remove()
    return counts


def _stop(*processes) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        if process is not None:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _kill_mid_batch(app, relay: SmtpServer, victim: subprocess.Popen, tmp_path: Path) -> float:
    """Wait until 10 of the 31 mails are out, then kill -9 the victim; the monotonic kill time."""
    _wait_for(lambda: len(relay.messages) >= 10, 30, "the first mails", tmp_path)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)
    assert 10 <= len(relay.messages) < 31, "the kill should land mid-batch"
    return killed_at


def _check_after_kill(app, relay: SmtpServer, killed_at: float, tmp_path: Path) -> dict[str, float]:
    _wait_for(lambda: _states(app) == {"sent": 31}, 120, "every mail sent", tmp_path)
    deliveries = relay.handler.deliveries()
    duplicates = sum(n - 1 for n in deliveries.values())
    after = sorted(m.at for m in relay.messages if m.at > killed_at)
    figures = {
        "delivered": len(deliveries),
        "duplicates": duplicates,
        "first_mail_after_kill_s": round(after[0] - killed_at, 2),
        "all_sent_after_kill_s": round(after[-1] - killed_at, 2),
    }
    print("figures:", figures)
    assert len(deliveries) == 31, figures  # nothing lost
    assert duplicates <= 1, figures  # at most the one message in flight
    # Claims (6 s) + 1 s, well before the next dispatch period (30 s).
    assert figures["first_mail_after_kill_s"] < 15, figures
    # The dead one's claimed rows go once its claims lapse (6 s), not at the next period (30 s).
    assert figures["all_sent_after_kill_s"] < 20, figures
    return figures


def test_kill_9_of_the_dispatching_scheduler_then_a_restart(app, database_url, relay, tmp_path):
    queue(app, 31, now=datetime.now(UTC))
    relay.handler.slow = 0.05  # about 0.2 s per message: a batch takes seconds
    first = _start(["scheduler"], database_url, relay, tmp_path / "first.log")
    second = None
    try:
        killed_at = _kill_mid_batch(app, relay, first, tmp_path)
        with app.app_context():  # the dead scheduler's rows are still claimed, by it
            held = db.session.scalar(sa.select(sa.func.count()).where(Notification.claimed_by.is_not(None)))
            db.session.remove()
        assert held >= 1
        second = _start(["scheduler"], database_url, relay, tmp_path / "second.log")
        _check_after_kill(app, relay, killed_at, tmp_path)
    finally:
        _stop(first, second)


def test_kill_9_of_the_dispatching_scheduler_with_a_standby(app, database_url, relay, tmp_path):
    queue(app, 31, now=datetime.now(UTC))
    relay.handler.slow = 0.05
    # One leads, then the standby starts and waits.
    active = _start(["scheduler"], database_url, relay, tmp_path / "active.log")
    standby = None
    try:
        _wait_for(lambda: _holder_pid(app) == active.pid, 20, "the first scheduler to lead", tmp_path)
        standby = _start(["scheduler"], database_url, relay, tmp_path / "standby.log")
        killed_at = _kill_mid_batch(app, relay, active, tmp_path)
        _check_after_kill(app, relay, killed_at, tmp_path)
        assert _holder_pid(app) == standby.pid
    finally:
        _stop(active, standby)


def test_two_dispatchers_whose_runs_outlast_the_claim_send_each_mail_once(app, database_url, relay, tmp_path):
    """Two send-mail runs at once; each batch of 10 takes ~6 s against a 2 s claim."""
    queue(app, 40, now=datetime.now(UTC))
    relay.handler.slow = 0.1  # ~0.4 s per message
    settings = {"TRACKER_DISPATCH_CLAIM_SECONDS": "2", "TRACKER_DISPATCH_BATCH": "10"}
    runs = [
        _start(["send-mail"], database_url, relay, tmp_path / f"run-{n}.log", **settings) for n in range(2)
    ]
    try:
        for process in runs:
            process.wait(120)
    finally:
        _stop(*runs)
    outputs = [p.read_text() for p in sorted(tmp_path.glob("run-*.log"))]
    assert [p.returncode for p in runs] == [0, 0], outputs
    deliveries = relay.handler.deliveries()
    print("figures:", {"delivered": len(deliveries), "copies": sum(deliveries.values())})
    assert len(deliveries) == 40 and set(deliveries.values()) == {1}, deliveries
    assert _states(app) == {"sent": 40}
    # Both took part: the claims kept them apart, not one of them doing everything.
    assert len({m.peer for m in relay.messages}) >= 2, outputs
