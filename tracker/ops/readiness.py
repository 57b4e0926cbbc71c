"""/readyz: can this process reach its database, and is the schema the one the code expects?

The check runs on a connection of its own (no pool, short connect and statement timeouts) on a
thread it waits for at most READY_TIMEOUT seconds, so the answer comes in time even when
PostgreSQL is gone or hangs. The code's migration head is read from migrations/ once per process.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask import Flask
from sqlalchemy.pool import NullPool

#: The longest /readyz waits for the database (seconds); the connection's own timeouts are shorter.
READY_TIMEOUT = 3.0
_CONNECT_TIMEOUT = 2


@functools.cache
def script_directory(path: str) -> ScriptDirectory:
    """The migrations of the code (read once per process)."""
    return ScriptDirectory(path)


@functools.cache
def code_heads(path: str) -> tuple[str, ...]:
    """The head revision(s) of the migrations in ``path``."""
    return tuple(sorted(script_directory(path).get_heads()))


@dataclass
class Readiness:
    """The outcome of one check; ``body`` is what /readyz answers."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)


def _engine(app: Flask) -> sa.Engine:
    """An engine for the check alone: a new connection each time, short timeouts (made once)."""
    engine = app.extensions.get("tracker_ready_engine")
    if engine is None:
        url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        if url.get_backend_name() == "postgresql":
            args: dict[str, Any] = {
                "connect_timeout": _CONNECT_TIMEOUT,
                "options": f"-c statement_timeout={_CONNECT_TIMEOUT * 1000}",
            }
        else:
            args = {"timeout": _CONNECT_TIMEOUT}
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            from tracker.extensions import db  # an in-memory database exists in its own engine only

            engine = db.engine
        else:
            engine = sa.create_engine(url, poolclass=NullPool, connect_args=args)
        app.extensions["tracker_ready_engine"] = engine
    return engine


def _database_heads(engine: sa.Engine) -> tuple[str, ...]:
    with engine.connect() as connection:
        return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def _migrations(database: tuple[str, ...], code: tuple[str, ...], path: str) -> str:
    """current, behind (older, or never migrated) or ahead (a revision this code does not know)."""
    if database == code:
        return "current"
    script = script_directory(path)
    for revision in database:
        try:
            if script.get_revision(revision) is None:
                return "ahead"
        except CommandError:  # unknown to this code: migrated by a newer release
            return "ahead"
    return "behind"


#: One check at a time per process: while one hangs on a dead database, others answer at once.
_checking = threading.Semaphore(1)


def check(app: Flask, migrations_path: str) -> Readiness:
    """Check the database and its migrations within READY_TIMEOUT seconds."""
    code = code_heads(migrations_path)
    revision = ",".join(code)
    outcome: dict[str, Any] = {}

    def probe() -> None:
        try:
            outcome["heads"] = _database_heads(_engine(app))
        except Exception as exc:  # what failed is the answer
            outcome["error"] = type(getattr(exc, "orig", None) or exc).__name__
        finally:
            _checking.release()

    if not _checking.acquire(blocking=False):
        return Readiness(False, {"status": "not ready", "database": "timeout", "revision": revision})
    thread = threading.Thread(target=probe, name="readyz", daemon=True)  # daemon: never joined at exit
    thread.start()
    thread.join(READY_TIMEOUT)
    if thread.is_alive():
        return Readiness(False, {"status": "not ready", "database": "timeout", "revision": revision})
    if "error" in outcome:
        return Readiness(False, {"status": "not ready", "database": outcome["error"], "revision": revision})
    database = outcome["heads"]
    state = _migrations(database, code, migrations_path)
    body: dict[str, Any] = {"status": "ready", "database": "ok", "migrations": state, "revision": revision}
    if state != "current":
        body["status"] = "not ready"
        body["database_revision"] = ",".join(database) or None
    return Readiness(state == "current", body)
