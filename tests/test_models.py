"""Rules the schema holds: checks, unique keys, foreign keys, the version counter, history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Notification, Office, User


def _raw_update(table: str, sql_set: str, row_id: int) -> None:
    db.session.execute(sa.text(f"UPDATE {table} SET {sql_set} WHERE id = :id"), {"id": row_id})
    db.session.flush()


@pytest.mark.parametrize(
    ("table", "sql_set"),
    [
        ("action_item", "progress = 150"),
        ("action_item", "progress = -1"),
        ("action_item", "status = 'done'"),
        ("action_item", "office_id = 999999"),
        ("action_item", "owner_id = 999999"),
        ("user_account", "role = 'boss'"),
        ("user_account", "email = 'UPPER@EXAMPLE.TEST'"),
        ("user_account", "office_id = NULL"),  # a focal point without an office
        ("office", "code = 'sg'"),
    ],
)
def test_database_refuses_bad_values(app, world, table, sql_set):
    row_id = {
        "action_item": world.items["SG"],
        "user_account": world.user_ids["focal_sg"],
        "office": world.offices["SG"],
    }[table]
    with app.app_context(), pytest.raises(IntegrityError):
        _raw_update(table, sql_set, row_id)


def test_reviewer_with_an_office_is_refused(app, world):
    with app.app_context(), pytest.raises(IntegrityError):
        _raw_update("user_account", f"office_id = {world.offices['SG']}", world.user_ids["reviewer"])


def test_email_is_unique_whatever_the_case(app, world):
    with app.app_context():
        db.session.add(User(email="FOCAL.SG@example.test", name="Twin", role="manager"))
        with pytest.raises(IntegrityError):
            db.session.flush()


def test_one_response_per_office_and_recommendation(app, world):
    from tracker.models import OfficeResponse

    with app.app_context():
        for _ in range(2):
            db.session.add(
                OfficeResponse(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["SG"],
                    response="accepted",
                )
            )
        with pytest.raises(IntegrityError):
            db.session.flush()


def test_python_side_validation(app, world):
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        with pytest.raises(ValueError):
            item.status = "done"
        with pytest.raises(ValueError):
            db.session.get(User, world.user_ids["admin"]).role = "boss"
        with pytest.raises(Exception, match="No time zone"):
            db.session.get(Office, world.offices["SG"]).timezone = "Mars/Olympus"


def test_version_counter_refuses_a_lost_update(app, world):
    """Two sessions load version 1; the second save finds the row moved on and fails."""
    with app.app_context():
        engine = db.engine
    with sa.orm.Session(engine) as first, sa.orm.Session(engine) as second:
        a = first.get(ActionItem, world.items["SG"])
        b = second.get(ActionItem, world.items["SG"])
        assert a.version == b.version == 1
        a.progress = 40
        first.commit()
        assert a.version == 2
        b.progress = 60
        with pytest.raises(StaleDataError):
            second.commit()
    with app.app_context():
        assert db.session.get(ActionItem, world.items["SG"]).progress == 40


def test_history_is_never_edited(app, world):
    with app.app_context():
        update = db.session.scalars(sa.select(ActionUpdate)).first()
        update.note = "rewritten"
        with pytest.raises(ValueError, match="never edited"):
            db.session.flush()


def test_timestamps_are_utc_aware_on_every_backend(app, world):
    with app.app_context():
        user = db.session.get(User, world.user_ids["admin"])
        user.last_login_at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
        db.session.commit()
        db.session.expire_all()
        stored = db.session.get(User, world.user_ids["admin"]).last_login_at
        assert stored == datetime(2026, 11, 24, 9, 30, tzinfo=UTC) and stored.tzinfo is UTC
        with pytest.raises(sa.exc.StatementError):
            user.last_login_at = datetime(2026, 11, 24, 9, 30)
            db.session.flush()


def test_outbox_idempotency_key_is_unique(app, world):
    with app.app_context():
        for _ in range(2):
            db.session.add(
                Notification(
                    kind="overdue",
                    to_address="a@example.test",
                    idempotency_key="overdue:user1:2026-11-24",
                    subject="s",
                    body_text="t",
                    body_html="<p>t</p>",
                )
            )
        with pytest.raises(IntegrityError):
            db.session.flush()
