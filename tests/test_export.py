"""Exports through HTTP: the action list as CSV and XLSX under the list's filters, the dashboard's
matrix as XLSX; what each person may see, CSV injection, malformed filters, statement counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from tracker.extensions import db
from tracker.models import ActionItem, Recommendation, Source, User
from tracker.transfer import columns

HEADER = list(columns.COLUMNS) + list(columns.EXPORT_EXTRAS)
#: What an English reader sees at the top of the columns (written out by hand).
LABELS = [
    "Recommendation code",
    "Recommendation title",
    "Recommendation text",
    "Theme",
    "Priority",
    "Source",
    "Office code",
    "Action ID",
    "Action title",
    "Description",
    "Owner email",
    "Deputy email",
    "Deadline",
    "Agreed deadline",
    "Status",
    "Progress",
    "Note on the change",
    "Office name",
    "Owner name",
    "Overdue",
    "Last updated",
]
PAST, FUTURE = date(2000, 1, 1), date(2999, 12, 31)


def _csv_rows(client, url: str, **query) -> list[dict]:
    with client.get(url, query_string=query or None) as response:
        assert response.status_code == 200, response.status_code
        assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
        text = response.data.decode("utf-8")
    assert text.startswith("\ufeff")  # so that spreadsheets read UTF-8
    reader = csv.reader(io.StringIO(text[1:]))
    header = next(reader)
    assert header == LABELS
    return [dict(zip(HEADER, row, strict=True)) for row in reader]


def _workbook(client, url: str, **query) -> list[list]:
    """The first sheet's rows, and checks that every text cell is a string, never a formula."""
    with client.get(url, query_string=query) as response:
        assert response.status_code == 200, response.status_code
        assert response.mimetype == services_mimetype()
        data = response.data
    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    try:
        rows = []
        for row in workbook.worksheets[0].iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell.value
            rows.append([cell.value for cell in row])
        return rows
    finally:
        workbook.close()


def services_mimetype() -> str:
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _xlsx_dicts(client, url: str, **query) -> list[dict]:
    rows = _workbook(client, url, **query)
    assert rows[0] == LABELS
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


@pytest.fixture
def data(app, world):
    """The world plus: R-2 (theme Legal, source Review) with an overdue SG item owned by the SG
    manager, a completed MY item, and a verified SG item."""
    with app.app_context():
        review = Source(title="Review")
        r2 = Recommendation(source=review, code="R-2", title="Modernise the law", text="T", theme="Legal")
        manager_sg = db.session.scalar(sa.select(User).where(User.email == world.users["manager_sg"]))
        db.session.add_all(
            [
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["SG"],
                    title="Draft the bill",
                    owner=manager_sg,
                    deadline=PAST,
                    agreed_deadline=date(1999, 6, 30),  # extended once since the plan was agreed
                    status="in_progress",
                    progress=60,
                ),
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["MY"],
                    title="Consult on the bill",
                    deadline=PAST,
                    status="completed",
                    progress=100,
                ),
                ActionItem(
                    recommendation=r2,
                    office_id=world.offices["SG"],
                    title="Publish the act",
                    deadline=FUTURE,
                    status="verified",
                    progress=100,
                ),
            ]
        )
        db.session.execute(
            sa.update(ActionItem).where(ActionItem.id.in_(world.items.values())).values(deadline=FUTURE)
        )
        db.session.commit()
        world.source_ids = {"Dialogue": world.source_id, "Review": review.id}
    return world


def test_csv_export_has_the_import_columns_and_the_list_order(app, data, login_as):
    c = login_as(data.users["reviewer"])
    rows = _csv_rows(c, "/export/actions.csv")
    # Open items first, by deadline, as on the home page.
    assert [r["action_title"] for r in rows] == [
        "Draft the bill",
        "E-filing for SG",
        "E-filing for MY",
        "Consult on the bill",
        "Publish the act",
    ]
    draft = rows[0]
    assert draft["recommendation_code"] == "R-2" and draft["source"] == "Review" and draft["theme"] == "Legal"
    assert (
        draft["office_code"],
        draft["owner_email"],
        draft["deadline"],
        draft["status"],
        draft["progress"],
    ) == (
        "SG",
        data.users["manager_sg"],
        "2000-01-01",
        "in_progress",
        "60",
    )
    # Both deadlines, side by side: the current one and the one agreed in the plan.
    assert (draft["agreed_deadline"], draft["note"]) == ("1999-06-30", "")
    # The fixture moved the world's deadlines (an UPDATE): their agreed deadline stayed.
    assert (rows[1]["deadline"], rows[1]["agreed_deadline"]) == ("2999-12-31", "2026-11-24")
    assert draft["overdue"] == "yes" and draft["owner_name"] == "Manager Sg" and draft["office_name"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", draft["updated_at"])
    assert rows[1]["action_id"] == str(data.items["SG"]) and rows[1]["overdue"] == "no"
    assert rows[3]["overdue"] == "no"  # completed: not overdue, however old the deadline


@pytest.mark.parametrize("extension", ["csv", "xlsx"])
def test_exports_follow_every_filter_of_the_list(app, data, login_as, extension):
    c = login_as(data.users["reviewer"])

    def titles(**query) -> set[str]:
        if extension == "csv":
            rows = _csv_rows(c, "/export/actions.csv", **query)
        else:
            rows = _xlsx_dicts(c, "/export/actions.xlsx", **query)
        return {r["action_title"] for r in rows}

    assert titles(office="sg") == {"Draft the bill", "E-filing for SG", "Publish the act"}
    assert titles(status="completed") == {"Consult on the bill"}
    assert titles(overdue="1") == {"Draft the bill"}
    assert titles(recommendation="R-1") == {"E-filing for SG", "E-filing for MY"}
    assert titles(theme="Legal", office="MY") == {"Consult on the bill"}
    assert titles(source=data.source_ids["Dialogue"]) == {"E-filing for SG", "E-filing for MY"}
    assert titles(owner=data.users["manager_sg"].upper()) == {"Draft the bill"}
    assert titles(owner="nobody@example.test") == set()
    assert titles(office="XX") == set()
    assert len(titles(status="bogus", source="abc", overdue="yes")) == 5  # ignored, as the list ignores them


def test_the_home_page_links_carry_its_filters(data, login_as):
    c = login_as(data.users["reviewer"])
    page = c.get(
        "/", query_string={"office": "SG", "status": "in_progress", "overdue": "1", "theme": "Legal"}
    ).text
    links = re.findall(r'href="(/export/actions\.(?:csv|xlsx)[^"]*)"', page)
    assert len(links) == 2 and "Download CSV" in page and "Download XLSX" in page
    for link in links:
        assert all(part in link for part in ("office=SG", "status=in_progress", "overdue=1", "theme=Legal"))
    rows = _csv_rows(c, links[0].replace("&amp;", "&"))
    assert [r["action_title"] for r in rows] == ["Draft the bill"]
    plain = c.get("/").text
    assert 'href="/export/actions.csv"' in plain


DANGEROUS = ["=cmd|' /C calc'!A0", "+1+2", "-2-3", "@SUM(A1:A2)", "\tTabbed", "\rReturn", "'quoted"]


def test_cells_that_could_run_as_formulas_are_neutralised(app, world, login_as):
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec.title, rec.theme = '=HYPERLINK("http://evil.example")', "@theme"
        for i, title in enumerate(DANGEROUS):
            db.session.add(
                ActionItem(
                    recommendation=rec,
                    office_id=world.offices["SG"],
                    title=title,
                    description="=1+1",
                    deadline=date(2999, 1, i + 1),
                )
            )
        db.session.commit()
    c = login_as(world.users["reviewer"])
    rows = _csv_rows(c, "/export/actions.csv", office="SG")
    by_title = {r["action_title"]: r for r in rows}
    for title in DANGEROUS:
        assert "'" + title in by_title, title
        assert by_title["'" + title]["description"] == "'=1+1"
    assert rows[0]["recommendation_title"] == '\'=HYPERLINK("http://evil.example")'
    assert rows[0]["theme"] == "'@theme"
    assert by_title["E-filing for SG"]["action_title"] == "E-filing for SG"  # nothing else is touched

    sheet = _workbook(c, "/export/actions.xlsx", office="SG")  # no cell is a formula (checked there)
    titles = {row[HEADER.index("action_title")] for row in sheet[1:]}
    # XML turns a carriage return into a line feed; the cell is still neutralised.
    assert {"'" + t.replace("\r", "\n") for t in DANGEROUS} <= titles
    assert sheet[1][HEADER.index("recommendation_title")] == '\'=HYPERLINK("http://evil.example")'
    assert all(row[HEADER.index("description")] in ("'=1+1", None) for row in sheet[1:])


@pytest.mark.parametrize("extension", ["csv", "xlsx"])
def test_a_focal_point_exports_their_office_only(app, data, login_as, extension):
    c = login_as(data.users["focal_sg"])
    for query in ({}, {"office": "MY"}, {"recommendation": "R-2"}, {"owner": data.users["focal_my"]}):
        if extension == "csv":
            with c.get("/export/actions.csv", query_string=query) as response:
                body = response.data.decode("utf-8")
            reader = csv.reader(io.StringIO(body[1:]))
            assert next(reader) == LABELS
            rows = [dict(zip(HEADER, row, strict=True)) for row in reader]
        else:
            rows = _xlsx_dicts(c, "/export/actions.xlsx", **query)
            body = repr(rows)
        assert {r["office_code"] for r in rows} <= {"SG"}, query
        for secret in ("E-filing for MY", "Consult on the bill", data.users["focal_my"], "Malaysia"):
            assert secret not in body, (query, secret)
    assert len(rows) == 0  # owner=focal.my: not one of their items
    everything = _csv_rows(c, "/export/actions.csv")
    assert {r["action_title"] for r in everything} == {"Draft the bill", "E-filing for SG", "Publish the act"}


def test_the_matrix_export(app, data, login_as):
    c = login_as(data.users["reviewer"])
    rows = _workbook(c, "/export/matrix.xlsx")
    assert rows[0] == ["Code", "Recommendation", "MY", "SG"]
    assert rows[1] == ["R-1", "Go digital", "1 action · Not started", "1 action · Not started"]
    assert rows[2] == [
        "R-2",
        "Modernise the law",
        "1 action · Completed, awaiting verification",
        "2 actions · In progress · 1 overdue",
    ]
    legal = _workbook(c, "/export/matrix.xlsx", theme="Legal", office="SG")
    assert legal == [
        ["Code", "Recommendation", "SG"],
        ["R-2", "Modernise the law", "2 actions · In progress · 1 overdue"],
    ]
    junk = _workbook(c, "/export/matrix.xlsx", source="x" * 500, theme="\x00", office="ZZ")
    assert junk == rows  # values the dashboard does not offer are ignored, as there

    focal = login_as(data.users["focal_sg"])
    for query in ({}, {"office": "MY"}):
        mine = _workbook(focal, "/export/matrix.xlsx", **query)
        assert mine[0] == ["Code", "Recommendation", "SG"], query
        assert "Consult" not in repr(mine) and "Completed" not in repr(mine)
    page = c.get("/dashboard", query_string={"theme": "Legal"}).text
    assert 'href="/export/matrix.xlsx?theme=Legal"' in page and "Download the matrix (XLSX)" in page


@pytest.mark.parametrize(
    "query",
    [
        {"office": "S\x00G"},
        {"recommendation": "R" * 40},
        {"theme": "x" * 101},
        {"owner": "a" * 255},
        {"source": "99999999999999999999"},
        {"status": "in_progress\n"},
    ],
)
def test_malformed_filters_are_a_clear_400(data, login_as, query):
    c = login_as(data.users["reviewer"])
    for url in ("/export/actions.csv", "/export/actions.xlsx"):
        response = c.get(url, query_string=query)
        assert response.status_code == 400, (url, query)
        assert "is not valid" in response.text and "attachment" not in response.headers.get(
            "Content-Disposition", ""
        )


def test_exports_need_a_signed_in_user(app, world):
    c = app.test_client()
    for url in ("/export/actions.csv", "/export/actions.xlsx", "/export/matrix.xlsx"):
        response = c.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
        assert c.post(url).status_code in (400, 405)


def test_the_csv_export_is_streamed(data, login_as):
    c = login_as(data.users["reviewer"])
    with c.get("/export/actions.csv", buffered=False) as response:
        assert response.is_streamed and response.headers.get("Content-Length") is None
        assert response.headers["Cache-Control"] == "private, no-store"
        body = b"".join(response.response)
    assert body.count(b"\r\n") == 6


def _add(app, world, n: int, start: int) -> None:
    """n recommendations with an item for each office."""
    with app.app_context():
        for i in range(start, start + n):
            rec = Recommendation(
                source_id=world.source_id, code=f"R-X-{i:03}", title=f"Extra {i}", text="t", theme="T"
            )
            db.session.add(rec)
            for code in ("SG", "MY"):
                db.session.add(
                    ActionItem(
                        recommendation=rec, office_id=world.offices[code], title=f"Do {i}", deadline=PAST
                    )
                )
        db.session.commit()


def test_exports_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    c = login_as(world.users["reviewer"])
    urls = [
        "/export/actions.csv",
        "/export/actions.xlsx",
        "/export/matrix.xlsx",
        "/export/actions.csv?overdue=1&owner=x@y.z",
    ]

    def statements(url: str) -> int:
        with count_queries() as seen, c.get(url) as response:
            assert response.status_code == 200
            response.get_data()  # the CSV is produced while it is read
        return len(seen)

    _add(app, world, 3, 0)
    small = [statements(u) for u in urls]
    _add(app, world, 30, 100)
    assert [statements(u) for u in urls] == small
    assert len(_csv_rows(c, "/export/actions.csv")) == 2 + 2 * 33


def test_a_focal_point_sees_nothing_of_malaysia_in_any_transfer_url(app, world, login_as):
    """test_permissions.py's check, for this feature's URLs, reading XLSX files as their cells."""
    c = login_as(world.users["focal_sg"])
    secrets = ["E-filing for MY", world.users["focal_my"], "Malaysia"]
    tried = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("transfer.") or "GET" not in rule.methods:
            continue
        url = re.sub(r"<(?:[^:<>]+:)?code>", "MY", rule.rule).replace("<token>", "a" * 32)
        for query in ({}, {"office": "MY"}, {"office_id": world.offices["MY"]}):
            with c.get(url, query_string=query) as response:
                tried += 1
                if "<code>" in rule.rule:
                    assert response.status_code == 404, url
                if response.status_code != 200:
                    continue
                if response.mimetype == services_mimetype():
                    workbook = load_workbook(io.BytesIO(response.data), read_only=True)
                    text = repr([list(ws.iter_rows(values_only=True)) for ws in workbook])
                    workbook.close()
                else:
                    text = response.data.decode("utf-8")
                for secret in secrets:
                    assert secret not in text, (url, query, secret)
    assert tried >= 15


def test_times_in_the_export_are_utc(app, world, login_as):
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.updated_at = datetime(2026, 5, 1, 23, 30, tzinfo=UTC)
        db.session.commit()
    rows = _csv_rows(login_as(world.users["reviewer"]), "/export/actions.csv", office="SG")
    assert rows[0]["updated_at"] == "2026-05-01T23:30:00+00:00"


def test_the_xlsx_export_carries_both_deadlines_as_dates(app, data, login_as):
    rows = _xlsx_dicts(login_as(data.users["reviewer"]), "/export/actions.xlsx")
    draft = next(r for r in rows if r["action_title"] == "Draft the bill")
    assert (draft["deadline"].date(), draft["agreed_deadline"].date()) == (PAST, date(1999, 6, 30))
    assert draft["note"] is None
