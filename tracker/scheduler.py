"""The scheduler process: `flask --app wsgi tracker scheduler`. Never started by web workers.

Several scheduler processes may run (on one host or several). They share one lease row in the
database: the holder runs the jobs and renews the lease; the others wait as hot standbys and
take over when the holder stops renewing it. Jobs look at database state (what is due, what is
pending), never at whether a timer fired, so a scheduler that was down catches up when it starts;
and compose and dispatch are idempotent, so a job run twice does no harm.

Takeover covers the lease and the outbox claims together: a scheduler killed mid-dispatch leaves
rows claimed for at most TRACKER_DISPATCH_CLAIM_SECONDS; the dispatch job returns the moment those
claims lapse and the new holder dispatches right then, not at its next period. With the defaults
(lease 45 s renewed every 15 s, claims 60 s renewed every 20 s) the first mail after a ``kill -9``
leaves at most ~61 s later.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask
from sqlalchemy.exc import IntegrityError

from tracker.extensions import db
from tracker.models import SchedulerLease

log = logging.getLogger(__name__)

LEASE_NAME = "main"


Clock = Callable[[], datetime]


def compose_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> None:
    """Reminders, escalations, stale nudges and review lists for everyone whose morning has come."""
    from tracker.notifications import compose

    compose.compose_reminders(now)
    compose.compose_due_digests(now)


def dispatch_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> datetime | None:
    """Send what the outbox holds, and alert the admins of a relay failing for long; when rows are
    still held by another dispatcher's claim (one that died, say), the time they become free, so
    that the scheduler dispatches again right then."""
    from tracker.notifications import dispatch, health

    result = dispatch.dispatch(clock or now, holder=holder)
    # A relay failing for an hour: one alert per outage into the outbox (it leaves when a relay works).
    if health.alert_admins(clock() if clock else now):
        db.session.commit()
    if result.relay_error:  # the relay failed: wait for the next period, whoever holds what
        return None
    return dispatch.next_run_at(clock() if clock else now)


def purge_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> None:
    """Delete security events and sessions older than TRACKER_AUDIT_DAYS, and background jobs
    finished more than TRACKER_JOB_KEEP_DAYS ago (daily; idempotent)."""
    from tracker.auth import audit
    from tracker.jobs import runner

    events, sessions = audit.purge_security_records(now)
    if events or sessions:
        log.info("purged %s security events and %s sessions", events, sessions)
    if jobs := runner.purge(now):
        log.info("purged %s finished background jobs and their files", jobs)


def jobs_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> None:
    """Run the background jobs people asked for (large exports and imports), one after another,
    for at most TRACKER_JOB_BUDGET_SECONDS. APScheduler runs each job of JOBS on a thread of its
    own (max_instances 1), so a long export never holds compose or dispatch back."""
    from tracker.jobs import run_pending

    run_pending(now, holder or holder_id(), clock=clock)


@dataclass(frozen=True)
class Job:
    """A periodic job: a stable id, the setting that holds its period in seconds, what it runs.

    ``run(now, clock, holder)`` may return a time at which it wants to run again before its period.
    """

    id: str
    every_setting: str
    run: Callable[[datetime, Clock, str], datetime | None]
    commits: bool = True


#: Every periodic job, in one list with stable ids (shown on the admin outbox page).
JOBS = [
    Job("compose", "TRACKER_COMPOSE_EVERY_SECONDS", compose_job),
    Job("dispatch", "TRACKER_DISPATCH_EVERY_SECONDS", dispatch_job, commits=False),  # commits per batch
    Job("purge", "TRACKER_PURGE_EVERY_SECONDS", purge_job),
    Job("jobs", "TRACKER_JOBS_EVERY_SECONDS", jobs_job, commits=False),  # commits per job
]


def holder_id() -> str:
    """Who this process is, for the lease row: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def try_lease(holder: str, now: datetime, ttl: timedelta, next_runs: dict[str, str] | None = None) -> bool:
    """Take or renew the lease; True if ``holder`` has it until now + ttl. Commits.

    The UPDATE only matches when the lease is ours or has expired, and the database lets one
    such UPDATE win, so two processes can never both believe they hold it.
    """
    values: dict[str, Any] = {"holder": holder, "expires_at": now + ttl, "heartbeat_at": now}
    if next_runs is not None:
        values["next_runs"] = json.dumps(next_runs, sort_keys=True)
    taken = db.session.execute(
        sa.update(SchedulerLease)
        .where(
            SchedulerLease.name == LEASE_NAME,
            sa.or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now),
        )
        .values(**values)
    ).rowcount
    if taken:
        db.session.commit()
        return True
    if db.session.get(SchedulerLease, LEASE_NAME) is not None:
        db.session.rollback()
        return False
    try:
        db.session.add(SchedulerLease(name=LEASE_NAME, **values))
        db.session.commit()
    except IntegrityError:  # another process inserted it first
        db.session.rollback()
        return False
    return True


def release_lease(holder: str, now: datetime) -> None:
    """Give the lease up at once (on a clean stop), so a standby need not wait for it to expire."""
    db.session.execute(
        sa.update(SchedulerLease)
        .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == holder)
        .values(expires_at=now)
    )
    db.session.commit()


class Scheduler:
    """APScheduler in the foreground, running JOBS only while this process holds the lease."""

    def __init__(self, app: Flask, *, clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.holder = holder_id()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.ttl = timedelta(seconds=app.config["TRACKER_LEASE_SECONDS"])
        self.renew_every = timedelta(seconds=app.config["TRACKER_LEASE_RENEW_SECONDS"])
        self.leader = False
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            # A late run is still worth doing (the jobs catch up from database state); runs missed
            # while busy collapse into one.
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )

    def renew(self) -> None:
        """The lease job: take or keep the lease, and publish the next run times."""
        with self.app.app_context():
            was_leader = self.leader
            try:
                self.leader = try_lease(self.holder, self.clock(), self.ttl, self._next_runs())
            except Exception:  # a database hiccup: act as a standby until the next renewal
                log.exception("scheduler %s: lease renewal failed", self.holder)
                db.session.rollback()
                self.leader = False
            finally:
                db.session.remove()
        if self.leader and not was_leader:
            log.info("scheduler %s holds the lease; running jobs", self.holder)
            for job in JOBS:  # catch up at once on taking over
                if self.scheduler.get_job(job.id) is not None:
                    self.scheduler.modify_job(job.id, next_run_time=datetime.now(UTC))
        elif was_leader and not self.leader:
            log.warning("scheduler %s lost the lease; standing by", self.holder)

    def run_job(self, job: Job) -> None:
        """Run one job in an app context if this process holds the lease."""
        if not self.leader:
            return
        wake_at = None
        with self.app.app_context():
            try:
                wake_at = job.run(self.clock(), self.clock, self.holder)
                if job.commits:
                    db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("scheduler job %s failed; it runs again at its next time", job.id)
            finally:
                db.session.remove()
        if wake_at is not None:
            self._run_again_at(job, wake_at)

    def _run_again_at(self, job: Job, wake_at: datetime) -> None:
        """Bring a job's next run forward to ``wake_at`` (a time on this scheduler's clock)."""
        scheduled = self.scheduler.get_job(job.id)
        if scheduled is None or scheduled.next_run_time is None:  # run_once(): no timetable
            return
        when = datetime.now(UTC) + max(wake_at - self.clock(), timedelta(0))
        if when < scheduled.next_run_time:
            log.info("scheduler: %s again at %s, when claims held by another dispatcher lapse", job.id, when)
            self.scheduler.modify_job(job.id, next_run_time=when)

    def _next_runs(self) -> dict[str, str]:
        runs = {}
        for job in self.scheduler.get_jobs():
            if job.next_run_time is not None and job.id != "lease":
                runs[job.id] = job.next_run_time.astimezone(UTC).isoformat()
        return runs

    def start(self) -> None:
        """Run until SIGTERM or SIGINT; releases the lease on the way out."""
        now = datetime.now(UTC)
        self.scheduler.add_job(
            self.renew,
            IntervalTrigger(seconds=self.renew_every.total_seconds()),
            id="lease",
            next_run_time=now,
        )
        for job in JOBS:
            self.scheduler.add_job(
                self.run_job,
                IntervalTrigger(seconds=self.app.config[job.every_setting]),
                args=[job],
                id=job.id,
                name=job.id,
                next_run_time=now + timedelta(seconds=1),
            )

        def stop(signum: int, frame: Any) -> None:
            log.info("scheduler %s stopping (signal %s)", self.holder, signum)
            self.scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "scheduler %s started; lease %ss, renewed every %ss", self.holder, self.ttl, self.renew_every
        )
        try:
            self.scheduler.start()
        finally:
            with self.app.app_context():
                release_lease(self.holder, datetime.now(UTC))
                db.session.remove()

    def run_once(self) -> bool:
        """Take the lease and run every job once (for cron or a check); False if another holds it."""
        self.renew()
        if not self.leader:
            return False
        for job in JOBS:
            self.run_job(job)
        with self.app.app_context():
            release_lease(self.holder, datetime.now(UTC))
        return True
