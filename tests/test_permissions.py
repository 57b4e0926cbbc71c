"""permissions.py, table-driven: every role × permission × own/other office; and every URL of the
app tried by a focal point of SG against Malaysia's data."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Office, OfficeResponse, Recommendation, User
from tracker.permissions import Perm, can, office_scope_clause

Y, N = True, False
ROLES = ["admin", "reviewer", "manager", "manager_sg", "focal_sg"]

# Written out by hand, independently of permissions.RULES: (own office SG, other office MY)
# for admin, reviewer, programme manager, SG manager, SG focal point.
EXPECTED: dict[Perm, list[tuple[bool, bool]]] = {
    Perm.VIEW_ACTION: [(Y, Y), (Y, Y), (Y, Y), (Y, N), (Y, N)],
    Perm.UPDATE_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (Y, N)],
    Perm.EDIT_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.CREATE_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.PROPOSE_ACTION: [(N, N), (N, N), (N, N), (N, N), (Y, N)],
    Perm.DECIDE_PROPOSAL: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.SEND_RECOMMENDATION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.CANCEL_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.VERIFY_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.REOPEN_ACTION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.REQUEST_EXTENSION: [(N, N), (N, N), (N, N), (N, N), (Y, N)],
    Perm.DECIDE_EXTENSION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.VIEW_OFFICE: [(Y, Y), (Y, Y), (Y, Y), (Y, N), (Y, N)],
    Perm.RESPOND: [(Y, Y), (Y, Y), (N, N), (N, N), (Y, N)],
    Perm.VIEW_RECOMMENDATION: [(Y, Y), (Y, Y), (Y, Y), (Y, Y), (Y, Y)],
    Perm.EDIT_RECOMMENDATION: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.VIEW_DASHBOARD: [(Y, Y), (Y, Y), (Y, Y), (Y, Y), (Y, Y)],
    Perm.IMPORT_DATA: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.MANAGE_USERS: [(Y, Y), (N, N), (N, N), (N, N), (N, N)],
    Perm.MANAGE_OFFICES: [(Y, Y), (N, N), (N, N), (N, N), (N, N)],
    Perm.MANAGE_OUTBOX: [(Y, Y), (N, N), (N, N), (N, N), (N, N)],
    Perm.MANAGE_ABSENCES: [(Y, Y), (N, N), (N, N), (N, N), (N, N)],
    Perm.VIEW_AUDIT: [(Y, Y), (N, N), (N, N), (N, N), (N, N)],
    Perm.VIEW_INDICATORS: [(Y, Y), (Y, Y), (Y, Y), (Y, Y), (Y, Y)],
    # Only their own office: a programme-wide manager sees validated values alone.
    Perm.VIEW_UNVALIDATED: [(Y, Y), (Y, Y), (N, N), (Y, N), (Y, N)],
    Perm.REPORT_MEASUREMENT: [(Y, Y), (Y, Y), (N, N), (N, N), (Y, N)],
    Perm.VALIDATE_MEASUREMENT: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
    Perm.MANAGE_INDICATORS: [(Y, Y), (Y, Y), (N, N), (N, N), (N, N)],
}

CASES = [
    pytest.param(perm, role, side, answers[i][j], id=f"{perm.value}-{role}-{side}")
    for perm, answers in EXPECTED.items()
    for i, role in enumerate(ROLES)
    for j, side in enumerate(("own", "other"))
]


def test_the_table_covers_every_permission():
    assert set(EXPECTED) == set(Perm)


@pytest.mark.parametrize(("perm", "role", "side", "allowed"), CASES)
@pytest.mark.parametrize("target", ["item", "office", "update"])
def test_role_permission_office(app, world, perm, role, side, allowed, target):
    code = "SG" if side == "own" else "MY"
    with app.app_context():
        user = db.session.get(User, world.user_ids[role])
        item = db.session.get(ActionItem, world.items[code])
        obj = {
            "item": item,
            "office": db.session.get(Office, world.offices[code]),
            "update": item.updates[0],
        }[target]
        assert can(user, perm, obj) is allowed


@pytest.mark.parametrize("perm", list(Perm))
def test_inactive_and_anonymous_users_may_do_nothing(app, world, perm):
    from flask_login import AnonymousUserMixin

    with app.app_context():
        inactive = db.session.get(User, world.user_ids["inactive_sg"])
        item = db.session.get(ActionItem, world.items["SG"])
        assert not can(inactive, perm, item)
        assert not can(AnonymousUserMixin(), perm, item)
        assert not can(None, perm, item)


@pytest.mark.parametrize("role", ROLES)
def test_list_filter_agrees_with_single_checks(app, world, role):
    """The SQL scope and can() give the same answer for every item."""
    with app.app_context():
        user = db.session.get(User, world.user_ids[role])
        listed = set(
            db.session.scalars(
                sa.select(ActionItem.id).where(office_scope_clause(user, ActionItem.office_id))
            )
        )
        allowed = {i.id for i in db.session.scalars(sa.select(ActionItem)) if can(user, Perm.VIEW_ACTION, i)}
        assert listed == allowed


def test_a_missing_object_for_an_office_scoped_grant_is_a_programming_error(app, world):
    with app.app_context():
        focal = db.session.get(User, world.user_ids["focal_sg"])
        with pytest.raises(TypeError):
            can(focal, Perm.VIEW_ACTION)


def _readable(response) -> str:
    """The text of a response; an XLSX download as the text of its cells."""
    if response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
        import io

        from openpyxl import load_workbook

        workbook = load_workbook(io.BytesIO(response.data), read_only=True)
        try:
            return repr([list(sheet.iter_rows(values_only=True)) for sheet in workbook])
        finally:
            workbook.close()
    return response.get_data(as_text=True)


#: URL arguments that name one office's data: a focal point of another office gets 403 or 404.
OFFICE_OWNED = {
    "action_id",
    "item_id",
    "file_id",
    "extension_id",
    "absence_id",
    "office_id",
    "office_code",
    "code",
    "user_id",
    "session_id",
    "job_id",
}


def _url_for_rule(rule, world) -> str:
    """The rule's URL filled in with Malaysia's ids; a new argument name must be added here."""
    values = {
        "action_id": world.items["MY"],
        "item_id": world.items["MY"],
        "office_id": world.offices["MY"],
        "code": "MY",
        "office_code": "MY",
        "period": "2026Q3",
        "recommendation_id": world.recommendation_id,
        "user_id": world.user_ids["focal_my"],
        "filename": "x.css",
        "file_id": world.files["MY"],
        "extension_id": world.extensions["MY"],
        "source_id": world.source_id,
        "notification_id": 1,
        "token": "not-a-token",
        "token_id": 1,
        "absence_id": 1,
        "session_id": getattr(world, "sessions", {}).get("MY", 1),
        "job_id": getattr(world, "jobs", {}).get("MY", 1),
        "measurement_id": getattr(world, "measurements", {}).get("MY", 1),
        "indicator_id": 1,  # indicators are the programme's, not an office's
        "id": world.items["MY"],
        "rest": "no-such-thing",
    }
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.rule}: teach this test what {missing} means"
    url = rule.rule
    for name in rule.arguments:
        url = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(values[name]), url)
    return url


def _add_evidence(app, world) -> None:
    """An evidence file on each office's item, so that file URLs are tried too."""
    import io

    from tracker import files
    from tracker.models import EvidenceFile

    world.files = {}
    with app.app_context():
        for code in ("SG", "MY"):
            item = db.session.get(ActionItem, world.items[code])
            stored = files.write(io.BytesIO(b"proof " + code.encode()))
            record = EvidenceFile(
                update=item.updates[0],
                action_item=item,
                filename=f"{code}.txt",
                stored_file_id=stored.id,
                content_type="text/plain",
                size=8,
            )
            db.session.add(record)
            db.session.flush()
            world.files[code] = record.id
        db.session.commit()


def _add_extension(app, world) -> None:
    """A pending extension request on Malaysia's item, so that decision URLs are tried too."""
    from datetime import date

    from tracker.models import ExtensionRequest

    with app.app_context():
        request = ExtensionRequest(
            action_item_id=world.items["MY"],
            requested_by_id=world.user_ids["focal_my"],
            current_deadline=date(2026, 11, 24),
            requested_deadline=date(2027, 3, 31),
            reason="Malaysian reason",
        )
        db.session.add(request)
        db.session.commit()
        world.extensions = {"MY": request.id}


def _add_session(app, world, login_as) -> None:
    """A signed-in session of Malaysia's focal point, so that the URLs ending a session are tried too."""
    from tracker.models import UserSession

    login_as(world.users["focal_my"])
    with app.app_context():
        world.sessions = {"MY": db.session.scalar(sa.select(sa.func.max(UserSession.id)))}


def _add_job(app, world) -> None:
    """A finished background export of Malaysia's focal point, with its file, so that job URLs are
    tried too."""
    from tracker.jobs import enqueue, store_output
    from tracker.models import User

    with app.app_context():
        job = enqueue(db.session.get(User, world.user_ids["focal_my"]), "export_csv", {"filters": {}})
        store_output(job, [b"Malaysia"], file_name="my.csv", content_type="text/csv")
        job.state = "done"
        db.session.commit()
        world.jobs = {"MY": job.id}


def test_focal_point_of_sg_cannot_see_or_change_malaysia_by_any_url(app, world, login_as):
    _add_evidence(app, world)
    _add_job(app, world)
    _add_extension(app, world)
    _add_session(app, world, login_as)
    c = login_as(world.users["focal_sg"])
    token = csrf_token(c.get("/").text)
    with app.app_context():
        before = db.session.get(ActionItem, world.items["MY"])
        snapshot = (before.version, before.status, before.progress, before.deadline, before.owner_id)
        history = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        db.session.add(
            OfficeResponse(
                recommendation_id=world.recommendation_id,
                office_id=world.offices["MY"],
                response="accepted",
                comment="Malaysian comment",
            )
        )
        db.session.commit()
        recommendation = db.session.get(Recommendation, world.recommendation_id)
        rec_snapshot = (recommendation.title, recommendation.archived_at, recommendation.updated_at)
    secrets = ["E-filing for MY", world.users["focal_my"], "Malaysian comment", "Malaysian reason"]
    # Every POST also carries fields that name Malaysia, as a forged form would.
    form = {
        "office_id": world.offices["MY"],
        "response": "noted",
        "comment": "x",
        "status": "in_progress",
        "version": "1",
        "note": "forged",
        "progress": "90",
        "title": "Forged",
        "code": "R-1",
        "new_deadline": "2028-01-01",
        "deadline": "2028-01-01",
        "reason": "forged",
        "decision": "approved",
    }
    tried = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        url = _url_for_rule(rule, world)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for query in ({}, {"office": "MY"}, {"office_id": world.offices["MY"]}):
                if method == "GET":
                    response = c.get(url, query_string=query)
                else:
                    response = c.open(
                        url, method=method, query_string=query, data=dict(form, csrf_token=token)
                    )
                tried += 1
                if set(rule.arguments) & OFFICE_OWNED or rule.endpoint.startswith("admin."):
                    # A cookie is no API authentication (401); test_api.py tries the API with tokens.
                    refused = (401,) if rule.rule.startswith("/api/") else (403, 404)
                    assert response.status_code in refused, (method, url, response.status_code)
                if response.status_code == 200:
                    body = _readable(response)
                    for secret in secrets:
                        assert secret not in body, (method, url, query)
                if rule.endpoint == "auth.logout":
                    c = login_as(world.users["focal_sg"])
                    token = csrf_token(c.get("/").text)
    assert tried > 10
    with app.app_context():
        after = db.session.get(ActionItem, world.items["MY"])
        assert (after.version, after.status, after.progress, after.deadline, after.owner_id) == snapshot
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate)) == history
        response = db.session.scalar(
            sa.select(OfficeResponse).where(OfficeResponse.office_id == world.offices["MY"])
        )
        assert (response.response, response.comment) == ("accepted", "Malaysian comment")
        recommendation = db.session.get(Recommendation, world.recommendation_id)
        assert (recommendation.title, recommendation.archived_at, recommendation.updated_at) == rec_snapshot
        from tracker.models import ExtensionRequest

        states = db.session.scalars(sa.select(ExtensionRequest.state)).all()
        assert states == ["pending"]  # neither decided nor a second one asked for
    # And the SG item and file are there for them, so the refusals above are not an empty page.
    assert "E-filing for SG" in c.get(f"/actions/{world.items['SG']}").text
    with c.get(f"/evidence/{world.files['SG']}") as download:
        assert download.data == b"proof SG"
