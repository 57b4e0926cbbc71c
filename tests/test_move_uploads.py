"""`flask --app wsgi tracker move-uploads`: evidence files from before (in TRACKER_UPLOAD_DIR) moved
into the database, one file per transaction; safe to run again, and to kill (a real process
killed with SIGKILL mid-way, run again, leaves every file in the database exactly once)."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tracker import files
from tracker.extensions import db
from tracker.models import ActionItem, EvidenceFile, FileChunk, StoredFile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(app, tmp_path, monkeypatch) -> Path:
    """The upload folder of before, for this test only."""
    path = tmp_path / "uploads"
    path.mkdir()
    monkeypatch.setitem(app.config, "TRACKER_UPLOAD_DIR", str(path))
    return path


def _content(i: int, size: int) -> bytes:
    seed = hashlib.sha256(f"file {i}".encode()).digest()
    return (b"%PDF-1.7\n" + seed * (size // 32 + 1))[:size]


def _files_from_before(app, world, folder: Path, sizes: list[int]) -> dict[int, bytes]:
    """Evidence rows whose files are on disk, as tracker wrote them before; id → content."""
    written = {}
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        for i, size in enumerate(sizes):
            name = secrets.token_hex(16)
            content = _content(i, size)
            (folder / name).write_bytes(content)
            row = EvidenceFile(
                update=item.updates[0],
                action_item=item,
                filename=f"report-{i}.pdf",
                stored_name=name,
                content_type="application/pdf",
                size=size,
            )
            db.session.add(row)
            db.session.flush()
            written[row.id] = content
        db.session.commit()
    return written


def _rows(app) -> list[tuple[int, int | None, str | None]]:
    with app.app_context():
        query = sa.select(EvidenceFile.id, EvidenceFile.stored_file_id, EvidenceFile.stored_name)
        try:
            return [tuple(r) for r in db.session.execute(query.order_by(EvidenceFile.id))]
        finally:
            db.session.remove()


def _all_in_the_database_once(app, written: dict[int, bytes]) -> None:
    """Every row's file in the database (and not on disk), its bytes intact; no other stored file."""
    with app.app_context():
        rows = db.session.scalars(sa.select(EvidenceFile).order_by(EvidenceFile.id)).all()
        assert [(r.id, r.stored_name) for r in rows] == [(i, None) for i in sorted(written)]
        assert all(r.stored_file_id is not None for r in rows)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(StoredFile)) == len(written)
        orphan_chunks = sa.select(sa.func.count()).where(FileChunk.file_id.not_in(sa.select(StoredFile.id)))
        assert db.session.scalar(orphan_chunks) == 0
        for row in rows:
            assert b"".join(files.read(row.stored_file_id)) == written[row.id], row.id
        db.session.remove()


def _move(runner, *extra: str):
    return runner.invoke(args=["tracker", "move-uploads", *extra])


def test_files_are_moved_served_the_same_and_a_second_run_does_nothing(app, world, folder, runner, login_as):
    written = _files_from_before(app, world, folder, [13, 1024 * 1024, 2 * 1024 * 1024 + 7])
    focal = login_as(world.users["focal_sg"])
    headers = ("Content-Type", "Content-Length", "Content-Disposition", "Cache-Control")

    def download(file_id: int) -> tuple[bytes, list[str]]:
        with focal.get(f"/evidence/{file_id}") as response:
            assert response.status_code == 200
            return response.data, [response.headers[h] for h in headers]

    before = {file_id: download(file_id) for file_id in written}
    assert {i: data for i, (data, _h) in before.items()} == written  # served from the folder

    result = _move(runner)
    assert result.exit_code == 0, result.output
    total = sum(len(c) for c in written.values())
    assert f"3 evidence files moved into the database ({total:,} bytes); 0 missing" in result.output
    assert "are not moved" in result.output  # waiting import files: people upload again
    assert os.listdir(folder) == []
    _all_in_the_database_once(app, written)
    assert {file_id: download(file_id) for file_id in written} == before  # the same bytes and headers

    again = _move(runner)
    assert again.exit_code == 0 and "0 evidence files moved" in again.output
    _all_in_the_database_once(app, written)


def test_a_dry_run_counts_and_changes_nothing(app, world, folder, runner):
    written = _files_from_before(app, world, folder, [100, 200])
    rows = _rows(app)
    result = _move(runner, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 evidence files would be moved into the database (300 bytes)" in result.output
    assert "Dry run: nothing was written." in result.output
    assert _rows(app) == rows and len(os.listdir(folder)) == 2
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(StoredFile)) == 0
    assert _move(runner).exit_code == 0
    _all_in_the_database_once(app, written)


def test_a_missing_file_is_reported_and_left_alone(app, world, folder, runner, login_as):
    written = _files_from_before(app, world, folder, [10, 20, 30])
    gone_id = sorted(written)[1]
    with app.app_context():
        gone_name = db.session.get(EvidenceFile, gone_id).stored_name
    (folder / gone_name).unlink()
    result = _move(runner)
    assert result.exit_code == 1, result.output
    assert f"missing: evidence file {gone_id} ('report-1.pdf')" in result.output
    assert "2 evidence files moved into the database (40 bytes); 1 missing" in result.output
    rows = {i: (f, n) for i, f, n in _rows(app)}
    assert rows[gone_id] == (None, gone_name)  # left as it was
    assert all(f is not None and n is None for i, (f, n) in rows.items() if i != gone_id)
    assert login_as(world.users["focal_sg"]).get(f"/evidence/{gone_id}").status_code == 404
    # Found again (restored from a backup of the folder): the next run moves it.
    (folder / gone_name).write_bytes(written[gone_id])
    assert _move(runner).exit_code == 0
    _all_in_the_database_once(app, written)


def test_a_run_stopped_between_its_two_commits_is_finished_by_the_next(app, world, folder, runner):
    """Copied and committed, but the disk copy not yet deleted (the process died there)."""
    written = _files_from_before(app, world, folder, [50, 60])
    first_id = sorted(written)[0]
    with app.app_context():
        row = db.session.get(EvidenceFile, first_id)
        with (folder / row.stored_name).open("rb") as source:
            row.stored_file_id = files.write(source).id
        db.session.commit()
    result = _move(runner)
    assert result.exit_code == 0, result.output
    assert "1 evidence files moved into the database (60 bytes)" in result.output  # the other one
    assert os.listdir(folder) == []
    _all_in_the_database_once(app, written)


# --- killed mid-way --------------------------------------------------------------------------

#: Enough files, large enough, that a run lasts a while (PostgreSQL writes faster than SQLite).
FILES = {"sqlite": 60, "postgresql": 80}
FILE_BYTES = 1024 * 1024 + 4321  # two pieces each


def _start(database_url: str, folder: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "MAIL_"))}
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="move-uploads-test-secret",
        TRACKER_MAIL_DIR=str(folder.parent / "mail"),
        TRACKER_UPLOAD_DIR=str(folder),
    )
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "move-uploads"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_runs_then_a_full_one_leave_every_file_in_the_database_once(
    app, world, folder, database_url, tmp_path, login_as
):
    with app.app_context():
        count = FILES[db.engine.dialect.name]
    written = _files_from_before(app, world, folder, [FILE_BYTES] * count)
    log = tmp_path / "move.log"
    kills = []
    # Kill a run once some files are moved, twice, at whatever line it is on; then let one finish.
    for wait_for in (count // 6, count // 2):
        process = _start(database_url, folder, log)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = sum(1 for _i, stored, _n in _rows(app) if stored is not None)
                if done >= wait_for:
                    break
                assert process.poll() is None, log.read_text()
                time.sleep(0.01)
            else:
                raise AssertionError(f"the move never got going: {log.read_text()}")
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(10) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        rows = _rows(app)
        moved = sum(1 for _i, stored, _n in rows if stored is not None)
        assert moved < count, "the run ended before it was killed: nothing was interrupted"
        kills.append((moved, sum(1 for _i, stored, name in rows if stored is not None and name is not None)))
        # Whatever line it died on: each row's content is somewhere, and no file is in twice.
        for file_id, stored, name in rows:
            assert stored is not None or (folder / name).is_file(), file_id
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(StoredFile)) == moved
            db.session.remove()

    final = _start(database_url, folder, log)
    try:
        assert final.wait(240) == 0, log.read_text()
    finally:
        if final.poll() is None:
            final.kill()
            final.wait(10)
    print(f"{count} files of {FILE_BYTES:,} bytes; after each kill (moved, not yet cleared): {kills}")
    assert os.listdir(folder) == []
    _all_in_the_database_once(app, written)
    focal = login_as(world.users["focal_sg"])
    for file_id in sorted(written)[:: max(1, count // 10)]:
        with focal.get(f"/evidence/{file_id}") as download:
            assert download.data == written[file_id]
