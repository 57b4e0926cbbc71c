"""Background jobs under process faults: a real `tracker run-jobs` process killed with SIGKILL in
the middle of a large export leaves a job that the next runner starts again and finishes, once its
claim (shortened to 2 s here) has lapsed; while the first runner lived, it kept renewing it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from tracker.extensions import db
from tracker.jobs import enqueue
from tracker.models import ActionItem, BackgroundJob, JobState, User

ROOT = Path(__file__).resolve().parent.parent
#: Enough rows that the export runs for seconds, so that it is caught in the middle: PostgreSQL
#: reads them several times faster than SQLite.
ROWS = {"sqlite": 30_000, "postgresql": 80_000}


def _start(database_url: str, tmp_path: Path, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "MAIL_"))}
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="job-process-test-secret",
        TRACKER_MAIL_DIR=str(tmp_path / "mail"),
        TRACKER_JOB_CLAIM_SECONDS="2",
    )
    with (tmp_path / f"{name}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "run-jobs"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _state(app, job_id: int) -> tuple[str, int, int, datetime | None, int]:
    with app.app_context():
        job = db.session.get(BackgroundJob, job_id)
        try:
            return job.state, job.done, job.attempts, job.claimed_until, job.size or 0
        finally:
            db.session.remove()


def test_a_runner_killed_mid_export_leaves_a_job_the_next_runner_finishes(app, world, database_url, tmp_path):
    with app.app_context():
        rows = ROWS[db.engine.dialect.name]
        db.session.execute(
            sa.insert(ActionItem),
            [
                {
                    "recommendation_id": world.recommendation_id,
                    "office_id": world.offices["SG"],
                    "title": f"Item {i}",
                    "description": "d" * 100,
                    "deadline": date(2030, 1, 1),
                    "agreed_deadline": date(2030, 1, 1),
                }
                for i in range(rows)
            ],
        )
        reviewer = db.session.get(User, world.user_ids["reviewer"])
        job_id = enqueue(
            reviewer, "export_xlsx", {"format": "xlsx", "filters": {}, "now": datetime.now(UTC).isoformat()}
        ).id
        db.session.commit()

    first = _start(database_url, tmp_path, "first")
    try:
        deadline = time.monotonic() + 120
        claims = set()
        while time.monotonic() < deadline:
            state, done, attempts, claimed_until, _size = _state(app, job_id)
            if state == JobState.RUNNING:
                claims.add(claimed_until)
            if state == JobState.RUNNING and done >= 2000 and len(claims) >= 2:
                break  # mid-export, after the claim was renewed
            assert state in (JobState.QUEUED, JobState.RUNNING), (state, (tmp_path / "first.log").read_text())
            time.sleep(0.1)
        else:
            raise AssertionError(f"the job never got going: {(tmp_path / 'first.log').read_text()}")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)

    state, done, attempts, claimed_until, size = _state(app, job_id)
    assert (state, attempts, size) == (JobState.RUNNING, 1, 0) and done < rows + 2
    # Its claim lapses within 2 s; then the next runner takes the job over and starts it again.
    time.sleep(max(0.0, (claimed_until - datetime.now(UTC)).total_seconds()) + 0.5)
    second = _start(database_url, tmp_path, "second")
    try:
        assert second.wait(240) == 0, (tmp_path / "second.log").read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)
    state, done, attempts, claimed_until, size = _state(app, job_id)
    assert (state, done, attempts, claimed_until) == (JobState.DONE, rows + 2, 2, None), (
        tmp_path / "second.log"
    ).read_text()
    assert size > 0 and "ran 1 jobs" in (tmp_path / "second.log").read_text()
