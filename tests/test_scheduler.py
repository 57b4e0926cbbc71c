"""The scheduler's lease: one holder at a time, standbys take over, a clean stop hands over at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Notification, SchedulerLease
from tracker.scheduler import LEASE_NAME, release_lease, try_lease

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 24, 8, tzinfo=UTC)
TTL = timedelta(seconds=45)


def test_one_holder_at_a_time(app):
    with app.app_context():
        assert try_lease("a", T0, TTL, {"compose": "2026-11-24T08:15:00+00:00"})
        assert not try_lease("b", T0 + timedelta(seconds=10), TTL)
        assert try_lease("a", T0 + timedelta(seconds=15), TTL)  # renewal
        assert not try_lease("b", T0 + timedelta(seconds=59), TTL)  # a's renewal runs to 08:01:00
        assert try_lease("b", T0 + timedelta(seconds=61), TTL)  # a stopped renewing: b takes over
        assert not try_lease("a", T0 + timedelta(seconds=62), TTL)
        lease = db.session.get(SchedulerLease, LEASE_NAME)
        assert lease.holder == "b" and lease.heartbeat_at == T0 + timedelta(seconds=61)
        release_lease("b", T0 + timedelta(seconds=70))
        assert try_lease("c", T0 + timedelta(seconds=71), TTL)  # released: no wait


def test_dispatch_runs_again_when_a_dead_dispatchers_claims_lapse(app, tmp_path, monkeypatch):
    """The takeover of the claims: the job names the moment the rows a dead dispatcher held are free."""
    from tests.test_mail_faults import queue
    from tracker.notifications.claims import claim
    from tracker.scheduler import dispatch_job

    monkeypatch.setitem(app.config, "TRACKER_MAIL_DIR", str(tmp_path / "mail"))
    queue(app, 2, now=T0)
    with app.app_context():
        assert len(claim(T0, 10, timedelta(seconds=60), "dead:1:abc")) == 2  # then it was killed
        assert dispatch_job(T0 + timedelta(seconds=5)).wake_at == T0 + timedelta(seconds=61)
        assert dispatch_job(T0 + timedelta(seconds=61)).wake_at is None  # taken and sent (as .eml files)
        states = set(db.session.scalars(sa.select(Notification.state)))
    assert states == {"sent"}


def _scheduler(database_url: str, log: Path, **extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL"))}
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="scheduler-test-secret",
        TRACKER_LEASE_SECONDS="3",
        TRACKER_LEASE_RENEW_SECONDS="1",
        TRACKER_MAIL_DIR=str(log.parent / "mail"),
        **extra,
    )
    with log.open("w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "scheduler"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _holder(app) -> str | None:
    with app.app_context():
        lease = db.session.scalar(sa.select(SchedulerLease))
        db.session.remove()
        if lease is None or lease.expires_at < datetime.now(UTC):
            return None
        return lease.holder


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_standby_process_takes_over(app, database_url, tmp_path):
    first = _scheduler(database_url, tmp_path / "first.log")
    second = None
    try:
        assert _wait_for(lambda: _holder(app) is not None, 20), (tmp_path / "first.log").read_text()
        holder = _holder(app)
        assert holder.split(":")[1] == str(first.pid)
        second = _scheduler(database_url, tmp_path / "second.log")
        time.sleep(3)
        assert _holder(app) == holder  # the standby waits
        first.send_signal(signal.SIGKILL)  # no clean stop: the lease must expire
        first.wait(10)
        assert _wait_for(lambda: (_holder(app) or "").split(":")[1:2] == [str(second.pid)], 10)
        second.send_signal(signal.SIGTERM)  # a clean stop releases the lease
        # It first lets the jobs it started at takeover finish (compose, dispatch, jobs): seconds,
        # or many more on a loaded machine.
        assert second.wait(60) == 0
        assert _holder(app) is None
        assert "holds the lease" in (tmp_path / "second.log").read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def _zone_in_working_hours() -> str:
    """A fixed-offset zone where it is now between 09:00 and 20:00, so "the morning has come"."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        # Etc/GMT-8 is UTC+8: the sign is inverted in these names.
        name = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "Etc/UTC"
        local = now + timedelta(hours=offset)
        if 9 <= local.hour <= 19:
            return name
    raise AssertionError("no zone in working hours")


def test_three_schedulers_at_once_send_each_mail_once(app, world, database_url, smtp_server, tmp_path):
    """Three processes against one database: every owner gets exactly one mail per kind."""
    from zoneinfo import ZoneInfo

    from tracker.models import ActionItem, Notification, Office, User

    zone = _zone_in_working_hours()
    with app.app_context():
        for office in db.session.scalars(sa.select(Office)):
            office.timezone = zone
        today = datetime.now(ZoneInfo(zone)).date()
        for item in db.session.scalars(sa.select(ActionItem)):
            item.deadline = today - timedelta(days=1)  # first day overdue: an overdue mail for each owner
        for user in db.session.scalars(sa.select(User)):
            user.timezone = None
        db.session.commit()
    processes = []
    try:
        for n in range(3):
            env_log = tmp_path / f"scheduler-{n}.log"
            process = _scheduler(
                database_url,
                env_log,
                MAIL_SERVER=smtp_server.host,
                MAIL_PORT=str(smtp_server.port),
                TRACKER_COMPOSE_EVERY_SECONDS="2",
                TRACKER_DISPATCH_EVERY_SECONDS="1",
            )
            processes.append(process)

        def delivered() -> bool:
            with app.app_context():
                pending = db.session.scalar(
                    sa.select(sa.func.count()).where(Notification.state != "sent").select_from(Notification)
                )
                total = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
                db.session.remove()
            return total >= 2 and pending == 0

        assert _wait_for(delivered, 40), [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]
        time.sleep(5)  # several more compose and dispatch rounds, by whichever process leads
        received = sorted((m.rcpt_tos[0], m.parsed()["Subject"]) for m in smtp_server.messages)
        assert received == [
            ("focal.my@example.test", "1 action overdue — MY"),
            ("focal.sg@example.test", "1 action overdue — SG"),
        ], received
        assert all(p.poll() is None for p in processes)  # standbys keep waiting
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_each_run_is_recorded_and_logged(app, world, tmp_path, mail_settings, caplog):
    """run_once (the CLI twin) records every job in scheduler_run, one row per job, and logs its figures."""
    import logging

    from tracker.models import SchedulerRun
    from tracker.scheduler import JOBS, Scheduler

    caplog.set_level(logging.INFO, logger="tracker.scheduler")
    mail_settings(TRACKER_MAIL_DIR=str(tmp_path / "mail"))
    assert Scheduler(app).run_once()
    with app.app_context():
        runs = {run.job_id: run for run in db.session.scalars(sa.select(SchedulerRun))}
        queued = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
        db.session.remove()
    assert set(runs) == {job.id for job in JOBS}
    assert all(run.succeeded and run.finished_at >= run.started_at for run in runs.values())
    # The world's items are overdue: as many reminders as it is morning for their owners now.
    assert runs["compose"].detail == f"{queued} reminders, 0 digests"
    assert runs["dispatch"].detail == f"{queued} sent, 0 retried, 0 failed, 0 deferred"
    assert runs["purge"].detail == "0 security events, 0 sessions, 0 background jobs purged"
    assert runs["jobs"].detail == "0 background jobs run"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
    assert len(lines) == 4 and any(
        re.fullmatch(rf"job compose done in \d+\.\d\d s: {queued} reminders, 0 digests", line)
        for line in lines
    ), lines

    # A second run rewrites the rows; a failing job records its error's one-line summary.
    mail_settings(MAIL_USE_TLS=True, MAIL_USE_SSL=True)
    assert Scheduler(app).run_once()
    with app.app_context():
        again = {run.job_id: run for run in db.session.scalars(sa.select(SchedulerRun))}
    assert len(again) == 4
    assert again["compose"].started_at > runs["compose"].started_at and again["compose"].succeeded
    assert not again["dispatch"].succeeded
    assert again["dispatch"].detail.startswith(
        "MailConfigError: MAIL_USE_TLS and MAIL_USE_SSL exclude each other"
    )


def test_a_stopped_scheduler_exits_in_time_though_a_job_is_stuck(
    app, world, database_url, silent_server, tmp_path
):
    """SIGTERM while dispatch waits on a relay that never answers: the process stops taking jobs,
    waits the grace (2 s here), releases the lease and exits, without the stuck job."""
    from tests.test_mail_faults import queue

    queue(app, 1, now=datetime.now(UTC) - timedelta(minutes=1))
    process = _scheduler(
        database_url,
        tmp_path / "stuck.log",
        MAIL_SERVER=silent_server.host,
        MAIL_PORT=str(silent_server.port),
        MAIL_TIMEOUT="120",
        TRACKER_SCHEDULER_STOP_SECONDS="2",
    )

    def claimed() -> bool:
        with app.app_context():
            by = db.session.scalar(sa.select(Notification.claimed_by))
            db.session.remove()
        return by is not None

    try:
        assert _wait_for(claimed, 30), (tmp_path / "stuck.log").read_text()
        time.sleep(0.5)  # now connecting to the silent relay, for up to 120 s
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, (tmp_path / "stuck.log").read_text()
        took = time.monotonic() - stopped_at
        assert took < 8, took
        assert _holder(app) is None  # released, not left to expire
        log = (tmp_path / "stuck.log").read_text()
        assert "dispatch still running after 2 s; exiting without them" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_signal_while_jobs_are_being_submitted_does_not_hang_the_stop(app, database_url, tmp_path):
    """The CI hang: SIGTERM landed while the main thread submitted the takeover's jobs, and the
    handler's shutdown waited on the lock the interrupted submit held. Signals at many moments
    right after the lease is taken must all end the process promptly."""
    for attempt in range(6):
        process = _scheduler(database_url, tmp_path / f"race-{attempt}.log", TRACKER_JOBS_EVERY_SECONDS="1")
        try:
            assert _wait_for(lambda: _holder(app) is not None, 20), (
                tmp_path / f"race-{attempt}.log"
            ).read_text()
            time.sleep(0.05 * attempt)
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0, (tmp_path / f"race-{attempt}.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        assert _wait_for(lambda: _holder(app) is None, 5)
