"""Backup and restore of the whole database: programme data, history, outbox and evidence files
(they are kept in the database), for `flask tracker backup` and `flask tracker restore`.

SQLite is copied with SQLite's online backup (one consistent snapshot, while the app and the
scheduler keep writing); PostgreSQL with pg_dump's custom format, restored by pg_restore. A
backup is written to FILE.partial and renamed when complete, so a killed backup never leaves a
file that looks whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.pool import NullPool

from tracker.models import DATA_VERSION

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"
#: Tables that an empty database holds rows in: the schema's revision and the data version's one row.
BOOKKEEPING = frozenset({"alembic_version", "data_version"})
#: How long a restore waits for the tables it drops (a running app holds them): then it gives up.
LOCK_TIMEOUT = "30s"


class BackupError(Exception):
    """A backup or restore that could not be done; the message tells the operator why and what to do."""


@dataclass(frozen=True)
class Summary:
    """What a database (or a backup of one) holds, in a few figures."""

    engine: str
    revision: str | None
    actions: int | None
    size: int


def engine_of(url: str) -> str:
    """``sqlite`` or ``postgresql``, from a database URL; anything else is refused."""
    backend = sa.make_url(url).get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise BackupError(f"backup and restore support SQLite and PostgreSQL, not {backend!r}")
    return backend


def file_kind(path: Path) -> str | None:
    """``sqlite`` or ``postgresql`` by the file's first bytes; None for anything else."""
    with path.open("rb") as handle:
        start = handle.read(len(SQLITE_MAGIC))
    if start.startswith(SQLITE_MAGIC):
        return "sqlite"
    if start.startswith(PG_MAGIC):
        return "postgresql"
    return None


def partial_path(path: Path) -> Path:
    """Where a backup is written until it is complete."""
    return path.with_name(path.name + ".partial")


# --- backup ------------------------------------------------------------------------------------


def backup(url: str, path: Path) -> Summary:
    """Write a consistent copy of the database at ``url`` to ``path``; what it holds."""
    engine = engine_of(url)
    partial = partial_path(path)
    partial.unlink(missing_ok=True)  # a killed earlier run's leftovers
    try:
        if engine == "sqlite":
            source = _sqlite_file(url, must_exist=True)
            if _same_database(path, source):
                raise BackupError(f"{path} is the database itself: write the backup to another file")
            revision, actions = _backup_sqlite(source, partial)
        else:
            revision, actions = _backup_postgresql(url, partial)
        _fsync(partial)
        os.replace(partial, path)  # complete: only now does FILE exist
        _fsync(path.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Summary(engine, revision, actions, path.stat().st_size)


def _backup_sqlite(source: Path, partial: Path) -> tuple[str | None, int | None]:
    try:
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(partial)) as dst:
            # One step: the copy is one read snapshot of the source, which WAL lets writers go on
            # beside. Several steps would restart whenever another connection writes.
            src.backup(dst)
            # A single self-contained file, not one that needs a -wal beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {source} failed SQLite's check: {check}")
            return _sqlite_summary(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database {source} to {partial}: {exc}") from None


def _backup_postgresql(url: str, partial: Path) -> tuple[str | None, int | None]:
    pg_dump = _client_program("pg_dump")
    conninfo, env = _libpq(url)
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # pg_dump reads the snapshot this transaction exports: the figures printed are
                # those of the very data in the file.
                snapshot = conn.scalar(sa.text("SELECT pg_export_snapshot()"))
                revision, actions = _summary(conn)
                command = [
                    pg_dump,
                    "--format=custom",
                    "--no-owner",
                    f"--snapshot={snapshot}",
                    f"--file={partial}",
                    conninfo,
                ]
                _run(command, env, "pg_dump")
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    finally:
        engine.dispose()
    return revision, actions


# --- restore -----------------------------------------------------------------------------------


def occupied_tables(url: str) -> list[str]:
    """The tables of the database at ``url`` that hold rows (beyond an empty schema's own)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return sorted(
                name
                for name in names
                if name not in BOOKKEEPING
                and conn.execute(sa.select(sa.literal(1)).select_from(sa.table(name)).limit(1)).first()
            )
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot use the database (DATABASE_URL): {exc.orig}") from None
    finally:
        engine.dispose()


def check_restorable(url: str, path: Path) -> str:
    """The kind of backup ``path`` is, if it can be restored into the database at ``url``."""
    target = engine_of(url)
    kind = file_kind(path)
    if kind is None:
        raise BackupError(
            f"{path} is not a tracker backup: neither a SQLite database nor a pg_dump archive in "
            "custom format (a plain SQL dump is restored with psql)"
        )
    if kind == "sqlite" and target == "postgresql":
        raise BackupError(
            f"{path} is a SQLite backup; restoring it into PostgreSQL is not supported. Move the "
            "data with pgloader (pgloader SQLITE_FILE POSTGRESQL_URL into a database made by "
            "`flask db upgrade`), or carry recommendations and actions over with the export and "
            "`flask tracker import` (without their history)"
        )
    if kind == "postgresql" and target == "sqlite":
        raise BackupError(
            f"{path} is a PostgreSQL backup (pg_dump); restoring it into SQLite is not supported: "
            "point DATABASE_URL at an empty PostgreSQL database"
        )
    return kind


def restore(url: str, path: Path) -> Summary:
    """Replace the database at ``url`` by the backup ``path`` (what is there is deleted)."""
    kind = check_restorable(url, path)
    before = _data_version(url)
    if kind == "sqlite":
        target = _sqlite_file(url, must_exist=False)
        if _same_database(path, target):
            raise BackupError(f"{path} is the database of DATABASE_URL itself: nothing to restore")
        _restore_sqlite(path, target)
    else:
        # Read the whole archive before anything is dropped: a damaged or cut-off file must not
        # cost the data it was meant to replace.
        _run(
            [_client_program("pg_restore"), f"--file={os.devnull}", str(path)],
            dict(os.environ),
            "pg_restore",
            undone="the backup file is damaged or cut off; nothing was restored, the database is unchanged",
        )
        _drop_everything(url)
        conninfo, env = _libpq(url)
        command = [
            _client_program("pg_restore"),
            "--no-owner",
            # Grants name roles that a new server may not have; the app's own role owns it all.
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={conninfo}",
            str(path),
        ]
        _run(command, env, "pg_restore", undone="the database was emptied and nothing was restored")
    _raise_data_version(url, before)
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            revision, actions = _summary(conn)
    finally:
        engine.dispose()
    return Summary(kind, revision, actions, path.stat().st_size)


def _restore_sqlite(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    read_only = f"file:{pathname2url(str(path.resolve()))}?mode=ro"
    try:
        with (
            closing(sqlite3.connect(read_only, uri=True)) as src,
            closing(sqlite3.connect(target, timeout=30)) as dst,
        ):
            check = src.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"{path} is damaged (SQLite's check: {check}); nothing was restored")
            src.backup(dst)  # one transaction on the target: all of it or, on failure, nothing
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore {path} into {target}: {exc}; nothing was restored") from None


def _drop_everything(url: str) -> None:
    """Drop the tables, views, sequences and enum types of the PostgreSQL schema, in one transaction."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            inspector = sa.inspect(conn)
            quote = conn.dialect.identifier_preparer.quote
            for view in inspector.get_view_names():
                conn.execute(sa.text(f"DROP VIEW IF EXISTS {quote(view)} CASCADE"))
            for table in inspector.get_table_names():
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {quote(table)} CASCADE"))
            for sequence in inspector.get_sequence_names():
                conn.execute(sa.text(f"DROP SEQUENCE IF EXISTS {quote(sequence)} CASCADE"))
            for enum in inspector.get_enums():  # type: ignore[attr-defined]
                conn.execute(sa.text(f"DROP TYPE IF EXISTS {quote(enum['name'])} CASCADE"))
    except sa.exc.OperationalError as exc:
        raise BackupError(
            f"cannot empty the database: {exc.orig}; stop the web app and the scheduler, then restore"
        ) from None
    finally:
        engine.dispose()


def _data_version(url: str) -> int | None:
    """The target's data version before the restore, if it has one."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("data_version"):
                return None
            return conn.scalar(
                sa.text("SELECT version FROM data_version WHERE name = :name"), {"name": DATA_VERSION}
            )
    finally:
        engine.dispose()


def _raise_data_version(url: str, before: int | None) -> None:
    """Set the restored data version above both its own and the one it replaced.

    Processes that kept running hold dashboard figures under the old version. Restored lower,
    the count would climb back to it as people write, and a process that saw no request in
    between would serve the figures of the data the restore removed.
    """
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("data_version"):
                return
            restored = conn.scalar(
                sa.text("SELECT version FROM data_version WHERE name = :name"), {"name": DATA_VERSION}
            )
            if restored is None:
                return
            conn.execute(
                sa.text("UPDATE data_version SET version = :version WHERE name = :name"),
                {"version": max(restored, before or 0) + 1, "name": DATA_VERSION},
            )
    finally:
        engine.dispose()


def revision_advice(revision: str | None, migrations: str) -> str | None:
    """What the operator must do about the restored schema revision, or None when it is current."""
    script = ScriptDirectory(migrations)
    heads = script.get_heads()
    if revision in heads:
        return None
    if revision is None:
        return (
            "the restored database has no schema revision (alembic_version): it was not built by "
            "`flask db upgrade`; check it before starting the app"
        )
    try:
        script.get_revision(revision)
    except CommandError:
        return (
            f"the restored schema revision {revision} is unknown to this version of tracker (a "
            "newer one made the backup): install that version, or a later one, before starting"
        )
    return (
        f"the restored schema is at revision {revision}, behind this code's {', '.join(heads)}: "
        "run `flask --app wsgi db upgrade` before starting the app and the scheduler"
    )


# --- helpers -----------------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine:
    # NullPool: the restore must not leave connections open to a database it is replacing.
    return sa.create_engine(url, poolclass=NullPool)


def _sqlite_file(url: str, *, must_exist: bool) -> Path:
    database = sa.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("DATABASE_URL must name a SQLite file (sqlite:///path/to/tracker.db)")
    path = Path(database)
    if must_exist and not path.is_file():
        raise BackupError(f"the SQLite database {path} does not exist")
    return path


def _same_database(path: Path, database: Path) -> bool:
    """Whether ``path`` is the SQLite database file or one of the files SQLite keeps beside it."""
    mine = path.resolve()
    return any(mine == Path(str(database.resolve()) + end) for end in ("", "-wal", "-shm", "-journal"))


def _summary(conn: sa.Connection) -> tuple[str | None, int | None]:
    """The schema revision and the number of actions, seen through ``conn``."""
    names = set(sa.inspect(conn).get_table_names())
    revision = (
        conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        if "alembic_version" in names
        else None
    )
    actions = conn.scalar(sa.text("SELECT count(*) FROM action_item")) if "action_item" in names else None
    return revision, actions


def _sqlite_summary(conn: sqlite3.Connection) -> tuple[str | None, int | None]:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    revision = actions = None
    if "alembic_version" in names:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    if "action_item" in names:
        actions = conn.execute("SELECT count(*) FROM action_item").fetchone()[0]
    return revision, actions


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` without its password, and the child's environment
    with the password in PGPASSWORD (a command line is visible to every user of the host)."""
    parts = sa.make_url(url)
    params: dict[str, str] = {}
    if parts.host:
        params["host"] = parts.host
    if parts.port:
        params["port"] = str(parts.port)
    if parts.username:
        params["user"] = parts.username
    if parts.database:
        params["dbname"] = parts.database
    for key, value in parts.query.items():  # sslmode, host=/run/postgresql …: libpq's own keywords
        params[key] = value[-1] if isinstance(value, tuple) else value
    conninfo = " ".join(f"{key}='{_quote(value)}'" for key, value in params.items())
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
    return conninfo, env


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _client_program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found on PATH: install the PostgreSQL client programs of the server's "
            "major version or newer (Debian and Ubuntu: apt install postgresql-client)"
        )
    return found


def _run(command: list[str], env: dict[str, str], name: str, undone: str = "") -> None:
    """Run a PostgreSQL client program; its complaint, if it fails, becomes the error."""
    log.info("running %s", name)
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        raise BackupError(f"{name} failed: {said}" + (f"; {undone}" if undone else ""))


def _fsync(path: Path) -> None:
    """Push ``path`` (a file or a folder) to the disk, so that a crash after the rename keeps it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
