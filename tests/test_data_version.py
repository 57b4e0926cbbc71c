"""The data version: raised once by every committed write to programme data, on both databases,
never by reads, rolled-back work or writes to other tables; core statements say so themselves."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask import Flask

from tests.conftest import World
from tracker.extensions import db
from tracker.models import DATA_VERSION, ActionItem, DataVersion, Office, mark_data_changed


def version(app: Flask) -> int:
    """The version as another connection reads it (what a second host would see)."""
    with app.app_context(), db.engine.connect() as conn:
        return conn.scalar(sa.select(DataVersion.version).where(DataVersion.name == DATA_VERSION))


def test_a_committed_orm_write_raises_it_once(app: Flask, world: World) -> None:
    before = version(app)
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.progress = 40
        db.session.flush()  # a flush before the commit counts once, with the commit
        item.title = "Renamed"
        db.session.commit()
    assert version(app) == before + 1


def test_reads_rollbacks_and_other_tables_leave_it(app: Flask, world: World) -> None:
    before = version(app)
    with app.app_context():
        db.session.scalars(sa.select(ActionItem)).all()
        db.session.commit()  # a read-only transaction
        db.session.get(ActionItem, world.items["SG"]).progress = 70
        db.session.flush()
        db.session.rollback()  # written, then rolled back
        db.session.execute(sa.text("UPDATE user_account SET name = 'Someone' WHERE id = :id"), {"id": 1})
        db.session.commit()  # a table the figures do not read
    assert version(app) == before
    with app.app_context():
        assert db.session.get(ActionItem, world.items["SG"]).progress == 0


def test_new_and_deleted_rows_count(app: Flask, world: World) -> None:
    before = version(app)
    with app.app_context():
        db.session.add(Office(code="TH", name="Thailand", country="Thailand", timezone="Asia/Bangkok"))
        db.session.commit()
    assert version(app) == before + 1
    with app.app_context():
        db.session.delete(db.session.scalar(sa.select(Office).where(Office.code == "TH")))
        db.session.commit()
    assert version(app) == before + 2


def test_core_statements_raise_it_when_marked(app: Flask, world: World) -> None:
    before = version(app)
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(deadline=date(2027, 1, 1)))
        db.session.commit()  # not marked: the writer forgot to say so
    assert version(app) == before
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(deadline=date(2027, 2, 1)))
        mark_data_changed(db.session)
        db.session.commit()
    assert version(app) == before + 1


def test_a_page_write_raises_it(app: Flask, world: World, login_as) -> None:
    from tests.conftest import csrf_token

    before = version(app)
    client = login_as(world.users["focal_sg"])
    page = client.get(f"/actions/{world.items['SG']}")
    assert page.status_code == 200
    assert version(app) == before  # signing in and reading change nothing
    form = {"csrf_token": csrf_token(page.text), "version": "1", "status": "in_progress", "progress": "30"}
    response = client.post(f"/actions/{world.items['SG']}", data={**form, "note": "Going"})
    assert response.status_code in (302, 303), response.text[:500]
    assert version(app) == before + 1
