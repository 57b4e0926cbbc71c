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

Each run is recorded in ``scheduler_run`` (one row per job: when, how long, whether it failed, its
figures) and logged in one line; /metrics reads those rows.

Stopping (SIGTERM, SIGINT) is bounded: the signal handler only sets a flag (it must take no lock: a
signal that lands while the main thread holds the thread pool's lock, submitting a job, would
otherwise deadlock the process for good); the main thread then stops taking jobs, gives running
ones TRACKER_SCHEDULER_STOP_SECONDS to finish, releases the lease and exits, abandoning a job that
is still stuck. That is safe because every job is kill-safe by design (see tracker.notifications
and tracker.jobs: claims lapse, keys are idempotent, nothing is half-committed).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tracker.extensions import db
from tracker.models import SchedulerLease, SchedulerRun

log = logging.getLogger(__name__)

LEASE_NAME = "main"


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Ran:
    """What one job run did: its figures in a short line (logged, kept in scheduler_run), and
    optionally a time at which it wants to run again before its period."""

    figures: str
    wake_at: datetime | None = None


def compose_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> Ran:
    """Reminders, escalations, stale nudges and review lists for everyone whose morning has come."""
    from tracker.notifications import compose
    from tracker.notifications.indicators_due import compose_indicators_due

    reminders = compose.compose_reminders(now) + compose_indicators_due(now)
    digests = compose.compose_due_digests(now)
    return Ran(f"{len(reminders)} reminders, {len(digests)} digests")


def dispatch_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> Ran:
    """Send what the outbox holds, and alert the admins of a relay failing for long; when rows are
    still held by another dispatcher's claim (one that died, say), the time they become free, so
    that the scheduler dispatches again right then."""
    from tracker.notifications import dispatch, health

    result = dispatch.dispatch(clock or now, holder=holder)
    # A relay failing for an hour: one alert per outage into the outbox (it leaves when a relay works).
    alerts = health.alert_admins(clock() if clock else now)
    if alerts:
        db.session.commit()
    figures = (
        f"{result.sent} sent, {result.retried} retried, {result.failed} failed, {result.deferred} deferred"
    )
    if alerts:
        figures += f", {alerts} relay alerts queued"
    if result.relay_error:  # the relay failed: wait for the next period, whoever holds what
        return Ran(f"{figures}; relay error: {_one_line(result.relay_error)}")
    return Ran(figures, dispatch.next_run_at(clock() if clock else now))


def purge_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> Ran:
    """Delete security events and sessions older than TRACKER_AUDIT_DAYS, and background jobs
    finished more than TRACKER_JOB_KEEP_DAYS ago (daily; idempotent)."""
    from tracker.auth import audit
    from tracker.jobs import runner

    events, sessions = audit.purge_security_records(now)
    jobs = runner.purge(now)
    return Ran(f"{events} security events, {sessions} sessions, {jobs} background jobs purged")


def jobs_job(now: datetime, clock: Clock | None = None, holder: str | None = None) -> Ran:
    """Run the background jobs people asked for (large exports and imports), one after another,
    for at most TRACKER_JOB_BUDGET_SECONDS. APScheduler runs each job of JOBS on a thread of its
    own (max_instances 1), so a long export never holds compose or dispatch back."""
    from tracker.jobs import run_pending

    ran = run_pending(now, holder or holder_id(), clock=clock)
    return Ran(f"{ran} background jobs run")


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters (for logs and scheduler_run.detail)."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Job:
    """A periodic job: a stable id, the setting that holds its period in seconds, what it runs.

    ``run(now, clock, holder)`` returns its figures (:class:`Ran`), and may name a time at which it
    wants to run again before its period.
    """

    id: str
    every_setting: str
    run: Callable[[datetime, Clock, str], Ran]
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


def record_run(
    job_id: str, holder: str, started_at: datetime, duration: float, succeeded: bool, detail: str
) -> None:
    """Upsert the job's row in scheduler_run (one statement). Commits."""
    values = {
        "job_id": job_id,
        "holder": holder[:200],
        "started_at": started_at,
        "finished_at": started_at + timedelta(seconds=duration),
        "duration_seconds": duration,
        "succeeded": succeeded,
        "detail": detail[:500],
    }
    dialect = db.session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](SchedulerRun).values(
        **values
    )
    changed = {k: insert.excluded[k] for k in values if k != "job_id"}
    db.session.execute(insert.on_conflict_do_update(index_elements=["job_id"], set_=changed))
    db.session.commit()


class Scheduler:
    """APScheduler on background threads, running JOBS only while this process holds the lease;
    the main thread waits for a stop signal (see the module's docstring)."""

    def __init__(self, app: Flask, *, clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.holder = holder_id()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.ttl = timedelta(seconds=app.config["TRACKER_LEASE_SECONDS"])
        self.renew_every = timedelta(seconds=app.config["TRACKER_LEASE_RENEW_SECONDS"])
        self.stop_grace = float(app.config["TRACKER_SCHEDULER_STOP_SECONDS"])
        self.leader = False
        #: Set by the signal handler (a plain assignment: a handler must take no lock).
        self.stop_signal: int | None = None
        self.stopping = False
        #: Job ids running now (the lease renewal included), for a bounded stop.
        self.running: set[str] = set()
        self._running_changed = threading.Condition()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            # A late run is still worth doing (the jobs catch up from database state); runs missed
            # while busy collapse into one.
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )

    def _enter(self, job_id: str) -> bool:
        """Note that ``job_id`` starts; False (and nothing noted) once the scheduler is stopping."""
        with self._running_changed:
            if self.stopping:
                return False
            self.running.add(job_id)
            return True

    def _leave(self, job_id: str) -> None:
        with self._running_changed:
            self.running.discard(job_id)
            self._running_changed.notify_all()

    def renew(self) -> None:
        """The lease job: take or keep the lease, and publish the next run times."""
        if not self._enter("lease"):  # stopping: a renewal now would take back the released lease
            return
        try:
            self._renew()
        finally:
            self._leave("lease")

    def _renew(self) -> None:
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
        """Run one job in an app context if this process holds the lease; record and log the run."""
        if not self.leader or not self._enter(job.id):
            return
        try:
            ran = self._run_and_record(job)
        finally:
            self._leave(job.id)
        if ran is not None and ran.wake_at is not None:
            self._run_again_at(job, ran.wake_at)

    def _run_and_record(self, job: Job) -> Ran | None:
        ran = None
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        with self.app.app_context():
            try:
                ran = job.run(self.clock(), self.clock, self.holder)
                if job.commits:
                    db.session.commit()
                detail = ran.figures
            except Exception as exc:
                db.session.rollback()
                detail = _one_line(f"{type(exc).__name__}: {exc}")
                log.exception("scheduler job %s failed; it runs again at its next time", job.id)
            finally:
                db.session.remove()
            duration = time.perf_counter() - started
            if ran is not None:
                log.info("job %s done in %.2f s: %s", job.id, duration, detail)
            else:
                log.warning("job %s failed after %.2f s: %s", job.id, duration, detail)
            try:  # a transaction of its own: the job's outcome stands whatever happens here
                record_run(job.id, self.holder, started_at, duration, ran is not None, detail)
            except Exception:
                db.session.rollback()
                log.exception("scheduler: could not record the run of %s", job.id)
            finally:
                db.session.remove()
        return ran

    def _run_again_at(self, job: Job, wake_at: datetime) -> None:
        """Bring a job's next run forward to ``wake_at`` (a time on this scheduler's clock)."""
        if self.stopping:
            return
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
        """Run until SIGTERM or SIGINT; then stop within TRACKER_SCHEDULER_STOP_SECONDS (plus the
        release of the lease), whatever the jobs are doing."""
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

        def on_signal(signum: int, frame: Any) -> None:
            # Only an assignment: the main thread may be anywhere, holding any lock.
            self.stop_signal = signum

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(
            "scheduler %s started; lease %ss, renewed every %ss", self.holder, self.ttl, self.renew_every
        )
        self.scheduler.start()
        while self.stop_signal is None:
            time.sleep(0.1)  # the main thread holds nothing here, so the handler never waits on it
        log.info("scheduler %s stopping (signal %s)", self.holder, self.stop_signal)
        stuck = self.stop()
        if stuck:
            log.warning(
                "scheduler %s: %s still running after %.0f s; exiting without them (they are kill-safe)",
                self.holder,
                ", ".join(sorted(stuck)),
                self.stop_grace,
            )
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            # A normal exit would join the stuck thread (the thread pool joins its workers at
            # exit) and wait for ever. Abandoning it is what a kill -9 does, which every job
            # survives: claims lapse, compose keys are idempotent, nothing half-written commits.
            os._exit(0)
        log.info("scheduler %s stopped", self.holder)

    def stop(self) -> set[str]:
        """Stop taking jobs, wait up to the grace for running ones, release the lease; the ids of
        jobs still running then."""
        with self._running_changed:
            self.stopping = True
        # No wait: a job still queued is skipped by run_job, a running one is waited for below.
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.stop_grace
        with self._running_changed:
            while self.running and (left := deadline - time.monotonic()) > 0:
                self._running_changed.wait(left)
            stuck = set(self.running)
        if self.leader:
            self._release_within(max(self.stop_grace, 5.0))
        return stuck

    def _release_within(self, seconds: float) -> None:
        """Release the lease on a thread of its own, waiting at most ``seconds`` (a database that
        does not answer must not hold the stop; the lease then expires on its own)."""

        def release() -> None:
            with self.app.app_context():
                try:
                    release_lease(self.holder, datetime.now(UTC))
                except Exception:
                    log.exception(
                        "scheduler %s: could not release the lease; it expires on its own", self.holder
                    )
                finally:
                    db.session.remove()

        thread = threading.Thread(target=release, name="release-lease", daemon=True)
        thread.start()
        thread.join(seconds)
        if thread.is_alive():
            log.warning(
                "scheduler %s: releasing the lease took over %.0f s; it expires on its own",
                self.holder,
                seconds,
            )

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
