"""The status workflow through the service (every move × role) and through the action page."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from werkzeug.exceptions import Forbidden, NotFound

from tests.conftest import csrf_token
from tracker.actions.commands import UpdateRequest, WorkflowError, record_update
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, EvidenceFile, FileChunk, Status, StoredFile, User

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
NS, IP, BL, CO, VE, CA, PR = (s.value for s in Status)
FOCAL_MOVES = {(NS, IP), (NS, BL), (IP, BL), (BL, IP), (IP, CO)}
REVIEWER_MOVES = FOCAL_MOVES | {(CO, VE), (CO, IP), (VE, IP), (NS, CA), (IP, CA), (BL, CA)}
# Written out from DESIGN.md, independently of workflow.MOVES: who may make which move on SG's item.
ALLOWED = {
    "admin": REVIEWER_MOVES,
    "reviewer": REVIEWER_MOVES,
    "focal_sg": FOCAL_MOVES,
    "manager": set(),
    "manager_sg": set(),
    "focal_my": set(),
}
PAIRS = [(a, b) for a in (NS, IP, BL, CO, VE, CA) for b in (NS, IP, BL, CO, VE, CA) if a != b]


def _set_status(item_id: int, status: str) -> None:
    db.session.execute(sa.update(ActionItem).where(ActionItem.id == item_id).values(status=status))
    db.session.commit()


def _history(item_id: int) -> int:
    query = sa.select(sa.func.count()).where(ActionUpdate.action_item_id == item_id)
    return db.session.scalar(query)


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_every_move_for_every_role(app, world, old, new):
    with app.app_context():
        _set_status(world.items["SG"], old)
        for role, moves in ALLOWED.items():
            db.session.expire_all()
            item = db.session.get(ActionItem, world.items["SG"])
            actor = db.session.get(User, world.user_ids[role])
            before = (item.status, item.version, _history(item.id))
            request = UpdateRequest(
                version=item.version, status=new, note="Because.", evidence_url="https://x.test/e"
            )
            if (old, new) in moves:
                record_update(actor, item, NOW, request)
                db.session.commit()
                assert (item.status, _history(item.id)) == (new, before[2] + 1), role
                _set_status(item.id, old)
            else:
                expected = NotFound if role == "focal_my" else (Forbidden, WorkflowError)
                with pytest.raises(expected):
                    record_update(actor, item, NOW, request)
                db.session.rollback()
                db.session.expire_all()
                item = db.session.get(ActionItem, world.items["SG"])
                assert (item.status, item.version, _history(item.id)) == before, role


@pytest.mark.parametrize(
    ("old", "new", "note", "url", "field"),
    [
        (IP, CO, "", None, "note"),  # completing needs a note or evidence
        (CO, IP, "", "https://x.test", "note"),  # sending back needs a note, evidence is not enough
        (IP, CA, "", None, "note"),  # cancelling needs a note
    ],
)
def test_what_moves_need(app, world, old, new, note, url, field):
    with app.app_context():
        _set_status(world.items["SG"], old)
        item = db.session.get(ActionItem, world.items["SG"])
        reviewer = db.session.get(User, world.user_ids["reviewer"])
        with pytest.raises(WorkflowError) as refused:
            record_update(reviewer, item, NOW, UpdateRequest(item.version, new, note=note, evidence_url=url))
        assert refused.value.field == field


def test_completion_with_evidence_only_sets_progress_to_100(app, world):
    with app.app_context():
        _set_status(world.items["SG"], IP)
        item = db.session.get(ActionItem, world.items["SG"])
        focal = db.session.get(User, world.user_ids["focal_sg"])
        record_update(focal, item, NOW, UpdateRequest(item.version, CO, evidence_url="https://x.test/report"))
        db.session.commit()
        assert (item.status, item.progress) == (CO, 100)


def test_only_reviewers_set_a_deadline_directly_the_office_asks(app, world):
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        focal = db.session.get(User, world.user_ids["focal_sg"])
        reviewer = db.session.get(User, world.user_ids["reviewer"])
        with pytest.raises(WorkflowError, match="Request an extension") as refused:
            record_update(
                focal, item, NOW, UpdateRequest(item.version, deadline=date(2027, 1, 31), note="Budget.")
            )
        assert refused.value.field == "deadline"
        db.session.rollback()
        record_update(reviewer, item, NOW, UpdateRequest(item.version, deadline=date(2027, 2, 28)))
        db.session.commit()
        last = db.session.scalars(sa.select(ActionUpdate).order_by(ActionUpdate.id.desc())).first()
        assert (last.old_deadline, last.new_deadline, last.event, last.author_id) == (
            date(2026, 11, 24),
            date(2027, 2, 28),
            "deadline_set",
            reviewer.id,
        )
        # The current deadline moved; the agreed one stays.
        assert (item.deadline, item.agreed_deadline) == (date(2027, 2, 28), date(2026, 11, 24))


# --- through the action page -------------------------------------------------------------


def _form(client, item_id: int) -> dict:
    page = client.get(f"/actions/{item_id}")
    assert page.status_code == 200
    import re

    version = re.search(r'name="version" type="hidden" value="(\d+)"', page.text).group(1)
    return {"csrf_token": csrf_token(page.text), "version": version, "status": "", "note": ""}


def _post(client, item_id: int, data: dict, files=None):
    """A multipart POST. The request body is closed here: Werkzeug's test client leaves a large
    body's temporary file open, which fails the run under warnings-as-errors."""
    from flask.testing import EnvironBuilder

    payload = dict(data)
    if files:
        payload["files"] = files
    builder = EnvironBuilder(
        client.application,
        f"/actions/{item_id}",
        method="POST",
        data=payload,
        content_type="multipart/form-data",
    )
    environ = builder.get_environ()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()


def _pdf(name: str = "report.pdf", size: int = 2000) -> tuple:
    return (io.BytesIO(b"%PDF-1.7\n" + b"x" * size), name)


def test_focal_point_completes_and_reviewer_verifies(app, world, login_as):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    form = _form(focal, item_id)
    assert f'<option value="{IP}">' in focal.get(f"/actions/{item_id}").text
    assert f'<option value="{VE}">' not in focal.get(f"/actions/{item_id}").text
    saved = _post(focal, item_id, dict(form, status=IP, progress="40", note="Started the work."))
    assert saved.status_code == 302
    form = _form(focal, item_id)
    saved = _post(focal, item_id, dict(form, status=CO, note="Published."), files=[_pdf()])
    assert saved.status_code == 302
    page = focal.get(f"/actions/{item_id}").text
    assert "Your update is saved." in page and "report.pdf" in page and "Published." in page

    with app.app_context():
        stored = db.session.scalars(sa.select(EvidenceFile)).one()
        file_id = stored.id
    with focal.get(f"/evidence/{file_id}") as download:
        assert download.status_code == 200 and download.data.startswith(b"%PDF-")
        assert "attachment" in download.headers["Content-Disposition"]
        assert download.headers["X-Content-Type-Options"] == "nosniff"
    other = login_as(world.users["focal_my"])
    assert other.get(f"/evidence/{file_id}").status_code == 404
    assert other.get(f"/actions/{item_id}").status_code == 404

    reviewer = login_as(world.users["reviewer"])
    form = _form(reviewer, item_id)
    assert _post(reviewer, item_id, dict(form, status=VE, note="Checked.")).status_code == 302
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.status, item.progress) == (VE, 100)
        history = sorted(item.updates, key=lambda u: u.id)[1:]
        assert [(u.old_status, u.new_status) for u in history] == [(NS, IP), (IP, CO), (CO, VE)]
        assert [u.author.email for u in history] == [
            world.users["focal_sg"],
            world.users["focal_sg"],
            world.users["reviewer"],
        ]
    # Closed: the form is gone, and a post is refused.
    assert "Update this action" not in focal.get(f"/actions/{item_id}").text
    token = csrf_token(focal.get(f"/actions/{item_id}").text)
    assert _post(focal, item_id, dict(form, csrf_token=token, note="More")).status_code == 403


@pytest.mark.parametrize(
    ("changes", "files", "message"),
    [
        ({"progress": "150"}, None, "Give a number from 0 to 100."),
        ({"deadline": "2027-01-31", "note": "x"}, None, "Ask for a later deadline"),  # forged: not offered
        ({"status": CO}, None, "Describe what was done in the note, or attach evidence."),  # from not started
        ({"status": VE, "note": "x"}, None, "Not a valid choice."),  # forged: not offered to a focal point
        ({"status": "done", "note": "x"}, None, "Not a valid choice."),
        (
            {"note": "x"},
            lambda: [(io.BytesIO(b"MZ\x90\x00"), "tool.exe")],
            "files of this type are not accepted",
        ),
        ({"note": "x"}, lambda: [(io.BytesIO(b"MZ\x90\x00"), "fake.pdf")], "the content is not a .pdf file"),
        ({"note": "x"}, lambda: [_pdf("big.pdf", 10 * 1024 * 1024)], "larger than 10 MB"),
        (
            {"evidence_url": "javascript:alert(1)"},
            None,
            "Give a web address starting with http:// or https://.",
        ),
        ({"evidence_url": "https://[x"}, None, "Give a full web address."),
        ({}, None, "Nothing to save"),
    ],
)
def test_bad_input_is_refused_next_to_the_field_and_nothing_is_saved(
    app, world, login_as, changes, files, message
):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    if changes.get("status") == CO:
        with app.app_context():
            _set_status(item_id, IP)
    # Files are made per run: a stream is closed once sent, and the cases run once per database.
    response = _post(focal, item_id, dict(_form(focal, item_id), **changes), files=files() if files else None)
    assert response.status_code == 422
    assert message in response.text
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert item.version == 1
        assert _history(item_id) == 1
        for table in (EvidenceFile, StoredFile, FileChunk):  # no file content kept either
            assert db.session.scalar(sa.select(sa.func.count()).select_from(table)) == 0, table


def test_second_save_of_the_same_version_is_refused_and_input_kept(app, world, login_as):
    item_id = world.items["SG"]
    first = login_as(world.users["focal_sg"])
    second = login_as(world.users["reviewer"])
    form_a = _form(first, item_id)
    form_b = _form(second, item_id)
    assert _post(first, item_id, dict(form_a, status=IP, progress="30", note="First!")).status_code == 302
    refused = _post(second, item_id, dict(form_b, status=BL, progress="55", note="My careful note"))
    assert refused.status_code == 409
    text = refused.text
    assert "Someone else saved this action after you opened it" in text
    assert "First!" in text and "Focal Sg" in text  # what changed, and who
    assert "My careful note" in text and 'value="55"' in text  # their input, kept
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.status, item.progress, item.version) == (IP, 30, 2)
    # Saving again from the conflict page applies on top of the new version.
    again = dict(
        form_b, csrf_token=csrf_token(text), version="2", status=BL, progress="55", note="My careful note"
    )
    assert _post(second, item_id, again).status_code == 302
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.status, item.progress, item.version) == (BL, 55, 3)


def test_managers_see_no_form_and_cannot_post(world, login_as):
    manager = login_as(world.users["manager_sg"])
    page = manager.get(f"/actions/{world.items['SG']}")
    assert page.status_code == 200 and "Update this action" not in page.text
    token = csrf_token(page.text)
    assert (
        manager.post(f"/actions/{world.items['SG']}", data={"csrf_token": token, "version": "1"}).status_code
        == 403
    )


def test_action_page_with_form_runs_bounded_statements(app, world, login_as, count_queries):
    focal = login_as(world.users["focal_sg"])

    def statements() -> int:
        with count_queries() as seen:
            assert focal.get(f"/actions/{world.items['SG']}").status_code == 200
        return len(seen)

    small = statements()
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        for i in range(40):
            update = ActionUpdate(action_item=item, note=f"n{i}", evidence_url="https://x.test")
            update.files = [
                EvidenceFile(
                    action_item=item,
                    filename=f"f{i}-{k}.txt",
                    stored_name=f"s{i}-{k}",
                    content_type="text/plain",
                    size=1,
                )
                for k in range(2)
            ]
            db.session.add(update)
        db.session.commit()
    assert statements() == small
