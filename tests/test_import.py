"""Importing recommendations and action items from CSV and XLSX, through HTTP and the command line:
the preview, every kind of problem, all-or-nothing writes, round trips with exports, odd files,
permissions and bounded statement counts."""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    FileChunk,
    ImportUpload,
    Notification,
    Recommendation,
    RecommendationChange,
    Source,
    StoredFile,
    User,
)
from tracker.transfer import columns, plan

COLUMNS = list(columns.COLUMNS)


# --- helpers ---------------------------------------------------------------------------------


def _csv(rows: list[dict], header: list[str] | None = None, delimiter: str = ",") -> str:
    header = header or COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return buffer.getvalue()


def _xlsx(rows: list[list], header: list[str] | None = None) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header or COLUMNS)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _upload(client, content: bytes | str, filename: str, *, token: str | None = None, field: str = "file"):
    """A multipart POST to /import; the request body is closed here (no temp file left open)."""
    from flask.testing import EnvironBuilder

    if isinstance(content, str):
        content = content.encode("utf-8")
    data = {"csrf_token": token or csrf_token(client.get("/import").text)}
    data[field] = (io.BytesIO(content), filename) if field == "file" else content.decode("latin-1")
    builder = EnvironBuilder(
        client.application, "/import", method="POST", data=data, content_type="multipart/form-data"
    )
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def _preview(client, content: bytes | str, filename: str = "plan.csv") -> tuple[str, str]:
    """Upload a file; returns the preview's URL and page."""
    response = _upload(client, content, filename)
    assert response.status_code == 303, response.text
    url = response.headers["Location"]
    page = client.get(url)
    assert page.status_code == 200
    return url, page.text


def _confirm(client, url: str):
    return client.post(url, data={"csrf_token": csrf_token(client.get(url).text)})


def _counts(page: str) -> dict[tuple[str, str], int]:
    """(recommendations|actions, create|update|unchanged) → the number shown in the preview."""
    found = {}
    for what in ("recommendations", "actions"):
        row = re.search(rf'<tr data-what="{what}">.*?</tr>', page, re.S).group(0)
        for kind, number in re.findall(r'<td data-kind="(\w+)">([\d,]+)</td>', row):
            found[what, kind] = int(number.replace(",", ""))
    return found


def _problems(page: str) -> list[tuple[str, str, str]]:
    """(row, column, message) of every problem listed in the preview."""
    rows = re.findall(
        r'<tr class="problem"><td data-label="Row">([^<]*)</td><td data-label="Column">'
        r"(?:<code>([^<]*)</code>|–)</td><td data-label=\"Problem\">(.*?)</td></tr>",
        page,
        re.S,
    )
    return [(row, column, message) for row, column, message in rows]


def _snapshot(app) -> tuple:
    """Every recommendation and item with its changeable columns, and the history and outbox sizes."""
    with app.app_context():
        recommendations = db.session.execute(
            sa.select(
                Recommendation.code,
                Recommendation.title,
                Recommendation.text,
                Recommendation.theme,
                Recommendation.priority,
                Recommendation.source_id,
                Recommendation.updated_at,
            ).order_by(Recommendation.code)
        ).all()
        items = db.session.execute(
            sa.select(
                ActionItem.id,
                ActionItem.recommendation_id,
                ActionItem.office_id,
                ActionItem.title,
                ActionItem.description,
                ActionItem.owner_id,
                ActionItem.deputy_id,
                ActionItem.deadline,
                ActionItem.agreed_deadline,
                ActionItem.status,
                ActionItem.progress,
                ActionItem.version,
                ActionItem.updated_at,
            ).order_by(ActionItem.id)
        ).all()
        history = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        outbox = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
        return [tuple(r) for r in recommendations], [tuple(i) for i in items], history, outbox


def _stored_files(app) -> set[str]:
    """The tokens of the uploads waiting in the database; no stored file is left without one."""
    with app.app_context():
        tokens = set(db.session.scalars(sa.select(ImportUpload.token)))
        files = db.session.scalar(sa.select(sa.func.count()).select_from(StoredFile))
        chunks = db.session.scalar(
            sa.select(sa.func.count(sa.distinct(FileChunk.file_id))).select_from(FileChunk)
        )
        assert files == chunks == len(tokens)
        return tokens


def _rec(code: str, **values) -> dict:
    row = {
        "recommendation_code": code,
        "recommendation_title": f"Title of {code}",
        "recommendation_text": f"Text of {code}",
        "theme": "Digital",
        "source": "Dialogue",
    }
    row.update(values)
    return row


# --- the template ----------------------------------------------------------------------------


def test_templates_have_the_columns_and_one_example_row(world, login_as):
    c = login_as(world.users["reviewer"])
    with c.get("/import/template.csv") as response:
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0] == COLUMNS and len(rows) == 2
    example = dict(zip(rows[0], rows[1], strict=True))
    assert example["status"] == "not_started" and example["office_code"] == "SG"
    assert re.fullmatch(r"\d{4}-12-31", example["deadline"])
    with c.get("/import/template.xlsx") as response:
        assert response.status_code == 200
        workbook = load_workbook(io.BytesIO(response.data), read_only=True)
        sheets = [[list(row) for row in ws.iter_rows(values_only=True)] for ws in workbook]
        workbook.close()
    assert sheets[0][0] == COLUMNS
    assert len(sheets[0]) == 2 and sheets[0][1][0] == "R-2026-01"
    assert [row[0] for row in sheets[1][1:]] == COLUMNS  # the sheet that explains each column


def test_the_template_imports_as_a_plan_to_create(app, world, login_as):
    """The example row is a valid file: only its made-up source and owner are problems."""
    c = login_as(world.users["reviewer"])
    with c.get("/import/template.csv") as response:
        content = response.data
    _, page = _preview(c, content, "tracker-import-template.csv")
    assert {(r, col) for r, col, _ in _problems(page)} == {("2", "source"), ("2", "owner_email")}


# --- preview and confirmation ------------------------------------------------------------------


def test_preview_then_confirm_creates_updates_and_leaves_alone(app, world, login_as):
    content = _csv(
        [
            _rec("R-2", recommendation_title="Open data", priority="High", theme="Data"),
            {
                "recommendation_code": "R-2",
                "office_code": "sg",
                "action_title": "Publish the first dataset",
                "description": "CSV and JSON",
                "owner_email": "FOCAL.SG@example.test",
                "deadline": "2027-03-31",
                "status": "In progress",
                "progress": "30%",
            },
            {
                "recommendation_code": "R-1",
                "recommendation_title": "Go digital, now",
                "office_code": "SG",
                "action_id": str(world.items["SG"]),
                "status": "blocked",
                "progress": "10",
            },
            {"recommendation_code": "R-1", "office_code": "MY", "action_title": "E-filing for MY"},
        ]
    )
    c = login_as(world.users["reviewer"])
    before = _snapshot(app)
    url, page = _preview(c, content)
    assert _counts(page) == {
        ("recommendations", "create"): 1,
        ("recommendations", "update"): 1,
        ("recommendations", "unchanged"): 0,
        ("actions", "create"): 1,
        ("actions", "update"): 1,
        ("actions", "unchanged"): 1,
    }
    assert _problems(page) == []
    assert "Publish the first dataset" in page and "Title: Go digital → Go digital, now" in page
    assert "Status: Not started → Blocked; Progress: 0 → 10" in page
    assert _snapshot(app) == before  # nothing is written by the preview

    done = _confirm(c, url)
    assert done.status_code == 303 and done.headers["Location"].endswith("/import")
    assert "1 recommendations created, 1 updated; 1 actions created, 1 updated" in c.get("/import").text
    assert c.get(url).status_code == 404  # the file is gone once imported
    with app.app_context():
        reviewer = db.session.scalar(sa.select(User).where(User.email == world.users["reviewer"]))
        r2 = db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-2"))
        assert (r2.title, r2.priority, r2.theme, r2.source.title) == ("Open data", "high", "Data", "Dialogue")
        assert db.session.get(Recommendation, world.recommendation_id).title == "Go digital, now"
        new = db.session.scalar(sa.select(ActionItem).where(ActionItem.recommendation_id == r2.id))
        # Created by create_action (not started), then moved by record_update: two history rows.
        assert (new.office.code, new.owner.email, new.status, new.progress, new.version) == (
            "SG",
            world.users["focal_sg"],
            "in_progress",
            30,
            2,
        )
        assert new.deadline == new.agreed_deadline == date(2027, 3, 31) and new.description == "CSV and JSON"
        moved, created = new.updates
        assert (created.author_id, created.item_version, created.event, created.new_status) == (
            reviewer.id,
            1,
            "created",
            "not_started",
        )
        assert created.note == "Action added to the plan. Owner: Focal Sg."
        assert (
            moved.author_id,
            moved.item_version,
            moved.old_status,
            moved.new_status,
            moved.new_progress,
        ) == (
            reviewer.id,
            2,
            "not_started",
            "in_progress",
            30,
        )
        assert moved.note == "Imported from plan.csv"

        sg = db.session.get(ActionItem, world.items["SG"])
        assert (sg.status, sg.progress, sg.version) == ("blocked", 10, 2)
        latest = sg.updates[0]
        assert (latest.old_status, latest.new_status, latest.old_progress, latest.new_progress) == (
            "not_started",
            "blocked",
            0,
            10,
        )
        assert (latest.author_id, latest.item_version, latest.note) == (
            reviewer.id,
            2,
            "Imported from plan.csv",
        )
        assert latest.old_deadline == latest.new_deadline == date(2026, 11, 24)  # the deadline did not move
        assert latest.event is None  # a plain update, as record_update writes it

        my = db.session.get(ActionItem, world.items["MY"])
        assert my.version == 1 and len(my.updates) == 1
        # The new owner hears of it once, through the outbox.
        mails = db.session.scalars(sa.select(Notification).where(Notification.kind == "assignment")).all()
        assert [m.to_address for m in mails] == [world.users["focal_sg"]]


def test_every_kind_of_problem_is_listed_by_row_and_column_and_nothing_is_written(app, world, login_as):
    sg_action = {"recommendation_code": "R-1", "office_code": "SG", "deadline": "2027-01-01"}
    rows = [
        dict(sg_action, office_code="XX", action_title="A"),  # 2
        dict(sg_action, action_title="B", owner_email="nobody@example.test"),  # 3
        dict(sg_action, action_title="C", deadline="31/12/2027"),  # 4
        _rec("R-9"),  # 5
        _rec("R-9"),  # 6: duplicate code
        dict(sg_action, action_title="D", progress="150"),  # 7
        dict(sg_action, action_title="E", status="done-ish"),  # 8
        _rec("R-8", source="Nowhere", recommendation_text=""),  # 9
        dict(sg_action, action_title="F", deadline="=TODAY()"),  # 10
        dict(sg_action, action_id=str(world.items["MY"])),  # 11
        dict(
            sg_action,
            action_title="G",
            owner_email=world.users["focal_sg"],
            deputy_email=world.users["focal_sg"],
        ),
        dict(sg_action, action_title="H", owner_email=world.users["focal_my"]),  # 13
        {"recommendation_code": "R-1", "priority": "urgent"},  # 14
        dict(sg_action, action_title="I", owner_email=world.users["inactive_sg"]),  # 15
        dict(sg_action, action_title="J", recommendation_title="One title"),  # 16
        dict(sg_action, action_title="K", recommendation_title="Another title"),  # 17
        dict(sg_action, action_title="Twice"),  # 18
        dict(sg_action, action_title="Twice"),  # 19
        {"recommendation_code": "bad code!"},  # 20
        dict(sg_action, recommendation_code="", action_title="L"),  # 21
        dict(sg_action, action_title="M", progress="-1"),  # 22
        dict(sg_action, action_id="abc"),  # 23
        dict(sg_action, action_title="N", deadline=""),  # 24: required for a new action
        dict(sg_action, action_id="999999"),  # 25
    ]
    c = login_as(world.users["reviewer"])
    before = _snapshot(app)
    url, page = _preview(c, _csv(rows))
    problems = _problems(page)
    where = {(r, col) for r, col, _ in problems}
    expected = {
        ("2", "office_code"): "Unknown office code XX",
        ("3", "owner_email"): "Unknown email: no user has the email nobody@example.test",
        ("4", "deadline"): "31/12/2027 is not a date",
        ("6", "recommendation_code"): "Duplicate: recommendation R-9 is already defined in row 5",
        ("7", "progress"): "Progress is a whole number from 0 to 100",
        ("8", "status"): "Unknown status done-ish",
        ("9", "source"): "Unknown source Nowhere",
        ("9", "recommendation_text"): "Required for a new recommendation",
        ("10", "deadline"): "Formulas are not accepted",
        ("11", "action_id"): "belongs to another office",
        ("12", "deputy_email"): "The deputy must be someone other than the owner",
        ("13", "owner_email"): "is not an active focal point or manager of SG",
        ("14", "priority"): "Unknown priority urgent",
        ("15", "owner_email"): "is not an active focal point or manager of SG",
        # New actions without an owner: create_action refuses them, as the page does.
        ("16", "owner_email"): "Choose the owner",
        ("17", "recommendation_title"): "Differs from row 16",
        ("18", "owner_email"): "Choose the owner",
        ("19", "action_title"): "Duplicate: the same action is already in row 18",
        ("20", "recommendation_code"): "letters, digits",
        ("21", "recommendation_code"): "Give the recommendation",
        ("22", "progress"): "Progress is a whole number from 0 to 100",
        ("23", "action_id"): "action_id must be the number of an existing action",
        ("24", "deadline"): "Required for a new action",
        ("25", "action_id"): "No action has the id 999999",
    }
    for (row, column), fragment in expected.items():
        messages = [m for r, col, m in problems if (r, col) == (row, column)]
        assert messages and any(fragment in m for m in messages), (row, column, messages)
    assert where == set(expected), where ^ set(expected)
    assert "problems: nothing can be imported" in page and "Import these changes" not in page

    refused = _confirm(c, url)
    assert refused.status_code == 422 and "Nothing was imported" in refused.text
    assert _snapshot(app) == before


def test_confirm_writes_all_rows_or_none(app, world, login_as, monkeypatch):
    """A row refused at confirmation (the planner did not see R-1, the service does) or a failure
    at flush (someone created a code meanwhile) rolls every row back."""
    content = _csv([_rec("R-NEW"), _rec("R-1", recommendation_title="Go digital")])
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, content)
    assert _counts(page)[("recommendations", "create")] == 1
    before = _snapshot(app)
    original = plan._load_recommendations
    # The planner no longer sees R-1: it plans to create it, and save_recommendation refuses the code.
    monkeypatch.setattr(
        plan, "_load_recommendations", lambda codes: original([c for c in codes if c != "R-1"])
    )
    refused = _confirm(c, url)
    assert refused.status_code == 422 and "Nothing was imported" in refused.text
    assert ("3", "recommendation_code") in {(r, col) for r, col, _ in _problems(refused.text)}
    assert "Another recommendation already has the code R-1" in refused.text
    assert _snapshot(app) == before
    with app.app_context():
        assert db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-NEW")) is None
    monkeypatch.undo()

    # A failure at flush time, after R-NEW was written: the whole import is rolled back (409).
    from tracker.recommendations import services as recommendation_services

    save = recommendation_services.save_recommendation

    def clashing(actor, recommendation, **values):
        if values["code"] == "R-1":
            db.session.add(
                Recommendation(source_id=world.source_id, code="R-NEW", title="t", text="t", theme="t")
            )
            db.session.flush()
        return save(actor, recommendation, **values)

    content = _csv([_rec("R-NEW"), _rec("R-1", recommendation_title="Go digital, now")])
    url, page = _preview(c, content)
    monkeypatch.setattr(recommendation_services, "save_recommendation", clashing)
    failed = _confirm(c, url)
    assert failed.status_code == 409 and "Nothing was imported" in failed.text
    assert _snapshot(app) == before
    assert "the data changed meanwhile" in c.get(url).text  # the preview meets it too, and says so
    with app.test_request_context():  # and leaves the session usable
        from datetime import UTC, datetime

        from tracker.transfer import apply, read

        checked = plan.plan_import(read.read_table(content.encode(), "x.csv", max_bytes=10**6, max_rows=10))
        apply.rehearse(checked, db.session.get(User, world.user_ids["reviewer"]), datetime.now(UTC), "x")
        assert [(p.row, p.column) for p in checked.problems] == [(3, None)]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Recommendation)) == 1
    monkeypatch.undo()
    # The file was kept: confirming again, with nothing in the way, imports it.
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        codes = db.session.scalars(sa.select(Recommendation.code).order_by(Recommendation.code)).all()
        assert codes == ["R-1", "R-NEW"]
        assert db.session.get(Recommendation, world.recommendation_id).title == "Go digital, now"


def test_a_change_between_preview_and_confirm_is_planned_again(app, world, login_as):
    """The confirmation re-reads the database: an item saved meanwhile is compared as it is now."""
    c = login_as(world.users["reviewer"])
    content = _csv(
        [{"recommendation_code": "R-1", "office_code": "SG", "action_id": world.items["SG"], "progress": 20}]
    )
    url, page = _preview(c, content)
    assert _counts(page)[("actions", "update")] == 1
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.progress = 20
        db.session.commit()
    assert _confirm(c, url).status_code == 303
    assert "Nothing to import" in c.get("/import").text
    with app.app_context():
        assert db.session.get(ActionItem, world.items["SG"]).version == 2  # only the change made above


def test_cancel_forgets_the_file(app, world, login_as):
    c = login_as(world.users["reviewer"])
    url, _ = _preview(c, _csv([_rec("R-2")]))
    token = url.rsplit("/", 1)[-1]
    assert token in _stored_files(app)
    cancelled = c.post(f"{url}/cancel", data={"csrf_token": csrf_token(c.get(url).text)})
    assert cancelled.status_code == 303
    assert c.get(url).status_code == 404 and token not in _stored_files(app)


# --- round trips with exports --------------------------------------------------------------


@pytest.fixture
def tricky(app, world):
    """Values an export must carry back unchanged: leading = + - @ ', line breaks, Unicode, an
    inactive owner, a closed item whose progress is not 100, an archived recommendation, a current
    deadline after the agreed one."""
    from datetime import UTC, datetime

    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec.title, rec.text = "=1+1 is text", "Line one\r\nLine two, “quoted”"
        old = Recommendation(
            source=rec.source,
            code="R-OLD",
            title="+Archived",
            text="@mention",
            theme="'quoted theme",
            priority="low",
            archived_at=datetime(2025, 1, 1, tzinfo=UTC),
        )
        db.session.add(old)
        users = {u.email: u for u in db.session.scalars(sa.select(User))}
        sg_item = db.session.get(ActionItem, world.items["SG"])
        sg_item.description = "-minus first\r\nthen more"
        sg_item.deadline = date(2027, 2, 28)  # extended: the agreed deadline stays 2026-11-24
        db.session.add_all(
            [
                ActionItem(
                    recommendation=rec,
                    office_id=world.offices["SG"],
                    title="Đổi mới – 改革 ✓",
                    description='=HYPERLINK("http://evil.example","x")',
                    owner=users[world.users["inactive_sg"]],
                    deputy=users[world.users["manager_sg"]],
                    deadline=date(2025, 1, 1),
                    status="completed",
                    progress=40,
                ),
                ActionItem(
                    recommendation=old,
                    office_id=world.offices["MY"],
                    title="@Old work",
                    deadline=date(2024, 6, 30),
                    status="cancelled",
                ),
            ]
        )
        db.session.commit()
    return world


@pytest.mark.parametrize("extension", ["csv", "xlsx"])
def test_export_then_import_without_edits_changes_nothing(app, tricky, login_as, extension):
    c = login_as(tricky.users["reviewer"])
    with c.get(f"/export/actions.{extension}") as response:
        assert response.status_code == 200
        content = response.data
    before = _snapshot(app)
    url, page = _preview(c, content, f"actions.{extension}")
    assert _problems(page) == [] and "not used and were ignored" not in page
    assert _counts(page) == {
        ("recommendations", "create"): 0,
        ("recommendations", "update"): 0,
        ("recommendations", "unchanged"): 2,
        ("actions", "create"): 0,
        ("actions", "update"): 0,
        ("actions", "unchanged"): 4,
    }
    assert "Import these changes" not in page and "nothing to import" in page
    assert _confirm(c, url).status_code == 303
    assert "Nothing to import" in c.get("/import").text
    assert _snapshot(app) == before  # no new rows, no history, versions and times unchanged


def test_an_edited_export_updates_the_matching_rows(app, world, login_as):
    c = login_as(world.users["reviewer"])
    with c.get("/export/actions.csv") as response:
        reader = csv.reader(io.StringIO(response.data.decode("utf-8-sig")))
        labels = next(reader)  # headed in the reader's language; the import reads them back
        ids = list(columns.COLUMNS) + list(columns.EXPORT_EXTRAS)
        rows = [dict(zip(ids, row, strict=True)) for row in reader]
    assert labels[:2] == ["Recommendation code", "Recommendation title"]
    assert [r["action_id"] for r in rows] == [str(world.items["SG"]), str(world.items["MY"])]
    rows[0].update(
        status="in_progress", progress="50", deadline="2027-01-31", owner_email=world.users["manager_sg"]
    )
    rows[1].update(action_title="E-filing for MY, phase 1")
    edited = io.StringIO()
    writer = csv.DictWriter(edited, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    url, page = _preview(c, edited.getvalue(), "actions-edited.csv")
    assert _counts(page)[("actions", "update")] == 2 and _counts(page)[("actions", "create")] == 0
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        sg = db.session.get(ActionItem, world.items["SG"])
        # edit_action for the plan (owner, current deadline), then record_update for the status.
        assert (sg.status, sg.progress, sg.deadline, sg.owner.email, sg.version) == (
            "in_progress",
            50,
            date(2027, 1, 31),
            world.users["manager_sg"],
            3,
        )
        assert sg.agreed_deadline == date(2026, 11, 24)  # the baseline does not move
        moved, edited = sg.updates[:2]
        assert (edited.event, edited.item_version, edited.author.email) == (
            "edited",
            2,
            world.users["reviewer"],
        )
        assert edited.note == "Owner: Focal Sg → Manager Sg. Imported from actions-edited.csv"
        assert (edited.old_deadline, edited.new_deadline) == (date(2026, 11, 24), date(2027, 1, 31))
        assert (moved.old_status, moved.new_status, moved.new_progress, moved.item_version) == (
            "not_started",
            "in_progress",
            50,
            3,
        )
        assert moved.note == "Imported from actions-edited.csv"
        my = db.session.get(ActionItem, world.items["MY"])
        assert (my.title, my.version) == ("E-filing for MY, phase 1", 2)
        assert (
            my.updates[0].note
            == "Title: E-filing for MY → E-filing for MY, phase 1. Imported from actions-edited.csv"
        )
        assert (
            db.session.scalar(sa.select(sa.func.count()).select_from(ActionItem)) == 2
        )  # nothing duplicated


# --- files of every kind -------------------------------------------------------------------


def _one_recommendation(title: str, delimiter: str = ",") -> str:
    return _csv([_rec("R-ENC", recommendation_title=title)], delimiter=delimiter)


@pytest.mark.parametrize(
    ("name", "content", "title"),
    [
        (
            "latin1.csv",
            _one_recommendation("Propriété intellectuelle").encode("latin-1"),
            "Propriété intellectuelle",
        ),
        (
            "cp1252.csv",
            _one_recommendation("Marques – “collectives”").encode("cp1252"),
            "Marques – “collectives”",
        ),
        ("bom.csv", codecs.BOM_UTF8 + _one_recommendation("Đổi mới").encode(), "Đổi mới"),
        ("semicolons.csv", _one_recommendation("A; B, C", delimiter=";").encode(), "A; B, C"),
        ("tabs.txt", _one_recommendation("Tabbed", delimiter="\t").encode(), "Tabbed"),
        ("utf16.csv", _one_recommendation("Unicode ✓", delimiter="\t").encode("utf-16"), "Unicode ✓"),
        ("crlf.csv", _one_recommendation("Windows lines").replace("\n", "\r\n").encode(), "Windows lines"),
    ],
)
def test_encodings_and_delimiters_import_correctly(app, world, login_as, name, content, title):
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, content, name)
    assert _problems(page) == [] and _counts(page)[("recommendations", "create")] == 1
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        rec = db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-ENC"))
        assert rec.title == title


def test_column_names_in_any_case_and_order_and_unknown_columns_are_ignored(app, world, login_as):
    content = (
        "Theme,SOURCE,Recommendation Title,notes,recommendation-text,Recommendation_Code\n"
        "Digital,Dialogue,Headers,ignored,Some text,R-HDR\n"
    )
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, content, "headers.csv")
    assert _problems(page) == [] and "This column is not used and was ignored: notes." in page
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        rec = db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-HDR"))
        assert (rec.title, rec.text, rec.theme, rec.priority) == ("Headers", "Some text", "Digital", "medium")


def test_xlsx_import_reads_typed_cells(app, world, login_as):
    def row(**cells) -> list:
        return [cells.get(column) for column in COLUMNS]

    content = _xlsx(
        [
            row(
                recommendation_code="R-1",
                office_code="SG",
                action_id=world.items["SG"],
                deadline=date(2027, 5, 1),
                status="In progress",
                progress=60.0,
            ),
            row(
                recommendation_code="R-1",
                office_code="MY",
                action_title="New for MY",
                owner_email=world.users["focal_my"],
                deadline=date(2027, 6, 1),
                agreed_deadline=date(2027, 3, 1),
                progress=5,
            ),
        ]
    )
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, content, "plan.xlsx")
    assert _problems(page) == []
    assert _counts(page)[("actions", "update")] == 1 and _counts(page)[("actions", "create")] == 1
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        sg = db.session.get(ActionItem, world.items["SG"])
        assert (sg.status, sg.progress, sg.deadline) == ("in_progress", 60, date(2027, 5, 1))
        new = db.session.scalar(sa.select(ActionItem).where(ActionItem.title == "New for MY"))
        assert (new.progress, new.status, new.deadline, new.agreed_deadline) == (
            5,
            "not_started",
            date(2027, 6, 1),
            date(2027, 3, 1),
        )


def test_formulas_are_refused_and_text_stays_text(app, world, login_as):
    c = login_as(world.users["reviewer"])
    _, page = _preview(c, _csv([_rec("R-F", recommendation_title="=SUM(1,2)")]))
    assert ("2", "recommendation_title") in {(r, col) for r, col, _ in _problems(page)}
    assert "Formulas are not accepted" in page

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(COLUMNS)
    sheet.append(["R-F", "Title", "Text", "Digital", None, "Dialogue"])
    sheet["B2"] = '=A2&" title"'  # a formula cell
    sheet.append(["R-G", "placeholder", "Text", "Digital", None, "Dialogue"])
    sheet["B3"].value = "=typed as text"
    sheet["B3"].data_type = "s"  # text that begins with =, as a spreadsheet stores '=…
    out = io.BytesIO()
    workbook.save(out)
    url, page = _preview(c, out.getvalue(), "formulas.xlsx")
    assert [(r, col) for r, col, _ in _problems(page)] == [("2", "recommendation_title")]

    # A ' before = marks text (as exports write it): imported as the text after the quote.
    url, page = _preview(c, _csv([_rec("R-Q", recommendation_title="'=not a formula")]))
    assert _problems(page) == []
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        assert (
            db.session.scalar(sa.select(Recommendation.title).where(Recommendation.code == "R-Q"))
            == "=not a formula"
        )


def _zip(names: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return out.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 200


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty.csv is empty."),
        ("blank.csv", b"\r\n  \r\n\t\r\n", "blank.csv is empty."),
        ("bom-only.csv", codecs.BOM_UTF8, "bom-only.csv is empty."),
        ("header.csv", ",".join(COLUMNS).encode(), "has column names but no rows to import"),
        ("image.csv", PNG, "image.csv is not a text (CSV) file."),
        (
            "program.csv",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00",
            "not a text (CSV) file",
        ),
        ("fake.xlsx", _csv([_rec("R-2")]).encode(), "fake.xlsx is not an Excel workbook (.xlsx)."),
        ("other.xlsx", _zip({"word/document.xml": b"<w/>"}), "other.xlsx is not an Excel workbook (.xlsx)."),
        ("broken.xlsx", b"PK\x03\x04" + b"\x00" * 300, "broken.xlsx is not an Excel workbook (.xlsx)."),
        (
            "damaged.xlsx",
            _zip({"xl/workbook.xml": b"<not-xml", "[Content_Types].xml": b"<Types/>"}),
            "damaged.xlsx could not be read as an Excel workbook.",
        ),
        ("workbook.csv", _xlsx([]), "workbook.csv is a spreadsheet, not a CSV file"),
        ("old.xls", OLE, "Excel 97–2003 files (.xls) cannot be read"),
        ("old.csv", OLE, "old.csv is a spreadsheet, not a CSV file"),
        ("notes.pdf", b"%PDF-1.7\n", "notes.pdf: upload a .csv or .xlsx file."),
        ("noextension", _csv([_rec("R-2")]).encode(), "upload a .csv or .xlsx file"),
        ("columns.csv", b"code,title\nR-2,x\n", "recommendation_code is not among them"),
        (
            "twice.csv",
            b"recommendation_code,Recommendation Code\nR-2,R-2\n",
            "The column recommendation_code appears twice.",
        ),
        (
            "quotes.csv",
            b'recommendation_code,recommendation_title\nR-2,"' + b"x" * 200000 + b"\n",
            "not a well-formed CSV file",
        ),
        ("nul.csv", b"recommendation_code\nR-\x002\n", "not a text (CSV) file"),
    ],
)
def test_files_that_cannot_be_read_get_a_clear_message_and_nothing_happens(
    app, world, login_as, name, content, message
):
    c = login_as(world.users["reviewer"])
    before, stored = _snapshot(app), _stored_files(app)
    response = _upload(c, content, name)
    assert response.status_code == 422, response.status_code
    assert message in response.text.replace("&#34;", '"').replace("&#39;", "'")
    assert _snapshot(app) == before and _stored_files(app) == stored


def test_a_file_or_rows_over_the_limits_is_refused_with_413(app, world, login_as, monkeypatch):
    c = login_as(world.users["reviewer"])
    before, stored = _snapshot(app), _stored_files(app)
    monkeypatch.setitem(app.config, "TRACKER_IMPORT_MAX_BYTES", 2000)
    big = _csv([_rec(f"R-{i}") for i in range(40)])
    assert len(big) > 2000
    response = _upload(c, big, "big.csv")
    assert response.status_code == 413 and "big.csv is larger than" in response.text
    monkeypatch.setitem(app.config, "TRACKER_IMPORT_MAX_BYTES", 5 * 2**20)
    monkeypatch.setitem(app.config, "TRACKER_IMPORT_MAX_ROWS", 3)
    for name, content in (
        ("rows.csv", _csv([_rec(f"R-{i}") for i in range(4)])),
        ("rows.xlsx", _xlsx([["R-1"]] * 4)),
    ):
        response = _upload(c, content, name)
        assert response.status_code == 413 and f"{name} has more than 3 rows" in response.text
    assert (
        _upload(c, _csv([_rec(f"R-{i}") for i in range(3)]), "three.csv").status_code == 303
    )  # at the limit
    # A workbook that expands far beyond its size (a "zip bomb") is not opened.
    monkeypatch.setitem(app.config, "TRACKER_IMPORT_MAX_BYTES", 30000)
    bomb = _xlsx([["R-1"] + ["x" * 30000] * 30])  # 900 KB of text in 30 cells
    assert len(bomb) < 30000
    response = _upload(c, bomb, "bomb.xlsx")
    assert response.status_code == 413 and "bomb.xlsx expands to more than" in response.text
    assert _snapshot(app) == before and len(_stored_files(app)) == len(stored) + 1
    # Beyond the size of any request (MAX_CONTENT_LENGTH, set for evidence files): Flask's 413 page.
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1000)
    huge = _upload(c, "x" * 5000, "huge.csv")
    assert huge.status_code == 413 and "Too large" in huge.text


def test_upload_form_refuses_missing_or_mistyped_input(app, world, login_as):
    c = login_as(world.users["reviewer"])
    token = csrf_token(c.get("/import").text)
    missing = c.post("/import", data={"csrf_token": token})
    assert missing.status_code == 422 and "Choose a file to upload." in missing.text
    as_text = _upload(c, b"recommendation_code\nR-2\n", "", field="file")  # a file part without a name
    assert as_text.status_code == 422 and "Choose a file to upload." in as_text.text
    typed = c.post(
        "/import", data={"csrf_token": token, "file": "recommendation_code\nR-2"}
    )  # text, not a file
    assert typed.status_code == 422 and "Choose a file to upload." in typed.text
    no_csrf = c.post("/import", data={"file": (io.BytesIO(b"recommendation_code\nR-2\n"), "a.csv")})
    assert no_csrf.status_code == 400
    with c.get("/import") as page:
        assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    url, _ = _preview(c, _csv([_rec("R-2")]))
    assert c.post(url, data={}).status_code == 400  # the confirmation needs its CSRF token too
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Recommendation)) == 1


def test_preview_tokens_belong_to_their_uploader_and_expire(app, world, login_as):
    reviewer = login_as(world.users["reviewer"])
    url, _ = _preview(reviewer, _csv([_rec("R-2")]))
    token = url.rsplit("/", 1)[-1]
    admin = login_as(world.users["admin"])
    assert admin.get(url).status_code == 404
    assert admin.post(url, data={"csrf_token": csrf_token(admin.get("/import").text)}).status_code == 404
    for bad in (
        "/import/not-a-token",
        "/import/" + "x" * 32,
        "/import/..%2F..%2Fetc",
        "/import/" + "a" * 300,
    ):
        assert reviewer.get(bad).status_code == 404, bad
    with app.app_context():
        db.session.execute(
            sa.update(ImportUpload)
            .where(ImportUpload.token == token)
            .values(created_at=datetime.now(UTC) - timedelta(days=1, minutes=1))
        )
        db.session.commit()
    assert reviewer.get(url).status_code == 404  # more than a day old
    _preview(reviewer, _csv([_rec("R-3")]))  # the next upload sweeps old files away
    assert token not in _stored_files(app)


@pytest.mark.parametrize("role", ["manager", "manager_sg", "focal_sg"])
def test_import_is_for_admins_and_reviewers_only(app, world, login_as, role):
    reviewer = login_as(world.users["reviewer"])
    url, _ = _preview(reviewer, _csv([_rec("R-2")]))
    c = login_as(world.users[role])
    token = csrf_token(c.get("/").text)
    assert 'href="/import"' not in c.get("/").text
    for path in ("/import", "/import/template.csv", "/import/template.xlsx", url):
        assert c.get(path).status_code == 403, path
    assert _upload(c, _csv([_rec("R-2")]), "plan.csv", token=token).status_code == 403
    for path in (url, f"{url}/cancel"):
        assert c.post(path, data={"csrf_token": token}).status_code == 403, path
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Recommendation)) == 1
    assert 'href="/import"' in reviewer.get("/").text


def test_anonymous_visitors_are_sent_to_sign_in(app, world):
    c = app.test_client()
    for path in ("/import", "/import/template.csv", "/import/" + "a" * 32):
        response = c.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_preview_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    """The look-ups are a few statements whatever the size of the file; the rehearsal then runs
    each row through its command (save_recommendation, create_action), a constant number of
    statements per row, all rolled back."""
    c = login_as(world.users["reviewer"])

    def statements(n: int) -> list[str]:
        rows = (
            [_rec(f"R-{i}") for i in range(n)]
            + [
                {
                    "recommendation_code": f"R-{i}",
                    "office_code": ("SG", "MY")[i % 2],
                    "action_title": f"Do {i}",
                    "owner_email": (world.users["focal_sg"], world.users["focal_my"])[i % 2],
                    "deadline": "2027-01-01",
                }
                for i in range(n)
            ]
            + [
                {
                    "recommendation_code": "R-1",
                    "office_code": "SG",
                    "action_id": world.items["SG"],
                    "progress": 5,
                }
            ]
        )
        url = _upload(c, _csv(rows), "plan.csv").headers["Location"]
        with count_queries() as seen:
            page = c.get(url)
        assert page.status_code == 200 and _counts(page.text)[("actions", "create")] == n
        assert _problems(page.text) == []
        return seen

    def reads(seen: list[str]) -> int:
        """SELECTs, but for save_recommendation's own check that a code is free (one per code)."""
        return sum(
            1
            for s in seen
            if s.lstrip().upper().startswith("SELECT") and "WHERE recommendation.code = " not in s
        )

    three, four, thirty = statements(3), statements(4), statements(30)
    assert reads(three) == reads(thirty)
    per_row = len(four) - len(three)  # one recommendation and one action, written then rolled back
    assert per_row <= 12 and len(thirty) - len(three) == 27 * per_row


# --- the command line ----------------------------------------------------------------------


def test_cli_import_dry_run_then_for_real(app, world, runner, tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text(
        _csv(
            [
                _rec("R-2"),
                {
                    "recommendation_code": "R-1",
                    "office_code": "SG",
                    "action_id": world.items["SG"],
                    "status": "in_progress",
                },
                {
                    "recommendation_code": "R-2",
                    "office_code": "MY",
                    "action_title": "A new one",
                    "owner_email": world.users["focal_my"],
                    "deadline": "2027-02-01",
                },
            ]
        ),
        encoding="utf-8",
    )
    before = _snapshot(app)
    # The rows are checked and applied as a person: without --as, nothing is done, not even a dry run.
    anonymous = runner.invoke(args=["tracker", "import", str(path), "--dry-run"])
    assert anonymous.exit_code == 1 and "give --as EMAIL" in anonymous.output
    assert _snapshot(app) == before
    dry = runner.invoke(args=["tracker", "import", str(path), "--dry-run", "--as", world.users["admin"]])
    assert dry.exit_code == 0, dry.output
    assert "Recommendations: 1 to create, 0 to update, 1 unchanged." in dry.output
    assert (
        f"row 3: update action {world.items['SG']}" in dry.output
        and "Dry run: nothing was written." in dry.output
    )
    assert _snapshot(app) == before

    done = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["admin"]])
    assert done.exit_code == 0, done.output
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        assert item.status == "in_progress" and item.version == 2
        assert (item.updates[0].author.email, item.updates[0].note) == (
            world.users["admin"],
            "Imported from plan.csv",
        )
        assert db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-2")) is not None
        # The new owner is told through the outbox, from the command line too.
        mail = db.session.scalars(sa.select(Notification)).one()
        assert (mail.kind, mail.to_address) == ("assignment", world.users["focal_my"])

    again = runner.invoke(args=["tracker", "import", str(path)])
    assert again.exit_code == 0 and "Nothing to import" in again.output


def test_cli_import_as_a_reviewer_and_refusals(app, world, runner, tmp_path, monkeypatch):
    path = tmp_path / "plan.csv"
    path.write_text(
        _csv(
            [
                {
                    "recommendation_code": "R-1",
                    "office_code": "SG",
                    "action_id": world.items["SG"],
                    "progress": 30,
                }
            ]
        )
    )
    refused = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["focal_sg"]])
    assert refused.exit_code == 1 and "--as must name an active admin or reviewer" in refused.output
    unknown = runner.invoke(args=["tracker", "import", str(path), "--as", "nobody@example.test"])
    assert unknown.exit_code == 1
    ok = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["reviewer"].upper()])
    assert ok.exit_code == 0, ok.output
    with app.app_context():
        latest = db.session.get(ActionItem, world.items["SG"]).updates[0]
        assert (latest.author.email, latest.note, latest.new_progress) == (
            world.users["reviewer"],
            "Imported from plan.csv",
            30,
        )

    before = _snapshot(app)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        _csv(
            [
                _rec("R-2"),
                {
                    "recommendation_code": "R-1",
                    "office_code": "XX",
                    "action_title": "A",
                    "deadline": "2027-01-01",
                },
            ]
        )
    )
    problems = runner.invoke(args=["tracker", "import", str(bad)])
    assert problems.exit_code == 1
    assert "Problem: row 3, office_code: Unknown office code XX." in problems.output
    assert "nothing was imported" in problems.output
    binary = tmp_path / "image.csv"
    binary.write_bytes(PNG)
    unreadable = runner.invoke(args=["tracker", "import", str(binary)])
    assert unreadable.exit_code == 1 and "image.csv is not a text (CSV) file." in unreadable.output
    monkeypatch.setitem(app.config, "TRACKER_IMPORT_MAX_BYTES", 10)
    too_big = runner.invoke(args=["tracker", "import", str(bad)])
    assert too_big.exit_code == 1 and "bad.csv is larger than" in too_big.output
    missing = runner.invoke(args=["tracker", "import", str(tmp_path / "missing.csv")])
    assert missing.exit_code == 2
    assert _snapshot(app) == before


def test_sources_must_exist_and_match_by_title(app, world, login_as):
    with app.app_context():
        db.session.add(Source(title="Evaluation 2025"))
        db.session.commit()
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, _csv([_rec("R-2", source="evaluation 2025"), _rec("R-3", source="Dialogue")]))
    assert _problems(page) == []
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        sources = dict(
            db.session.execute(sa.select(Recommendation.code, Source.title).join(Recommendation.source)).all()
        )
        assert sources == {"R-1": "Dialogue", "R-2": "Evaluation 2025", "R-3": "Dialogue"}


@pytest.mark.parametrize("language", ["fr", "es"])
def test_an_export_headed_in_another_language_imports_back_unchanged(app, tricky, login_as, language):
    """Exports are headed in the reader's language; the import reads those headers back."""
    with app.app_context():
        db.session.get(User, tricky.user_ids["reviewer"]).language = language
        db.session.commit()
    c = login_as(tricky.users["reviewer"])
    with c.get("/export/actions.xlsx") as response:
        content = response.data
    workbook = load_workbook(io.BytesIO(content), read_only=True)
    try:
        header = next(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()
    expected = {"fr": "Code de la recommandation", "es": "Código de la recomendación"}[language]
    assert header[0] == expected and "recommendation_code" not in header
    before = _snapshot(app)
    url, page = _preview(c, content, "actions.xlsx")
    assert _problems(page) == [] and _counts(page)[("actions", "unchanged")] == 4
    assert _confirm(c, url).status_code == 303
    assert _snapshot(app) == before


# --- the rules of the pages apply to every row ------------------------------------------------


@pytest.fixture
def states(app, world):
    """SG actions owned by the SG focal point in each state a row may try to move: in progress at
    40 %, completed (reported from 40 %), and three verified ones."""
    from datetime import UTC, datetime

    with app.app_context():
        owner = db.session.get(User, world.user_ids["focal_sg"])
        made = {}
        for name, status, progress in (
            ("going", "in_progress", 40),
            ("done", "completed", 100),
            ("closed", "verified", 100),
            ("closed2", "verified", 100),
            ("closed3", "verified", 100),
        ):
            item = ActionItem(
                recommendation_id=world.recommendation_id,
                office_id=world.offices["SG"],
                title=f"Action {name}",
                owner=owner,
                deadline=date(2026, 12, 31),
                status=status,
                progress=progress,
            )
            item.updates = [
                ActionUpdate(
                    author_id=world.user_ids["focal_sg"],
                    created_at=datetime(2026, 10, 1, tzinfo=UTC),
                    old_status="in_progress",
                    new_status=status,
                    old_progress=40,
                    new_progress=progress,
                    note="Reported",
                )
            ]
            db.session.add(item)
            made[name] = item
        db.session.commit()
        world.states = {name: item.id for name, item in made.items()}
    return world


def _action(world, key: str, **values) -> dict:
    row = {"recommendation_code": "R-1", "office_code": "SG", "action_id": str(world.states[key])}
    row.update(values)
    return row


def _new_action(title: str, **values) -> dict:
    row = {"recommendation_code": "R-1", "office_code": "SG", "action_title": title, "deadline": "2027-06-30"}
    row.update(values)
    return row


def test_rows_the_workflow_refuses_are_problems_by_row_and_column_and_nothing_is_written(
    app, states, login_as, runner, tmp_path
):
    """The three bugs of the first import (verified at 10 %, a completed action without owner, a
    verified action back to not started) and their kin, each refused by the command the page uses."""
    rows = [
        _action(states, "done", status="verified", progress="10"),  # 2: verified is 100 %
        _action(states, "going", status="verified", progress="10"),  # 3: in progress → verified
        _new_action("Ghost", status="completed"),  # 4: no owner
        _new_action("Too fast", status="completed", owner_email=states.users["focal_sg"]),  # 5
        _action(states, "closed", status="not_started"),  # 6: verified → not started
        _action(states, "closed2", status="in_progress", progress="50"),  # 7: reopening needs a note
        {  # 8: the agreed deadline does not change by import
            "recommendation_code": "R-1",
            "office_code": "SG",
            "action_id": str(states.items["SG"]),
            "agreed_deadline": "2027-01-01",
        },
        _action(states, "closed3", deadline="2030-01-01"),  # 9: a verified action's plan is settled
        _action(states, "going", status="completed"),  # 10: duplicate of row 3 (the plan's own check)
    ]
    c = login_as(states.users["reviewer"])
    before = _snapshot(app)
    url, page = _preview(c, _csv(rows, COLUMNS), "rules.csv")
    problems = _problems(page)
    expected = {
        ("2", "progress"): "A “Verified” action is at 100 %, not 10 %.",
        ("3", "status"): "You cannot move this action from “In progress” to “Verified”.",
        ("4", "owner_email"): "Choose the owner from the list.",
        ("5", "status"): "You cannot move this action from “Not started” to “Completed",
        ("6", "status"): "You cannot move this action from “Verified” to “Not started”.",
        ("7", "note"): "Say why in the note.",
        ("8", "agreed_deadline"): "The agreed deadline of action",
        ("9", "deadline"): "it can no longer be edited",
        ("10", "action_id"): "Duplicate: the same action is already in row 3",
    }
    assert {(r, col) for r, col, _ in problems} == set(expected), problems
    for (row, column), fragment in expected.items():
        [message] = [m.replace("&#34;", '"') for r, col, m in problems if (r, col) == (row, column)]
        assert fragment in message, (row, column, message)
    assert _snapshot(app) == before  # the rehearsal was rolled back: no row, no history, no mail
    refused = _confirm(c, url)
    assert refused.status_code == 422 and "Nothing was imported" in refused.text
    assert _snapshot(app) == before

    # The command line checks the same rows, as its --as user, and writes nothing either.
    path = tmp_path / "rules.csv"
    path.write_text(_csv(rows, COLUMNS), encoding="utf-8")
    cli = runner.invoke(args=["tracker", "import", str(path), "--as", states.users["reviewer"]])
    assert cli.exit_code == 1
    assert "Problem: row 2, progress: A “Verified” action is at 100 %, not 10 %." in cli.output
    assert "Problem: row 6, status: You cannot move this action from “Verified”" in cli.output
    assert "9 problem(s): nothing was imported." in cli.output
    assert _snapshot(app) == before


def test_allowed_moves_are_applied_by_the_commands_with_their_history(app, states, login_as):
    rows = [
        _action(states, "done", status="verified"),  # completed → verified
        _action(states, "closed", status="in_progress", progress="60", note="The evidence was wrong."),
        _action(states, "going", status="completed", note="Guide published."),
        {  # a reviewer's new current deadline; the agreed one stays
            "recommendation_code": "R-1",
            "office_code": "SG",
            "action_id": str(states.items["SG"]),
            "deadline": "2027-02-28",
        },
    ]
    c = login_as(states.users["reviewer"])
    url, page = _preview(c, _csv(rows), "moves.csv")
    assert _problems(page) == [] and _counts(page)[("actions", "update")] == 4
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        reviewer = states.user_ids["reviewer"]

        def latest(key: str) -> tuple[ActionItem, ActionUpdate]:
            item = db.session.get(ActionItem, states.states[key])
            return item, item.updates[0]

        done, verified = latest("done")
        assert (done.status, done.progress, done.version) == ("verified", 100, 2)
        assert (verified.author_id, verified.event, verified.old_status, verified.new_status) == (
            reviewer,
            "verified",
            "completed",
            "verified",
        )
        assert verified.note == "Imported from moves.csv"
        closed, reopened = latest("closed")
        assert (closed.status, closed.progress) == ("in_progress", 60)
        assert (reopened.author_id, reopened.event, reopened.note) == (
            reviewer,
            "reopened",
            "Imported from moves.csv: The evidence was wrong.",
        )
        going, reported = latest("going")
        assert (going.status, going.progress) == ("completed", 100)
        assert (reported.author_id, reported.event, reported.new_status, reported.note) == (
            reviewer,
            None,
            "completed",
            "Imported from moves.csv: Guide published.",
        )
        sg = db.session.get(ActionItem, states.items["SG"])
        assert (sg.deadline, sg.agreed_deadline) == (date(2027, 2, 28), date(2026, 11, 24))
        moved = sg.updates[0]
        assert (moved.author_id, moved.event, moved.old_deadline, moved.new_deadline) == (
            reviewer,
            "deadline_set",
            date(2026, 11, 24),
            date(2027, 2, 28),
        )
        # The owner hears of the verification and of the reopening, as from the pages.
        kinds = db.session.scalars(
            sa.select(Notification.kind).where(Notification.to_address == states.users["focal_sg"])
        ).all()
        assert sorted(kinds) == ["reopened", "verified"]


def test_both_deadlines_round_trip_and_the_agreed_one_never_moves_by_import(app, tricky, login_as):
    c = login_as(tricky.users["reviewer"])
    with c.get("/export/actions.csv") as response:
        reader = csv.reader(io.StringIO(response.data.decode("utf-8-sig")))
        labels = next(reader)
        ids = list(columns.COLUMNS) + list(columns.EXPORT_EXTRAS)
        rows = [dict(zip(ids, row, strict=True)) for row in reader]
    assert labels[ids.index("deadline") : ids.index("deadline") + 2] == ["Deadline", "Agreed deadline"]
    sg = next(r for r in rows if r["action_id"] == str(tricky.items["SG"]))
    assert (sg["deadline"], sg["agreed_deadline"]) == ("2027-02-28", "2026-11-24")

    def imported(edited: list[dict]) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=ids)
        writer.writeheader()
        writer.writerows(edited)
        return out.getvalue()

    before = _snapshot(app)
    _, page = _preview(c, imported([dict(sg, agreed_deadline="2027-02-28")]), "agreed.csv")
    assert [(r, col) for r, col, _ in _problems(page)] == [("2", "agreed_deadline")]
    assert "an import does not change it" in page
    # An empty agreed deadline leaves it as it is; the current deadline is the reviewer's to set.
    url, page = _preview(c, imported([dict(sg, agreed_deadline="", deadline="2027-04-30")]), "moved.csv")
    assert _problems(page) == [] and "Deadline: 2027-02-28 → 2027-04-30" in page
    assert _snapshot(app) == before
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        item = db.session.get(ActionItem, tricky.items["SG"])
        assert (item.deadline, item.agreed_deadline) == (date(2027, 4, 30), date(2026, 11, 24))
        assert (item.updates[0].event, item.updates[0].author_id) == (
            "deadline_set",
            tricky.user_ids["reviewer"],
        )

    # A new action's agreed deadline is the file's, else its deadline.
    url, page = _preview(
        c,
        _csv(
            [
                _new_action(
                    "Baseline given", owner_email=tricky.users["focal_sg"], agreed_deadline="2027-03-31"
                ),
                _new_action("Baseline default", owner_email=tricky.users["focal_sg"]),
            ]
        ),
    )
    assert _problems(page) == [] and _confirm(c, url).status_code == 303
    with app.app_context():
        found = dict(
            db.session.execute(
                sa.select(ActionItem.title, ActionItem.agreed_deadline).where(
                    ActionItem.title.like("Baseline%")
                )
            ).all()
        )
        assert found == {"Baseline given": date(2027, 3, 31), "Baseline default": date(2027, 6, 30)}


def test_an_import_records_the_history_of_recommendations_and_tells_each_owner_once(app, world, login_as):
    rows = [
        _rec("R-2", recommendation_title="Open data", priority="high"),
        {"recommendation_code": "R-1", "recommendation_title": "Go digital, now"},
        *[
            _new_action(f"Step {i}", recommendation_code="R-2", owner_email=world.users["focal_sg"])
            for i in range(3)
        ],
    ]
    c = login_as(world.users["reviewer"])
    url, page = _preview(c, _csv(rows))
    assert _problems(page) == []
    with app.app_context():  # the preview wrote no history
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecommendationChange)) == 0
    assert _confirm(c, url).status_code == 303
    with app.app_context():
        changes = db.session.execute(
            sa.select(Recommendation.code, RecommendationChange.field, RecommendationChange.old_value)
            .add_columns(RecommendationChange.new_value, RecommendationChange.author_id)
            .join(RecommendationChange.recommendation)
            .order_by(Recommendation.code, RecommendationChange.field)
        ).all()
        reviewer = world.user_ids["reviewer"]
        assert ("R-1", "title", "Go digital", "Go digital, now", reviewer) in changes
        assert [c[1] for c in changes if c[0] == "R-2"] == [
            "code",
            "priority",
            "source",
            "text",
            "theme",
            "title",
        ]
        assert all(c[4] == reviewer for c in changes)
        assert ("R-2", "title", None, "Open data", reviewer) in changes
        # Three new actions for one owner: one mail, as before the commands.
        mails = db.session.scalars(sa.select(Notification).where(Notification.kind == "assignment")).all()
        assert [m.to_address for m in mails] == [world.users["focal_sg"]]
        assert all(f"Step {i}" in mails[0].body_text for i in range(3))
