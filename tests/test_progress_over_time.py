"""The completion rate over time: reconstructed from the history in one grouped statement, equal to
an item-by-item computation; drawn as one line per office with the same figures in a table; a
focal point sees no other office's line; the same statements whatever the data's size."""

from __future__ import annotations

import html
import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask_babel import format_percent

from tracker.dashboard import charts
from tracker.dashboard.history import (
    Line,
    Point,
    RatesOverTime,
    load_rate_history,
    past_quarters,
    quarter_end,
)
from tracker.extensions import db
from tracker.models import (
    DONE_STATUSES,
    UNCOUNTED_STATUSES,
    ActionItem,
    ActionUpdate,
    Office,
    Recommendation,
    User,
    mark_data_changed,
)

#: 18:00 in Singapore: the fourth quarter of 2026; the past quarters run from Q4 2024 to Q3 2026.
NOW = datetime(2026, 11, 24, 10, tzinfo=UTC)
QUARTERS = past_quarters(NOW.date())
SVG = "{http://www.w3.org/2000/svg}"


def _at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@dataclass(frozen=True)
class Move:
    """A history row: when, and the status it records (old → new; old None for a creation row)."""

    at: datetime
    new: str
    old: str | None = None


def _item(rec, office: Office, owner: User, title: str, created: datetime, status: str, moves: list[Move]):
    item = ActionItem(
        recommendation=rec,
        office=office,
        owner=owner,
        title=title,
        deadline=NOW.date() + timedelta(days=30),
        status=status,
        created_at=created,
    )
    # Rows that carry no status (a progress note) must change nothing.
    item.updates = [ActionUpdate(created_at=m.at, old_status=m.old, new_status=m.new) for m in moves] + [
        ActionUpdate(created_at=created + timedelta(days=3), new_progress=10, note="Progress only")
    ]
    db.session.add(item)
    return item


@pytest.fixture
def history(app, world):
    """Items of SG, MY and a third office, CO, completed, verified, sent back, reopened, cancelled,
    proposed and accepted across the quarters; one on an archived recommendation."""
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        archived = Recommendation(
            source=rec.source, code="R-0", title="Old", text="T", theme="Digital", archived_at=NOW
        )
        co = Office(code="CO", name="SIC Colombia", country="Colombia", timezone="America/Bogota")
        db.session.add_all([archived, co])
        sg, my = (db.session.get(Office, world.offices[c]) for c in ("SG", "MY"))
        focal_sg, focal_my = (db.session.get(User, world.user_ids[k]) for k in ("focal_sg", "focal_my"))
        created = "not_started"
        # Completed, then verified.
        _item(rec, sg, focal_sg, "Verified", _at(2024, 10, 5), "verified", [
            Move(_at(2024, 10, 5), created),
            Move(_at(2025, 2, 1), "in_progress", created),
            Move(_at(2025, 5, 10), "completed", "in_progress"),
            Move(_at(2025, 8, 1), "verified", "completed"),
        ])  # fmt: skip
        # Completed, sent back, completed again in the last second of a quarter.
        _item(rec, sg, focal_sg, "Sent back", _at(2025, 1, 15), "completed", [
            Move(_at(2025, 1, 15), created),
            Move(_at(2025, 3, 1), "completed", created),
            Move(_at(2025, 4, 2), "in_progress", "completed"),
            Move(datetime(2025, 9, 30, 23, 59, 59, tzinfo=UTC), "completed", "in_progress"),
        ])  # fmt: skip
        # Verified, then reopened.
        _item(rec, sg, focal_sg, "Reopened", _at(2025, 3, 1), "in_progress", [
            Move(_at(2025, 3, 1), created),
            Move(_at(2025, 6, 1), "verified", created),
            Move(_at(2026, 2, 1), "in_progress", "verified"),
        ])  # fmt: skip
        # Cancelled: counted until then, never after.
        _item(rec, sg, focal_sg, "Cancelled", _at(2025, 2, 1), "cancelled", [
            Move(_at(2025, 2, 1), created),
            Move(_at(2025, 3, 1), "in_progress", created),
            Move(_at(2025, 11, 1), "cancelled", "in_progress"),
        ])  # fmt: skip
        # Proposed, accepted, completed in the first instant of a quarter (it belongs to that one).
        _item(rec, sg, focal_sg, "Proposed", _at(2026, 2, 1), "completed", [
            Move(_at(2026, 2, 1), "proposed"),
            Move(_at(2026, 5, 1), created, "proposed"),
            Move(quarter_end(2026, 2), "completed", created),
        ])  # fmt: skip
        # No status row at all: its status is its current one from its creation on.
        _item(rec, sg, focal_sg, "Imported done", _at(2024, 1, 1), "completed", [])
        # Its history starts with a change: before it, the change's old status.
        _item(rec, sg, focal_sg, "Partial history", _at(2024, 6, 1), "in_progress", [
            Move(_at(2025, 6, 1), "completed", "not_started"),
            Move(_at(2025, 12, 1), "in_progress", "completed"),
        ])  # fmt: skip
        # Two rows in the same instant: the one written last holds.
        _item(rec, sg, focal_sg, "Same instant", _at(2025, 11, 1), "in_progress", [
            Move(_at(2025, 11, 1), created),
            Move(_at(2025, 12, 1), "completed", created),
            Move(_at(2025, 12, 1), "in_progress", "completed"),
        ])  # fmt: skip
        # Created after the last quarter shown: counts now only.
        _item(rec, sg, focal_sg, "New", _at(2026, 10, 15), "completed", [
            Move(_at(2026, 10, 15), created),
            Move(_at(2026, 11, 1), "completed", created),
        ])  # fmt: skip
        # Created (with its row) before the window, with a row stamped before its creation.
        _item(rec, my, focal_my, "Early row", _at(2025, 6, 1), "verified", [
            Move(_at(2025, 5, 1), created),
            Move(_at(2025, 7, 1), "completed", created),
            Move(_at(2025, 10, 1), "verified", "completed"),
        ])  # fmt: skip
        _item(rec, my, focal_my, "Declined", _at(2025, 4, 1), "cancelled", [
            Move(_at(2025, 4, 1), "proposed"),
            Move(_at(2025, 4, 20), "cancelled", "proposed"),
        ])  # fmt: skip
        _item(rec, co, focal_my, "Colombia", _at(2024, 11, 1), "completed", [
            Move(_at(2024, 11, 1), created),
            Move(_at(2025, 1, 1), "completed", created),  # in the first instant's hour of Q1 2025
        ])  # fmt: skip
        _item(archived, sg, focal_sg, "Archived", _at(2024, 11, 1), "completed", [
            Move(_at(2024, 11, 1), created),
            Move(_at(2025, 1, 10), "completed", created),
        ])  # fmt: skip
        db.session.commit()
        return {"CO": co.id}


def _expected(quarters: list[tuple[int, int]]) -> dict[tuple[int, int], list[Point]]:
    """Done and counted per (recommendation, office) at each quarter's end and now, item by item,
    following tracker.dashboard.history's definition word for word."""
    found: dict[tuple[int, int], list[Point]] = {}
    items = db.session.scalars(
        sa.select(ActionItem).join(ActionItem.recommendation).where(Recommendation.archived_at.is_(None))
    ).all()
    for item in items:
        rows = sorted(
            (u for u in item.updates if u.new_status is not None), key=lambda u: (u.created_at, u.id)
        )
        creation = (rows[0].old_status or rows[0].new_status) if rows else item.status
        statuses: list[str | None] = []
        for year, quarter in quarters:
            end = quarter_end(year, quarter)
            before = [u for u in rows if u.created_at < end]
            statuses.append(None if item.created_at >= end else before[-1].new_status if before else creation)
        statuses.append(item.status)  # now
        points = [
            Point(int(s in DONE_STATUSES), int(s not in UNCOUNTED_STATUSES)) if s else Point()
            for s in statuses
        ]
        key = (item.recommendation_id, item.office_id)
        found[key] = [a + b for a, b in zip(found.get(key, [Point()] * len(points)), points, strict=True)]
    return found


def test_the_reconstruction_equals_an_item_by_item_computation(app, world, history):
    with app.app_context():
        computed = load_rate_history(QUARTERS)
        expected = _expected(QUARTERS)
        assert {k: list(v) for k, v in computed.pairs.items()} == expected
        assert computed.quarters == tuple(QUARTERS)
        # Worked by hand for SG, at the ends of Q4 2024 … Q3 2026, then now: see each item's
        # comment above; the world's own item (created today) counts now only.
        sg = computed.pairs[(world.recommendation_id, world.offices["SG"])]
        assert [p.counted for p in sg] == [3, 6, 6, 6, 6, 6, 7, 7, 9]
        assert [p.done for p in sg] == [1, 2, 4, 5, 4, 3, 3, 4, 5]
        co = computed.pairs[(world.recommendation_id, history["CO"])]
        assert [(p.done, p.counted) for p in co] == [(0, 1)] + [(1, 1)] * 8


def test_quarter_ends_are_the_first_instant_of_the_next_quarter():
    assert quarter_end(2025, 4) == datetime(2026, 1, 1, tzinfo=UTC)
    assert quarter_end(2026, 2) == datetime(2026, 7, 1, tzinfo=UTC)
    assert QUARTERS[0] == (2024, 4) and QUARTERS[-1] == (2026, 3) and len(QUARTERS) == 8


# --- the pages ------------------------------------------------------------------------------------


def _get(client, path: str, status: int = 200) -> str:
    with time_machine.travel(NOW, tick=False):
        response = client.get(path)
    assert response.status_code == status, path
    return response.text


def _signed_in(login_as, email: str):
    with time_machine.travel(NOW, tick=False):
        return login_as(email)


def _chart(page: str) -> ET.Element:
    """The completion rate chart of a page, parsed as XML (it must be well formed)."""
    svg = re.search(r'<svg class="chart chart-lines".*?</svg>', page, re.S).group(0)
    return ET.fromstring(svg)


def _series(svg: ET.Element) -> dict[str, list[str]]:
    """Each line's name (its end label) → the titles of its points."""
    found = {}
    for group in svg.iter(f"{SVG}g"):
        if "series" in group.get("class", "").split():
            label = next(t for t in group.iter(f"{SVG}text") if t.get("class") == "series-label").text
            found[label] = [c.find(f"{SVG}title").text for c in group.iter(f"{SVG}circle")]
    return found


def _table(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """The figures table: its column headings, and per row (office code or "*") its cells."""
    table = re.search(r'<table class="figures" id="table-rates">.*?</table>', page, re.S).group(0)
    heads = [html.unescape(h) for h in re.findall(r'<th scope="col">([^<]*)</th>', table)]
    rows = {}
    for key, row in re.findall(r'<tr data-line="([^"]+)"[^>]*>(.*?)</tr>', table, re.S):
        rows[html.unescape(key)] = [html.unescape(c) for c in re.findall(r"<td>([^<]*)</td>", row)]
    return heads, rows


def _rates(points: list[Point]) -> list[str]:
    return ["–" if p.rate is None else format_percent(p.rate) for p in points]


def test_the_dashboard_draws_a_line_per_office_with_the_table_s_figures(app, world, history, login_as):
    page = _get(_signed_in(login_as, world.users["reviewer"]), "/dashboard")
    svg = _chart(page)
    assert svg.get("viewBox") and svg.get("role") == "img" and "width" not in svg.attrib  # CSS sizes it
    assert svg.get("aria-labelledby") == "chart-rates-title chart-rates-desc"
    assert svg.find(f"{SVG}title").text == "Completion rate over time" and svg.find(f"{SVG}desc").text
    assert "style" not in page.split('class="chart chart-lines"')[1].split("</svg>")[0]  # no inline style
    series = _series(svg)
    assert sorted(series) == ["All offices", "CO", "MY", "SG"]
    assert len([g for g in svg.iter(f"{SVG}g") if g.get("class") == "series programme"]) == 1
    heads, rows = _table(page)
    assert heads == ["Office", *(f"Q{q} {y}" for y, q in QUARTERS), "Now"]
    assert sorted(rows) == ["*", "CO", "MY", "SG"]
    with app.app_context(), app.test_request_context():
        expected = _expected(QUARTERS)
        by_office: dict[int, list[Point]] = {}
        for (_, office), points in expected.items():
            by_office[office] = [
                a + b for a, b in zip(by_office.get(office, [Point()] * 9), points, strict=True)
            ]
        total = [Point()] * 9
        for points in by_office.values():
            total = [a + b for a, b in zip(total, points, strict=True)]
        offices = {"SG": world.offices["SG"], "MY": world.offices["MY"], "CO": history["CO"]}
        for code, office_id in offices.items():
            assert rows[code] == _rates(by_office[office_id]), code
        assert rows["*"] == _rates(total)
    # Every point's title gives the table's figure for its moment; a moment without a figure has no point.
    for name, titles in series.items():
        cells = rows["*" if name == "All offices" else name]
        shown = [(heads[1 + j], cell) for j, cell in enumerate(cells) if cell != "–"]
        assert len(titles) == len(shown), name
        for title, (moment, cell) in zip(titles, shown, strict=True):
            when = "now" if moment == "Now" else f"end of {moment}"
            assert title.startswith(f"{name}, {when}: {cell}"), (title, moment, cell)
    assert all("of" not in t.split(": ")[1] for t in series["All offices"])  # the programme: rates only
    # Now equals the completion rate in the progress per office.
    for code in ("SG", "MY", "CO"):
        row = re.search(rf'<tr data-office="{code}">(.*?)</tr>', page, re.S).group(1)
        assert re.findall(r"<td>([^<]*)</td>", row)[3] == rows[code][-1]


def test_filters_narrow_the_lines(app, world, history, login_as):
    client = _signed_in(login_as, world.users["reviewer"])
    page = _get(client, "/dashboard?office=MY")
    assert sorted(_series(_chart(page))) == ["All offices", "MY"]
    assert sorted(_table(page)[1]) == ["*", "MY"]
    # A theme no recommendation has: every figure is empty, and the page says so.
    with app.app_context():
        db.session.get(Recommendation, world.recommendation_id).theme = "Legal"
        db.session.add(
            Recommendation(source_id=world.source_id, code="R-9", title="Other", text="T", theme="X")
        )
        db.session.commit()
    page = _get(client, "/dashboard?theme=X")
    assert "chart-lines" not in page and "No action counts yet." in page


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg"])
def test_the_office_people_see_no_other_office_s_line(app, world, history, login_as, role):
    client = _signed_in(login_as, world.users[role])
    page = _get(client, "/dashboard")
    assert sorted(_series(_chart(page))) == ["All offices", "SG"]
    assert sorted(_table(page)[1]) == ["*", "SG"]
    rates = page[page.index('id="rates-heading"') : page.index('id="matrix-heading"')]
    assert "MY" not in rates and "CO" not in rates and "Colombia" not in rates
    # Another office in the filter is ignored, not shown.
    page = _get(client, "/dashboard?office=MY")
    assert sorted(_series(_chart(page))) == ["All offices", "SG"]
    office = _get(client, "/offices/SG")
    assert sorted(_series(_chart(office))) == ["All offices", "SG"]
    assert _table(office)[1]["SG"] == _table(page)[1]["SG"]
    _get(client, "/offices/MY", 404)


def test_the_office_page_shows_its_line_and_the_programme_s(app, world, history, login_as):
    client = _signed_in(login_as, world.users["reviewer"])
    page = _get(client, "/offices/MY")
    assert sorted(_series(_chart(page))) == ["All offices", "MY"]
    dashboard = _table(_get(client, "/dashboard"))[1]
    assert _table(page)[1] == {"MY": dashboard["MY"], "*": dashboard["*"]}


def test_the_chart_keeps_twelve_lines_readable(app):
    """Twelve offices and the programme: distinct colour and dash pairs, labels apart and inside."""
    offices = tuple(
        Line(f"O{i:02}", f"Office {i}", tuple(Point(min(j, i % 3), 4) for j in range(9))) for i in range(12)
    )
    total = tuple(Point(sum(o.points[j].done for o in offices), 48) for j in range(9))
    rates = RatesOverTime(tuple(QUARTERS), offices, Line("", "", total, programme=True))
    with app.test_request_context():
        svg = ET.fromstring(str(charts.rate_chart("chart-test", rates)))
    styles = set()
    for group in svg.iter(f"{SVG}g"):
        (polyline, *_) = group.iter(f"{SVG}polyline")
        styles.add((polyline.get("stroke"), polyline.get("stroke-dasharray")))
    assert len(styles) == 13
    height = float(svg.get("viewBox").split()[3])
    ys = sorted(float(t.get("y")) for t in svg.iter(f"{SVG}text") if t.get("class") == "series-label")
    assert len(ys) == 13 and all(b - a >= charts.LABEL_GAP - 0.01 for a, b in itertools.pairwise(ys))
    assert ys[0] > 0 and ys[-1] < height
    assert all(len(list(c.iter(f"{SVG}title"))) == 1 for c in svg.iter(f"{SVG}circle"))


# --- statements -----------------------------------------------------------------------------------


def _bulk(app, world, n: int) -> None:
    """``n`` more items of SG and MY, each with three status rows across the quarters (core inserts)."""
    with app.app_context():
        first = (db.session.scalar(sa.select(sa.func.max(ActionItem.id))) or 0) + 1
        items, rows = [], []
        for k in range(n):
            office = ("SG", "MY")[k % 2]
            items.append(
                {
                    "id": first + k,
                    "recommendation_id": world.recommendation_id,
                    "office_id": world.offices[office],
                    "title": f"Bulk {k}",
                    "owner_id": world.user_ids[f"focal_{office.lower()}"],
                    "deadline": NOW.date(),
                    "agreed_deadline": NOW.date(),
                    "status": "completed",
                    "created_at": _at(2025, 1 + k % 12, 1),
                }
            )
            for j, status in enumerate(("not_started", "in_progress", "completed")):
                at = _at(2025, 1 + k % 12, 1) + timedelta(days=100 * j)
                rows.append({"action_item_id": first + k, "created_at": at, "new_status": status})
        db.session.execute(sa.insert(ActionItem), items)
        db.session.execute(sa.insert(ActionUpdate), rows)
        mark_data_changed(db.session)
        db.session.commit()


@pytest.mark.parametrize("role", ["reviewer", "focal_sg"])
def test_the_same_statements_for_few_and_many_items(app, world, login_as, count_queries, role):
    client = _signed_in(login_as, world.users[role])
    paths = ["/dashboard", "/dashboard?theme=Digital", "/offices/SG"]

    def counts() -> list[int]:
        found = []
        for path in paths:
            for warm in (False, True):
                with count_queries() as seen:
                    _get(client, path)
                found.append(len(seen))
                if warm:  # the history is read once per data version, not per page
                    assert not [s for s in seen if "action_update" in s], path
        return found

    _bulk(app, world, 4)
    small = counts()
    _bulk(app, world, 300)
    assert counts() == small
    with count_queries() as seen:
        _get(client, "/offices/SG")
    assert len([s for s in seen if "action_update" in s]) == 0
    _bulk(app, world, 1)  # a write dated in the past: its fingerprint, then the past figures again
    with count_queries() as seen:
        _get(client, "/offices/SG")
    assert len([s for s in seen if "action_update" in s]) == 2
    assert len([s for s in seen if "lead(" in s.lower()]) == 1
    with app.app_context():  # a write today: the fingerprint only (and now's figures)
        item = _by_title("Bulk 0")
        db.session.add(
            ActionUpdate(action_item=item, created_at=NOW, old_status=item.status, new_status="blocked")
        )
        item.status = "blocked"
        db.session.commit()
    with count_queries() as seen:
        _get(client, "/offices/SG")
    assert len([s for s in seen if "action_update" in s]) == 1
    assert not [s for s in seen if "lead(" in s.lower()]


# --- the cache ------------------------------------------------------------------------------------


def _change(app, change) -> None:
    with app.app_context(), time_machine.travel(NOW, tick=False):
        change()
        db.session.commit()


def _by_title(title: str) -> ActionItem:
    return db.session.scalar(sa.select(ActionItem).where(ActionItem.title == title))


def _today_row(title: str, new: str, old: str | None = "keep") -> None:
    """A status row written now (``old`` "keep": the item's status before, as the app writes it)."""
    item = _by_title(title)
    db.session.add(
        ActionUpdate(action_item=item, old_status=item.status if old == "keep" else old, new_status=new)
    )
    item.status = new


def _set_archived(code: str, archived: bool) -> None:
    rec = db.session.scalar(sa.select(Recommendation).where(Recommendation.code == code))
    rec.archived_at = NOW if archived else None


def _backdated_row() -> None:
    # What the demo or an import of history may write: a row dated in a past quarter.
    db.session.add(
        ActionUpdate(
            action_item=_by_title("Reopened"),
            created_at=_at(2025, 8, 1),
            old_status="verified",
            new_status="in_progress",
        )
    )


def _new_item_today() -> None:
    item = _by_title("New")
    fresh = ActionItem(
        recommendation_id=item.recommendation_id,
        office_id=item.office_id,
        owner_id=item.owner_id,
        title="Today",
        deadline=NOW.date(),
        status="not_started",
    )
    fresh.updates = [ActionUpdate(new_status="not_started")]
    db.session.add(fresh)


def _moved() -> None:
    # Editing an action may move it to another recommendation (its history goes with it).
    _by_title("Verified").recommendation = db.session.scalar(
        sa.select(Recommendation).where(Recommendation.code == "R-0")
    )


#: Each change, and whether the past quarters' figures change (and so are computed again).
CHANGES = [
    ("an update today", lambda: _today_row("Sent back", "verified"), False),
    ("an item and its row today", _new_item_today, False),
    (
        "a first status row today, as the app writes it",
        lambda: _today_row("Imported done", "verified"),
        False,
    ),
    ("a row dated in a past quarter", _backdated_row, True),
    ("unarchiving a recommendation", lambda: _set_archived("R-0", False), True),
    ("moving an item to another recommendation", _moved, True),
    ("archiving a recommendation", lambda: _set_archived("R-0", True), True),
]


def test_after_each_change_the_figures_equal_a_fresh_computation(
    app, world, history, login_as, count_queries
):
    """Through the dashboard: after each kind of write the page's figures are those computed
    afresh, and the past quarters' statement (the only one with ``lead``) runs only when they change."""
    from tracker.dashboard.history import rate_history

    client = _signed_in(login_as, world.users["reviewer"])
    _get(client, "/dashboard")
    with app.app_context():  # an item without any status row, created in a past quarter
        _item(
            db.session.get(Recommendation, world.recommendation_id),
            db.session.get(Office, world.offices["MY"]),
            db.session.get(User, world.user_ids["focal_my"]),
            "No rows",
            _at(2025, 2, 1),
            "completed",
            [],
        )
        db.session.commit()
    steps = [
        *CHANGES,
        # Its creation status was its current one (completed); a row without an old status says
        # "in progress" from its creation on.
        (
            "a first row today that says another creation status",
            lambda: _today_row("No rows", "in_progress", None),
            True,
        ),
        (
            "the same first row again: no change before the quarter",
            lambda: _today_row("No rows", "completed"),
            False,
        ),
    ]
    for name, change, past_changes in steps:
        with app.app_context(), app.test_request_context(), time_machine.travel(NOW, tick=False):
            before = rate_history(NOW.date())
        _change(app, change)
        with count_queries() as seen:
            page = _get(client, "/dashboard")
        with app.app_context(), app.test_request_context(), time_machine.travel(NOW, tick=False):
            served = rate_history(NOW.date())  # the page's figures: the cache at this data version
            fresh = load_rate_history(QUARTERS)
            expected = _expected(QUARTERS)
        assert served.pairs == fresh.pairs, name
        assert {k: list(v) for k, v in served.pairs.items()} == expected, name
        reruns = len([s for s in seen if "lead(" in s.lower()])
        assert reruns == int(past_changes), name
        past = {k: v[:-1] for k, v in served.pairs.items() if any(p.counted for p in v[:-1])}
        assert (
            past != {k: v[:-1] for k, v in before.pairs.items() if any(p.counted for p in v[:-1])}
        ) == past_changes, name
        assert "chart-lines" in page
