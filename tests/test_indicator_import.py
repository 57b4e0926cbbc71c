"""Import of indicator values from CSV and XLSX: preview of every row and problem, then all or nothing."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import EnvironBuilder, FlaskClient
from openpyxl import Workbook

from tests.conftest import csrf_token, login
from tracker import create_app
from tracker.extensions import db
from tracker.indicators.models import Indicator, Measurement, MeasurementChange
from tracker.models import ImportUpload
from tracker.quarters import Quarter

HEADER = ["indicator", "office", "period", "value", "note", "evidence_url"]
#: The last quarter that has ended (the views run at the real time); 2026Q2 and Q3 have values.
LAST = Quarter.last_ended(datetime.now(UTC).date())
FUTURE = LAST.next.next


def _csv(rows: list[list], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _xlsx(rows: list[list], header: list[str] = HEADER) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _upload(client: FlaskClient, content: bytes, filename: str = "values.csv"):
    """A multipart POST to /indicators/import; the request body is closed here."""
    data = {
        "csrf_token": csrf_token(client.get("/indicators/import").text),
        "file": (io.BytesIO(content), filename),
    }
    builder = EnvironBuilder(
        client.application, "/indicators/import", method="POST", data=data, content_type="multipart/form-data"
    )
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def _preview(client: FlaskClient, content: bytes, filename: str = "values.csv") -> tuple[str, str]:
    response = _upload(client, content, filename)
    assert response.status_code == 303, response.text
    url = response.headers["Location"]
    page = client.get(url)
    assert page.status_code == 200
    return url, page.text


def _confirm(client: FlaskClient, url: str):
    return client.post(url, data={"csrf_token": csrf_token(client.get(url).text)})


def _problems(page: str) -> set[tuple[int, str]]:
    return {
        (int(r), c) for r, c in re.findall(r'<tr class="problem" data-row="(\d+)" data-column="(\w*)"', page)
    }


def _kinds(page: str) -> dict[int, str]:
    return {int(r): k for r, k in re.findall(r'<tr data-row="(\d+)" data-kind="(\w+)">', page)}


def _count(app: Flask, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_preview_names_every_problem_by_row_and_field(app, world, indicators, login_as):
    with app.app_context():
        db.session.get(Indicator, indicators.indicators["GUIDE"]).archived_at = datetime.now(UTC)
        db.session.add(Indicator(code="OLD", name="Old", unit="number", archived_at=datetime.now(UTC)))
        db.session.commit()
    reviewer = login_as(world.users["reviewer"])
    rows = [
        [
            "ONLINE",
            "SG",
            "2026Q1",
            "70",
            "Counted by the e-filing system",
            "https://ipos.example/stats",
        ],  # 2 new
        ["ONLINE", "SG", "2026Q3", "66", "", ""],  # 3 correction of 65
        ["ONLINE", "SG", "2026Q2", "60", "", ""],  # 4 unchanged
        ["NOPE", "SG", str(LAST), "5", "", ""],  # 5 unknown indicator
        ["ONLINE", "XX", str(LAST), "5", "", ""],  # 6 unknown office
        ["ONLINE", "MY", "2026Q7", "5", "", ""],  # 7 bad period
        ["ONLINE", "MY", str(FUTURE), "5", "", ""],  # 8 future period
        ["ONLINE", "MY", "2025Q4", "140", "", ""],  # 9 percent above 100
        ["EXAM", "MY", "2025Q4", "-3", "", ""],  # 10 negative months
        ["ONLINE", "SG", "2026Q1", "71", "", ""],  # 11 same key as row 2
        ["OLD", "SG", "2025Q4", "1", "", ""],  # 12 archived indicator
        ["ONLINE", "MY", "2025Q3", "", "", "not a link"],  # 13 no value, bad link
        ["ONLINE", "MY", "2025Q2", "=1+1", "", ""],  # 14 a formula
    ]
    url, page = _preview(reviewer, _csv(rows))
    assert _problems(page) == {
        (5, "indicator"),
        (6, "office"),
        (7, "period"),
        (8, "period"),
        (9, "value"),
        (10, "value"),
        (11, "period"),
        (12, "indicator"),
        (13, "value"),
        (13, "evidence_url"),
        (14, "value"),
    }
    assert "No indicator has the code NOPE." in page
    assert "No office has the code XX." in page
    assert "Give a quarter such as 2026Q3." in page
    assert f"{FUTURE} has not ended yet" in page
    assert "A percentage cannot be above 100." in page
    assert "The value cannot be negative." in page
    assert "Row 2 already gives SG&#39;s value of ONLINE for 2026Q1." in page
    assert "Indicator OLD is archived." in page
    assert "Formulas are not accepted" in page
    expected = {2: "new", 3: "correction", 4: "unchanged"} | dict.fromkeys(range(5, 15), "problem")
    assert _kinds(page) == expected
    assert "Import these values" not in page  # no confirmation while there are problems
    # A confirmation anyway is refused, and nothing is written.
    before = _count(app, MeasurementChange)
    refused = _confirm(reviewer, url)
    assert refused.status_code == 422
    assert "Nothing was imported" in refused.text
    assert _count(app, MeasurementChange) == before


def test_reviewer_imports_all_rows_as_reported_values(app, world, indicators, login_as):
    reviewer = login_as(world.users["reviewer"])
    rows = [
        ["online", "sg", "2026Q1", "70,5", "From the annual report", "https://ipos.example/stats"],
        ["ONLINE", "SG", "2026Q3", "66", "", ""],
        ["ONLINE", "SG", "2026Q2", "60", "", ""],
        ["GUIDE", "MY", "2026Q3", "yes", "", ""],
    ]
    url, page = _preview(reviewer, _csv(rows))
    assert not _problems(page)
    assert _kinds(page) == {2: "new", 3: "correction", 4: "unchanged", 5: "new"}
    assert "(was 65 %)" in page
    done = _confirm(reviewer, url)
    assert done.status_code == 303
    assert "Imported 3 values (2 new, 1 corrected)" in reviewer.get(done.headers["Location"]).text
    with app.app_context():
        values = {
            (m.indicator.code, m.office.code, m.period): (m.value, m.state, m.note)
            for m in db.session.scalars(sa.select(Measurement))
        }
        assert values["ONLINE", "SG", "2026Q1"] == (70.5, "reported", "From the annual report")
        assert values["ONLINE", "SG", "2026Q3"] == (66, "reported", None)
        assert values["ONLINE", "SG", "2026Q2"] == (60, "validated", None)  # unchanged: not touched
        assert values["GUIDE", "MY", "2026Q3"] == (1, "reported", None)
        events = db.session.scalars(
            sa.select(MeasurementChange.event).order_by(MeasurementChange.id.desc())
        ).all()
        assert events[:3] == ["imported"] * 3
        assert not db.session.scalar(sa.select(sa.func.count()).select_from(ImportUpload))
    # The previewed file is gone once imported.
    assert reviewer.get(url).status_code == 404


def test_focal_point_imports_own_office_only(app, world, indicators, login_as):
    focal = login_as(world.users["focal_sg"])
    rows = [
        ["ONLINE", "SG", "2026Q1", "70", "", ""],
        ["ONLINE", "MY", "2026Q1", "45", "", ""],
        ["EXAM", "MY", "2026Q3", "28", "", ""],
    ]
    url, page = _preview(focal, _csv(rows))
    assert _problems(page) == {(3, "office"), (4, "office")}
    assert "You may not report values for MY." in page
    assert "(was" not in page  # nothing is said of MY's values
    assert _confirm(focal, url).status_code == 422
    with app.app_context():
        assert not db.session.scalar(sa.select(Measurement).where(Measurement.period == "2026Q1"))
    # Their own office's rows import.
    url, page = _preview(focal, _csv(rows[:1]))
    assert not _problems(page)
    assert _confirm(focal, url).status_code == 303
    # Managers may not report: no import for them.
    assert login_as(world.users["manager_sg"]).get("/indicators/import").status_code == 403


def test_xlsx_import(app, world, indicators, login_as):
    reviewer = login_as(world.users["reviewer"])
    rows = [
        ["ONLINE", "MY", "2026Q3", 47.5, None, None],
        ["EXAM", "MY", "2026Q3", 30, "Recounted", None],  # sent back: the same value again corrects it
        ["GUIDE", "SG", "2026Q3", "no", None, None],
    ]
    url, page = _preview(reviewer, _xlsx(rows), "values.xlsx")
    assert not _problems(page)
    assert _kinds(page) == {2: "new", 3: "correction", 4: "new"}
    assert _confirm(reviewer, url).status_code == 303
    with app.app_context():
        found = {
            (m.indicator.code, m.office.code, m.period): (m.value, m.state)
            for m in db.session.scalars(sa.select(Measurement))
        }
        assert found["ONLINE", "MY", "2026Q3"] == (47.5, "reported")
        assert found["EXAM", "MY", "2026Q3"] == (30, "reported")
        assert found["GUIDE", "SG", "2026Q3"] == (0, "reported")


def test_a_refusal_at_import_time_writes_nothing(app, world, indicators, login_as):
    """A row the rules refuse when the file is imported (here: its indicator archived after the
    preview) rolls back every row, and the page says which."""
    reviewer = login_as(world.users["reviewer"])
    rows = [["ONLINE", "MY", "2026Q1", "41", "", ""], ["EXAM", "SG", "2026Q1", "21", "", ""]]
    url, page = _preview(reviewer, _csv(rows))
    token = csrf_token(page)
    before = _count(app, MeasurementChange)
    with app.app_context():
        db.session.get(Indicator, indicators.indicators["EXAM"]).archived_at = datetime.now(UTC)
        db.session.commit()
    refused = reviewer.post(url, data={"csrf_token": token})
    assert refused.status_code == 422
    assert "Nothing was imported" in refused.text
    assert (3, "indicator") in _problems(refused.text)
    assert _count(app, MeasurementChange) == before
    with app.app_context():
        assert not db.session.scalar(sa.select(Measurement).where(Measurement.period == "2026Q1"))


def test_file_level_refusals_and_template(app, world, indicators, login_as):
    reviewer = login_as(world.users["reviewer"])
    missing = _upload(reviewer, _csv([["ONLINE", "SG"]], header=["indicator", "office"]))
    assert missing.status_code == 422
    assert "The file lacks the columns period, value." in missing.text
    wrong = _upload(reviewer, b"office,value\nSG,1\n")
    assert wrong.status_code == 422 and "indicator is not among them" in wrong.text
    template = reviewer.get("/indicators/import/template.csv")
    assert template.status_code == 200 and template.mimetype == "text/csv"
    lines = template.text.splitlines()
    assert lines[0] == ",".join(HEADER)
    assert lines[1:] == [f"EXAM,MY,{LAST},,,", f"GUIDE,MY,{LAST},,,", f"ONLINE,MY,{LAST},,,"]
    # The template, filled in, imports.
    focal = login_as(world.users["focal_sg"])
    filled = focal.get("/indicators/import/template.csv").text.replace(f"{LAST},,,", f"{LAST},1,,")
    url, page = _preview(focal, filled.encode())
    assert not _problems(page)
    assert "Import these values" in page
    # Headers in the interface's words are read too, and cancelling forgets the file.
    url, page = _preview(
        reviewer, _csv([["ONLINE", "MY", "2026Q1", "41"]], header=["Indicator", "Office", "Quarter", "Value"])
    )
    assert _kinds(page) == {2: "new"}
    forgotten = reviewer.post(url + "/cancel", data={"csrf_token": csrf_token(page)})
    assert forgotten.status_code == 303
    assert reviewer.get(url).status_code == 404


def test_preview_reads_in_bounded_statements(app, world, indicators, login_as, count_queries):
    reviewer = login_as(world.users["reviewer"])

    def statements(n: int) -> int:
        quarters = [LAST]
        while len(quarters) < n:
            quarters.append(quarters[-1].previous)
        url, _page = _preview(reviewer, _csv([["ONLINE", "SG", str(q), "50", "", ""] for q in quarters]))
        with count_queries() as seen:
            page = reviewer.get(url)
        assert page.status_code == 200 and len(_kinds(page.text)) == n
        return len(seen)

    assert statements(200) == statements(5)


@pytest.fixture
def hosts(app: Flask, tmp_path: Path) -> Iterator[tuple[Flask, Flask]]:
    """Two web hosts on the one database."""
    second = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_UPLOAD_DIR": str(tmp_path / "host2-uploads"),
            "TRACKER_MAIL_DIR": str(tmp_path / "host2-mail"),
        }
    )
    yield app, second
    with second.app_context():
        db.session.remove()
        db.engine.dispose()


def test_confirmation_on_another_host(app, world, indicators, hosts):
    first, second = hosts
    one, two = first.test_client(), second.test_client()
    for client in (one, two):
        assert login(client, world.users["reviewer"]).status_code == 302
    url, _page = _preview(one, _csv([["ONLINE", "MY", "2026Q1", "41", "", ""]]))
    assert _confirm(two, url).status_code == 303
    with app.app_context():
        assert db.session.scalar(sa.select(Measurement.value).where(Measurement.period == "2026Q1")) == 41
