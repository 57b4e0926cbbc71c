"""What the job pages do: list a person's jobs, find one they may see, cancel one."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from tracker.extensions import db
from tracker.models import BackgroundJob, JobChunk, JobState, User
from tracker.permissions import may_see_job

#: How many of a person's jobs their list shows (older ones are purged after TRACKER_JOB_KEEP_DAYS).
RECENT = 50

#: What each kind of job is called on its pages and in its mail.
KIND_LABELS: dict[str, Any] = {
    "export_csv": _l("Export of actions (CSV)"),
    "export_xlsx": _l("Export of actions (XLSX)"),
    "import_preview": _l("Import: checking the file"),
    "import_apply": _l("Import"),
}

STATE_LABELS: dict[str, Any] = {
    JobState.QUEUED.value: _l("Waiting to start"),
    JobState.RUNNING.value: _l("Running"),
    JobState.DONE.value: _l("Ready"),
    JobState.FAILED.value: _l("Failed"),
    JobState.CANCELLED.value: _l("Cancelled"),
}


def kind_label(kind: str) -> str:
    """A job kind as people read it."""
    return str(KIND_LABELS.get(kind, kind))


def state_label(state: str) -> str:
    """A job state as people read it."""
    return str(STATE_LABELS.get(state, state))


def result_of(job: BackgroundJob) -> dict[str, Any]:
    """The job's result figures (an empty dict when it has none)."""
    try:
        value = json.loads(job.result) if job.result else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recent_jobs(user: User) -> list[BackgroundJob]:
    """The person's own most recent jobs, newest first."""
    query = (
        sa.select(BackgroundJob)
        .where(BackgroundJob.user_id == user.id)
        .order_by(BackgroundJob.created_at.desc(), BackgroundJob.id.desc())
        .limit(RECENT)
    )
    return list(db.session.scalars(query))


def visible_job(actor: User, job_id: int) -> BackgroundJob | None:
    """The job if ``actor`` may see it; None when it does not exist or is someone else's."""
    job = db.session.get(BackgroundJob, job_id)
    if job is None or not may_see_job(actor, job):
        return None
    return job


def has_file(job: BackgroundJob) -> bool:
    """Is the job's result file there to download?"""
    return job.state == JobState.DONE.value and job.file_name is not None and job.size is not None


def cancel(job: BackgroundJob, actor: User, now: datetime) -> bool:
    """Cancel a job that has not finished (a running one stops at its next progress report); True
    if it was cancelled. Flushes; the request commits."""
    cancelled = db.session.execute(
        sa.update(BackgroundJob)
        .where(
            BackgroundJob.id == job.id,
            BackgroundJob.state.in_([JobState.QUEUED.value, JobState.RUNNING.value]),
        )
        .values(state=JobState.CANCELLED.value, finished_at=now)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if cancelled:
        db.session.execute(sa.delete(JobChunk).where(JobChunk.job_id == job.id, JobChunk.role == "output"))
    return bool(cancelled)
