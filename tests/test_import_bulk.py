"""Large imports: new actions checked by the commands' own rules without a rehearsal and written in
batches, previewed and applied in the background (jobs), every row or none."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tests.test_batches import LIMITS, largest_statement  # noqa: F401 - a fixture
from tests.test_import import COLUMNS, _counts, _problems, _snapshot, _upload
from tracker.extensions import db
from tracker.jobs import run_pending
from tracker.models import ActionItem, ActionUpdate, BackgroundJob, Notification, Recommendation, User
from tracker.transfer import apply, plan, read

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def _new(i: int, **values) -> dict:
    row = {
        "recommendation_code": "R-1",
        "office_code": "SG",
        "action_title": f"Bulk {i}",
        "owner_email": "focal.sg@example.test",
        "deadline": "2027-06-30",
    }
    row.update(values)
    return row


def _file(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.get(c, "") for c in COLUMNS])
    return buffer.getvalue()


def _checked(app, rows: list[dict], world, *, one_by_one: bool) -> list[tuple[int | None, str | None, str]]:
    """The problems the preview lists for these rows, checked as the reviewer; writes nothing."""
    with app.app_context(), app.test_request_context():
        actor = db.session.get(User, world.user_ids["reviewer"])
        table = read.read_table(_file(rows).encode(), "rows.csv", max_bytes=10**7, max_rows=10**5)
        checked = apply.rehearse(
            plan.plan_import(table), actor, NOW, "Imported from rows.csv", one_by_one=one_by_one
        )
        db.session.rollback()
        return [(p.row, p.column, p.message) for p in checked.problems]


def _apply(app, rows: list[dict], world, name: str, *, one_by_one: bool) -> dict[str, int]:
    """Import these rows as the reviewer and commit."""
    with app.app_context(), app.test_request_context():
        actor = db.session.get(User, world.user_ids["reviewer"])
        table = read.read_table(_file(rows).encode(), name, max_bytes=10**7, max_rows=10**5)
        counts = apply.apply_import(
            plan.plan_import(table), actor, NOW, f"Imported from {name}", one_by_one=one_by_one
        )
        db.session.commit()
        return counts


def _archive_r1(app, world) -> None:
    with app.app_context():
        db.session.get(Recommendation, world.recommendation_id).archived_at = NOW
        db.session.commit()


#: New-action rows the plan lets through and the commands refuse: (row, column, start of the message).
REFUSED = [
    ({"owner_email": ""}, "owner_email", "Choose the owner from the list."),
    ({"status": "completed", "note": "Done"}, "status", "You cannot move this action from “Not started”"),
    ({"status": "verified"}, "status", "You cannot move this action from “Not started”"),
    ({"status": "cancelled"}, "note", "Say why in the note."),
    ({"archived": True}, "recommendation_code", "Choose a recommendation from the list."),
]


@pytest.mark.parametrize(("values", "column", "message"), REFUSED, ids=[r[1] for r in REFUSED])
def test_the_bulk_path_refuses_exactly_what_the_commands_refuse(app, world, values, column, message):
    """The same rows, checked by the bulk path and by create_action and record_update themselves
    (``one_by_one``), give the same problems at the same rows and columns."""
    values = dict(values)
    if values.pop("archived", False):
        _archive_r1(app, world)
    rows = [_new(1), _new(2, **values), _new(3, status="in_progress", progress="20")]
    before = _snapshot(app)
    by_bulk = _checked(app, rows, world, one_by_one=False)
    by_commands = _checked(app, rows, world, one_by_one=True)
    assert by_bulk == by_commands
    archived = column == "recommendation_code"
    assert {r for r, _c, _m in by_bulk} == ({2, 3, 4} if archived else {3})
    [(_row, found_column, found)] = [p for p in by_bulk if p[0] == 3]
    assert found_column == column and found.startswith(message), found
    assert _snapshot(app) == before


def test_the_bulk_path_writes_what_the_commands_write(app, world):
    """New actions written in batches and through the commands one by one have the same columns and
    the same history rows, note for note."""
    kinds = [
        {},
        {"status": "in_progress", "progress": "40", "description": "Why", "agreed_deadline": "2027-01-31"},
        {"status": "blocked", "note": "Waiting for the law"},
        {"status": "cancelled", "note": "Not needed", "deputy_email": "manager.sg@example.test"},
        {"progress": "10"},
    ]
    for prefix, one_by_one in (("Bulk", False), ("Cmd", True)):
        rows = [_new(i, action_title=f"{prefix} {i}", **kind) for i, kind in enumerate(kinds)]
        counts = _apply(app, rows, world, f"{prefix}.csv", one_by_one=one_by_one)
        assert counts["actions_create"] == len(kinds)

    def written(prefix: str) -> list[tuple]:
        with app.app_context():
            items = db.session.scalars(
                sa.select(ActionItem).where(ActionItem.title.like(f"{prefix} %")).order_by(ActionItem.title)
            ).all()
            return [
                (
                    item.title.split(" ")[1],
                    item.description,
                    item.owner_id,
                    item.deputy_id,
                    item.deadline,
                    item.agreed_deadline,
                    item.status,
                    item.progress,
                    item.version,
                    [
                        (
                            u.item_version,
                            u.old_status,
                            u.new_status,
                            u.old_progress,
                            u.new_progress,
                            u.old_deadline,
                            u.new_deadline,
                            u.note.replace("Cmd.csv", "Bulk.csv") if u.note else None,
                            u.event,
                            u.on_behalf_of_id,
                        )
                        for u in sorted(item.updates, key=lambda u: u.item_version)
                    ],
                )
                for item in items
            ]

    by_bulk, by_commands = written("Bulk"), written("Cmd")
    assert by_bulk == by_commands
    assert [len(w[-1]) for w in by_bulk] == [1, 2, 2, 2, 2]  # "created", and the first move
    assert by_bulk[1][6:9] == ("in_progress", 40, 2) and by_bulk[3][6] == "cancelled"


def test_the_apply_runs_a_bounded_number_of_statements(app, world, runner, tmp_path, count_queries):
    """Thirty new actions or three hundred: the same statements (batches, not rows)."""

    def statements(n: int) -> int:
        path = tmp_path / f"many-{n}.csv"
        rows = [_new(i, action_title=f"N{n} {i}", status="in_progress", progress="5") for i in range(n)]
        path.write_text(_file(rows), encoding="utf-8")
        with count_queries() as seen:
            done = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["reviewer"]])
        assert done.exit_code == 0, done.output
        return len(seen)

    few, many = statements(30), statements(300)
    assert few == many and many < 40, (few, many)
    with app.app_context():
        history = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ActionUpdate)
            .join(ActionItem)
            .where(ActionItem.title.like("N300 %"))
        )
        assert history == 2 * 300  # "created" and "in progress" for each


def test_more_new_actions_than_one_statement_could_carry(app, world, runner, tmp_path, largest_statement):  # noqa: F811
    """An import of more new actions than one INSERT could carry on PostgreSQL (65,535 parameters):
    every action and its history rows are written, no statement over the limit."""
    columns = len(ActionItem.__table__.columns)
    count = LIMITS["postgresql"] // columns + 100
    rows = [
        _new(i, action_title=f"Many {i}", **({"status": "in_progress", "progress": "30"} if i % 2 else {}))
        for i in range(count)
    ]
    path = tmp_path / "many.csv"
    path.write_text(_file(rows), encoding="utf-8")
    with largest_statement() as seen:
        done = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["reviewer"]])
    assert done.exit_code == 0, done.output[-2000:]
    with app.app_context():
        dialect = db.engine.dialect.name
        written = db.session.scalars(sa.select(ActionItem.id).where(ActionItem.title.like("Many %"))).all()
        assert len(written) == count
        events = dict(
            db.session.execute(
                sa.select(ActionUpdate.event, sa.func.count())
                .where(
                    ActionUpdate.action_item_id.in_(
                        sa.select(ActionItem.id).where(ActionItem.title.like("Many %"))
                    )
                )
                .group_by(ActionUpdate.event)
            ).all()
        )
        assert events == {"created": count, None: count // 2}
        # One mail for the owner, however many actions.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 1
    assert seen["parameters"] <= LIMITS[dialect]


# --- in the background -------------------------------------------------------------------------


def _run_jobs(app) -> int:
    with app.app_context():
        return run_pending(datetime.now(UTC), "test-runner", budget=120)


def _job_url(response) -> str:
    assert response.status_code == 303, response.text[:500]
    url = response.headers["Location"]
    assert re.search(r"/import/jobs/\d+$", url), url
    return url


def test_a_large_file_is_previewed_and_applied_in_the_background(app, world, login_as):
    """2,500 rows: the upload queues a preview job; its page shows the preview and the confirm
    button; confirming queues the apply, which writes every row with its history."""
    rows = [
        _new(i, status="in_progress" if i % 3 == 0 else "", progress="10" if i % 3 == 0 else "")
        for i in range(2500)
    ]
    c = login_as(world.users["reviewer"])
    before = _snapshot(app)
    url = _job_url(_upload(c, _file(rows), "large.csv"))
    waiting = c.get(url)
    assert waiting.status_code == 200 and 'data-state="queued"' in waiting.text
    assert _snapshot(app) == before
    assert _run_jobs(app) == 1
    preview = c.get(url)
    assert preview.status_code == 200
    assert _problems(preview.text) == [] and _counts(preview.text)[("actions", "create")] == 2500
    assert "Import these changes" in preview.text
    assert _snapshot(app)[:3] == before[:3]  # nothing written (the outbox has the job's mail)
    # Another person does not see it.
    assert login_as(world.users["admin"]).get(url).status_code == 404
    c = login_as(world.users["reviewer"])
    applying = _job_url(c.post(url, data={"csrf_token": csrf_token(c.get(url).text)}))
    assert applying != url
    assert c.get(url).status_code == 200  # the preview now links to the import
    assert _run_jobs(app) == 1
    done = c.get(applying)
    assert "Imported: 0 recommendations created, 0 updated; 2500 actions created" in done.text
    with app.app_context():
        titles = sa.select(ActionItem.id).where(ActionItem.title.like("Bulk %"))
        assert db.session.scalar(sa.select(sa.func.count()).select_from(titles.subquery())) == 2500
        history = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ActionUpdate)
            .where(ActionUpdate.action_item_id.in_(titles))
        )
        assert history == 2500 + 834  # "created" for each, and the first move of every third
        jobs = db.session.scalars(sa.select(BackgroundJob).order_by(BackgroundJob.id)).all()
        assert [(j.kind, j.state) for j in jobs] == [("import_preview", "done"), ("import_apply", "done")]
        mails = db.session.scalars(sa.select(Notification.kind).order_by(Notification.id)).all()
        assert mails.count("job_done") == 2 and "assignment" in mails
    # Confirming twice does not import twice.
    assert c.post(url, data={"csrf_token": csrf_token(done.text)}).status_code == 409


def test_a_bad_row_in_the_middle_of_a_large_file_stops_it_all(app, world, login_as):
    """A problem in row 1,252 is listed by row and column; the file cannot be confirmed."""
    rows = [_new(i) for i in range(2500)]
    rows[1250]["office_code"] = "XX"
    c = login_as(world.users["reviewer"])
    before = _snapshot(app)
    url = _job_url(_upload(c, _file(rows), "bad.csv"))
    _run_jobs(app)
    page = c.get(url)
    assert _problems(page.text) == [("1252", "office_code", "Unknown office code XX.")]
    assert "Import these changes" not in page.text
    assert c.post(url, data={"csrf_token": csrf_token(page.text)}).status_code == 409
    assert _snapshot(app)[:3] == before[:3]


def test_a_row_refused_when_the_large_file_is_applied_stops_it_all(app, world, login_as):
    """Between the preview and the apply, the owner of row 1,252 leaves: the apply job checks every
    row again, writes nothing, and its page lists the row and column."""
    rows = [_new(i) for i in range(2500)]
    rows[1250]["owner_email"] = world.users["manager_sg"]
    c = login_as(world.users["reviewer"])
    url = _job_url(_upload(c, _file(rows), "late.csv"))
    _run_jobs(app)
    preview = c.get(url)
    assert _problems(preview.text) == []
    applying = _job_url(c.post(url, data={"csrf_token": csrf_token(preview.text)}))
    with app.app_context():
        db.session.get(User, world.user_ids["manager_sg"]).active = False
        db.session.commit()
    before = _snapshot(app)
    _run_jobs(app)
    page = c.get(applying)
    assert "Nothing was imported" in page.text
    [(row, column, message)] = _problems(page.text)
    assert (row, column) == ("1252", "owner_email") and "is not an active focal point or manager" in message
    snapshot = _snapshot(app)
    assert snapshot[:3] == before[:3]  # no action, no history: only the job's mail


def test_a_small_file_stays_in_the_request(app, world, login_as):
    c = login_as(world.users["reviewer"])
    response = _upload(c, _file([_new(i) for i in range(20)]), "small.csv")
    assert response.status_code == 303 and "/import/jobs/" not in response.headers["Location"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(BackgroundJob)) == 0


def test_files_are_read_row_by_row(app, world, tmp_path):
    """A CSV file is decoded as it is read (Windows-1252 found by a pass over the file), an XLSX one
    through openpyxl's read-only mode; the rows come one at a time."""
    text = _file([_new(1, action_title="Café à la carte"), _new(2)])
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("cp1252"))
    with app.app_context(), app.test_request_context(), path.open("rb") as handle:
        table = read.open_table(handle, "latin.csv", max_bytes=10**6, max_rows=10)
        assert not isinstance(table.rows, list) and table.columns[0] == "recommendation_code"
        first = next(iter(table.rows))
        assert (first.number, first.cells["action_title"]) == (2, "Café à la carte")
        assert read.count_rows(table, 10) == 1  # the one left
    with app.app_context(), app.test_request_context():
        with pytest.raises(read.ImportFileError) as too_many:
            read.read_table(text.encode(), "x.csv", max_bytes=10**6, max_rows=1)
        assert too_many.value.status == 413
