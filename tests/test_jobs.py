"""Background jobs: large exports queued by the export routes and run by the scheduler's job or
the CLI; progress seen while a job runs; cancellation; failures told by mail; who may see a job;
files stored and served in pieces; memory that does not grow with the rows."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.jobs import (
    CHUNK_BYTES,
    JobFailed,
    Progress,
    enqueue,
    handler,
    open_input,
    read_input,
    run_pending,
    store_output,
)
from tracker.jobs import runner as job_runner
from tracker.models import ActionItem, BackgroundJob, JobChunk, JobState, Notification, User
from tracker.notifications.dispatch import dispatch
from tracker.scheduler import jobs_job
from tracker.transfer import columns, export

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# --- handlers of this test module (real handlers, run by the real runner) ------------------------

#: Events a test uses to hold a running job where it wants it.
GATES: dict[str, threading.Event] = {}


@handler("test_steps")
def _steps(job, progress) -> None:
    """Reports 5 of 10, waits for the test, then finishes."""
    progress(5, 10)
    GATES["reported"].set()
    assert GATES["go_on"].wait(20)
    progress(10)
    job.message = "all steps done"


@handler("test_forever")
def _forever(job, progress) -> None:
    """Works until cancelled (a progress report raises JobCancelled)."""
    GATES["started"].set()
    for i in range(2000):
        progress(i, 2000)
        time.sleep(0.01)
    raise AssertionError("never cancelled")


@handler("test_refused")
def _refused(job, progress) -> None:
    """Fails the way a handler tells the person why, after writing something that must not stay."""
    job.user.name = "Changed by a failing job"
    db.session.flush()
    raise JobFailed("The file has no header row.")


@handler("test_broken")
def _broken(job, progress) -> None:
    """Fails with a bug."""
    raise ZeroDivisionError("a bug")


@handler("test_echo")
def _echo(job, progress) -> None:
    """Hands its input back as its output (what an import would read and an export write)."""
    with open_input(job) as file:
        data = file.read()
    assert b"".join(read_input(job)) == data
    store_output(job, [data], file_name="echo.bin", content_type="application/octet-stream")


def _gates(*names: str) -> None:
    GATES.clear()
    GATES.update({name: threading.Event() for name in names})


def _queue(app, user_id: int, kind: str, **options) -> int:
    with app.app_context():
        job = enqueue(db.session.get(User, user_id), kind, {}, **options)
        db.session.commit()
        return job.id


def _job(app, job_id: int) -> BackgroundJob:
    with app.app_context():
        job = db.session.get(BackgroundJob, job_id)
        db.session.expunge(job)
        return job


def _run_in_thread(app, holder: str = "test-runner") -> threading.Thread:
    def work() -> None:
        with app.app_context():
            run_pending(datetime.now(UTC), holder)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def settings(mail_settings):
    """Change app settings for one test (restored afterwards)."""
    return mail_settings


def _rows_of(data: bytes, fmt: str) -> list[list[str]]:
    """A CSV or XLSX export's rows (header included), every value as text."""
    if fmt == "csv":
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    try:
        return [
            ["" if v is None else str(v) for v in row]
            for row in workbook.worksheets[0].iter_rows(values_only=True)
        ]
    finally:
        workbook.close()


def _download(client, url: str, **query) -> bytes:
    with client.get(url, query_string=query) as response:
        assert response.status_code == 200, response.status_code
        assert "attachment" in response.headers["Content-Disposition"]
        return response.data


# --- exports in the background -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_large_export_is_prepared_in_the_background_with_the_same_rows(
    app, world, login_as, settings, runner, fmt
):
    c = login_as(world.users["reviewer"])
    query = {"overdue": "1"} if fmt == "csv" else {"office": "SG"}
    inline = _rows_of(_download(c, f"/export/actions.{fmt}", **query), fmt)
    assert len(inline) >= 2
    settings(**{f"TRACKER_EXPORT_INLINE_ROWS_{fmt.upper()}": 0})

    response = c.get(f"/export/actions.{fmt}", query_string=query)
    assert response.status_code == 303
    job_url = response.headers["Location"]
    job_id = int(re.fullmatch(r"/jobs/(\d+)", job_url).group(1))
    # Asked again while it waits (a double click): the same job, not a second one.
    again = c.get(f"/export/actions.{fmt}", query_string=query)
    assert again.status_code == 303 and again.headers["Location"] == job_url
    other = c.get(f"/export/actions.{fmt}")  # every action: other filters, a job of its own
    assert other.status_code == 303 and other.headers["Location"] != job_url
    with app.app_context():
        db.session.execute(sa.delete(BackgroundJob).where(BackgroundJob.id != job_id))
        db.session.commit()
    page = c.get(job_url)
    assert page.status_code == 200 and "Waiting to start" in page.text
    assert '<meta http-equiv="refresh" content="3">' in page.text
    assert "/download" not in page.text
    assert c.get(f"{job_url}/download").status_code == 404  # nothing to download yet

    if fmt == "csv":  # the CLI, as an operator or `make run` would
        result = runner.invoke(args=["tracker", "run-jobs"])
        assert result.exit_code == 0 and "ran 1 jobs" in result.output, result.output
    else:  # the scheduler's job
        with app.app_context():
            jobs_job(datetime.now(UTC), None, "scheduler-under-test")

    job = _job(app, job_id)
    assert (job.state, job.done, job.total, job.attempts) == (
        JobState.DONE,
        len(inline) - 1,
        len(inline) - 1,
        1,
    )
    assert job.claimed_until is None and json.loads(job.result) == {"rows": len(inline) - 1}
    page = c.get(job_url)
    assert "http-equiv" not in page.text and f"{len(inline) - 1} of {len(inline) - 1} rows" in page.text
    assert f"/jobs/{job_id}/download" in page.text
    response = c.get(f"{job_url}/download")
    assert response.headers["Content-Length"] == str(job.size) and response.headers["Cache-Control"] == (
        "private, no-store"
    )
    assert response.mimetype == ("text/csv" if fmt == "csv" else XLSX)
    assert _rows_of(response.data, fmt) == inline
    listing = c.get("/jobs")
    assert listing.status_code == 200 and job.file_name in listing.text
    with app.app_context():  # the person is told, once
        mail = db.session.scalars(sa.select(Notification).where(Notification.kind == "job_done")).all()
        assert [(m.to_address, m.idempotency_key) for m in mail] == [
            (world.users["reviewer"], f"job_done:job{job_id}")
        ]
        assert mail[0].subject.startswith("Ready:") and f"/jobs/{job_id}" in mail[0].body_text


def test_a_focal_points_export_holds_their_office_only_and_nobody_else_sees_it(
    app, world, login_as, settings
):
    settings(TRACKER_EXPORT_INLINE_ROWS_CSV=0)
    focal = login_as(world.users["focal_sg"])
    response = focal.get("/export/actions.csv", query_string={"office": ""})
    assert response.status_code == 303
    job_url = response.headers["Location"]
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner") == 1
    rows = _rows_of(_download(focal, f"{job_url}/download"), "csv")
    offices = {row[columns.COLUMNS.index("office_code")] for row in rows[1:]}
    assert offices == {"SG"}

    for other in ("focal_my", "reviewer", "manager_sg"):
        c = login_as(world.users[other])
        for url in (job_url, f"{job_url}/download", f"{job_url}/cancel"):
            assert c.get(url).status_code == 404, (other, url)
        assert c.post(f"{job_url}/cancel", data={"csrf_token": "x"}).status_code in (400, 404)
        assert job_url not in c.get("/jobs").text
    admin = login_as(world.users["admin"])
    assert admin.get(job_url).status_code == 200
    assert admin.get(f"{job_url}/download").status_code == 200
    assert admin.get("/jobs/999999").status_code == 404


# --- progress, cancellation, failure -------------------------------------------------------------


def test_progress_shows_while_the_job_runs(app, world, login_as):
    _gates("reported", "go_on")
    job_id = _queue(app, world.user_ids["reviewer"], "test_steps")
    thread = _run_in_thread(app)
    try:
        assert GATES["reported"].wait(20)
        c = login_as(world.users["reviewer"])
        page = c.get(f"/jobs/{job_id}")
        assert "Running" in page.text and "5 of 10 rows" in page.text
        assert '<progress max="10" value="5">' in page.text and 'http-equiv="refresh"' in page.text
        job = _job(app, job_id)
        assert job.state == JobState.RUNNING and job.claimed_by == "test-runner" and job.claimed_until
    finally:
        GATES["go_on"].set()
        thread.join(30)
    job = _job(app, job_id)
    assert (job.state, job.done, job.message) == (JobState.DONE, 10, "all steps done")


def test_cancel_a_running_job_after_a_confirmation(app, world, login_as):
    _gates("started")
    job_id = _queue(app, world.user_ids["reviewer"], "test_forever")
    c = login_as(world.users["reviewer"])
    thread = _run_in_thread(app)
    try:
        assert GATES["started"].wait(20)
        confirm = c.get(f"/jobs/{job_id}/cancel")
        assert confirm.status_code == 200 and "Cancel this job?" in confirm.text
        assert _job(app, job_id).state == JobState.RUNNING  # a GET changes nothing
        response = c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf_token(confirm.text)})
        assert response.status_code == 303
        thread.join(10)
        assert not thread.is_alive()  # the handler stopped at its next progress report
    finally:
        thread.join(30)
    job = _job(app, job_id)
    assert job.state == JobState.CANCELLED and job.claimed_until is None and job.file_name is None
    assert "Cancelled" in c.get(f"/jobs/{job_id}").text
    # A queued job is cancelled before it starts: no runner takes it.
    queued = _queue(app, world.user_ids["reviewer"], "test_forever")
    page = c.get(f"/jobs/{queued}/cancel")
    c.post(f"/jobs/{queued}/cancel", data={"csrf_token": csrf_token(page.text)})
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner") == 0
    assert _job(app, queued).state == JobState.CANCELLED


def test_a_failure_marks_the_job_failed_and_mails_the_person(app, world, smtp_server):
    refused = _queue(app, world.user_ids["focal_sg"], "test_refused")
    broken = _queue(app, world.user_ids["focal_sg"], "test_broken")
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner") == 2
        assert db.session.get(User, world.user_ids["focal_sg"]).name == "Focal Sg"  # rolled back
    job = _job(app, refused)
    assert (job.state, job.message, job.claimed_until) == (
        JobState.FAILED,
        "The file has no header row.",
        None,
    )
    job = _job(app, broken)
    assert job.state == JobState.FAILED and "error in tracker" in job.message
    with app.app_context():
        dispatch(datetime.now(UTC))
    received = sorted((m.parsed() for m in smtp_server.messages), key=lambda m: m["Subject"])
    assert [m["To"] for m in received] == [world.users["focal_sg"]] * 2
    assert all(m["Subject"].startswith("Failed:") for m in received)
    bodies = [m.get_body(("plain",)).get_content() for m in received]
    assert any("The file has no header row." in b and f"/jobs/{refused}" in b for b in bodies)


def test_the_mail_gives_the_time_in_the_persons_zone(app, world, smtp_server):
    # Asked at 01:30 UTC, 09:30 in Singapore, the focal point's office: the mail says 9:30 AM
    # (the scheduler renders it outside any request, where Flask-Babel would write UTC).
    asked = datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    _queue(app, world.user_ids["focal_sg"], "test_refused", now=asked)
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner") == 1
        dispatch(datetime.now(UTC))
    (message,) = [m.parsed() for m in smtp_server.messages]
    text = message.get_body(("plain",)).get_content()
    assert re.search(r"on Nov 30, 2026, 9:30\sAM", text), text
    assert "1:30" not in text
    html = message.get_body(("html",)).get_content()
    assert re.search(r"on Nov 30, 2026, 9:30\sAM", html)


def test_a_job_whose_runner_died_starts_again_then_fails_after_the_limit(app, world, settings):
    settings(TRACKER_JOB_MAX_ATTEMPTS=2)
    job_id = _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=[b"x"])
    past = datetime.now(UTC) - timedelta(minutes=5)
    with app.app_context():  # as a runner killed mid-job leaves it: running, its claim lapsed
        db.session.execute(
            sa.update(BackgroundJob)
            .where(BackgroundJob.id == job_id)
            .values(state="running", claimed_by="dead", claimed_until=past, attempts=1)
        )
        db.session.commit()
        assert job_runner.waiting(datetime.now(UTC)) == 1
        assert run_pending(datetime.now(UTC), "test-runner") == 1
    job = _job(app, job_id)
    assert (job.state, job.attempts, job.claimed_by) == (JobState.DONE, 2, "test-runner")
    with app.app_context():
        db.session.execute(
            sa.update(BackgroundJob)
            .where(BackgroundJob.id == job_id)
            .values(state="running", claimed_by="dead", claimed_until=past, attempts=2)
        )
        db.session.commit()
        assert run_pending(datetime.now(UTC), "test-runner") == 0
    job = _job(app, job_id)
    assert job.state == JobState.FAILED and "stopped 2 times" in job.message


def test_progress_never_waits_for_the_jobs_own_write_transaction(app, world):
    job_id = _queue(app, world.user_ids["reviewer"], "test_echo")
    with app.app_context():
        job_runner.claim(datetime.now(UTC), "me", timedelta(seconds=60), 3)
        progress = Progress(job_id, "me", clock=lambda: datetime.now(UTC), claim_for=timedelta(seconds=60))
        db.session.get(User, world.user_ids["reviewer"]).name = "Writing"
        db.session.flush()  # the job's session now holds a write transaction (SQLite: the lock)
        started = time.monotonic()
        wrote = progress.write()
        assert time.monotonic() - started < 1.0
        if db.engine.dialect.name == "sqlite":
            assert not wrote and progress.deferred == 1  # kept for later
        else:
            assert wrote  # PostgreSQL locks rows: the job row is free
        db.session.commit()
        progress(7, 9)  # the next report writes what was kept
        assert progress.write() and not progress.cancelled
        db.session.expire_all()
        job = db.session.get(BackgroundJob, job_id)
        assert (job.done, job.total) == (7, 9)


# --- files ----------------------------------------------------------------------------------------


def test_files_are_kept_and_served_in_pieces_of_a_megabyte(app, world, login_as, count_queries):
    data = bytes(range(256)) * (CHUNK_BYTES * 5 // 2 // 256)  # 2.5 MB
    pieces = [data[i : i + 300_000] for i in range(0, len(data), 300_000)]
    job_id = _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=pieces)
    with app.app_context():
        sizes = db.session.execute(
            sa.select(JobChunk.role, sa.func.count(), sa.func.max(sa.func.length(JobChunk.data)))
            .where(JobChunk.job_id == job_id)
            .group_by(JobChunk.role)
        ).all()
        assert [tuple(s) for s in sizes] == [("input", 3, CHUNK_BYTES)]
        run_pending(datetime.now(UTC), "test-runner")
    c = login_as(world.users["reviewer"])
    with count_queries() as seen:
        response = c.get(f"/jobs/{job_id}/download", buffered=False)
        assert response.is_streamed and response.headers["Content-Length"] == str(len(data))
        body = b"".join(response.response)
        response.close()
    assert body == data
    # The user, the job, the list of pieces, then one SELECT per piece (three).
    assert len([s for s in seen if "job_chunk" in s]) == 4


def test_old_jobs_and_their_files_are_purged(app, world, settings):
    settings(TRACKER_JOB_KEEP_DAYS=7)
    old = _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=[b"old"])
    new = _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=[b"new"])
    now = datetime.now(UTC)
    with app.app_context():
        run_pending(now, "test-runner")
        db.session.execute(
            sa.update(BackgroundJob)
            .where(BackgroundJob.id == old)
            .values(finished_at=now - timedelta(days=8))
        )
        db.session.commit()
        from tracker.scheduler import purge_job

        purge_job(now)
        db.session.commit()
        assert db.session.scalars(sa.select(BackgroundJob.id)).all() == [new]
        assert set(db.session.scalars(sa.select(JobChunk.job_id))) == {new}


# --- memory ---------------------------------------------------------------------------------------


def _add_items(app, world, n: int) -> None:
    with app.app_context():
        db.session.execute(
            sa.insert(ActionItem),
            [
                {
                    "recommendation_id": world.recommendation_id,
                    "office_id": world.offices["SG"],
                    "title": f"Item {i} " + "x" * 60,
                    "description": "d" * 200,
                    "deadline": datetime(2030, 1, 1).date(),
                    "agreed_deadline": datetime(2030, 1, 1).date(),
                }
                for i in range(n)
            ],
        )
        db.session.commit()


def _export_peak(app, fmt: str) -> tuple[int, int]:
    """Peak Python memory of an export of every item, and its rows."""
    from tracker.actions import queries

    with app.test_request_context():
        user = db.session.scalar(sa.select(User).where(User.email == "reviewer@example.test"))
        now = datetime.now(UTC)
        query = queries.filtered_actions(user, now, queries.action_filters({}))
        header = columns.column_labels(export.EXPORT_HEADER)
        tracemalloc.start()
        try:
            rows = 0

            def counted():
                nonlocal rows
                for row in export.export_rows(query, now, batch=100):
                    rows += 1
                    yield row

            if fmt == "csv":
                for _piece in export.csv_stream(header, counted()):
                    pass
            else:
                for _piece in export.xlsx_stream([export.Sheet("Actions", header, counted(), [])]):
                    pass
            return tracemalloc.get_traced_memory()[1], rows
        finally:
            tracemalloc.stop()
            db.session.remove()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_memory_does_not_grow_with_the_rows(app, world, fmt):
    _add_items(app, world, 400)
    small, rows = _export_peak(app, fmt)
    assert rows == 402
    _add_items(app, world, 3600)
    large, rows = _export_peak(app, fmt)
    assert rows == 4002
    # Ten times the rows: the same buffers (batches of 100 rows, a 64 KB CSV buffer, one XLSX row).
    assert large < small * 1.5 + 256 * 1024, (small, large)


def test_the_job_pages_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    c = login_as(world.users["reviewer"])

    def statements() -> list[int]:
        counts = []
        for url in ("/jobs", f"/jobs/{first}", f"/jobs/{first}/download"):
            with count_queries() as seen, c.get(url) as response:
                assert response.status_code == 200, url
                response.get_data()
            counts.append(len(seen))
        return counts

    first = _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=[b"one"])
    with app.app_context():
        run_pending(datetime.now(UTC), "test-runner")
    small = statements()
    for _ in range(5):
        _queue(app, world.user_ids["reviewer"], "test_echo", input_chunks=[b"more"])
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner") == 5
    assert statements() == small
