"""Savepoints that behave alike on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.orm import SessionTransaction

from tracker.extensions import db


def savepoint() -> SessionTransaction:
    """Begin a SAVEPOINT inside the session's transaction (``with savepoint(): …``), also on SQLite.

    Python's sqlite3 driver begins a transaction only before INSERT, UPDATE or DELETE, not before a
    SAVEPOINT: SQLite then opens one for the savepoint alone, and releasing it commits everything
    written so far, so a later rollback could no longer undo it. Beginning first, as the driver
    would before a write, makes the release end only the savepoint.
    """
    connection = db.session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN")
    return db.session.begin_nested()
