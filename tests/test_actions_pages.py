"""The home list and the action page: who sees what, the overdue flag, pagination, SQL count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tracker.actions.queries import overdue_clause
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Office, Recommendation, User


def _add_items(app, world, n: int, today: date) -> None:
    """n more items spread over SG and MY, each with three history rows."""
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        owners = {
            code: db.session.get(User, world.user_ids[f"focal_{code.lower()}"]) for code in ("SG", "MY")
        }
        for i in range(n):
            code = ("SG", "MY")[i % 2]
            item = ActionItem(
                recommendation=rec,
                office_id=world.offices[code],
                title=f"Bulk action {i}",
                owner=owners[code],
                deputy=owners[code],
                deadline=today + timedelta(days=i - n // 2),
                status=("not_started", "in_progress", "completed")[i % 3],
            )
            item.updates = [ActionUpdate(author=owners[code], note=f"step {k}") for k in range(3)]
            db.session.add(item)
        db.session.commit()


def test_focal_point_sees_only_their_office(world, login_as):
    page = login_as(world.users["focal_sg"]).get("/", query_string={"office": "MY"})
    assert page.status_code == 200
    assert "E-filing for SG" not in page.text  # filtered to MY, which they cannot see
    page = login_as(world.users["focal_sg"]).get("/")
    assert "E-filing for SG" in page.text and "E-filing for MY" not in page.text


@pytest.mark.parametrize("role", ["admin", "reviewer", "manager"])
def test_programme_wide_roles_see_every_office(world, login_as, role):
    page = login_as(world.users[role]).get("/")
    assert "E-filing for SG" in page.text and "E-filing for MY" in page.text


def test_office_manager_sees_their_office(world, login_as):
    page = login_as(world.users["manager_sg"]).get("/")
    assert "E-filing for SG" in page.text and "E-filing for MY" not in page.text


def test_list_shows_the_columns_and_the_overdue_flag(app, world, login_as):
    # The items' deadline is 2026-11-24: on the 25th (Singapore) it is overdue, on the 24th not.
    with time_machine.travel(datetime(2026, 11, 24, 10, tzinfo=UTC), tick=False):
        c = login_as(world.users["reviewer"])  # signed cookies must not date from the future
        page = c.get("/").text
    assert "Overdue</span>" not in page
    for header in ("Office", "Recommendation", "Action", "Owner", "Deadline", "Status"):
        assert f'<th scope="col">{header}</th>' in page
    assert "R-1" in page and "Focal Sg" in page and "Nov 24, 2026" in page and "Not started" in page
    with time_machine.travel(datetime(2026, 11, 25, 1, tzinfo=UTC), tick=False):
        c = login_as(world.users["reviewer"])  # 15 hours on, the first session has ended (idle)
        page = c.get("/").text
        overdue_only = c.get("/", query_string={"overdue": "1"}).text
    assert page.count("Overdue</span>") == 2
    assert "E-filing for SG" in overdue_only


def test_overdue_depends_on_the_office_time_zone(app, world):
    """At 2026-11-24 17:30 UTC it is already the 25th in Singapore (UTC+8), not in Colombo (UTC+5:30)."""
    now = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)
    with app.app_context():
        my = db.session.get(Office, world.offices["MY"])
        my.timezone = "Asia/Colombo"
        db.session.commit()
        items = {i.office.code: i for i in db.session.scalars(sa.select(ActionItem))}
        assert items["SG"].is_overdue(now) and not items["MY"].is_overdue(now)
        in_sql = set(
            db.session.scalars(
                sa.select(Office.code)
                .select_from(ActionItem)
                .join(ActionItem.office)
                .where(overdue_clause(now))
            )
        )
        assert in_sql == {"SG"}
        items["SG"].status = "completed"
        db.session.commit()
        assert not items["SG"].is_overdue(now)


def test_sql_and_python_overdue_agree_on_many_items(app, world):
    today = date(2026, 11, 24)
    _add_items(app, world, 40, today)
    now = datetime(2026, 11, 24, 20, tzinfo=UTC)
    with app.app_context():
        in_python = {i.id for i in db.session.scalars(sa.select(ActionItem)) if i.is_overdue(now)}
        in_sql = set(
            db.session.scalars(sa.select(ActionItem.id).join(ActionItem.office).where(overdue_clause(now)))
        )
        assert in_python == in_sql and in_python


def test_filters_and_pagination(app, world, login_as):
    app.config["TRACKER_PAGE_SIZE"] = 10
    try:
        _add_items(app, world, 25, date(2026, 11, 24))
        c = login_as(world.users["reviewer"])
        first = c.get("/").text
        assert "27 actions" in first and "Page 1 of 3" in first and 'rel="next"' in first
        last = c.get("/", query_string={"page": 3}).text
        assert "Page 3 of 3" in last and last.count("<tr") == 1 + 7
        assert c.get("/", query_string={"page": 99}).status_code == 200
        assert c.get("/", query_string={"page": "x"}).status_code == 200
        completed = c.get("/", query_string={"status": "completed", "office": "sg"}).text
        assert "4 actions" in completed
        assert c.get("/", query_string={"status": "forged"}).status_code == 200
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50


def test_action_page_shows_details_and_history(world, login_as):
    page = login_as(world.users["focal_sg"]).get(f"/actions/{world.items['SG']}")
    assert page.status_code == 200
    assert "E-filing for SG" in page.text and "Agreed" in page.text and "Reviewer" in page.text


def test_unknown_action_is_404_with_the_site_layout(world, login_as):
    page = login_as(world.users["reviewer"]).get("/actions/999999")
    assert page.status_code == 404
    assert "Not found" in page.text and "Sign out" in page.text


@pytest.mark.parametrize(
    ("path", "role"),
    [("/", "reviewer"), ("/", "focal_sg"), ("/actions/{item}", "reviewer"), ("/admin/users", "admin")],
)
def test_pages_run_a_bounded_number_of_statements(app, world, login_as, count_queries, path, role):
    """Ten times more data, the same number of SQL statements."""
    c = login_as(world.users[role])
    url = path.format(item=world.items["SG"])

    def statements() -> int:
        with count_queries() as seen:
            assert c.get(url).status_code == 200
        return len(seen)

    _add_items(app, world, 6, date(2026, 11, 24))
    small = statements()
    _add_items(app, world, 60, date(2026, 11, 24))
    with app.app_context():  # and a longer history on the item shown
        db.session.add_all(ActionUpdate(action_item_id=world.items["SG"], note=f"n{i}") for i in range(30))
        db.session.commit()
    assert statements() == small
    assert small <= 6


def test_due_soon_clause_uses_the_office_day(app, world):
    """Deadline 2026-11-24: due soon from 14 days before it, through the deadline day itself."""
    from tracker.actions.queries import due_soon_clause

    def due_soon(now: datetime) -> set[str]:
        query = sa.select(Office.code).select_from(ActionItem).join(ActionItem.office)
        return set(db.session.scalars(query.where(due_soon_clause(now, 14))))

    with app.app_context():
        assert due_soon(datetime(2026, 11, 9, 12, tzinfo=UTC)) == set()  # 15 days before
        assert due_soon(datetime(2026, 11, 10, 12, tzinfo=UTC)) == {"SG", "MY"}
        assert due_soon(datetime(2026, 11, 24, 12, tzinfo=UTC)) == {"SG", "MY"}
        assert due_soon(datetime(2026, 11, 24, 17, tzinfo=UTC)) == set()  # the 25th in SG and MY


def test_filter_by_recommendation(app, world, login_as):
    c = login_as(world.users["reviewer"])
    assert "2 actions" in c.get("/", query_string={"recommendation": "R-1"}).text
    assert "0 actions" in c.get("/", query_string={"recommendation": "R-404"}).text


def test_filter_by_theme_and_source(app, world, login_as):
    c = login_as(world.users["reviewer"])
    assert "2 actions" in c.get("/", query_string={"theme": "Digital", "source": world.source_id}).text
    assert "0 actions" in c.get("/", query_string={"theme": "Statistics"}).text
    assert "0 actions" in c.get("/", query_string={"source": world.source_id + 1}).text
    assert c.get("/", query_string={"source": "x"}).status_code == 200
