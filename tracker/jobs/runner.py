"""Running background jobs: claim one, run its handler, mark it, tell the person.

- A runner (``holder``: the scheduler's id, or a CLI run's) claims the oldest claimable job until
  ``now + TRACKER_JOB_CLAIM_SECONDS`` (60 s). Claimable: queued, or running with a lapsed claim
  (its runner died) and fewer than TRACKER_JOB_MAX_ATTEMPTS starts. On PostgreSQL the choice skips
  a row another runner is claiming (``FOR UPDATE SKIP LOCKED``); the UPDATE repeats the condition,
  so on SQLite two runners that read the same id cannot both take it.
- While the handler runs, ``Progress`` renews the claim at each write, and a heartbeat thread
  writes every claim/3 seconds, so a living runner never loses its job; a killed one's job is
  claimable again within one claim time, and started from the beginning.
- Marking done, failed or cancelled is conditional on still holding the claim (and, for done,
  on nobody having cancelled), and the ``job_done`` mail goes into the outbox in the same
  transaction: it leaves with the next dispatch.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.exc import OperationalError

from tracker.extensions import db
from tracker.jobs import HANDLERS, Clock, JobCancelled, JobFailed, Progress, load_handlers
from tracker.models import BackgroundJob, JobChunk, JobState, NotificationKind
from tracker.notifications.outbox import enqueue as enqueue_mail
from tracker.notifications.render import recipient_locale, render_email

log = logging.getLogger(__name__)

RUNNING = JobState.RUNNING.value
QUEUED = JobState.QUEUED.value


def _settings() -> tuple[timedelta, int, float]:
    config = current_app.config
    return (
        timedelta(seconds=config["TRACKER_JOB_CLAIM_SECONDS"]),
        config["TRACKER_JOB_MAX_ATTEMPTS"],
        float(config["TRACKER_JOB_BUDGET_SECONDS"]),
    )


def _claimable(now: datetime, max_attempts: int) -> sa.ColumnElement[bool]:
    """Jobs a runner may take at ``now``: queued, or abandoned by a runner that died."""
    return sa.or_(
        BackgroundJob.state == QUEUED,
        sa.and_(
            BackgroundJob.state == RUNNING,
            BackgroundJob.claimed_until < now,
            BackgroundJob.attempts < max_attempts,
        ),
    )


def claim(now: datetime, holder: str, claim_for: timedelta, max_attempts: int) -> int | None:
    """Claim the oldest claimable job for ``holder``; its id, or None. Commits."""
    chosen = (
        sa.select(BackgroundJob.id)
        .where(_claimable(now, max_attempts))
        .order_by(BackgroundJob.created_at, BackgroundJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    try:
        job_id = db.session.scalar(chosen)
        taken = 0
        if job_id is not None:
            taken = db.session.execute(
                sa.update(BackgroundJob)
                .where(BackgroundJob.id == job_id, _claimable(now, max_attempts))
                .values(
                    state=RUNNING,
                    claimed_by=holder,
                    claimed_until=now + claim_for,
                    attempts=BackgroundJob.attempts + 1,
                    started_at=now,
                    done=0,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return job_id if taken else None


def fail_abandoned(now: datetime, max_attempts: int) -> int:
    """Mark failed (and tell the person) the jobs whose runner died ``max_attempts`` times; commits."""
    ids = list(
        db.session.scalars(
            sa.select(BackgroundJob.id).where(
                BackgroundJob.state == RUNNING,
                BackgroundJob.claimed_until < now,
                BackgroundJob.attempts >= max_attempts,
            )
        )
    )
    failed = 0
    for job_id in ids:
        job = db.session.get(BackgroundJob, job_id)
        if job is None:
            continue
        with force_locale(recipient_locale(job.user)):
            message = _("The job was stopped %(num)d times before it could finish.", num=job.attempts)
        taken = db.session.execute(
            sa.update(BackgroundJob)
            .where(
                BackgroundJob.id == job_id, BackgroundJob.state == RUNNING, BackgroundJob.claimed_until < now
            )
            .values(state=JobState.FAILED.value, message=message, finished_at=now, claimed_until=None)
            .execution_options(synchronize_session="fetch")
        ).rowcount
        if taken:
            notify(job, now)
            failed += 1
    db.session.commit()
    return failed


def notify(job: BackgroundJob, now: datetime) -> None:
    """Put the job_done mail (done or failed) for the person who asked into the outbox."""
    db.session.refresh(job)
    if not job.user.active:
        return
    from tracker.jobs.services import kind_label

    email = render_email(
        NotificationKind.JOB_DONE.value,
        job.user,
        job=job,
        kind_label=kind_label,
        keep_days=current_app.config["TRACKER_JOB_KEEP_DAYS"],
    )
    enqueue_mail(NotificationKind.JOB_DONE, job.user, f"job_done:job{job.id}", email, now)


def _mark(
    job_id: int, holder: str, progress: Progress, clock: Clock, state: JobState, message: str | None
) -> bool:
    """Mark a job we hold done or failed, with its final figures, and queue the mail; commits.

    False (and everything uncommitted rolled back) if we no longer hold it or it was cancelled.
    """
    now = clock()
    values: dict[str, object] = {"state": state.value, "finished_at": now, "claimed_until": None}
    if progress.total is not None:
        values["total"] = progress.total
    values["done"] = progress.total if state == JobState.DONE and progress.total else progress.done
    if message is not None:
        values["message"] = message
    taken = db.session.execute(
        sa.update(BackgroundJob)
        .where(BackgroundJob.id == job_id, BackgroundJob.claimed_by == holder, BackgroundJob.state == RUNNING)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if not taken:
        db.session.rollback()
        return False
    job = db.session.get(BackgroundJob, job_id)
    if job is not None:
        notify(job, now)
    db.session.commit()
    return True


def _release(job_id: int, holder: str) -> None:
    """Drop our claim on a cancelled job, so that it shows no runner; commits."""
    db.session.execute(
        sa.update(BackgroundJob)
        .where(BackgroundJob.id == job_id, BackgroundJob.claimed_by == holder)
        .values(claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


class _Heartbeat:
    """A thread that writes the job's progress (and so renews its claim) every ``every`` seconds."""

    def __init__(self, progress: Progress, every: float) -> None:
        self.progress = progress
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{progress.job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.progress.write()
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("job %s: cannot renew its claim", self.progress.job_id)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.every))


def run_job(job_id: int, holder: str, clock: Clock, claim_for: timedelta) -> JobState | None:
    """Run one claimed job's handler and mark the outcome; the state it ended in (None: lost)."""
    job = db.session.get(BackgroundJob, job_id)
    if job is None:
        return None
    fn = HANDLERS.get(job.kind)
    progress = Progress(job_id, holder, clock=clock, claim_for=claim_for, total=job.total)
    locale = recipient_locale(job.user)
    outcome: tuple[JobState, str | None]
    with force_locale(locale):
        generic = _(
            "The job failed because of an error in tracker. Please try again, or tell an administrator."
        )
        if fn is None:
            log.error("job %s: no handler for kind %r", job_id, job.kind)
            outcome = (JobState.FAILED, generic)
        else:
            with _Heartbeat(progress, claim_for.total_seconds() / 3):
                try:
                    fn(job, progress)
                    db.session.flush()
                    outcome = (JobState.DONE, None)
                except JobCancelled:
                    db.session.rollback()
                    _release(job_id, holder)
                    log.info("job %s (%s) cancelled", job_id, job.kind)
                    return JobState.CANCELLED
                except JobFailed as exc:
                    db.session.rollback()
                    outcome = (JobState.FAILED, exc.message)
                except Exception:
                    db.session.rollback()
                    log.exception("job %s (%s) failed", job_id, job.kind)
                    outcome = (JobState.FAILED, generic)
        state, message = outcome
        if not _mark(job_id, holder, progress, clock, state, message):
            log.info("job %s: cancelled or taken over before it was marked %s", job_id, state)
            _release(job_id, holder)
            return None
    log.info("job %s (%s) %s", job_id, job.kind, state)
    return state


def run_pending(
    now: datetime, holder: str, *, clock: Clock | None = None, budget: float | None = None
) -> int:
    """Run claimable jobs one after another until none is left or the time budget has passed;
    the number of jobs run (done, failed or cancelled)."""
    load_handlers()
    clock = clock or (lambda: datetime.now(UTC))
    claim_for, max_attempts, default_budget = _settings()
    budget = default_budget if budget is None else budget
    started = time.monotonic()
    at = now
    ran = 0
    while True:
        try:
            fail_abandoned(at, max_attempts)
            job_id = claim(at, holder, claim_for, max_attempts)
        except OperationalError:  # SQLite busy with another writer for long: the next run tries again
            log.warning("jobs: the database is busy; trying again at the next run", exc_info=True)
            db.session.rollback()
            break
        if job_id is None:
            break
        run_job(job_id, holder, clock, claim_for)
        ran += 1
        db.session.expunge_all()  # each job starts from a clean session: memory stays flat
        if time.monotonic() - started >= budget:
            break
        at = clock()
    return ran


def purge(now: datetime) -> int:
    """Delete jobs (and their files) finished more than TRACKER_JOB_KEEP_DAYS ago; how many. Flushes."""
    cutoff = now - timedelta(days=current_app.config["TRACKER_JOB_KEEP_DAYS"])
    old = sa.select(BackgroundJob.id).where(BackgroundJob.finished_at < cutoff)
    db.session.execute(sa.delete(JobChunk).where(JobChunk.job_id.in_(old)))
    return db.session.execute(
        sa.delete(BackgroundJob)
        .where(BackgroundJob.finished_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount


def waiting(now: datetime) -> int:
    """How many jobs a run at ``now`` would take (queued, or abandoned by a runner that died)."""
    _claim_for, max_attempts, _budget = _settings()
    query = sa.select(sa.func.count()).select_from(BackgroundJob).where(_claimable(now, max_attempts))
    return db.session.scalar(query) or 0
