"""`flask tracker seed-demo` and `flask tracker create-user`, and what the demo shows."""

from __future__ import annotations

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Office, OfficeResponse, Recommendation, User

CODES = {"BD", "BN", "KH", "ID", "MY", "MN", "PH", "LA", "SG", "LK", "TH", "VN"}


def _counts(app) -> dict[str, int]:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Office, User, Recommendation, OfficeResponse, ActionItem, ActionUpdate)
        }


def test_seed_demo_loads_the_programme_once(app, runner):
    result = runner.invoke(args=["tracker", "seed-demo", "--password", "a-demo-password"])
    assert result.exit_code == 0, result.output
    assert "focal.sg@demo.test" in result.output and "a-demo-password" in result.output
    first = _counts(app)
    assert first["Office"] == 12 and 8 <= first["Recommendation"] <= 10
    assert first["ActionItem"] >= 12 * first["Recommendation"]
    assert first["ActionUpdate"] > first["ActionItem"]

    again = runner.invoke(args=["tracker", "seed-demo"])
    assert again.exit_code == 0
    assert _counts(app) == first
    skipped = runner.invoke(args=["tracker", "seed-demo", "--if-empty"])
    assert "already has data" in skipped.output

    with app.app_context():
        offices = {o.code: o.timezone for o in db.session.scalars(sa.select(Office))}
        assert set(offices) == CODES
        assert offices["LK"] == "Asia/Colombo" and offices["MN"] == "Asia/Ulaanbaatar"
        emails = set(db.session.scalars(sa.select(User.email)))
        assert {
            "admin@demo.test",
            "reviewer@demo.test",
            "manager@demo.test",
            "manager.sg@demo.test",
        } <= emails
        assert {f"focal.{c.lower()}@demo.test" for c in CODES} <= emails
        # Offices with and without a manager of their own; extension requests waiting and approved.
        from tracker.models import ExtensionRequest

        managed = set(
            db.session.scalars(
                sa.select(Office.code).join(User, User.office_id == Office.id).where(User.role == "manager")
            )
        )
        assert managed == {"SG", "MY", "TH"}
        states = sorted(db.session.scalars(sa.select(ExtensionRequest.state)))
        assert states == ["approved", "approved", "pending", "pending", "pending", "rejected"]
        slipped = db.session.scalars(
            sa.select(ActionItem).where(ActionItem.deadline > ActionItem.agreed_deadline)
        ).all()
        assert len(slipped) == 2
        # Every office has overdue, due-soon and completed work, whenever the demo is loaded.
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        for office in db.session.scalars(sa.select(Office)):
            items = db.session.scalars(sa.select(ActionItem).where(ActionItem.office_id == office.id)).all()
            today = office.today(now)
            assert any(i.is_overdue(now) for i in items), office.code
            assert any(
                i.status not in ("completed", "verified")
                and today <= i.deadline <= today + timedelta(days=14)
                for i in items
            ), office.code
            assert any(i.status in ("completed", "verified") for i in items), office.code
        # History reads in order and lies in the past.
        for item in db.session.scalars(sa.select(ActionItem)):
            times = [u.created_at for u in reversed(item.updates)]
            assert times == sorted(times) and times[-1] <= now


def test_demo_accounts_see_what_the_issue_promises(app, runner, client):
    from tests.conftest import login

    runner.invoke(args=["tracker", "seed-demo", "--password", "a-demo-password"])
    assert login(client, "focal.sg@demo.test", "a-demo-password").status_code == 302
    page = client.get("/", query_string={"overdue": ""}).text
    codes_in_rows = {code for code in CODES if f'data-label="Office">{code}<' in page}
    assert codes_in_rows == {"SG"}
    reviewer = app.test_client()
    login(reviewer, "reviewer@demo.test", "a-demo-password")
    page = reviewer.get("/").text
    assert 'name="office"' in page
    assert all(f'<option value="{code}"' in page for code in CODES)
    total = _counts(app)["ActionItem"]
    assert f"{total} actions" in page
    for code in CODES:  # each office's items are listed for the reviewer
        assert f'data-label="Office">{code}<' in reviewer.get("/", query_string={"office": code}).text


def test_create_user(app, runner):
    runner.invoke(args=["tracker", "seed-demo"])
    result = runner.invoke(
        args=[
            "tracker",
            "create-user",
            "New.Person@Example.test",
            "--role",
            "focal_point",
            "--office",
            "sg",
            "--password",
            "long-enough-pw",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created new.person@example.test (focal_point, SG)" in result.output
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "new.person@example.test"))
        assert user.office.code == "SG" and user.check_password("long-enough-pw")


def test_create_user_prompts_for_the_password(app, runner):
    result = runner.invoke(
        args=["tracker", "create-user", "rev@example.test", "--role", "reviewer"],
        input="prompted-password\nprompted-password\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "rev@example.test"))
        assert user.check_password("prompted-password")


def test_create_user_refusals_write_nothing(app, runner):
    runner.invoke(args=["tracker", "seed-demo"])
    before = _counts(app)
    cases = [
        (["FOCAL.SG@demo.test", "--role", "reviewer"], "already exists"),
        (["x@example.test", "--role", "focal_point"], "needs an office"),
        (["x@example.test", "--role", "focal_point", "--office", "ZZ"], "unknown office code"),
        (["x@example.test", "--role", "reviewer", "--office", "SG"], "has no office"),
        (["not-an-email", "--role", "reviewer"], "not a valid email"),
        (["x@example.test", "--role", "reviewer", "--password", "short"], "at least 10"),
    ]
    for args, message in cases:
        extra = [] if "--password" in args else ["--password", "long-enough-pw"]
        result = runner.invoke(args=["tracker", "create-user", *args, *extra])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    bad_role = runner.invoke(
        args=["tracker", "create-user", "x@example.test", "--role", "boss", "--password", "x" * 12]
    )
    assert bad_role.exit_code == 2 and "boss" in bad_role.output
    assert _counts(app) == before
