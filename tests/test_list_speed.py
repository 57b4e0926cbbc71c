"""The action lists at any size: overdue and due soon as predicates an index serves (EXPLAIN on
SQLite and PostgreSQL), right across offices whose dates differ, pages read in a flat number of
statements, open items first without sorting everything, and pages that say where they are."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from tracker.actions.queries import (
    ActionFilters,
    deadline_until,
    due_soon_clause,
    filtered_actions,
    overdue_clause,
)
from tracker.api.auth import create_token
from tracker.extensions import db
from tracker.models import CLOSED_STATUSES, ActionItem, Office, Recommendation, Status, User
from tracker.profile.calendar import create_secret

#: 11:00 UTC: 01:00 on the 25th at Kiritimati (UTC+14), the 24th in Singapore and Pago Pago
#: (UTC−11), still 23:00 on the 23rd at UTC−12: three dates at one moment.
SPLIT = datetime(2026, 11, 24, 11, tzinfo=UTC)
#: 09:00 UTC: the 24th in every office of the small world (Singapore, Kuala Lumpur).
SAME = datetime(2026, 11, 24, 9, tzinfo=UTC)
ZONES = {"KI": "Pacific/Kiritimati", "PP": "Pacific/Pago_Pago", "XW": "Etc/GMT+12", "LK": "Asia/Colombo"}
# Statuses of the plan (a proposal is not in it yet): the cycle the data is made of.
STATUSES = [s.value for s in Status if s != Status.PROPOSED]


def office_today(now: datetime) -> sa.ColumnElement[date]:
    """The per-row form the lists used before: today in the office's zone, chosen by a CASE on
    Office.timezone (needs Office joined). The reference the indexable predicates must agree with,
    and the form the EXPLAIN check must refuse."""
    zones = sorted(set(db.session.scalars(sa.select(Office.timezone))))
    return sa.case({zone: now.astimezone(ZoneInfo(zone)).date() for zone in zones}, value=Office.timezone)


def _offices_across_the_date_line(app, world) -> dict[str, int]:
    """Four more offices, in zones whose dates differ from Singapore's at SPLIT."""
    with app.app_context():
        offices = {}
        for code, zone in ZONES.items():
            office = Office(code=code, name=f"Office {code}", country=code, timezone=zone)
            db.session.add(office)
            offices[code] = office
        db.session.commit()
        return {**world.offices, **{code: o.id for code, o in offices.items()}}


def _items(app, world, office_ids: dict[str, int], around: date, per_office: int) -> None:
    """``per_office`` items in each office: deadlines from 4 days before ``around`` to some after,
    every status in turn, owned by the reviewer (who sees every office)."""
    with app.app_context():
        owner = world.user_ids["focal_sg"]
        rows = [
            {
                "recommendation_id": world.recommendation_id,
                "office_id": office_id,
                "title": f"{code} {i}",
                "owner_id": owner,
                "deadline": around + timedelta(days=i % 9 - 4),
                "agreed_deadline": around,
                "status": STATUSES[i % len(STATUSES)],
            }
            for code, office_id in office_ids.items()
            for i in range(per_office)
        ]
        db.session.execute(sa.insert(ActionItem), rows)
        db.session.commit()


def _ids(query: sa.Select) -> set[int]:
    return set(db.session.scalars(sa.select(ActionItem.id).where(ActionItem.id.in_(query))))


# --- right answers across time zones -----------------------------------------------------------


@pytest.mark.parametrize("moment", [SPLIT, SPLIT + timedelta(hours=12), SAME])
def test_overdue_and_due_soon_agree_with_the_item_in_every_zone(app, world, moment):
    """At a real moment when the offices' dates differ (or not), the SQL and ActionItem.is_overdue
    say the same of every item; due soon likewise; neither needs the office joined."""
    offices = _offices_across_the_date_line(app, world)
    _items(app, world, offices, moment.date(), 36)
    with app.app_context():
        dates = {o.code: o.today(moment) for o in db.session.scalars(sa.select(Office))}
        if moment == SPLIT:
            assert len(set(dates.values())) == 3  # the test means what it says
        items = list(db.session.scalars(sa.select(ActionItem)))
        overdue = {i.id for i in items if i.is_overdue(moment)}
        soon = {
            i.id
            for i in items
            if i.status not in CLOSED_STATUSES
            and i.office.today(moment) <= i.deadline <= i.office.today(moment) + timedelta(days=3)
        }
        clause = overdue_clause(moment)
        assert "CASE" not in str(clause) and "office." not in str(clause)
        in_sql = set(db.session.scalars(sa.select(ActionItem.id).where(clause)))
        assert in_sql == overdue and overdue and overdue != {i.id for i in items}
        not_overdue = set(db.session.scalars(sa.select(ActionItem.id).where(sa.not_(clause))))
        assert not_overdue == {i.id for i in items} - overdue
        assert set(db.session.scalars(sa.select(ActionItem.id).where(due_soon_clause(moment, 3)))) == soon
        assert soon
        until = {i.id for i in items if i.deadline <= i.office.today(moment) + timedelta(days=2)}
        assert set(db.session.scalars(sa.select(ActionItem.id).where(deadline_until(moment, 2)))) == until
        # The per-row form the lists no longer use (kept for callers that join Office) agrees.
        per_row = sa.select(ActionItem.id).join(ActionItem.office)
        per_row = per_row.where(ActionItem.status.not_in([s.value for s in CLOSED_STATUSES]))
        assert set(db.session.scalars(per_row.where(ActionItem.deadline < office_today(moment)))) == overdue


def test_the_overdue_pages_list_exactly_the_overdue_items(app, world, login_as):
    """The HTML list and the API, at SPLIT: every overdue item, in deadline order, and nothing else."""
    offices = _offices_across_the_date_line(app, world)
    _items(app, world, offices, SPLIT.date(), 20)
    with app.app_context():
        items = list(db.session.scalars(sa.select(ActionItem)))
        expected = sorted((i.deadline, i.id) for i in items if i.is_overdue(SPLIT))
        reviewer = db.session.scalar(sa.select(User).where(User.email == world.users["reviewer"]))
    app.config["TRACKER_PAGE_SIZE"] = 100
    try:
        with time_machine.travel(SPLIT, tick=False):
            with app.app_context():
                _row, secret = create_token(reviewer, "list", SPLIT)
                db.session.commit()
            c = login_as(world.users["reviewer"])
            page = c.get("/", query_string={"overdue": "1"}).text
            body = c.get(
                "/api/v1/actions?overdue=true&per_page=100", headers={"Authorization": f"Bearer {secret}"}
            ).get_json()
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50
    listed = [int(n) for n in re.findall(r'href="/actions/(\d+)"', page)]
    assert listed == [item_id for _deadline, item_id in expected]
    assert f"{len(expected)} actions" in page
    assert [i["id"] for i in body["items"]] == listed and body["total"] == len(expected)
    assert all(i["overdue"] for i in body["items"])


# --- EXPLAIN: an index serves the deadline predicate ------------------------------------------------


def _statements(app, client, url: str, headers: dict | None = None) -> list[tuple[str, object]]:
    """The SQL (with parameters) that one request runs."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get(url, headers=headers or {}).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def _deadline_served_by_an_index(statement: str, parameters: object) -> bool:
    """Whether the plan reads action_item through an index that takes the deadline comparison as a
    condition of the index (a seek), not as a filter applied to every row."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        return any(
            re.search(r"SEARCH action_item USING (COVERING )?INDEX \w+ \([^)]*deadline[<>]", p) for p in plan
        )
    # PostgreSQL: on a few rows a sequential scan is cheapest; forbid it, so that the plan shows
    # which index the planner can use for the predicate (it cannot seek a per-row CASE).
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    (plan,) = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).one()
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def nodes(node: dict):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    def on_action_item(node: dict) -> bool:
        # A bitmap index scan names its index only (its heap scan above it names the table).
        return node.get("Relation Name") == "action_item" or node.get("Index Name", "").startswith(
            "ix_action_item_"
        )

    # The deadline compared with a constant date: a nested loop over offices can also feed a
    # per-row CASE into an index condition, one office at a time; that is not the seek meant here.
    seek = re.compile(r"deadline < '\d{4}-\d{2}-\d{2}'::date")
    return any(
        on_action_item(node) and seek.search(node.get("Index Cond", "")) for node in nodes(plan[0]["Plan"])
    )


@pytest.mark.parametrize("moment", [SAME, SPLIT], ids=["one-date", "three-dates"])
def test_explain_shows_an_index_for_the_overdue_list(app, world, login_as, moment):
    """The count and the page of the overdue list (HTML and API) seek the deadline in an index on
    action_item, on both databases; the per-row form of old does not (so the check means it)."""
    offices = _offices_across_the_date_line(app, world) if moment == SPLIT else world.offices
    _items(app, world, offices, moment.date(), 40)
    with time_machine.travel(moment, tick=False):
        with app.app_context():
            reviewer = db.session.scalar(sa.select(User).where(User.email == world.users["reviewer"]))
            _row, secret = create_token(reviewer, "explain", moment)
            db.session.commit()
        c = login_as(world.users["reviewer"])
        html = _statements(app, c, "/?overdue=1")
        api = _statements(app, c, "/api/v1/actions?overdue=true", {"Authorization": f"Bearer {secret}"})
    for name, seen in (("HTML", html), ("API", api)):
        listing = [(s, p) for s, p in seen if "FROM action_item" in s and ("count(*)" in s or "LIMIT" in s)]
        assert len(listing) == 2, (name, [s for s, _ in seen])  # the count, then the page
        with app.app_context():
            for statement, parameters in listing:
                assert _deadline_served_by_an_index(statement, parameters), (name, statement)
            db.session.rollback()
    with app.app_context():
        per_row = (
            sa.select(sa.func.count())
            .select_from(ActionItem)
            .join(ActionItem.office)
            .where(ActionItem.status.in_(["blocked", "in_progress", "not_started"]))
            .where(ActionItem.deadline < office_today(moment))
        )
        compiled = per_row.compile(db.engine, compile_kwargs={"render_postcompile": True})
        parameters = compiled.positiontup and tuple(compiled.params[k] for k in compiled.positiontup)
        assert not _deadline_served_by_an_index(str(compiled), parameters or compiled.params)
        db.session.rollback()


# --- flat statement counts, honest pages -------------------------------------------------------------


LISTS = [
    ("/?overdue=1", "reviewer"),
    ("/", "reviewer"),
    ("/?page=8", "reviewer"),  # where open items end and closed ones begin (90 items, 50 open)
    ("/?page=99", "reviewer"),  # past the end: the last page
    ("/?overdue=1", "focal_sg"),
    ("/my", "focal_sg"),
    ("/my", "manager"),
    ("/api/v1/actions?overdue=true&per_page=100", "reviewer"),
    ("/api/v1/actions?per_page=7&page=2", "reviewer"),  # where they meet among 18 items, 8 open
    ("calendar", "focal_sg"),
]


@pytest.mark.parametrize(("url", "label"), LISTS)
def test_the_lists_take_as_many_statements_at_any_size(app, world, login_as, url, label):
    """Ten times the items, the same number of SQL statements, for each list and each page."""
    app.config["TRACKER_PAGE_SIZE"] = 7
    try:
        with time_machine.travel(SAME, tick=False):
            c = login_as(world.users[label])
            with app.app_context():
                user = db.session.scalar(sa.select(User).where(User.email == world.users[label]))
                _row, secret = create_token(user, "count", SAME)
                feed = f"/calendar/{create_secret(user)}.ics"
                db.session.commit()
            target = feed if url == "calendar" else url
            headers = {"Authorization": f"Bearer {secret}"} if url.startswith("/api") else {}
            assert c.get(target, headers=headers).status_code == 200  # a token's first use is recorded
            counts = []
            for per_office in (4, 40):
                _items(app, world, world.offices, SAME.date(), per_office)
                counts.append(len(_statements(app, c, target, headers)))
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50
    assert counts[0] == counts[1], counts
    # A focal point's My work also counts their office's indicator values due (one statement).
    assert counts[1] <= (8 if (url, label) == ("/my", "focal_sg") else 7)


def test_pages_of_open_first_are_the_sorted_list_cut_in_pieces(app, world, api_client):
    """Every page of the unfiltered list, through the API, is the slice of the one ordering (open
    items first, then by deadline and id), including the page where open and closed items meet."""
    _items(app, world, world.offices, SAME.date(), 23)  # 48 items: 26 open, 22 closed
    with app.app_context():
        reviewer = db.session.scalar(sa.select(User).where(User.email == world.users["reviewer"]))
        ordered = [i.id for i in db.session.scalars(filtered_actions(reviewer, SAME, ActionFilters()))]
        open_ = sum(1 for i in db.session.scalars(sa.select(ActionItem)) if i.status not in CLOSED_STATUSES)
    assert 0 < open_ < len(ordered) and open_ % 7  # the page of 7 where they meet holds both
    get = api_client("reviewer")
    pages = [get(f"/api/v1/actions?per_page=7&page={n}") for n in range(1, 9)]
    assert [i["id"] for p in pages for i in p["items"]] == ordered
    assert {p["total"] for p in pages} == {len(ordered)}
    assert pages[-1]["items"] == [] and pages[-1]["page"] == 8  # past the end: empty, as before
    closed = get("/api/v1/actions?per_page=7&status=verified")
    assert [i["status"] for i in closed["items"]] == ["verified"] * len(closed["items"])
    assert [i["deadline"] for i in closed["items"]] == sorted(i["deadline"] for i in closed["items"])


def test_the_html_list_says_where_you_are(app, world, login_as):
    """The count and "Page n of m" stay; a page past the end shows the last one."""
    _items(app, world, world.offices, SAME.date(), 23)
    app.config["TRACKER_PAGE_SIZE"] = 10
    try:
        with time_machine.travel(SAME, tick=False):
            c = login_as(world.users["reviewer"])
            first, beyond = c.get("/").text, c.get("/?page=99").text
            overdue = c.get("/?overdue=1&page=2").text
    finally:
        app.config["TRACKER_PAGE_SIZE"] = 50
    assert "48 actions" in first and "Page 1 of 5" in first and 'rel="next"' in first
    assert "Page 5 of 5" in beyond and beyond.count('href="/actions/') == 8
    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).select_from(ActionItem).where(overdue_clause(SAME))
        )
    assert f"{count} actions" in overdue and "Page 2 of" in overdue


@pytest.fixture
def api_client(app, world):
    """Factory: a function GETting an API URL as the user with this label, returning the JSON."""

    def make(label: str):
        client = app.test_client()
        with app.app_context():
            user = db.session.get(User, world.user_ids[label])
            _row, secret = create_token(user, "pages", datetime.now(UTC))
            db.session.commit()

        def get(url: str):
            with time_machine.travel(SAME, tick=False):
                response = client.get(url, headers={"Authorization": f"Bearer {secret}"})
            assert response.status_code == 200, response.get_json()
            return response.get_json()

        return get

    return make


def test_lists_filter_by_recommendation_without_joining_it(app, world, login_as):
    """The recommendation, source and theme filters (subqueries now) keep their meaning."""
    with app.app_context():
        other = Recommendation(source_id=world.source_id, code="R-2", title="Other", text="t", theme="Stats")
        db.session.add(other)
        db.session.commit()
    _items(app, world, world.offices, SAME.date(), 3)
    c = login_as(world.users["reviewer"])
    assert "8 actions" in c.get("/", query_string={"recommendation": "R-1", "theme": "Digital"}).text
    assert "0 actions" in c.get("/", query_string={"recommendation": "R-2"}).text
    assert "0 actions" in c.get("/", query_string={"recommendation": "R-1", "theme": "Stats"}).text
