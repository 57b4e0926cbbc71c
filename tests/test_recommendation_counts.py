"""The recommendations list's figures: offices responded, actions done of those counted, overdue,
the progress bar and the past-target marker, within each role's scope, in a bounded number of
statements."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html.parser import HTMLParser

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import ActionItem, Office, OfficeResponse, Recommendation


class _Rows(HTMLParser):
    """The list's rows: code → {data-label: text}, plus the attributes of each row's <progress>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict[str, str]] = []
        self.progress: list[dict[str, str]] = []
        self._label: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({})
            self.progress.append({})
        elif self._in_body and tag == "td":
            self._label = a.get("data-label")
            self.rows[-1][self._label] = ""
        elif self._in_body and tag == "progress":
            self.progress[-1] = a

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._label = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._label:
            self.rows[-1][self._label] += data


def listed(client, **query) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """code → (the row's cells by label, whitespace folded; its <progress> attributes)."""
    response = client.get("/recommendations", query_string=query)
    assert response.status_code == 200
    parser = _Rows()
    parser.feed(response.text)
    out = {}
    for row, bar in zip(parser.rows, parser.progress, strict=True):
        cells = {k: " ".join(v.split()) for k, v in row.items()}
        out[cells["Code"]] = (cells, bar)
    return out


def _item(rec, office, status, deadline, **kw) -> ActionItem:
    return ActionItem(
        recommendation=rec,
        office=office,
        title=f"{status} {deadline}",
        status=status,
        deadline=deadline,
        **kw,
    )


def build(app, world) -> dict[str, int]:
    """R-1 with SG: completed, verified, cancelled, proposed, in progress overdue, blocked due later;
    MY: one verified, not started due later; a response of SG; an inactive office TH that responded.
    R-2 all done, past target; R-3 target ahead; R-4 past target without actions."""
    today = date.today()
    with app.app_context():
        sg, my = (db.session.get(Office, world.offices[c]) for c in ("SG", "MY"))
        th = Office(code="TH", name="DIP Thailand", country="Thailand", timezone="Asia/Bangkok", active=False)
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec.target_date = today - timedelta(days=30)
        for item in db.session.scalars(sa.select(ActionItem)):  # the world's two: due later
            item.deadline = today + timedelta(days=60)
        db.session.add_all(
            [
                th,
                _item(rec, sg, "completed", today + timedelta(days=5)),
                _item(rec, sg, "verified", today - timedelta(days=50)),
                _item(rec, sg, "cancelled", today - timedelta(days=50)),
                _item(rec, sg, "proposed", today - timedelta(days=50)),
                _item(rec, sg, "in_progress", today - timedelta(days=3)),
                _item(rec, sg, "blocked", today + timedelta(days=3)),
                _item(rec, my, "verified", today - timedelta(days=10)),
                OfficeResponse(recommendation=rec, office=sg, response="accepted"),
                OfficeResponse(recommendation=rec, office=th, response="noted"),
            ]
        )
        others = {}
        for code, target, statuses in (
            ("R-2", today - timedelta(days=1), ["verified", "completed", "cancelled"]),
            ("R-3", today + timedelta(days=1), ["in_progress"]),
            ("R-4", today - timedelta(days=1), []),
        ):
            other = Recommendation(
                source_id=world.source_id, code=code, title=f"About {code}", text="T", theme="Digital"
            )
            other.target_date = target
            db.session.add(other)
            for status in statuses:
                db.session.add(_item(other, sg, status, today - timedelta(days=100)))
            others[code] = other
        db.session.commit()
        return {code: r.id for code, r in others.items()}


def test_reviewer_sees_responses_done_overdue_progress_and_past_target(app, world, login_as):
    build(app, world)
    rows = listed(login_as(world.users["reviewer"]))
    cells, bar = rows["R-1"]
    # Active offices only: TH is inactive, its response does not count.
    assert cells["Offices responded"] == "1 of 2"
    # Counted: the world's 2 (not started), completed, verified, in progress, blocked, MY's verified
    # = 7 (cancelled and proposed left out); done: completed + 2 verified = 3.
    assert cells["Actions done"].endswith("3 of 7")
    assert (bar["max"], bar["value"]) == ("7", "3") and bar.get("aria-label") == "Actions done"
    # Overdue: only the open one past its deadline (the closed and the proposed ones are not).
    assert cells["Overdue"] == "1"
    assert "Past target" in cells["Target date"]
    # all done though its target has passed; R-3: target ahead; R-4: past, nothing done.
    assert "Past target" not in rows["R-2"][0]["Target date"] and rows["R-2"][0]["Actions done"].endswith(
        "2 of 2"
    )
    assert rows["R-2"][0]["Overdue"] == "0"
    assert "Past target" not in rows["R-3"][0]["Target date"] and rows["R-3"][0]["Overdue"] == "1"
    assert "Past target" in rows["R-4"][0]["Target date"]
    assert rows["R-4"][0]["Actions done"] == "0 of 0" and rows["R-4"][1] == {}  # no bar without actions


def test_office_scoped_roles_count_only_their_office(app, world, login_as):
    build(app, world)
    my_row = listed(login_as(world.users["focal_my"]))["R-1"][0]
    assert my_row["Offices responded"] == "0 of 1"  # SG's response is not theirs to count
    assert my_row["Actions done"].endswith("1 of 2") and my_row["Overdue"] == "0"
    sg_row = listed(login_as(world.users["manager_sg"]))["R-1"][0]
    assert sg_row["Offices responded"] == "1 of 1"
    assert sg_row["Actions done"].endswith("2 of 5") and sg_row["Overdue"] == "1"
    # A programme-wide manager sees the programme's figures, as a reviewer does.
    assert (
        listed(login_as(world.users["manager"]))["R-1"][0]
        == listed(login_as(world.users["reviewer"]))["R-1"][0]
    )


def test_overdue_counts_open_actions_past_their_deadline(app, world, login_as):
    """Open actions whose deadline has passed count; those due later do not."""
    with app.app_context():
        sg = db.session.get(Office, world.offices["SG"])
        rec = db.session.get(Recommendation, world.recommendation_id)
        for item in db.session.scalars(sa.select(ActionItem)):
            item.deadline = date.today() + timedelta(days=60)
        db.session.add(_item(rec, sg, "in_progress", date.today() - timedelta(days=1)))
        db.session.add(_item(rec, sg, "in_progress", date.today() + timedelta(days=1)))
        db.session.commit()
    assert listed(login_as(world.users["reviewer"]))["R-1"][0]["Overdue"] == "1"


def test_statements_stay_flat_as_recommendations_and_actions_grow(app, world, login_as, count_queries):
    reviewer, focal = login_as(world.users["reviewer"]), login_as(world.users["focal_sg"])

    def statements(client) -> int:
        with count_queries() as seen:
            assert client.get("/recommendations").status_code == 200
        return len(seen)

    build(app, world)
    small = [statements(reviewer), statements(focal)]
    today = date.today()
    with app.app_context():
        sg, my = (db.session.get(Office, world.offices[c]) for c in ("SG", "MY"))
        for n in range(40):
            rec = Recommendation(
                source_id=world.source_id, code=f"R-9-{n:02}", title=f"More {n}", text="T", theme="Digital"
            )
            rec.target_date = today - timedelta(days=n)
            db.session.add(rec)
            for k in range(5):
                db.session.add(
                    _item(rec, (sg, my)[k % 2], ("verified", "in_progress")[k % 2], today - timedelta(days=k))
                )
            db.session.add(OfficeResponse(recommendation=rec, office=my, response="accepted"))
        db.session.commit()
    assert [statements(reviewer), statements(focal)] == small


def test_the_code_cell_does_not_wrap(app, world, login_as):
    """The list's table carries the class the stylesheet keeps its first cell on one line with."""
    page = login_as(world.users["reviewer"]).get("/recommendations").text
    assert '<table class="list recommendations">' in page
    with app.open_resource("static/css/tracker.css") as css:
        rule = re.search(r"table\.recommendations tbody td:first-child \{([^}]*)\}", css.read().decode())
    assert rule and "white-space: nowrap" in rule.group(1)
