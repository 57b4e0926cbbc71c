"""`flask tracker backup` and `restore`: a database built by the migrations, with history, an
evidence file of a few MB in the database and outbox rows in every state, backed up through the
command, restored into an empty database and read back through the app; what restore refuses; a
backup killed half-way; a restore under a running app and its dashboard cache. On each backend."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from tests.conftest import build_world, login
from tracker import create_app
from tracker.backup import SQLITE_MAGIC, file_kind, partial_path, revision_advice
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    FileChunk,
    Notification,
    Office,
    StoredFile,
    User,
)

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1024 * 1024
#: The evidence file: a few MB, not a whole number of chunks.
EVIDENCE_SIZE = 3 * CHUNK + 12345
#: The schema revision before the newest (files in the database): an older tracker's backups.
PREVIOUS = "2c9cb037bf46"


@pytest.fixture
def new_database(database_url: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory: the URL of a new, empty database on the session's backend (dropped afterwards)."""
    made: list[str] = []
    server = None
    if not database_url.startswith("sqlite"):
        server = sa.make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    admin = (
        sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT") if server else None
    )

    def make(role: str) -> str:
        if server is None:
            return f"sqlite:///{tmp_path / f'{role}-{uuid.uuid4().hex[:6]}.db'}"
        name = f"backup_{role}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return server.set(database=name).render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _app(url: str) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": url})


def _close(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _build(url: str, evidence_size: int = EVIDENCE_SIZE) -> tuple[Flask, bytes]:
    """Migrate an empty database and fill it: the conftest world, history, an evidence file kept
    in stored_file/file_chunk, outbox rows pending, sent and failed. Returns the app and the file."""
    app = _app(url)
    payload = b"%PDF-1.7\n" + os.urandom(evidence_size - 9)
    with app.app_context():
        upgrade()
        world = build_world(date(2026, 11, 24))
        reviewer = db.session.get(User, world.user_ids["reviewer"])
        focal = db.session.get(User, world.user_ids["focal_sg"])
        item = db.session.get(ActionItem, world.items["SG"])
        item.status, item.progress = "in_progress", 40
        update = ActionUpdate(
            action_item=item,
            author=focal,
            old_status="not_started",
            new_status="in_progress",
            old_progress=0,
            new_progress=40,
            note="Started; the plan is attached",
        )
        stored = StoredFile(size=len(payload))
        db.session.add_all([update, stored])
        db.session.flush()
        for seq, start in enumerate(range(0, len(payload), CHUNK)):
            db.session.add(FileChunk(file_id=stored.id, seq=seq, data=payload[start : start + CHUNK]))
        db.session.add(
            EvidenceFile(
                update=update,
                action_item_id=item.id,
                filename="plan.pdf",
                stored_file_id=stored.id,
                content_type="application/pdf",
                size=len(payload),
            )
        )
        sent_at = datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC)
        for n, (state, attempts, error, sent) in enumerate(
            [
                ("pending", 0, None, None),
                ("pending", 2, "451 try later", None),
                ("sent", 1, None, sent_at),
                ("failed", 5, "550 no such user", None),
            ]
        ):
            db.session.add(
                Notification(
                    kind="overdue",
                    recipient=reviewer,
                    to_address=reviewer.email,
                    idempotency_key=f"overdue:user{reviewer.id}:2026-11-2{n}",
                    subject=f"Overdue {n}",
                    body_text="text",
                    body_html="<p>html</p>",
                    state=state,
                    attempts=attempts,
                    last_error=error,
                    sent_at=sent,
                )
            )
        db.session.commit()
    return app, payload


def _contents(url: str) -> dict[str, list[tuple]]:
    """Every row of the tables that matter, as plain tuples, read through a new app on ``url``."""
    app = _app(url)
    with app.app_context():

        def rows(model: type, *columns: str) -> list[tuple]:
            query = sa.select(*(getattr(model, c) for c in columns)).order_by(*model.__table__.primary_key)
            return [tuple(row) for row in db.session.execute(query)]

        found = {
            "actions": rows(
                ActionItem, "id", "title", "status", "progress", "deadline", "owner_id", "version"
            ),
            "history": rows(
                ActionUpdate,
                "id",
                "action_item_id",
                "author_id",
                "created_at",
                "old_status",
                "new_status",
                "new_progress",
                "note",
            ),
            "outbox": rows(
                Notification,
                "id",
                "idempotency_key",
                "state",
                "attempts",
                "last_error",
                "sent_at",
                "next_attempt_at",
            ),
            "evidence": rows(EvidenceFile, "id", "filename", "stored_file_id", "size", "content_type"),
            "users": rows(User, "id", "email", "password_hash", "role"),
            "chunks": [
                (file_id, seq, hashlib.sha256(data).hexdigest())
                for file_id, seq, data in db.session.execute(
                    sa.select(FileChunk.file_id, FileChunk.seq, FileChunk.data).order_by(
                        FileChunk.file_id, FileChunk.seq
                    )
                )
            ],
        }
    _close(app)
    return found


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _run(app: Flask, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=["tracker", *args], input=input, catch_exceptions=False)


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


# --- the round trip ----------------------------------------------------------------------------


def test_backup_and_restore_into_an_empty_database(new_database, tmp_path):
    src, dst = new_database("src"), new_database("dst")
    app, payload = _build(src)
    target = tmp_path / "tracker.backup"

    done = _run(app, "backup", str(target))
    assert done.exit_code == 0, done.output
    assert target.exists() and not partial_path(target).exists()
    assert file_kind(target) == _backend(src)
    with app.app_context():
        head = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    size = f"{target.stat().st_size:,} bytes"
    assert (
        done.output.strip() == f"Wrote {target}: {size}, {_backend(src)}, schema revision {head}, 2 actions."
    )
    assert target.stat().st_size > EVIDENCE_SIZE  # random bytes do not compress: the file is in it
    _close(app)

    assert _tables(dst) == set()
    restorer = _app(dst)
    done = _run(restorer, "restore", str(target))
    assert done.exit_code == 0, done.output
    assert f"schema revision {head}, 2 actions." in done.output
    assert "Next:" not in done.output  # the schema is the code's own: nothing to upgrade
    _close(restorer)

    before, after = _contents(src), _contents(dst)
    assert after == before
    assert sorted(row[2] for row in after["outbox"]) == ["failed", "pending", "pending", "sent"]
    assert len(after["history"]) == 3 and len(after["chunks"]) == 4

    # The app on the restored database: the evidence bytes, the pages.
    served = _app(dst)
    with served.app_context():
        stored_id = db.session.scalar(sa.select(EvidenceFile.stored_file_id))
        chunks = db.session.scalars(
            sa.select(FileChunk.data).where(FileChunk.file_id == stored_id).order_by(FileChunk.seq)
        )
        assert b"".join(chunks) == payload
        file_id = db.session.scalar(sa.select(EvidenceFile.id))
        item_id = db.session.scalar(sa.select(EvidenceFile.action_item_id))
    client = served.test_client()
    assert login(client, "focal.sg@example.test").status_code == 302
    page = client.get(f"/actions/{item_id}")
    assert page.status_code == 200 and "Started; the plan is attached" in page.text
    download = client.get(f"/evidence/{file_id}")
    assert download.status_code == 200
    assert download.data == payload
    _close(served)


def test_restore_into_a_migrated_empty_database_and_revision_advice(new_database, tmp_path):
    src, dst = new_database("src"), new_database("dst")
    app, _payload = _build(src, evidence_size=CHUNK)
    target = tmp_path / "b"
    assert _run(app, "backup", str(target)).exit_code == 0
    _close(app)

    restorer = _app(dst)
    with restorer.app_context():
        upgrade()  # an empty schema: tables without rows count as empty
        db.engine.dispose()
    done = _run(restorer, "restore", str(target))
    assert done.exit_code == 0, done.output
    assert _contents(dst) == _contents(src)

    migrations = str(ROOT / "migrations")
    with restorer.app_context():
        head = db.session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    _close(restorer)
    assert revision_advice(head, migrations) is None
    assert "unknown to this version" in revision_advice("0123456789ab", migrations)


def test_restoring_an_older_schema_says_to_upgrade(new_database, tmp_path):
    src, dst = new_database("src"), new_database("dst")
    old = _app(src)
    with old.app_context():
        upgrade(revision=PREVIOUS)  # a backup made by the version before this one
        db.engine.dispose()
    target = tmp_path / "old.backup"
    done = _run(old, "backup", str(target))
    assert done.exit_code == 0 and f"schema revision {PREVIOUS}, 0 actions." in done.output
    _close(old)

    restorer = _app(dst)
    done = _run(restorer, "restore", str(target))
    assert done.exit_code == 0, done.output
    assert f"Next: the restored schema is at revision {PREVIOUS}, behind" in done.output
    assert "run `flask --app wsgi db upgrade` before starting" in done.output
    with restorer.app_context():
        upgrade()  # what the operator is told to do next works on the restored database
        assert db.session.scalar(sa.text("SELECT version_num FROM alembic_version")) != PREVIOUS
        assert (
            revision_advice(
                db.session.scalar(sa.text("SELECT version_num FROM alembic_version")),
                str(ROOT / "migrations"),
            )
            is None
        )
    _close(restorer)


def test_backup_while_the_app_writes_is_consistent(new_database, tmp_path):
    """Writers commit two history rows per transaction during the backup: the copy holds pairs."""
    src, dst = new_database("src"), new_database("dst")
    app, _payload = _build(src, evidence_size=8 * CHUNK)
    with app.app_context():
        item_id = db.session.scalar(sa.select(ActionItem.id).limit(1))
    stop = threading.Event()
    written = [0]

    def write() -> None:
        with app.app_context():
            while not stop.is_set():
                for _ in range(2):
                    db.session.add(ActionUpdate(action_item_id=item_id, note="pair"))
                db.session.commit()
                written[0] += 1
            db.session.remove()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while written[0] < 5:
            time.sleep(0.01)
        target = tmp_path / "busy.backup"
        done = _run(app, "backup", str(target))
        during = written[0]
        while written[0] < during + 5:  # the writer went on after the backup too
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()
    assert done.exit_code == 0, done.output
    _close(app)
    assert _run(_app(dst), "restore", str(target)).exit_code == 0
    pairs = [row for row in _contents(dst)["history"] if row[7] == "pair"]
    assert len(pairs) % 2 == 0 and 10 <= len(pairs) < 2 * written[0]


# --- what restore refuses ----------------------------------------------------------------------


def test_restore_refuses_a_database_with_data_unless_confirmed(new_database, tmp_path):
    src, other = new_database("src"), new_database("dst")
    app, _payload = _build(src, evidence_size=CHUNK)
    target = tmp_path / "b"
    assert _run(app, "backup", str(target)).exit_code == 0
    _close(app)
    busy, _other_payload = _build(other, evidence_size=CHUNK)
    with busy.app_context():
        db.session.add(Office(code="XX", name="Only in the other database", country="X", timezone="UTC"))
        db.session.commit()
    before = _contents(other)

    refused = _run(busy, "restore", str(target))
    assert refused.exit_code == 1
    assert "is not empty" in refused.output and "nothing was restored" in refused.output
    assert "--yes" in refused.output and "createdb" in refused.output
    declined = _run(busy, "restore", str(target), "--yes", input="n\n")
    assert declined.exit_code == 1 and "Delete everything" in declined.output and "Aborted" in declined.output
    assert _contents(other) == before
    cut = tmp_path / "cut.backup"  # a file cut off half-way: found out before anything is deleted
    cut.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    damaged = _run(busy, "restore", str(cut), "--yes", input="y\n")
    assert damaged.exit_code == 1 and "nothing was restored" in damaged.output, damaged.output
    assert _contents(other) == before

    confirmed = _run(busy, "restore", str(target), "--yes", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert _contents(other) == _contents(src)
    with busy.app_context():
        assert db.session.scalar(sa.select(Office).where(Office.code == "XX")) is None
    _close(busy)


def test_restore_refuses_a_file_of_another_engine_or_no_backup(new_database, database_url, tmp_path):
    src = new_database("src")
    app, _payload = _build(src, evidence_size=CHUNK)
    own = tmp_path / "own.backup"
    assert _run(app, "backup", str(own)).exit_code == 0
    _close(app)
    junk = tmp_path / "notes.txt"
    junk.write_text("not a backup\n")

    empty = new_database("dst")
    refused = _run(_app(empty), "restore", str(junk))
    assert refused.exit_code == 1 and "is not a tracker backup" in refused.output

    if _backend(database_url) == "sqlite":
        # Refused from the file's first bytes, before any connection: the server need not exist.
        into_pg = _run(_app("postgresql://nobody@127.0.0.1:9/none"), "restore", str(own))
        assert into_pg.exit_code == 1
        assert "SQLite backup; restoring it into PostgreSQL is not supported" in into_pg.output
        assert "pgloader" in into_pg.output
        return
    into_sqlite = _run(_app(f"sqlite:///{tmp_path / 'x.db'}"), "restore", str(own))
    assert into_sqlite.exit_code == 1 and "restoring it into SQLite is not supported" in into_sqlite.output
    assert not (tmp_path / "x.db").exists()
    lite = tmp_path / "lite.db"
    lite_app, _ = _build(f"sqlite:///{lite}", evidence_size=CHUNK)
    lite_backup = tmp_path / "lite.backup"
    assert _run(lite_app, "backup", str(lite_backup)).exit_code == 0
    assert lite_backup.read_bytes().startswith(SQLITE_MAGIC)
    _close(lite_app)
    into_pg = _run(_app(empty), "restore", str(lite_backup))
    assert into_pg.exit_code == 1 and "pgloader" in into_pg.output
    assert _tables(empty) == set()


def test_a_failed_backup_is_an_error_and_leaves_no_file(new_database, database_url, tmp_path):
    if _backend(database_url) == "sqlite":
        missing = _run(_app(f"sqlite:///{tmp_path / 'none.db'}"), "backup", str(tmp_path / "b"))
        assert missing.exit_code == 1 and "does not exist" in missing.output
        assert not (tmp_path / "none.db").exists() and not (tmp_path / "b").exists()
    else:
        server = sa.make_url(os.environ["TEST_DATABASE_URL"])
        nowhere = server.set(database=f"backup_missing_{uuid.uuid4().hex[:8]}")
        target = tmp_path / "b"
        failed = _run(_app(nowhere.render_as_string(hide_password=False)), "backup", str(target))
        assert failed.exit_code == 1 and "does not exist" in failed.output
        assert not target.exists() and not partial_path(target).exists()

    src = new_database("src")
    app, _payload = _build(src, evidence_size=CHUNK)
    unwritable = tmp_path / "no-such-folder" / "b"  # pg_dump (or SQLite) cannot open its output
    failed = _run(app, "backup", str(unwritable))
    assert failed.exit_code == 1
    if _backend(src) == "postgresql":
        assert "pg_dump failed: pg_dump: error: could not open output file" in failed.output
    else:
        assert "cannot copy the SQLite database" in failed.output
        assert "unable to open database file" in failed.output
    assert not (tmp_path / "no-such-folder").exists()
    if _backend(src) == "sqlite":  # never over the database it copies
        database = Path(sa.make_url(src).database)
        for itself in (database, Path(f"{database}-wal")):
            refused = _run(app, "backup", str(itself))
            assert refused.exit_code == 1 and "is the database itself" in refused.output
        _close(app)
        assert len(_contents(src)["actions"]) == 2
        return
    _close(app)
    # Without pg_dump on PATH: said plainly, before anything is written.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "flask").symlink_to(Path(sys.executable).parent / "flask")
    env = {**os.environ, "PATH": str(bin_dir), "TRACKER_CONFIG": "development", "DATABASE_URL": src}
    env["SECRET_KEY"] = "k" * 40
    target = tmp_path / "c"
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "backup", str(target)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "pg_dump was not found on PATH" in done.stderr and "postgresql-client" in done.stderr
    assert not target.exists() and not partial_path(target).exists()


# --- a killed backup ---------------------------------------------------------------------------


def test_a_backup_killed_half_way_leaves_no_file(new_database, tmp_path):
    src = new_database("src")
    # Big enough to be caught at work: SQLite copies about 400 MB/s here, pg_dump compresses slower.
    size = 128 * CHUNK if _backend(src) == "sqlite" else 48 * CHUNK
    app, _payload = _build(src, evidence_size=size)
    _close(app)
    target = tmp_path / "nightly.backup"
    secret = f"pw-{uuid.uuid4().hex}"  # the server trusts local connections: only where it goes is seen
    url = src if _backend(src) == "sqlite" else sa.make_url(src).set(password=secret).render_as_string(False)
    env = {**os.environ, "TRACKER_CONFIG": "development", "DATABASE_URL": url, "SECRET_KEY": "k" * 40}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "backup", str(target)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    partial = partial_path(target)
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 0):
            assert process.poll() is None, "the backup ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        if _backend(src) == "postgresql":  # pg_dump is at work: its password is in its environment only
            (pg_dump,) = _children(process.pid)
            assert Path(f"/proc/{pg_dump}/exe").resolve().name == "pg_dump"
            assert secret.encode() not in Path(f"/proc/{pg_dump}/cmdline").read_bytes()
            assert f"PGPASSWORD={secret}".encode() in Path(f"/proc/{pg_dump}/environ").read_bytes().split(
                b"\0"
            )
        os.killpg(process.pid, signal.SIGKILL)  # the command and its pg_dump, as a dead host would
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not target.exists()
    assert partial.exists()  # killed at work, not after the rename
    # Renamed by hand, the piece is still refused, and restores nothing.
    piece = tmp_path / "piece.backup"
    piece.write_bytes(partial.read_bytes())
    empty = new_database("dst")
    refused = _run(_app(empty), "restore", str(piece))
    assert refused.exit_code == 1, refused.output
    # Its first page may not be written yet (SQLite): then it is not even taken for a backup.
    assert "nothing was restored" in refused.output or "is not a tracker backup" in refused.output
    assert _tables(empty) == set()

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert target.exists() and not partial.exists()
    assert re.search(
        r"Wrote .*: [\d,]+ bytes, (sqlite|postgresql), schema revision \w+, 2 actions\.", done.stdout
    )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# --- a restore under a running app: the dashboard cache ----------------------------------------


def _total(client) -> int:
    page = client.get("/dashboard")
    assert page.status_code == 200
    return int(re.search(r'id="total-all"><span class="tile-count">([^<]+)</span>', page.text).group(1))


def _version(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.text("SELECT version FROM data_version"))


def test_restoring_an_older_backup_under_running_apps_shows_the_restored_figures(new_database, tmp_path):
    url = new_database("live")
    here, _payload = _build(url, evidence_size=CHUNK)
    there = _app(url)  # a second worker or host on the same database
    reviewer_here, reviewer_there = here.test_client(), there.test_client()
    for client in (reviewer_here, reviewer_there):  # before the backup: sessions live in the database
        assert login(client, "reviewer@example.test").status_code == 302
    assert _total(reviewer_here) == 2
    older = tmp_path / "older.backup"
    assert _run(here, "backup", str(older)).exit_code == 0
    backed_up = _version(here)

    with here.app_context():  # later work, then both workers cache its figures
        item = db.session.scalar(sa.select(ActionItem).limit(1))
        for n in range(3):
            db.session.add(
                ActionItem(
                    recommendation_id=item.recommendation_id,
                    office_id=item.office_id,
                    title=f"Later {n}",
                    deadline=item.deadline,
                )
            )
            db.session.commit()
        db.session.remove()
    assert _total(reviewer_here) == 5 and _total(reviewer_there) == 5
    cached_at = _version(here)
    assert cached_at > backed_up

    done = _run(here, "restore", str(older), "--yes", input="y\n")
    assert done.exit_code == 0, done.output
    assert _total(reviewer_here) == 2  # the worker that restored, at its next request

    # The other worker saw no request meanwhile. Writes (renaming an office, which no figure shows)
    # take the count as far as the version it cached at would have been reached from the backup's:
    # it must not take its old figures for current ones.
    with here.app_context():
        office = db.session.scalar(sa.select(Office).limit(1))
        for n in range(cached_at - backed_up):
            office.name = f"Renamed {n}"
            db.session.commit()
        db.session.remove()
    assert _total(reviewer_there) == 2
    assert _version(here) > cached_at  # the restore raised it past every version served before
    _close(here)
    _close(there)
