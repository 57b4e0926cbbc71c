"""The migrations build exactly the models' schema, and go down and up again, on each backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from tracker import create_app
from tracker.demo import seed_demo
from tracker.extensions import db
from tracker.models import ActionItem

FIRST = "77cf284faab4"  # the initial schema


@pytest.fixture
def empty_database(database_url: str, tmp_path) -> Iterator[str]:
    """A database of its own on the session's backend, dropped afterwards."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    server = sa.make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"tracker_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _differences(connection: sa.Connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, db.metadata)


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names()) - {"alembic_version"}


def test_upgrade_matches_models_and_downgrade_upgrade_works(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade()
        seed_demo(date(2026, 11, 24), "demo-password-x")  # rows in the tables while they change
        db.session.commit()
        db.session.remove()
        downgrade(revision=FIRST)  # SQLite rebuilds referenced tables here
        upgrade()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActionItem)) > 100
        db.session.remove()
        with db.engine.connect() as conn:
            assert _differences(conn) == []
            assert _tables(conn) == set(db.metadata.tables)
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("notification")}
            assert "ix_notification_pending" in indexes
        with db.engine.begin() as conn:  # base means no tables: empty them first
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
        downgrade(revision="base")
        with db.engine.connect() as conn:
            assert _tables(conn) == set()
        upgrade()
        with db.engine.connect() as conn:
            assert _differences(conn) == []
        db.engine.dispose()


def test_checks_exist_in_the_migrated_schema(empty_database):
    """compare_metadata does not look at CHECK constraints; ask the database itself."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in db.metadata.sorted_tables:
                expected = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
                found = {c["name"] for c in inspector.get_check_constraints(table.name)}
                assert expected <= found, table.name
        db.engine.dispose()
