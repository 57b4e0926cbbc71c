"""The indicator export through HTTP: CSV and XLSX content, filters, what each person may see, refused
filters, formula neutralising, the export links, and statement counts that do not grow with the rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import render_template
from openpyxl import load_workbook

from tracker.extensions import db
from tracker.indicators.models import Indicator, IndicatorTarget, Measurement
from tracker.models import Office, User

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = [
    "Indicator code",
    "Indicator",
    "Unit",
    "Office code",
    "Quarter",
    "Value",
    "State",
    "Baseline value",
    "Baseline quarter",
    "Target value",
    "Target quarter",
    "Progress to target (percent)",
    "Reported by",
    "Reported at",
    "Reviewed at",
    "Note",
    "Evidence link",
]
KEYS = [
    "indicator",
    "name",
    "unit",
    "office",
    "period",
    "value",
    "state",
    "baseline",
    "baseline_period",
    "target",
    "target_period",
    "progress",
    "reported_by",
    "reported_at",
    "reviewed_at",
    "note",
    "evidence_url",
]
AT = "2026-10-10T03:00:00+00:00"


def _csv(client, **query) -> list[dict]:
    with client.get("/indicators/export", query_string=query) as response:
        assert response.status_code == 200, response.text
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"].startswith('attachment; filename="indicators-')
        assert "no-store" in response.headers["Cache-Control"]
        text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    reader = csv.reader(io.StringIO(text[1:]))
    assert next(reader) == HEADER
    return [dict(zip(KEYS, row, strict=True)) for row in reader]


def _xlsx(client, **query) -> list[dict]:
    with client.get("/indicators/export", query_string={**query, "format": "xlsx"}) as response:
        assert response.status_code == 200, response.text
        assert response.mimetype == XLSX
        data = response.data
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    try:
        sheet = workbook.worksheets[0]
        assert sheet.title == "Indicators"
        rows = []
        for row in sheet.iter_rows():
            assert all(cell.data_type != "f" for cell in row)
            values = [cell.value for cell in row]
            rows.append(values + [None] * (len(HEADER) - len(values)))  # empty cells at the end are left out
    finally:
        workbook.close()
    assert rows[0] == HEADER
    return [dict(zip(KEYS, row, strict=True)) for row in rows[1:]]


def _keys(rows) -> list[tuple]:
    return [(r["indicator"], r["office"], r["period"]) for r in rows]


ALL = [
    ("EXAM", "MY", "2026Q3"),
    ("EXAM", "SG", "2026Q3"),
    ("ONLINE", "MY", "2026Q2"),
    ("ONLINE", "SG", "2026Q2"),
    ("ONLINE", "SG", "2026Q3"),
]


def test_the_csv_holds_one_row_per_value_with_goals_and_progress(app, world, indicators, login_as):
    rows = _csv(login_as(world.users["reviewer"]))
    assert _keys(rows) == ALL
    online_sg_q2 = rows[3]
    assert online_sg_q2 == {
        "indicator": "ONLINE",
        "name": "Applications filed online",
        "unit": "percent",
        "office": "SG",
        "period": "2026Q2",
        "value": "60.0",
        "state": "validated",
        "baseline": "50.0",
        "baseline_period": "2025Q4",
        "target": "90.0",
        "target_period": "2027Q4",
        "progress": "25.0",  # (60 - 50) / (90 - 50)
        "reported_by": world.users["focal_sg"],
        "reported_at": AT,
        "reviewed_at": AT,
        "note": "",
        "evidence_url": "",
    }
    assert [r["progress"] for r in rows] == [
        "33.3",
        "33.3",
        "20.0",
        "25.0",
        "37.5",
    ]  # lower is better for EXAM
    assert (rows[4]["state"], rows[4]["reviewed_at"]) == ("reported", "")


def test_the_xlsx_holds_the_same_rows_with_numbers_as_numbers(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    rows = _xlsx(c)
    assert _keys(rows) == ALL
    assert rows[3]["value"] == 60 and rows[3]["progress"] == 25 and rows[3]["baseline"] == 50
    assert rows[3]["reported_at"] == AT and rows[3]["note"] is None
    assert [r["state"] for r in rows] == [r["state"] for r in _csv(c)]


def test_each_person_exports_what_they_may_see(app, world, indicators, login_as):
    # Singapore's unvalidated value: its office, reviewers and admins; Malaysia's sent-back value likewise.
    assert _keys(_csv(login_as(world.users["focal_sg"]))) == [k for k in ALL if k != ("EXAM", "MY", "2026Q3")]
    assert _keys(_csv(login_as(world.users["focal_my"]))) == [
        k for k in ALL if k != ("ONLINE", "SG", "2026Q3")
    ]
    validated = [("EXAM", "SG", "2026Q3"), ("ONLINE", "MY", "2026Q2"), ("ONLINE", "SG", "2026Q2")]
    manager = login_as(world.users["manager"])
    assert _keys(_csv(manager)) == validated
    assert _keys(_xlsx(manager)) == validated
    assert _csv(manager, state="reported") == []
    assert _keys(_csv(login_as(world.users["admin"]))) == ALL


def test_filters_by_indicator_office_quarters_and_state(app, world, indicators, login_as):
    c = login_as(world.users["reviewer"])
    online = [k for k in ALL if k[0] == "ONLINE"]
    assert _keys(_csv(c, indicator="online")) == online
    assert _keys(_csv(c, indicator=str(indicators.indicators["ONLINE"]))) == online
    assert _keys(_csv(c, office="sg")) == [k for k in ALL if k[1] == "SG"]
    assert _keys(_csv(c, **{"from": "2026Q3"})) == [k for k in ALL if k[2] == "2026Q3"]
    assert _keys(_csv(c, to="2026Q2")) == [k for k in ALL if k[2] == "2026Q2"]
    assert _keys(_csv(c, state="sent_back")) == [("EXAM", "MY", "2026Q3")]
    both = {"indicator": "ONLINE", "office": "SG", "from": "2026Q2", "to": "2026Q3", "state": "validated"}
    assert _keys(_xlsx(c, **both)) == [("ONLINE", "SG", "2026Q2")]
    assert _csv(c, indicator="GUIDE") == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"format": "pdf"}, "format"),
        ({"indicator": "NOPE"}, "indicator"),
        ({"indicator": "99999999999999999999"}, "indicator"),
        ({"office": "XX"}, "office"),
        ({"from": "2026Q5"}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": "2026Q3", "to": "2026Q1"}, "from"),
        ({"state": "draft"}, "state"),
    ],
)
def test_a_bad_filter_is_a_400_page_naming_it(app, world, indicators, login_as, query, named):
    response = login_as(world.users["reviewer"]).get("/indicators/export", query_string=query)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert f"{named}:" in response.text and "Bad request" in response.text


def test_signed_out_people_are_sent_to_sign_in(app, world, indicators, client):
    response = client.get("/indicators/export")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_text_that_a_spreadsheet_would_run_is_neutralised(app, world, indicators, login_as):
    with app.app_context():
        m = db.session.get(Measurement, indicators.measurements["online_sg_q2"])
        m.note = '=HYPERLINK("http://evil.example","click")'
        m.evidence_url = "https://ipos.example/q2"
        db.session.get(Indicator, indicators.indicators["ONLINE"]).name = "+Online share"
        db.session.commit()
    c = login_as(world.users["reviewer"])
    for rows in (_csv(c, indicator="ONLINE"), _xlsx(c, indicator="ONLINE")):
        row = rows[1]
        assert row["note"] == '\'=HYPERLINK("http://evil.example","click")'
        assert row["name"] == "'+Online share" and row["evidence_url"] == "https://ipos.example/q2"


def test_the_export_links_carry_the_pages_filters(app, world, indicators):
    def links(url: str, **context) -> list[dict]:
        with app.test_request_context(url):
            html = render_template("indicators/_export_links.html", **context)
        found = []
        for href in html.split('href="')[1:]:
            target = urlsplit(href.split('"')[0].replace("&amp;", "&"))
            assert target.path == "/indicators/export"
            found.append({k: v[0] for k, v in parse_qs(target.query).items()})
        return found

    online = indicators.indicators["ONLINE"]
    assert links("/indicators/?office=SG&from=2026Q1&to=&page=3") == [
        {"format": "csv", "office": "SG", "from": "2026Q1"},
        {"format": "xlsx", "office": "SG", "from": "2026Q1"},
    ]
    # An indicator's page: its indicator, whatever the query string says of the others.
    assert links(f"/indicators/{online}?to=2026Q3")[0] == {
        "format": "csv",
        "indicator": str(online),
        "to": "2026Q3",
    }
    chosen = links("/", indicator_export_args={"office": "MY"})
    assert [link.get("office") for link in chosen] == ["MY", "MY"]


def test_exports_run_a_bounded_number_of_statements(app, world, indicators, login_as, count_queries):
    c = login_as(world.users["reviewer"])
    urls = [
        "/indicators/export",
        "/indicators/export?format=xlsx",
        "/indicators/export?indicator=ONLINE&office=SG&from=2020Q1&to=2026Q3&state=validated",
    ]

    def statements() -> list[int]:
        found = []
        for url in urls:
            with count_queries() as seen, c.get(url) as response:
                assert response.status_code == 200
                response.get_data()  # the rows are read while the file is written
            found.append(len(seen))
        return found

    small = statements()
    with app.app_context():
        # Many values, each office with its own goals, each value reported by its own person.
        online = indicators.indicators["ONLINE"]
        for n in range(8):
            office = Office(code=f"O{n}", name=f"Office {n}", country="X", timezone="UTC")
            db.session.add(office)
            db.session.flush()
            db.session.add(
                IndicatorTarget(
                    indicator_id=online, office_id=office.id, baseline_value=n, baseline_period="2023Q4"
                )
            )
            for year in (2024, 2025):
                for quarter in range(1, 5):
                    person = User(email=f"p{n}.{year}.{quarter}@example.test", name="P", role="focal_point")
                    person.office_id = office.id
                    db.session.add(person)
                    db.session.flush()
                    db.session.add(
                        Measurement(
                            indicator_id=online,
                            office_id=office.id,
                            period=f"{year}Q{quarter}",
                            value=quarter * 10,
                            state="validated",
                            reported_by_id=person.id,
                            reported_at=datetime(2026, 1, 1, tzinfo=UTC),
                        )
                    )
        db.session.commit()
    assert statements() == small
    assert len(_csv(c)) == len(ALL) + 8 * 8
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Measurement)) == len(ALL) + 64
