"""An office's page at any size: one row of counts per recommendation (checked against each item),
recommendations paginated, a recommendation's first actions only when asked, the same statements
for 10 items as for 1,000, and the office's people still kept to their own office."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import (
    CLOSED_STATUSES,
    ActionItem,
    Office,
    OfficeResponse,
    Recommendation,
    Status,
    mark_data_changed,
)
from tracker.offices.services import ITEMS_SHOWN, PLAN_PAGE_SIZE

#: 25 November in Singapore and Kuala Lumpur, still 24 November in New York: the offices' dates differ.
NOW = datetime(2026, 11, 24, 20, tzinfo=UTC)
SG_TODAY = date(2026, 11, 25)
#: Deadlines around the offices' dates: an item due on the UTC date is overdue in Singapore only.
DEADLINES = [date(2026, 11, 1), date(2026, 11, 24), SG_TODAY, date(2026, 11, 26), date(2027, 6, 30)]
STATUSES = [s.value for s in Status]


def _recommendations(app, world, count: int, *, archived: int = 0) -> list[int]:
    """``count`` more recommendations in use (R-P-000…), then ``archived`` archived ones; their ids."""
    with app.app_context():
        recs = [
            Recommendation(
                source_id=world.source_id,
                code=f"R-P-{i:03}",
                title=f"Plan point {i}",
                text="t",
                theme="T",
                archived_at=NOW if i >= count else None,
            )
            for i in range(count + archived)
        ]
        db.session.add_all(recs)
        db.session.commit()
        return [r.id for r in recs]


def _items(app, world, rec_ids: list[int], n: int, *, seed: int = 7, office: str = "SG") -> None:
    """``n`` items of ``office`` spread over the recommendations, statuses and deadlines drawn at random."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        deadline = rng.choice(DEADLINES)
        rows.append(
            {
                "recommendation_id": rng.choice(rec_ids),
                "office_id": world.offices[office],
                "title": f"Work {office} {k:04}",
                "owner_id": world.user_ids["focal_sg" if office == "SG" else "focal_my"],
                "deadline": deadline,
                "agreed_deadline": deadline,
                "status": rng.choice(STATUSES),
                "progress": rng.randrange(0, 101),
            }
        )
    with app.app_context():
        db.session.execute(sa.insert(ActionItem), rows)
        mark_data_changed(db.session)  # a core insert: the cached figures must go, as in the app
        db.session.commit()


def _expected(app, office_code: str) -> tuple[dict[str, tuple[int, ...]], tuple[int, int, int]]:
    """Per recommendation code (in use), (actions, open, overdue, awaiting, verified) computed item by
    item with ActionItem.is_overdue; and the office's (open, overdue, done)."""
    with app.app_context():
        items = db.session.scalars(
            sa.select(ActionItem).join(ActionItem.office).where(Office.code == office_code)
        ).all()
        found: dict[str, list[int]] = {}
        for item in items:
            if item.recommendation.archived_at is not None:
                continue
            row = found.setdefault(item.recommendation.code, [0, 0, 0, 0, 0])
            closed = Status(item.status) in CLOSED_STATUSES
            row[0] += 1
            row[1] += not closed
            row[2] += item.is_overdue(NOW)
            row[3] += item.status == Status.COMPLETED
            row[4] += item.status == Status.VERIFIED
        rows = {code: tuple(row) for code, row in found.items()}
        totals = (
            sum(r[1] for r in rows.values()),
            sum(r[2] for r in rows.values()),
            sum(r[3] + r[4] for r in rows.values()),
        )
        return rows, totals


def _rows(page: str) -> dict[str, tuple[int, ...]]:
    """The page's rows of counts: recommendation code → (actions, open, overdue, awaiting, verified)."""
    rows = {}
    for row in re.findall(r'<tr id="rec-\d+">.*?</tr>', page, re.S):
        code = re.search(r'id="rec-\d+-code"[^>]*>([^<]+)</a>', row).group(1)
        cells = re.findall(r'class="num">(?:<span class="badge overdue-flag">)?([\d,]+)', row)
        rows[code] = tuple(int(c.replace(",", "")) for c in cells)
    return rows


def _tiles(page: str) -> tuple[int, ...]:
    """Open, overdue and done of the office's tiles."""
    return tuple(
        int(c.replace(",", "")) for c in re.findall(r'<span class="tile-count">([\d,]+)</span>', page)
    )


def _login(login_as, world, role: str):
    """A client signed in at NOW (a session signed in later would look idle or from the future)."""
    with time_machine.travel(NOW, tick=False):
        return login_as(world.users[role])


def _get(client, url: str, status: int = 200) -> str:
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.status_code == status, url
    return response.text


def _other_office(app) -> None:
    """An office in New York, so that the offices' dates differ at NOW."""
    with app.app_context():
        db.session.add(Office(code="US", name="USPTO", country="United States", timezone="America/New_York"))
        db.session.commit()


# --- counts ----------------------------------------------------------------------------------


def test_each_row_counts_what_its_items_say(app, world, login_as):
    _other_office(app)
    ids = _recommendations(app, world, PLAN_PAGE_SIZE + 4, archived=2)
    in_use, archived = ids[: PLAN_PAGE_SIZE + 4], ids[PLAN_PAGE_SIZE + 4 :]
    _items(app, world, in_use[:-3] + archived, 400)  # the last three have no action of SG
    _items(app, world, in_use, 60, office="MY", seed=8)  # not SG's: never counted on its page
    expected, totals = _expected(app, "SG")
    assert len(expected) > PLAN_PAGE_SIZE and totals[1] > 0
    c = _login(login_as, world, "reviewer")
    first, second = _get(c, "/offices/SG"), _get(c, "/offices/SG?page=2")
    shown = _rows(first) | _rows(second)
    # R-1 (the world's), then R-P-000… by code: every recommendation in use, once, on two pages.
    codes = ["R-1"] + [f"R-P-{i:03}" for i in range(PLAN_PAGE_SIZE + 4)]
    assert list(_rows(first)) == codes[:PLAN_PAGE_SIZE] and list(_rows(second)) == codes[PLAN_PAGE_SIZE:]
    for code in codes:
        assert shown[code] == expected.get(code, (0, 0, 0, 0, 0)), code
    assert "Plan point 24" not in first + second  # archived ones are not listed
    # The tiles count every recommendation in use (not the page's) and agree with /offices.
    assert _tiles(first) == _tiles(second) == totals
    offices = _get(c, "/offices")
    sg = re.search(r">SG — .*?</tr>", offices, re.S).group(0)
    assert (
        tuple(int(n) for n in re.findall(r'class="num">(?:<span class="badge overdue-flag">)?(\d+)', sg))
        == totals
    )
    # A row without actions says so and offers no list; the page holds no action row.
    last = second[second.index(f'id="rec-{in_use[-1]}"') :].split("</tr>")[0]
    assert "No action yet." in last and "Show the actions" not in last
    assert "Work SG" not in first + second


def test_the_office_date_decides_what_is_overdue(app, world, login_as):
    _other_office(app)
    [rec] = _recommendations(app, world, 1)
    with app.app_context():
        for office, deadline in (("SG", date(2026, 11, 24)), ("SG", SG_TODAY), ("US", date(2026, 11, 23))):
            db.session.add(
                ActionItem(
                    recommendation_id=rec,
                    office_id=db.session.scalar(sa.select(Office.id).where(Office.code == office)),
                    title=f"Due {deadline} in {office}",
                    deadline=deadline,
                )
            )
        db.session.commit()
    c = _login(login_as, world, "reviewer")
    # In Singapore it is the 25th: the item due on the 24th is overdue, the one due today is not.
    assert _rows(_get(c, "/offices/SG"))["R-P-000"] == (2, 2, 1, 0, 0)
    assert _rows(_get(c, "/offices/US"))["R-P-000"] == (1, 1, 1, 0, 0)


# --- paging ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("", 1),
        ("?page=2", 2),
        ("?page=0", 1),
        ("?page=-1", 1),
        ("?page=abc", 1),
        ("?page=1.5", 1),
        ("?page=99", 3),
        ("?page=99999999999999999999", 1),
        ("?page=2147483647", 3),
    ],
)
def test_pages_of_recommendations(app, world, login_as, query, page):
    _recommendations(app, world, 2 * PLAN_PAGE_SIZE + 1)  # with R-1: 42, three pages
    text = _get(_login(login_as, world, "focal_sg"), "/offices/SG" + query)
    assert f"Page {page} of 3" in text and "42 recommendations in use" in text
    assert len(_rows(text)) == (PLAN_PAGE_SIZE if page < 3 else 2)
    assert ('rel="prev"' in text) == (page > 1) and ('rel="next"' in text) == (page < 3)
    if page == 2:
        assert 'href="/offices/SG" rel="prev"' in text and 'href="/offices/SG?page=3" rel="next"' in text


def test_few_recommendations_have_no_pager(app, world, login_as):
    text = _get(_login(login_as, world, "reviewer"), "/offices/SG")
    assert "Page 1" not in text and "1 recommendation in use" in text
    with app.app_context():
        db.session.execute(sa.update(Recommendation).values(archived_at=NOW))
        db.session.commit()
    text = _get(_login(login_as, world, "reviewer"), "/offices/SG")
    assert "There is no recommendation in use yet." in text and _tiles(text) == (0, 0, 0)


# --- a recommendation's actions --------------------------------------------------------------


def test_a_recommendation_shows_its_first_actions_when_asked(app, world, login_as):
    ids = _recommendations(app, world, PLAN_PAGE_SIZE + 1)
    big, small = ids[-1], ids[0]  # the last is on page 2
    _items(app, world, [big], ITEMS_SHOWN + 5)
    _items(app, world, [small], 3, seed=9)
    _items(app, world, [big], 4, office="MY", seed=10)
    c = _login(login_as, world, "focal_sg")
    page2 = _get(c, "/offices/SG?page=2")
    link = f'href="/offices/SG?page=2&amp;show={big}#rec-{big}-actions"'
    assert link in page2 and f'id="rec-{big}-actions"' not in page2
    shown = _get(c, f"/offices/SG?page=2&show={big}")
    section = shown[shown.index(f'id="rec-{big}-actions"') : shown.index("</section>")]
    titles = re.findall(r'href="/actions/\d+">(Work [A-Z]+ \d+)</a>', section)
    assert len(titles) == ITEMS_SHOWN and all(t.startswith("Work SG") for t in titles)
    # Open ones first, then by deadline, as the Actions list orders them.
    with app.app_context():
        first = db.session.scalars(
            sa.select(ActionItem.title)
            .where(ActionItem.recommendation_id == big, ActionItem.office_id == world.offices["SG"])
            .order_by(
                sa.case((ActionItem.status.in_([s.value for s in CLOSED_STATUSES]), 1), else_=0),
                ActionItem.deadline,
                ActionItem.id,
            )
            .limit(ITEMS_SHOWN)
        ).all()
    assert titles == first
    total = ITEMS_SHOWN + 5
    assert f"The first {ITEMS_SHOWN} of {total}, open ones first, by deadline." in section
    code = f"R-P-{PLAN_PAGE_SIZE:03}"
    assert f'href="/?office=SG&amp;recommendation={code}">Show all {total} actions' in section
    assert 'class="badge overdue-flag">Overdue<' in section and "Focal Sg" in section
    assert f'href="/offices/SG?page=2#rec-{big}">Hide these actions' in section
    # The list the link leads to holds them all.
    listed = _get(c, f"/?office=SG&recommendation={code}")
    assert len(set(re.findall(r">(Work SG \d+)</a>", listed))) == total
    # Three actions: all of them, no "show all".
    few = _get(c, f"/offices/SG?show={small}")
    section = few[few.index(f'id="rec-{small}-actions"') : few.index("</section>")]
    assert len(re.findall(r'href="/actions/\d+">Work SG', section)) == 3 and "Show all" not in section
    # Not on this page, not a recommendation, not a number: nothing is shown.
    for query in (
        f"show={big}",
        "show=999999",
        "show=abc",
        "show=99999999999999999999",
        f"page=2&show={small}",
    ):
        assert 'class="card plan-entry"' not in _get(c, f"/offices/SG?{query}"), query


def test_adding_an_action_leads_to_its_recommendation_shown(app, world, login_as):
    ids = _recommendations(app, world, PLAN_PAGE_SIZE + 1)
    c = login_as(world.users["reviewer"])
    form = c.get("/offices/SG/actions/new", query_string={"recommendation": ids[-1]}).text
    created = c.post(
        "/offices/SG/actions/new",
        data={
            "csrf_token": csrf_token(form),
            "title": "Late addition",
            "recommendation_id": str(ids[-1]),
            "owner_id": str(world.user_ids["focal_sg"]),
            "deputy_id": "",
            "deadline": "2027-03-31",
            "description": "",
        },
    )
    assert created.status_code == 302
    assert created.headers["Location"].endswith(f"/offices/SG?page=2&show={ids[-1]}#rec-{ids[-1]}-actions")
    assert "Late addition" in c.get(created.headers["Location"]).text


# --- who sees what ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg"])
def test_the_office_people_see_their_own_office_only(app, world, login_as, role):
    c = _login(login_as, world, role)
    rec = world.recommendation_id
    own = _get(c, f"/offices/SG?show={rec}")
    assert "E-filing for SG" in own and "E-filing for MY" not in own
    for url in ("/offices/MY", f"/offices/MY?show={rec}", "/offices/MY?page=2", "/offices/my"):
        _get(c, url, 404)
    theirs = _get(_login(login_as, world, "focal_my"), f"/offices/MY?show={rec}")
    assert "E-filing for MY" in theirs and "E-filing for SG" not in theirs
    _get(_login(login_as, world, "focal_my"), "/offices/SG", 404)


# --- statements ------------------------------------------------------------------------------


def test_the_same_statements_for_10_items_as_for_1000(app, world, login_as, count_queries):
    _other_office(app)
    ids = _recommendations(app, world, PLAN_PAGE_SIZE + 5, archived=1)
    with app.app_context():
        db.session.add_all(
            OfficeResponse(recommendation_id=r, office_id=world.offices["SG"], response="accepted")
            for r in ids[:-1]
        )
        db.session.commit()
    reviewer, focal = _login(login_as, world, "reviewer"), _login(login_as, world, "focal_sg")
    shown = ids[3]
    urls = [
        (reviewer, "/offices/SG"),
        (reviewer, f"/offices/SG?show={shown}"),
        (reviewer, "/offices/SG?page=2"),
        (reviewer, "/offices/SG?page=99"),
        (focal, f"/offices/SG?show={shown}"),
    ]

    def statements() -> list[int]:
        counted = []
        for client, url in urls:
            with count_queries() as seen:
                _get(client, url)
            counted.append(len(seen))
        return counted

    _items(app, world, [shown], 2)  # the recommendation shown has actions at both sizes
    statements()  # the past quarters' rates, computed again only when something before them changes
    _items(app, world, ids, 8, seed=12)
    small = statements()
    _items(app, world, ids, 990, seed=11)
    assert statements() == small
    text = _get(reviewer, f"/offices/SG?show={shown}")
    assert sum(r[0] for r in _rows(text).values()) > 700  # the large plan is really counted
    assert len(re.findall(r'href="/actions/\d+"', text)) == ITEMS_SHOWN  # and only its first items listed


def test_a_page_renders_a_bounded_number_of_rows(app, world, login_as):
    ids = _recommendations(app, world, 3 * PLAN_PAGE_SIZE)
    _items(app, world, ids, 2000)
    text = _get(_login(login_as, world, "reviewer"), f"/offices/SG?show={ids[0]}")
    # Two header rows; the completion rate table's three (the office, all offices, its header).
    assert text.count("<tr") <= 2 + PLAN_PAGE_SIZE + ITEMS_SHOWN + 3
    assert len(text) < 80_000
