"""The dashboard through HTTP: exact figures on a known dataset, filters, scope, charts, SQL count."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from markupsafe import Markup

from tracker.dashboard import charts
from tracker.dashboard.services import Cell, OfficeProgress
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Office, Recommendation, Source, User

#: 18:00 in Singapore and Kuala Lumpur: still 2026-11-24 in both offices, in the fourth quarter.
NOW = datetime(2026, 11, 24, 10, tzinfo=UTC)


def _at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def data(app, world):
    """The world (R-1 with "E-filing for SG/MY", not started, due 2026-11-24) plus a chosen set.

    Recommendations: R-1 (source Dialogue, theme Digital), R-2 (Review, Legal), R-4 (Review,
    Digital, no item), R-3 (archived, its item must count nowhere).
    """
    with app.app_context():
        r1 = db.session.get(Recommendation, world.recommendation_id)
        review = Source(title="Review")
        r2 = Recommendation(source=review, code="R-2", title="Modernise the law", text="T", theme="Legal")
        r3 = Recommendation(
            source=r1.source,
            code="R-3",
            title="Shelved idea",
            text="T",
            theme="Digital",
            archived_at=_at(2026, 1, 1),
        )
        r4 = Recommendation(source=review, code="R-4", title="Train examiners", text="T", theme="Digital")
        db.session.add_all([r2, r3, r4])
        owners = {
            code: db.session.get(User, world.user_ids[f"focal_{code.lower()}"]) for code in ("SG", "MY")
        }

        def item(code, rec, title, status, progress, deadline, history=()):
            it = ActionItem(
                recommendation=rec,
                office_id=world.offices[code],
                title=title,
                owner=owners[code],
                status=status,
                progress=progress,
                deadline=deadline,
            )
            it.updates = [ActionUpdate(new_status=s, created_at=at) for s, at in history]
            db.session.add(it)

        item("SG", r1, "SG blocked", "blocked", 30, date(2026, 10, 1))
        # Completed, sent back, completed again: counted once, in its first quarter (Q3 2026).
        item(
            "SG",
            r1,
            "SG done",
            "completed",
            100,
            date(2026, 9, 1),
            [
                ("completed", _at(2026, 8, 15)),
                ("in_progress", _at(2026, 8, 20)),
                ("completed", _at(2026, 10, 5)),
            ],
        )
        # Completed late on 31 March (UTC), verified in April: counted in Q1 2026 only.
        item(
            "SG",
            r2,
            "SG verified",
            "verified",
            100,
            date(2026, 6, 30),
            [("completed", _at(2026, 3, 31, 23, 30)), ("verified", _at(2026, 4, 2))],
        )
        item("SG", r2, "SG soon", "in_progress", 50, date(2026, 12, 1))
        item("SG", r3, "SG shelved", "in_progress", 10, date(2026, 1, 1), [("completed", _at(2026, 11, 1))])
        item("MY", r2, "MY late", "in_progress", 40, date(2026, 11, 20))
        item("MY", r1, "MY very late", "not_started", 0, date(2026, 9, 15))
        # Verified straight away (e.g. imported): the verification is its completion (Q4 2025).
        item("MY", r1, "MY verified", "verified", 100, date(2026, 3, 1), [("verified", _at(2025, 12, 20))])
        item("MY", r2, "MY cancelled", "cancelled", 10, date(2026, 1, 1))
        db.session.commit()
        return {"review": review.id}


def _page(login_as, world, role: str, at: datetime = NOW, **query: str) -> str:
    with time_machine.travel(at, tick=False):
        c = login_as(world.users[role])  # inside the travel: signed cookies must not date from the future
        response = c.get("/dashboard", query_string=query)
    assert response.status_code == 200
    return response.text


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _tile(page: str, key: str) -> int:
    match = re.search(rf'id="total-{key}"><span class="tile-count">([^<]+)</span>', page)
    assert match, f"no tile {key}"
    return int(match.group(1).replace(",", ""))


def _totals(page: str) -> dict[str, int]:
    keys = ("all", "overdue", "due-soon", "not_started", "in_progress", "blocked", "completed", "verified")
    return {key: _tile(page, key) for key in (*keys, "cancelled")}


def _office_row(page: str, code: str) -> list[str] | None:
    match = re.search(rf'<tr data-office="{code}">(.*?)</tr>', page, re.S)
    if not match:
        return None
    cells = [_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", match.group(1), re.S)]
    return cells[:6]  # the slippage columns are checked in test_extensions.py


def _cell(page: str, key: str) -> tuple[str, str, str | None] | None:
    """(class, text, link) of the matrix cell of "recommendation code/office code"."""
    match = re.search(rf'<td class="([^"]*)" data-cell="{key}">(.*?)</td>', page, re.S)
    if not match:
        return None
    link = re.search(r'href="([^"]+)"', match.group(2))
    return match.group(1), _text(match.group(2)), html.unescape(link.group(1)) if link else None


def _overdue_titles(page: str) -> list[str]:
    table = re.search(r'<table class="list" id="table-overdue">(.*?)</table>', page, re.S)
    if not table:
        return []
    return [_text(a) for a in re.findall(r'<a href="/actions/\d+">(.*?)</a>', table.group(1))]


def _quarters(page: str) -> dict[str, int]:
    rows = re.findall(r'<tr data-quarter="([^"]+)">.*?<td>([^<]+)</td>', page, re.S)
    return {quarter: int(count) for quarter, count in rows}


ALL_TOTALS = {
    "all": 10,
    "overdue": 3,
    "due-soon": 3,
    "not_started": 3,
    "in_progress": 2,
    "blocked": 1,
    "completed": 1,
    "verified": 2,
    "cancelled": 1,
}
NO_COMPLETIONS = dict.fromkeys(
    ["2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"], 0
)


def test_totals_by_status_overdue_and_due_soon(data, world, login_as):
    page = _page(login_as, world, "reviewer")
    assert _totals(page) == ALL_TOTALS
    assert "Due within 14 days" in page


def test_progress_per_office(data, world, login_as):
    page = _page(login_as, world, "reviewer")
    # SG: 5 items, none cancelled, progress 0+30+100+100+50; done 2 (completed + verified).
    assert _office_row(page, "SG") == ["SG", "5", "56%", "2 of 5", "40%", "1"]
    # MY: 5 items, 1 cancelled (left out of the average and the rate), progress 0+40+0+100; done 1.
    assert _office_row(page, "MY") == ["MY", "5", "35%", "1 of 4", "25%", "2"]
    chart = re.search(
        r'<svg class="chart"[^>]*aria-labelledby="chart-offices-title[^>]*>.*?</svg>', page, re.S
    )
    assert chart
    assert "<title>SG: 5 actions, average progress 56%, completion rate 40%</title>" in chart.group(0)
    assert "<title>MY: 5 actions, average progress 35%, completion rate 25%</title>" in chart.group(0)


def test_matrix_cells(data, world, login_as):
    page = _page(login_as, world, "reviewer")
    matrix = re.search(r'<table class="matrix".*?</table>', page, re.S).group(0)
    assert "<caption" in matrix and '<th scope="col">Recommendation</th>' in matrix
    assert re.findall(r'<th scope="col"><abbr title="[^"]+">(\w+)</abbr></th>', matrix) == ["MY", "SG"]
    assert re.findall(r'<th scope="row"><span class="rec-code">([^<]+)</span>', matrix) == [
        "R-1",
        "R-2",
        "R-4",
    ]
    assert "R-3" not in page and "SG shelved" not in page  # archived recommendation

    css, text, link = _cell(page, "R-1/SG")
    assert text == "3 actions Blocked 1 overdue"
    assert "status-blocked" in css and "cell-overdue" in css
    assert link == "/?office=SG&recommendation=R-1"
    css, text, link = _cell(page, "R-2/SG")
    assert (css, text) == ("cell status-in_progress", "2 actions In progress")
    assert link == "/?office=SG&recommendation=R-2"
    css, text, _ = _cell(page, "R-1/MY")
    assert "status-not_started" in css and "cell-overdue" in css and text == "3 actions Not started 1 overdue"
    css, text, _ = _cell(page, "R-2/MY")
    assert "status-in_progress" in css and text == "2 actions In progress 1 overdue"
    for empty in ("R-4/SG", "R-4/MY"):
        css, text, link = _cell(page, empty)
        assert css == "cell cell-empty" and text.startswith("–") and link is None


def test_matrix_links_open_the_pairs_items(data, world, login_as):
    with time_machine.travel(NOW, tick=False):
        c = login_as(world.users["reviewer"])
        _, _, link = _cell(c.get("/dashboard").text, "R-1/SG")
        listed = c.get(link).text
    assert "3 actions" in listed and "SG blocked" in listed and "MY very late" not in listed


def test_overdue_list(data, world, login_as):
    page = _page(login_as, world, "reviewer")
    assert _overdue_titles(page) == ["MY very late", "SG blocked", "MY late"]  # oldest deadline first
    table = re.search(r'id="table-overdue">(.*?)</table>', page, re.S).group(1)
    first = _text(re.findall(r"<tr class=\"overdue\">(.*?)</tr>", table, re.S)[0])
    assert first == "MY R-1 MY very late Focal My Sep 15, 2026 70 days"
    assert 'href="/?overdue=1"' in page


def test_completions_per_quarter(data, world, login_as):
    page = _page(login_as, world, "reviewer")
    assert _quarters(page) == {**NO_COMPLETIONS, "2025-Q4": 1, "2026-Q1": 1, "2026-Q3": 1}
    chart = re.search(
        r'<svg class="chart"[^>]*aria-labelledby="chart-quarters-title[^>]*>.*?</svg>', page, re.S
    )
    assert chart and "<title>Q1 2026: 1 action completed</title>" in chart.group(0)


def test_completion_window_is_the_last_eight_quarters(data, world, login_as):
    page = _page(login_as, world, "reviewer", at=_at(2028, 1, 10))
    assert _quarters(page) == {
        "2026-Q2": 0,
        "2026-Q3": 1,
        "2026-Q4": 0,
        "2027-Q1": 0,
        "2027-Q2": 0,
        "2027-Q3": 0,
        "2027-Q4": 0,
        "2028-Q1": 0,
    }


def test_filter_by_source_changes_every_section(data, world, login_as):
    page = _page(login_as, world, "reviewer", source=str(data["review"]))
    assert f'<option value="{data["review"]}" selected>Review</option>' in page
    assert _totals(page) == {
        **dict.fromkeys(ALL_TOTALS, 0),
        "all": 4,
        "overdue": 1,
        "due-soon": 1,
        "in_progress": 2,
        "verified": 1,
        "cancelled": 1,
    }
    assert _office_row(page, "SG") == ["SG", "2", "75%", "1 of 2", "50%", "0"]
    assert _office_row(page, "MY") == ["MY", "2", "40%", "0 of 1", "0%", "1"]
    assert _cell(page, "R-1/SG") is None and _cell(page, "R-2/SG") is not None and _cell(page, "R-4/MY")
    assert _overdue_titles(page) == ["MY late"]
    assert _quarters(page) == {**NO_COMPLETIONS, "2026-Q1": 1}


def test_filter_by_theme_changes_every_section(data, world, login_as):
    page = _page(login_as, world, "reviewer", theme="Digital")
    assert '<option value="Digital" selected>Digital</option>' in page
    assert _totals(page) == {
        **dict.fromkeys(ALL_TOTALS, 0),
        "all": 6,
        "overdue": 2,
        "due-soon": 2,
        "not_started": 3,
        "blocked": 1,
        "completed": 1,
        "verified": 1,
    }
    assert _office_row(page, "SG") == ["SG", "3", "43%", "1 of 3", "33%", "1"]
    assert _office_row(page, "MY") == ["MY", "3", "33%", "1 of 3", "33%", "1"]
    assert _cell(page, "R-1/SG") and _cell(page, "R-4/SG") and _cell(page, "R-2/SG") is None
    assert _overdue_titles(page) == ["MY very late", "SG blocked"]
    assert _quarters(page) == {**NO_COMPLETIONS, "2025-Q4": 1, "2026-Q3": 1}


def test_filter_by_office_changes_every_section(data, world, login_as):
    page = _page(login_as, world, "reviewer", office="sg")
    assert '<option value="SG" selected>' in page
    assert _totals(page) == {
        **dict.fromkeys(ALL_TOTALS, 0),
        "all": 5,
        "overdue": 1,
        "due-soon": 2,
        "not_started": 1,
        "in_progress": 1,
        "blocked": 1,
        "completed": 1,
        "verified": 1,
    }
    assert _office_row(page, "SG") and _office_row(page, "MY") is None
    assert _cell(page, "R-1/SG") and _cell(page, "R-1/MY") is None
    assert _overdue_titles(page) == ["SG blocked"]
    assert 'href="/?overdue=1&amp;office=SG"' in page
    assert _quarters(page) == {**NO_COMPLETIONS, "2026-Q1": 1, "2026-Q3": 1}


def test_filters_combine_and_may_leave_nothing(data, world, login_as):
    page = _page(login_as, world, "reviewer", theme="Legal", office="SG")
    assert _tile(page, "all") == 2 and _office_row(page, "SG")[1] == "2"
    assert _cell(page, "R-2/SG") and _cell(page, "R-1/SG") is None
    assert "No action is overdue." in page
    page = _page(login_as, world, "reviewer", theme="Digital", source=str(data["review"]))  # R-4 only
    assert _tile(page, "all") == 0 and _cell(page, "R-4/SG")[0] == "cell cell-empty"
    assert _office_row(page, "SG") == ["SG", "0", "–", "0 of 0", "–", "0"]
    assert _quarters(page) == NO_COMPLETIONS


@pytest.mark.parametrize(
    "query",
    [
        {"source": "abc"},
        {"source": "99999999999999999999"},
        {"source": "-1"},
        {"theme": "Nope"},
        {"theme": "Digital\x00"},
        {"office": "ZZ"},
        {"office": "S'G"},
        {"source": "", "theme": "", "office": ""},
    ],
)
def test_invalid_filters_are_ignored(data, world, login_as, query):
    page = _page(login_as, world, "reviewer", **query)
    assert _totals(page) == ALL_TOTALS
    noticed = "were not recognised and were ignored" in page
    assert noticed == any(query.values())


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg"])
def test_office_roles_see_only_their_office(data, world, login_as, role):
    page = _page(login_as, world, role)
    assert _tile(page, "all") == 5 and _tile(page, "overdue") == 1
    assert _office_row(page, "SG") and _office_row(page, "MY") is None
    assert _cell(page, "R-1/SG") and 'data-cell="R-1/MY"' not in page
    for title in ("E-filing for MY", "MY late", "MY very late", "MY verified", "MY cancelled"):
        assert title not in page
    assert 'name="office"' not in page  # one office: nothing to choose
    assert _quarters(page) == {**NO_COMPLETIONS, "2026-Q1": 1, "2026-Q3": 1}
    # Asking for another office does not widen the scope.
    page = _page(login_as, world, role, office="MY")
    assert _tile(page, "all") == 5 and "MY very late" not in page and "were not recognised" in page


@pytest.mark.parametrize("role", ["admin", "reviewer", "manager"])
def test_programme_wide_roles_see_every_office(data, world, login_as, role):
    page = _page(login_as, world, role)
    assert _totals(page) == ALL_TOTALS
    assert _office_row(page, "SG") and _office_row(page, "MY")


def test_charts_are_svg_with_a_title_and_a_table(data, world, login_as):
    page = _page(login_as, world, "focal_sg")
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) == 3
    for svg, name in zip(svgs, ("chart-offices", "chart-rates", "chart-quarters"), strict=True):
        assert 'role="img"' in svg and f'aria-labelledby="{name}-title {name}-desc"' in svg
        assert re.search(rf'<title id="{name}-title">[^<]+</title>', svg)
        assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert '<table class="figures" id="table-offices">' in page
    assert '<table class="figures" id="table-quarters">' in page
    assert '<table class="figures" id="table-rates">' in page
    # The charts need no script: the page's only one is the site's phone menu.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/js/menu.js" defer>']
    assert "//cdn" not in page


def test_dashboard_needs_sign_in_and_is_in_the_menu(data, world, client, login_as):
    response = client.get("/dashboard")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert '<a href="/dashboard">Dashboard</a>' in _page(login_as, world, "focal_my")


def test_text_is_escaped(app, data, world, login_as):
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec.title, rec.theme = "<b>bold</b>", "<i>theme</i>"
        db.session.commit()
    page = _page(login_as, world, "reviewer")
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<i>theme</i>" not in page and "&lt;i&gt;theme&lt;/i&gt;" in page


def test_chart_builders_escape_their_text(app):
    with app.test_request_context():
        office = Office(code="A<B", name="x", country="x", timezone="UTC")
        svg = charts.office_progress_chart([OfficeProgress(office=office, items=1, counted=1, done=1)])
        assert isinstance(svg, Markup) and "A<B" not in svg and "A&lt;B" in svg
        chart = charts.column_chart("c", "T<", "D&", [(("<q>",), 3)], ["tip>"])
        assert "T&lt;" in chart and "D&amp;" in chart and "&lt;q&gt;" in chart and "tip&gt;" in chart


def test_cell_severity_order():
    def cell(**counts: int) -> Cell:
        return Cell(count=sum(counts.values()), overdue=counts.pop("late", 0), by_status=counts)

    assert cell(in_progress=1, blocked=1, not_started=2).worst == "blocked"
    assert cell(in_progress=1, not_started=1).worst == "not_started"
    assert cell(verified=1, completed=1).colour == "completed"
    assert cell(verified=1, cancelled=1).colour == "verified"
    assert cell(cancelled=1).colour == "cancelled"
    assert cell(verified=1, in_progress=1, late=1).colour == "overdue"


def _bulk(app, world, n: int) -> None:
    """A new recommendation and n items over SG and MY in every status, with completions in history."""
    statuses = ("not_started", "in_progress", "blocked", "completed", "verified", "cancelled")
    with app.app_context():
        source = db.session.get(Recommendation, world.recommendation_id).source
        rec = Recommendation(
            source=source, code=f"B-{n}", title=f"Bulk {n}", text="T", theme=f"Theme {n % 3}"
        )
        db.session.add(rec)
        owners = {
            code: db.session.get(User, world.user_ids[f"focal_{code.lower()}"]) for code in ("SG", "MY")
        }
        for i in range(n):
            code = ("SG", "MY")[i % 2]
            item = ActionItem(
                recommendation=rec if i % 3 else db.session.get(Recommendation, world.recommendation_id),
                office_id=world.offices[code],
                title=f"Bulk {n}.{i}",
                owner=owners[code],
                deadline=date(2026, 11, 24) + timedelta(days=i - n // 2),
                status=statuses[i % 6],
                progress=(i * 7) % 101,
            )
            item.updates = [
                ActionUpdate(
                    new_status="completed", created_at=_at(2026, 1 + i % 11, 1) - timedelta(days=40 * k)
                )
                for k in range(3)
            ]
            db.session.add(item)
        db.session.commit()


@pytest.mark.parametrize(
    ("role", "query"),
    [("reviewer", {}), ("focal_sg", {}), ("manager", {"theme": "Digital", "office": "MY", "source": "?"})],
)
def test_dashboard_runs_a_bounded_number_of_statements(app, world, login_as, count_queries, role, query):
    """Ten times more items, history and recommendations: the same number of SQL statements."""
    if query.get("source"):
        with app.app_context():
            query = {
                **query,
                "source": str(db.session.get(Recommendation, world.recommendation_id).source_id),
            }
    with time_machine.travel(NOW, tick=False):
        c = login_as(world.users[role])

        def statements() -> int:
            with count_queries() as seen:
                response = c.get("/dashboard", query_string=query)
            assert response.status_code == 200 and "not recognised" not in response.text
            return len(seen)

        _bulk(app, world, 6)
        small = statements()
        _bulk(app, world, 60)
        assert statements() == small
    # With the rates over time (fingerprint, past quarters, here cold, now) and, once per data version,
    # the indicator table (active indicators, latest validated values, targets).
    assert small <= 17
