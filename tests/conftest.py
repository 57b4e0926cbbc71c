"""Fixtures: the app on SQLite (always) and PostgreSQL (when TEST_DATABASE_URL is set), clients,
sign-in, and factories that build a small world of offices, people and action items.

No fixture keeps an application context pushed while a test makes requests: Flask would share
it (and `g`, and the database session) with every request, which hides real bugs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

os.environ["TRACKER_CONFIG"] = "testing"

from tests.mailserver import silent_server, smtp_server  # noqa: F401
from tracker import create_app
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    Office,
    Recommendation,
    Source,
    User,
)

PASSWORD = "correct-horse-battery"
# scrypt is slow on purpose: hash the test password once per run, not once per user.
PASSWORD_HASH = generate_password_hash(PASSWORD, method="scrypt")

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database per backend for the whole session; tables are emptied after each test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tracker-test.db'}"
    return os.environ["TEST_DATABASE_URL"]


@pytest.fixture(scope="session")
def _session_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "TRACKER_UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        }
    )
    with app.app_context():
        db.drop_all()
        db.create_all()
        stamp_head()  # /readyz reads it
    yield app
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def stamp_head() -> None:
    """Mark the database made by create_all as at the migrations' head (as `flask db stamp head` does)."""
    from tracker import ROOT
    from tracker.ops.readiness import code_heads

    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        for head in code_heads(str(ROOT / "migrations")):
            conn.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": head})


@pytest.fixture
def app(_session_app: Flask) -> Iterator[Flask]:
    """The application, with every table emptied when the test ends."""
    yield _session_app
    with _session_app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                if table.name != "data_version":  # its one row lives as long as the database
                    conn.execute(table.delete())
            # Emptied by core statements: raise the data version, so no cache serves the old data.
            raised = conn.execute(sa.text("UPDATE data_version SET version = version + 1"))
            if not raised.rowcount:  # a test emptied it too: the app needs its one row
                conn.execute(sa.text("INSERT INTO data_version (name, version) VALUES ('programme', 1)"))
    # The past quarters' rates are kept by a fingerprint of the data, not its version: the next
    # test's data may have the same one (tracker/dashboard/history.py).
    _session_app.extensions.pop("rate_history_past", None)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like client without a signed-in user."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """The `flask` command-line runner."""
    return app.test_cli_runner()


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str):
    """Sign in through the real form (with its CSRF token); returns the response."""
    page = client.get("/auth/login")
    data = {"email": email, "password": password, "csrf_token": csrf_token(page.text)}
    data.update(extra)
    return client.post("/auth/login", data=data)


@pytest.fixture
def login_as(app: Flask) -> Callable[[str], FlaskClient]:
    """Factory: a new client signed in as the user with this email."""

    def make(email: str, password: str = PASSWORD) -> FlaskClient:
        c = app.test_client()
        response = login(c, email, password)
        assert response.status_code == 302, f"sign-in of {email} failed"
        return c

    return make


@dataclass
class World:
    """Ids and emails of a small programme: offices SG and MY, one of each role, items for both."""

    offices: dict[str, int] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # label → email
    user_ids: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)  # office code → an item id
    files: dict[str, int] = field(default_factory=dict)  # office code → an evidence file id
    extensions: dict[str, int] = field(default_factory=dict)  # office code → an extension request id
    recommendation_id: int = 0
    source_id: int = 0


def build_world(today: date) -> World:
    """Create the small programme in the current app context and commit it."""
    world = World()
    sg = Office(code="SG", name="IP Office of Singapore", country="Singapore", timezone="Asia/Singapore")
    my = Office(
        code="MY", name="IP Corporation of Malaysia", country="Malaysia", timezone="Asia/Kuala_Lumpur"
    )
    db.session.add_all([sg, my])
    people = {
        "admin": ("admin@example.test", "admin", None),
        "reviewer": ("reviewer@example.test", "reviewer", None),
        "manager": ("manager@example.test", "manager", None),
        "manager_sg": ("manager.sg@example.test", "manager", sg),
        "focal_sg": ("focal.sg@example.test", "focal_point", sg),
        "focal_my": ("focal.my@example.test", "focal_point", my),
        "inactive_sg": ("gone.sg@example.test", "focal_point", sg),
    }
    users = {}
    for label, (email, role, office) in people.items():
        user = User(email=email, name=label.replace("_", " ").title(), role=role, office=office)
        user.password_hash = PASSWORD_HASH
        user.active = label != "inactive_sg"
        users[label] = user
        db.session.add(user)
    source = Source(title="Dialogue", place="Singapore")
    rec = Recommendation(source=source, code="R-1", title="Go digital", text="Text", theme="Digital")
    db.session.add(rec)
    items = {}
    for code, office, owner in (("SG", sg, users["focal_sg"]), ("MY", my, users["focal_my"])):
        item = ActionItem(
            recommendation=rec, office=office, title=f"E-filing for {code}", owner=owner, deadline=today
        )
        item.updates = [ActionUpdate(author=users["reviewer"], new_status="not_started", note="Agreed")]
        items[code] = item
        db.session.add(item)
    db.session.commit()
    world.offices = {"SG": sg.id, "MY": my.id}
    world.users = {label: u.email for label, u in users.items()}
    world.user_ids = {label: u.id for label, u in users.items()}
    world.items = {code: item.id for code, item in items.items()}
    world.recommendation_id = rec.id
    world.source_id = source.id
    return world


@pytest.fixture
def world(app: Flask) -> World:
    """The small programme, committed."""
    with app.app_context():
        return build_world(date(2026, 11, 24))


@dataclass
class Indicators:
    """Ids of the indicators fixture: indicator code → id, and measurement label → id."""

    indicators: dict[str, int] = field(default_factory=dict)
    measurements: dict[str, int] = field(default_factory=dict)


def build_indicators(world: World) -> Indicators:
    """Three indicators with SG's and MY's baselines and targets, and values of 2026Q2–Q3 (the world's
    today is 2026-11-24, so 2026Q3 is the last quarter that has ended):

    - ONLINE (percent, higher is better): SG 60 validated (Q2), 65 reported (Q3); MY 40 validated (Q2),
      nothing for Q3.
    - EXAM (months, lower is better): SG 20 validated (Q3); MY 30 sent back (Q3).
    - GUIDE (yes/no): no values.
    """
    from datetime import UTC, datetime

    from tracker.indicators.models import Indicator, IndicatorTarget, Measurement, MeasurementChange

    found = Indicators()
    reviewer = db.session.get(User, world.user_ids["reviewer"])
    focal = {"SG": world.user_ids["focal_sg"], "MY": world.user_ids["focal_my"]}
    specs = {
        "ONLINE": ("Applications filed online", "percent", "higher"),
        "EXAM": ("Months to first examination action", "months", "lower"),
        "GUIDE": ("Examination guidelines published online", "yes_no", "higher"),
    }
    made = {}
    for code, (name, unit, direction) in specs.items():
        made[code] = Indicator(code=code, name=name, unit=unit, direction=direction, definition=f"{name}.")
    db.session.add_all(made.values())
    goals = {
        ("ONLINE", "SG"): (50, "2025Q4", 90, "2027Q4"),
        ("ONLINE", "MY"): (30, "2025Q4", 80, "2027Q4"),
        ("EXAM", "SG"): (24, "2025Q4", 12, "2027Q4"),
        ("EXAM", "MY"): (36, "2025Q4", 18, "2027Q4"),
        ("GUIDE", "SG"): (0, "2025Q4", 1, "2026Q4"),
    }
    for (code, office), (bv, bp, tv, tp) in goals.items():
        db.session.add(
            IndicatorTarget(
                indicator=made[code],
                office_id=world.offices[office],
                baseline_value=bv,
                baseline_period=bp,
                target_value=tv,
                target_period=tp,
            )
        )
    at = datetime(2026, 10, 10, 3, tzinfo=UTC)
    values = {
        "online_sg_q2": ("ONLINE", "SG", "2026Q2", 60, "validated"),
        "online_sg_q3": ("ONLINE", "SG", "2026Q3", 65, "reported"),
        "online_my_q2": ("ONLINE", "MY", "2026Q2", 40, "validated"),
        "exam_sg_q3": ("EXAM", "SG", "2026Q3", 20, "validated"),
        "exam_my_q3": ("EXAM", "MY", "2026Q3", 30, "sent_back"),
    }
    rows = {}
    for label, (code, office, period, value, state) in values.items():
        reviewed = state != "reported"
        m = Measurement(
            indicator=made[code],
            office_id=world.offices[office],
            period=period,
            value=value,
            state=state,
            reported_by_id=focal[office],
            reported_at=at,
            reviewed_by=reviewer if reviewed else None,
            reviewed_at=at if reviewed else None,
            review_note="Check the source" if state == "sent_back" else None,
        )
        m.changes = [
            MeasurementChange(
                author_id=focal[office],
                created_at=at,
                event="reported",
                new_value=value,
                new_state="reported",
            )
        ]
        if reviewed:
            m.changes.append(
                MeasurementChange(
                    author=reviewer,
                    created_at=at,
                    event=state,
                    old_value=value,
                    new_value=value,
                    old_state="reported",
                    new_state=state,
                    note=m.review_note,
                )
            )
        rows[label] = m
        db.session.add(m)
    db.session.commit()
    found.indicators = {code: i.id for code, i in made.items()}
    found.measurements = {label: m.id for label, m in rows.items()}
    return found


@pytest.fixture
def indicators(app: Flask, world: World) -> Indicators:
    """Three indicators, baselines, targets and a few values of SG and MY (see build_indicators)."""
    with app.app_context():
        return build_indicators(world)


@pytest.fixture
def mail_settings(app: Flask) -> Iterator[Callable[..., None]]:
    """Change app settings for one test (``mail_settings(MAIL_TIMEOUT=1)``) and restore them afterwards."""
    saved: dict[str, object] = {}

    def set_(**settings: object) -> None:
        for key in settings:
            saved.setdefault(key, app.config.get(key))
        app.config.update(settings)

    yield set_
    app.config.update(saved)


@pytest.fixture
def count_queries(app: Flask):
    """Context manager factory counting the SQL statements the app runs inside it."""
    from contextlib import contextmanager

    @contextmanager
    def counting() -> Iterator[list[str]]:
        statements: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)

    return counting
