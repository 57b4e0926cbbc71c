"""Printable reports through HTTP: the programme's and each office's, per role; their figures, the
matrix and the overdue list; the print stylesheet; filters; statement counts."""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import ActionItem, Recommendation, Source, User

PAST, FUTURE = date(2000, 1, 1), date(2999, 12, 31)


@pytest.fixture
def data(app, world):
    """The world (R-1: E-filing for SG and MY, not started, due far ahead) plus R-2 (theme Legal):
    an overdue SG item in progress, a completed MY item, a verified SG item."""
    with app.app_context():
        r2 = Recommendation(
            source=Source(title="Review"), code="R-2", title="Modernise the law", text="T", theme="Legal"
        )
        manager_sg = db.session.scalar(sa.select(User).where(User.email == world.users["manager_sg"]))
        db.session.add_all(
            [
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["SG"],
                    title="Draft the bill",
                    owner=manager_sg,
                    deadline=PAST,
                    status="in_progress",
                ),
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["MY"],
                    title="Consult on the bill",
                    deadline=PAST,
                    status="completed",
                ),
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["MY"],
                    title="Overdue in Malaysia",
                    deadline=PAST,
                    status="blocked",
                ),
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["SG"],
                    title="Publish the act",
                    deadline=FUTURE,
                    status="verified",
                ),
            ]
        )
        db.session.execute(
            sa.update(ActionItem).where(ActionItem.id.in_(world.items.values())).values(deadline=FUTURE)
        )
        db.session.commit()
    return world


def _totals(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-total="([\w-]+)"[^>]*><th scope="row">[^<]*</th><td>([^<]*)', page))


def _cells(page: str) -> dict[str, str]:
    """rec/office → the cell's text, from the matrix."""
    found = re.findall(r'data-cell="([^"]+)">(.*?)</td>', page, re.S)
    return {key: re.sub(r"<[^>]+>", "", html).split("</")[0].strip() for key, html in found}


@pytest.mark.parametrize("role", ["admin", "reviewer", "manager"])
def test_the_programme_report_for_those_who_see_every_office(data, login_as, role):
    c = login_as(data.users[role])
    response = c.get("/reports/programme")
    assert response.status_code == 200
    page = response.text
    assert '<h1 id="report-heading">Programme report</h1>' in page
    assert re.search(r'<link rel="stylesheet" href="/static/css/print.css[^"]*" media="print">', page)
    totals = _totals(page)
    assert totals["all"] == "6" and totals["overdue"] == "2" and totals["not_started"] == "2"
    assert totals["completion"].startswith("33%") and "(2 of 6)" in totals["completion"]
    cells = _cells(page)
    assert cells["R-2/SG"].startswith("2 actions In progress")
    assert cells["R-2/MY"] == "2 actions Blocked 1 overdue"
    assert cells["R-1/MY"] == "1 action Not started"
    overdue = re.search(r'id="report-overdue-items">.*?</table>', page, re.S).group(0)
    assert "Draft the bill" in overdue and "Overdue in Malaysia" in overdue and "Consult" not in overdue
    assert re.search(r'data-office="SG">.*?<td>3</td>', page, re.S)  # progress per office


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg"])
def test_office_people_get_their_office_report_only(data, login_as, role):
    c = login_as(data.users[role])
    assert c.get("/reports/programme").status_code == 403
    for code in ("SG", "sg"):
        response = c.get(f"/reports/offices/{code}", query_string={"office": "MY"})
        assert response.status_code == 200
        page = response.text
        assert "Report of SG — IP Office of Singapore" in page
        for secret in (
            "Malaysia",
            "E-filing for MY",
            "Overdue in Malaysia",
            "Consult on the bill",
            data.users["focal_my"],
        ):
            assert secret not in page, secret
        totals = _totals(page)
        assert (totals["all"], totals["overdue"], totals["verified"]) == ("3", "1", "1")
        assert set(_cells(page)) == {"R-1/SG", "R-2/SG"}
        assert "Draft the bill" in re.search(r'id="report-overdue-items">.*?</table>', page, re.S).group(0)
    for other in ("/reports/offices/MY", "/reports/offices/XX", "/reports/offices/" + "S" * 300):
        assert c.get(other).status_code == 404, other


def test_reviewers_see_every_office_report(data, login_as):
    c = login_as(data.users["reviewer"])
    page = c.get("/reports/offices/MY").text
    assert "Report of MY" in page and "Overdue in Malaysia" in page and "Draft the bill" not in page
    assert set(_cells(page)) == {"R-1/MY", "R-2/MY"}
    assert c.get("/reports/offices/XX").status_code == 404


def test_report_filters_and_junk_values(data, login_as):
    c = login_as(data.users["reviewer"])
    legal = c.get("/reports/programme", query_string={"theme": "Legal"}).text
    assert set(_cells(legal)) == {"R-2/MY", "R-2/SG"} and "Theme: Legal" in legal
    assert _totals(legal)["all"] == "4"
    one_office = c.get("/reports/programme", query_string={"office": "SG"}).text
    assert set(_cells(one_office)) == {"R-1/SG", "R-2/SG"} and "Office: SG" in one_office
    junk = c.get("/reports/programme", query_string={"theme": "\x00" * 3, "source": "9" * 40, "office": "zz"})
    assert junk.status_code == 200 and "were not recognised and were ignored" in junk.text
    assert _totals(junk.text)["all"] == "6"
    sg_legal = c.get("/reports/offices/SG", query_string={"theme": "Legal"}).text
    assert set(_cells(sg_legal)) == {"R-2/SG"}


def test_the_print_stylesheet(app, world, login_as):
    c = login_as(world.users["reviewer"])
    with c.get("/static/css/print.css") as response:
        assert response.status_code == 200
        css = response.data.decode()
    for rule in (
        "@page",
        "thead { display: table-header-group; }",
        ".report-section + .report-section { break-before: page; }",
        ".site-header, .site-footer",
        "break-inside: avoid",
    ):
        assert rule in css, rule
    page = c.get("/reports/programme").text
    assert page.count('class="report-section"') == 3
    assert 'class="screen-only report-tools"' in page


def test_pages_link_to_the_reports(data, login_as):
    reviewer = login_as(data.users["reviewer"])
    assert 'href="/reports/programme"' in reviewer.get("/dashboard").text
    filtered = reviewer.get("/dashboard", query_string={"office": "MY", "theme": "Legal"}).text
    assert 'href="/reports/offices/MY?theme=Legal"' in filtered
    assert 'href="/reports/offices/SG"' in reviewer.get("/offices/SG").text
    focal = login_as(data.users["focal_sg"])
    dashboard = focal.get("/dashboard").text
    assert 'href="/reports/offices/SG"' in dashboard and "/reports/programme" not in dashboard
    assert 'href="/reports/offices/SG"' in focal.get("/offices/SG").text


def test_reports_need_a_signed_in_user(app, world):
    c = app.test_client()
    for url in ("/reports/programme", "/reports/offices/SG"):
        response = c.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def _add(app, world, n: int, start: int) -> None:
    with app.app_context():
        for i in range(start, start + n):
            rec = Recommendation(
                source_id=world.source_id, code=f"R-X-{i:03}", title=f"Extra {i}", text="t", theme="T"
            )
            db.session.add(rec)
            for code in ("SG", "MY"):
                db.session.add(
                    ActionItem(
                        recommendation=rec,
                        office_id=world.offices[code],
                        title=f"Do {i}",
                        deadline=PAST if i % 2 else FUTURE,
                        status=("blocked", "completed", "in_progress")[i % 3],
                    )
                )
        db.session.commit()


def test_reports_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    urls = ["/reports/programme", "/reports/offices/SG", "/reports/programme?theme=T"]
    reviewer = login_as(world.users["reviewer"])
    focal = login_as(world.users["focal_sg"])

    def statements(client, url: str) -> int:
        with count_queries() as seen:
            assert client.get(url).status_code == 200
        return len(seen)

    _add(app, world, 3, 0)
    small = [statements(reviewer, u) for u in urls] + [statements(focal, "/reports/offices/SG")]
    _add(app, world, 30, 100)
    assert [statements(reviewer, u) for u in urls] + [statements(focal, "/reports/offices/SG")] == small
