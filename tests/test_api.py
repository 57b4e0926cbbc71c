"""The REST API through HTTP: tokens, every endpoint, filters and pages, the workflow and the
permissions of the site, If-Match, and bad input of every kind (clear problem, nothing written)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tracker.api.auth import create_token, revoke_token
from tracker.api.openapi import document
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, ApiToken, Recommendation, Source, User

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)  # the world's deadlines (2026-11-24) are past
PROBLEM = "application/problem+json"


def _token(app, world, label: str, name: str = "test") -> str:
    with app.app_context():
        user = db.session.get(User, world.user_ids[label])
        _row, secret = create_token(user, name, datetime.now(UTC))
        db.session.commit()
    return secret


@pytest.fixture
def api(app, world):
    """Factory: a client whose requests carry the bearer token of the user with this label."""

    class Api:
        def __init__(self, label: str) -> None:
            self.secret = _token(app, world, label)
            self.client = app.test_client()

        def open(self, method: str, url: str, headers: dict | None = None, **kwargs):
            headers = {"Authorization": f"Bearer {self.secret}", **(headers or {})}
            return self.client.open(url, method=method, headers=headers, **kwargs)

        def get(self, url: str, **kwargs):
            return self.open("GET", url, **kwargs)

        def post(self, url: str, **kwargs):
            return self.open("POST", url, **kwargs)

        def patch(self, url: str, **kwargs):
            return self.open("PATCH", url, **kwargs)

    return Api


def _problem(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"] and body["type"] == "about:blank"
    return body


def _fields(response) -> set:
    return {e["field"] for e in _problem(response, 422)["errors"]}


def _snapshot(app) -> tuple:
    """Everything an API write could change, to show that a refused request wrote nothing."""
    with app.app_context():
        items = db.session.execute(
            sa.select(
                ActionItem.id,
                ActionItem.version,
                ActionItem.status,
                ActionItem.progress,
                ActionItem.deadline,
                ActionItem.owner_id,
                ActionItem.deputy_id,
            ).order_by(ActionItem.id)
        ).all()
        recs = db.session.execute(
            sa.select(
                Recommendation.id, Recommendation.code, Recommendation.title, Recommendation.archived_at
            )
        ).all()
        updates = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        return tuple(items), tuple(recs), updates


def _set_status(app, item_id: int, status: str) -> None:
    with app.app_context():
        db.session.execute(sa.update(ActionItem).where(ActionItem.id == item_id).values(status=status))
        db.session.commit()


def _add_items(app, world, n: int, code: str = "SG", **values) -> list[int]:
    """n more items for an office, all alike unless ``values`` says otherwise."""
    with app.app_context():
        owner = world.user_ids["focal_sg" if code == "SG" else "focal_my"]
        items = [
            ActionItem(
                recommendation_id=world.recommendation_id,
                office_id=world.offices[code],
                title=f"Extra {code} {i}",
                owner_id=owner,
                deadline=values.get("deadline", date(2027, 3, 1)),
                status=values.get("status", "not_started"),
            )
            for i in range(n)
        ]
        db.session.add_all(items)
        db.session.commit()
        return [i.id for i in items]


# --- authentication ------------------------------------------------------------------------------


def _operations() -> list[tuple[str, str]]:
    """Every documented (method, path) with ids filled in, from the published document."""
    found = []
    for path, item in document("/api/v1")["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:
                continue
            found.append((method.upper(), "/api/v1" + path.replace("{id}", "1")))
    return found


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token",
        "Token abc",
        "Bearer " + "x" * 5000,
    ],
)
def test_every_operation_refuses_a_request_without_a_valid_token(app, world, client, header):
    before = _snapshot(app)
    headers = {} if header is None else {"Authorization": header}
    for method, path in _operations():
        response = client.open(path, method=method, headers=headers, json={"title": "x"})
        body = _problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), path
        assert "token" in body["detail"].lower()
    assert _snapshot(app) == before


def test_revoked_tokens_and_deactivated_users_get_401(app, world, api):
    focal = api("focal_sg")
    assert focal.get("/api/v1/me").status_code == 200
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == _sha(focal.secret)))
        revoke_token(token, datetime.now(UTC))
        db.session.commit()
    response = focal.get("/api/v1/me")
    _problem(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    inactive = _token(app, world, "inactive_sg")
    _problem(app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {inactive}"}), 401)

    reviewer = api("reviewer")
    assert reviewer.get("/api/v1/me").status_code == 200
    with app.app_context():
        db.session.get(User, world.user_ids["reviewer"]).active = False
        db.session.commit()
    _problem(reviewer.get("/api/v1/me"), 401)


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_tokens_are_stored_hashed_and_last_use_is_noted_at_most_once_a_minute(app, world, api):
    with time_machine.travel(NOW, tick=False):
        focal = api("focal_sg")
        with app.app_context():
            row = db.session.scalars(sa.select(ApiToken)).one()
            assert row.token_hash == _sha(focal.secret) and focal.secret not in row.token_hash
            assert row.last_used_at is None
        focal.get("/api/v1/me")
    for seconds, expected in ((30, NOW), (61, NOW + timedelta(seconds=61))):
        with time_machine.travel(NOW + timedelta(seconds=seconds), tick=False):
            assert focal.get("/api/v1/me").status_code == 200
        with app.app_context():
            assert db.session.scalars(sa.select(ApiToken.last_used_at)).one() == expected


def test_a_signed_in_browser_session_is_not_api_authentication(app, world, login_as, api):
    browser = login_as(world.users["reviewer"])
    _problem(browser.get("/api/v1/me"), 401)
    _problem(browser.patch(f"/api/v1/actions/{world.items['SG']}", json={"progress": 10}), 401)
    # And a token works without any CSRF token: the API is exempt, being cookie-free.
    reviewer = api("reviewer")
    assert reviewer.patch(f"/api/v1/actions/{world.items['SG']}", json={"progress": 10}).status_code == 200


def test_the_document_is_public_and_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


# --- reading ---------------------------------------------------------------------------------------


def test_me_and_offices_follow_the_role(app, world, api):
    me = api("focal_sg").get("/api/v1/me").get_json()
    assert me == {
        "id": world.user_ids["focal_sg"],
        "email": world.users["focal_sg"],
        "name": "Focal Sg",
        "role": "focal_point",
        "office": "SG",
        "language": None,
        "timezone": "Asia/Singapore",
    }
    assert [o["code"] for o in api("focal_sg").get("/api/v1/offices").get_json()["items"]] == ["SG"]
    assert [o["code"] for o in api("manager_sg").get("/api/v1/offices").get_json()["items"]] == ["SG"]
    assert [o["code"] for o in api("manager").get("/api/v1/offices").get_json()["items"]] == ["MY", "SG"]


def test_an_action_is_represented_with_its_etag(app, world, api):
    with time_machine.travel(NOW, tick=False):
        response = api("focal_sg").get(f"/api/v1/actions/{world.items['SG']}")
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"1"'
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["recommendation"] == {"id": world.recommendation_id, "code": "R-1"}
    assert (body["office"], body["owner"], body["deputy"], body["deadline"]) == (
        "SG",
        world.users["focal_sg"],
        None,
        "2026-11-24",
    )
    assert (body["status"], body["progress"], body["overdue"], body["version"]) == ("not_started", 0, True, 1)
    assert body["url"].endswith(f"/actions/{world.items['SG']}") and body["url"].startswith("http")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["updated_at"])


def test_list_filters_and_pages(app, world, api):
    _add_items(app, world, 3, "SG", deadline=date(2027, 3, 1))
    _add_items(app, world, 2, "SG", deadline=date(2027, 6, 1), status="in_progress")
    _add_items(app, world, 1, "MY", deadline=date(2027, 1, 15), status="verified")
    reviewer = api("reviewer")

    def ids(query: str) -> list[str]:
        with time_machine.travel(NOW, tick=False):
            response = reviewer.get(f"/api/v1/actions?{query}")
        assert response.status_code == 200, response.text
        return [(i["office"], i["deadline"], i["status"]) for i in response.get_json()["items"]]

    everything = ids("")
    assert len(everything) == 8
    # Open ones first, then by deadline: the verified MY item comes last.
    assert everything[0][1] == "2026-11-24" and everything[-1] == ("MY", "2027-01-15", "verified")
    assert {o for o, _d, _s in ids("office=my")} == {"MY"} and len(ids("office=MY")) == 2
    assert len(ids("status=in_progress")) == 2
    assert len(ids("overdue=true")) == 2  # the world's two items, deadline passed, not started
    assert len(ids("overdue=false")) == 6
    assert len(ids(f"owner={world.users['focal_my'].upper()}")) == 2
    assert len(ids("owner=nobody@example.test")) == 0
    assert len(ids("recommendation=R-1")) == 8 and ids("recommendation=R-9") == []
    assert len(ids("due_before=2027-03-01")) == 6 and len(ids("due_after=2027-03-01")) == 5
    assert len(ids("due_after=2027-01-01&due_before=2027-04-01&office=SG")) == 3

    with time_machine.travel(NOW, tick=False):
        page = reviewer.get("/api/v1/actions?per_page=3&page=3").get_json()
        beyond = reviewer.get("/api/v1/actions?per_page=3&page=9").get_json()
    assert (page["page"], page["per_page"], page["total"], len(page["items"])) == (3, 3, 8, 2)
    assert (beyond["items"], beyond["total"]) == ([], 8)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("overdue=yes", "overdue"),
        ("due_before=2027-02-30", "due_before"),
        ("due_after=tomorrow", "due_after"),
        ("due_after=2027-1-1", "due_after"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=99999999999999999999", "page"),
        ("per_page=101", "per_page"),
        ("office=" + "S" * 9, "office"),
        ("office=", "office"),
        ("owner=" + "a" * 300, "owner"),
        ("recommendation=%00", "recommendation"),
    ],
)
def test_bad_list_queries_name_the_parameter(world, api, query, field):
    assert _fields(api("reviewer").get(f"/api/v1/actions?{query}")) == {field}


def test_a_focal_point_never_sees_another_office(app, world, api):
    _add_items(app, world, 3, "MY")
    focal = api("focal_sg")
    listed = focal.get("/api/v1/actions?per_page=100").get_json()
    assert {i["office"] for i in listed["items"]} == {"SG"} and listed["total"] == 1
    assert focal.get("/api/v1/actions?office=MY").get_json()["total"] == 0
    assert focal.get(f"/api/v1/actions?owner={world.users['focal_my']}").get_json()["total"] == 0
    my = world.items["MY"]
    before = _snapshot(app)
    _problem(focal.get(f"/api/v1/actions/{my}"), 404)
    _problem(focal.get(f"/api/v1/actions/{my}/updates"), 404)
    _problem(focal.patch(f"/api/v1/actions/{my}", json={"status": "in_progress"}), 404)
    _problem(focal.patch(f"/api/v1/actions/{my}", json={"owner": world.users["focal_sg"]}), 404)
    assert _snapshot(app) == before
    # The manager of SG reads SG only, too.
    assert {i["office"] for i in api("manager_sg").get("/api/v1/actions").get_json()["items"]} == {"SG"}


def test_every_api_route_refuses_another_offices_data(app, world, api):
    """As test_permissions does for the pages: each API rule, filled in with Malaysia's ids, by
    SG's focal point with a token, with forged bodies naming Malaysia."""
    focal = api("focal_sg")
    before = _snapshot(app)
    forged = {
        "office": "MY",
        "recommendation_id": world.recommendation_id,
        "title": "Forged",
        "owner": world.users["focal_my"],
        "deadline": "2027-01-01",
        "status": "in_progress",
        "progress": 90,
        "note": "forged",
    }
    tried = 0
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint in ("api.not_found", "api.openapi_document"):
            continue
        url = rule.rule.replace("<int:id>", str(world.items["MY"]))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = focal.open(method, url, json=forged)
            tried += 1
            if "<int:id>" in rule.rule and "recommendations" not in rule.rule:
                assert response.status_code == 404, (method, url, response.status_code)
            if method != "GET":
                assert response.status_code in (403, 404, 422), (method, url, response.status_code)
            if response.status_code == 200:
                assert "E-filing for MY" not in response.text and world.users["focal_my"] not in response.text
    assert tried >= 10
    assert _snapshot(app) == before


def test_history_newest_first_with_pages(app, world, api):
    reviewer = api("reviewer")
    item = world.items["SG"]
    for progress in (10, 20, 30):
        assert reviewer.patch(f"/api/v1/actions/{item}", json={"progress": progress}).status_code == 200
    response = reviewer.get(f"/api/v1/actions/{item}/updates?per_page=2")
    body = response.get_json()
    assert (body["total"], body["page"], len(body["items"])) == (4, 1, 2)
    first = body["items"][0]
    assert (first["old_progress"], first["new_progress"], first["version"], first["author"]) == (
        20,
        30,
        4,
        world.users["reviewer"],
    )
    assert first["files"] == [] and first["created_at"].endswith("Z")
    last = reviewer.get(f"/api/v1/actions/{item}/updates?per_page=2&page=2").get_json()["items"][-1]
    assert last["note"] == "Agreed"


def test_lists_take_the_same_number_of_queries_whatever_their_length(app, world, api, count_queries):
    reviewer = api("reviewer")
    reviewer.get("/api/v1/me")  # the token's first use is noted once; leave it out of the counts

    def counted(url: str) -> int:
        with count_queries() as statements:
            assert reviewer.get(url).status_code == 200
        return len(statements)

    small = (
        counted("/api/v1/actions?overdue=true"),
        counted("/api/v1/actions"),
        counted("/api/v1/recommendations"),
    )
    history_small = counted(f"/api/v1/actions/{world.items['SG']}/updates")
    with app.app_context():
        # Ten more of everything, each item with its own people and recommendation, so that a lazy
        # load per row would show in the counts.
        for i in range(10):
            for code in ("SG", "MY"):
                owner, deputy = (
                    User(email=f"{who}{i}.{code}@example.test".lower(), name=who, role="focal_point")
                    for who in ("owner", "deputy")
                )
                owner.office_id = deputy.office_id = world.offices[code]
                rec = Recommendation(
                    source_id=world.source_id, code=f"R-X{i}{code}", title="t", text="t", theme="Digital"
                )
                db.session.add_all([owner, deputy, rec])
                db.session.flush()
                db.session.add(
                    ActionItem(
                        recommendation_id=rec.id,
                        office_id=world.offices[code],
                        title=f"Item {i}",
                        owner_id=owner.id,
                        deputy_id=deputy.id,
                        deadline=date(2020, 1, 1),
                    )
                )
                db.session.add(ActionUpdate(action_item_id=world.items["SG"], author_id=owner.id))
        db.session.commit()
    large = (
        counted("/api/v1/actions?overdue=true"),
        counted("/api/v1/actions"),
        counted("/api/v1/recommendations"),
    )
    assert large == small
    assert counted(f"/api/v1/actions/{world.items['SG']}/updates") == history_small


# --- changing actions: the workflow of the site ------------------------------------------------------


def test_focal_point_works_and_reviewer_verifies_under_the_workflow(app, world, api):
    focal, reviewer, manager = api("focal_sg"), api("reviewer"), api("manager_sg")
    url = f"/api/v1/actions/{world.items['SG']}"

    started = focal.patch(url, json={"status": "in_progress", "progress": 40, "note": "Begun."})
    assert started.status_code == 200 and started.headers["ETag"] == 'W/"2"'
    assert (started.get_json()["status"], started.get_json()["progress"]) == ("in_progress", 40)

    before = _snapshot(app)
    # The same refusals as the action page, each naming the field.
    assert _fields(focal.patch(url, json={"status": "completed"})) == {"note"}  # needs a note or evidence
    assert _fields(focal.patch(url, json={"status": "verified", "note": "Done"})) == {"status"}  # reviewers
    assert _fields(focal.patch(url, json={"status": "cancelled", "note": "No"})) == {"status"}
    # The office asks for a later deadline (POST …/extensions); it cannot set one.
    assert _fields(focal.patch(url, json={"deadline": "2027-05-01", "note": "Late"})) == {"deadline"}
    assert _fields(focal.patch(url, json={"progress": 40})) == {None}  # nothing to save
    _problem(manager.patch(url, json={"progress": 50}), 403)  # managers read only
    _problem(focal.patch(url, json={"owner": world.users["focal_sg"]}), 403)  # plan edits: reviewers
    assert _snapshot(app) == before

    done = focal.patch(url, json={"status": "completed", "evidence_url": "https://example.org/report"})
    assert (done.get_json()["status"], done.get_json()["progress"]) == ("completed", 100)
    sent_back = reviewer.patch(url, json={"status": "in_progress"})
    assert _fields(sent_back) == {"note"}  # sending back needs a note
    verified = reviewer.patch(url, json={"status": "verified", "note": "Checked."})
    assert verified.status_code == 200 and verified.get_json()["status"] == "verified"
    closed = focal.patch(url, json={"note": "More"})
    assert closed.status_code in (403, 422)

    history = reviewer.get(f"{url}/updates").get_json()["items"]
    assert [(h["old_status"], h["new_status"]) for h in history[:3]] == [
        ("completed", "verified"),
        ("in_progress", "completed"),
        ("not_started", "in_progress"),
    ]
    assert history[1]["evidence_url"] == "https://example.org/report"


def test_if_match_guards_against_lost_updates(app, world, api):
    focal, reviewer = api("focal_sg"), api("reviewer")
    url = f"/api/v1/actions/{world.items['SG']}"
    etag = focal.get(url).headers["ETag"]
    assert reviewer.patch(url, json={"progress": 10}).status_code == 200  # someone else saves first

    before = _snapshot(app)
    stale = focal.patch(url, json={"progress": 50}, headers={"If-Match": etag})
    assert _problem(stale, 412)["current_version"] == 2
    assert _problem(focal.patch(url, json={"progress": 50}, headers={"If-Match": "garbage"}), 412)
    assert _snapshot(app) == before

    fresh = focal.get(url).headers["ETag"]
    assert fresh == 'W/"2"'
    saved = focal.patch(url, json={"progress": 50}, headers={"If-Match": fresh})
    assert saved.status_code == 200 and saved.headers["ETag"] == 'W/"3"'
    # The strong form of the tag and * are accepted too; without If-Match the current version is used.
    assert focal.patch(url, json={"progress": 60}, headers={"If-Match": '"3"'}).status_code == 200
    assert focal.patch(url, json={"progress": 70}, headers={"If-Match": "*"}).status_code == 200
    assert focal.patch(url, json={"progress": 80}).get_json()["version"] == 6


def test_owner_changes_go_through_the_plan_edit_and_mix_in_one_transaction(app, world, api):
    reviewer = api("reviewer")
    url = f"/api/v1/actions/{world.items['SG']}"
    with app.app_context():
        deputy = User(
            email="deputy.sg@example.test", name="Deputy", role="focal_point", office_id=world.offices["SG"]
        )
        db.session.add(deputy)
        db.session.commit()

    both = reviewer.patch(
        url,
        json={"owner": "DEPUTY.SG@example.test", "deputy": world.users["focal_sg"], "status": "in_progress"},
    )
    assert both.status_code == 200, both.text
    body = both.get_json()
    assert (body["owner"], body["deputy"], body["status"], body["version"]) == (
        "deputy.sg@example.test",
        world.users["focal_sg"],
        "in_progress",
        3,  # two history rows: the plan edit, then the status change
    )
    notes = [u["note"] or "" for u in reviewer.get(f"{url}/updates").get_json()["items"][:2]]
    assert "Owner:" in notes[1]

    before = _snapshot(app)
    # One part refused: nothing of the other is kept.
    mixed = reviewer.patch(url, json={"owner": world.users["focal_sg"], "deputy": None, "status": "verified"})
    assert _fields(mixed) == {"status"}
    assert _fields(reviewer.patch(url, json={"owner": world.users["focal_my"]})) == {"owner"}  # not of SG
    assert _fields(reviewer.patch(url, json={"owner": "nobody@example.test"})) == {"owner"}
    assert _fields(reviewer.patch(url, json={"deputy": "deputy.sg@example.test"})) == {"deputy"}  # the owner
    assert _fields(reviewer.patch(url, json={"owner": world.users["inactive_sg"]})) == {"owner"}
    assert _snapshot(app) == before
    cleared = reviewer.patch(url, json={"deputy": None, "note": "Handover."})
    assert cleared.status_code == 200 and cleared.get_json()["deputy"] is None


def test_reviewers_add_actions_and_others_may_not(app, world, api):
    body = {
        "office": "sg",
        "recommendation_id": world.recommendation_id,
        "title": "  Publish the roadmap ",
        "owner": world.users["focal_sg"],
        "deputy": world.users["manager_sg"],
        "deadline": "2027-02-01",
        "description": "Online.",
    }
    before = _snapshot(app)
    _problem(api("focal_sg").post("/api/v1/actions", json=body), 403)
    _problem(api("manager").post("/api/v1/actions", json=body), 403)
    _problem(api("focal_my").post("/api/v1/actions", json=body), 403)  # refused before SG is looked up
    assert _snapshot(app) == before

    created = api("reviewer").post("/api/v1/actions", json=body)
    assert created.status_code == 201, created.text
    item = created.get_json()
    assert (
        created.headers["Location"] == f"/api/v1/actions/{item['id']}" and created.headers["ETag"] == 'W/"1"'
    )
    assert (item["title"], item["office"], item["deputy"], item["status"], item["description"]) == (
        "Publish the roadmap",
        "SG",
        world.users["manager_sg"],
        "not_started",
        "Online.",
    )
    assert api("focal_sg").get(created.headers["Location"]).status_code == 200


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"office": "XX"}, {"office"}),
        ({"owner": "nobody@example.test"}, {"owner"}),
        ({"owner": "focal.my@example.test"}, {"owner"}),
        ({"deputy": "focal.sg@example.test"}, {"deputy"}),
        ({"recommendation_id": 999999}, {"recommendation_id"}),
        ({"title": "   "}, {"title"}),
        ({"title": "x" * 301}, {"title"}),
        ({"title": 5}, {"title"}),
        ({"deadline": "2027-02-30"}, {"deadline"}),
        ({"deadline": "1/2/2027"}, {"deadline"}),
        ({"deadline": None}, {"deadline"}),
        ({"recommendation_id": "1"}, {"recommendation_id"}),
        ({"recommendation_id": True}, {"recommendation_id"}),
        ({"recommendation_id": 2**63}, {"recommendation_id"}),
        ({"extra": 1}, {"extra"}),
        ({"description": "\x00"}, {"description"}),
    ],
)
def test_a_new_action_is_checked_field_by_field(app, world, api, change, fields):
    body = {
        "office": "SG",
        "recommendation_id": world.recommendation_id,
        "title": "T",
        "owner": world.users["focal_sg"],
        "deadline": "2027-02-01",
        **change,
    }
    before = _snapshot(app)
    assert _fields(api("reviewer").post("/api/v1/actions", json=body)) == fields
    assert _snapshot(app) == before


def test_missing_fields_are_all_named(world, api):
    assert _fields(api("reviewer").post("/api/v1/actions", json={})) == {
        "office",
        "recommendation_id",
        "title",
        "owner",
        "deadline",
    }


# --- recommendations ---------------------------------------------------------------------------------


def test_recommendations_read_write_and_archive(app, world, api):
    focal, reviewer = api("focal_sg"), api("reviewer")
    listed = focal.get("/api/v1/recommendations").get_json()
    assert [r["code"] for r in listed["items"]] == ["R-1"] and listed["total"] == 1
    one = focal.get(f"/api/v1/recommendations/{world.recommendation_id}").get_json()
    assert (one["source"], one["archived"], one["priority"]) == (
        {"id": world.source_id, "title": "Dialogue"},
        False,
        "medium",
    )

    body = {
        "code": "R-2",
        "title": "Open data",
        "text": "Publish.",
        "theme": "Data",
        "source_id": world.source_id,
    }
    before = _snapshot(app)
    _problem(focal.post("/api/v1/recommendations", json=body), 403)
    _problem(api("manager").post("/api/v1/recommendations", json=body), 403)
    _problem(focal.patch(f"/api/v1/recommendations/{world.recommendation_id}", json={"title": "x"}), 403)
    assert _fields(reviewer.post("/api/v1/recommendations", json={**body, "code": "R-1"})) == {"code"}
    assert _fields(reviewer.post("/api/v1/recommendations", json={**body, "code": "R 2"})) == {"code"}
    assert _fields(reviewer.post("/api/v1/recommendations", json={**body, "source_id": 999})) == {"source_id"}
    assert _fields(reviewer.post("/api/v1/recommendations", json={**body, "priority": "urgent"})) == {
        "priority"
    }
    assert _snapshot(app) == before

    created = reviewer.post(
        "/api/v1/recommendations", json={**body, "priority": "high", "target_date": "2027-12-31"}
    )
    assert created.status_code == 201, created.text
    rec = created.get_json()
    assert (rec["code"], rec["priority"], rec["target_date"]) == ("R-2", "high", "2027-12-31")
    assert created.headers["Location"] == f"/api/v1/recommendations/{rec['id']}"

    url = f"/api/v1/recommendations/{rec['id']}"
    changed = reviewer.patch(url, json={"title": "Open data now", "target_date": None}).get_json()
    assert (changed["title"], changed["target_date"], changed["code"]) == ("Open data now", None, "R-2")
    assert _fields(reviewer.patch(url, json={"code": "R-1"})) == {"code"}
    assert reviewer.patch(url, json={"archived": True}).get_json()["archived"] is True
    assert [r["code"] for r in focal.get("/api/v1/recommendations").get_json()["items"]] == ["R-1"]
    archived = focal.get("/api/v1/recommendations?archived=true").get_json()["items"]
    assert [r["code"] for r in archived] == ["R-2"]
    assert reviewer.patch(url, json={"archived": False}).get_json()["archived"] is False

    assert [r["code"] for r in focal.get("/api/v1/recommendations?q=OPEN").get_json()["items"]] == ["R-2"]
    assert [r["code"] for r in focal.get("/api/v1/recommendations?priority=high").get_json()["items"]] == [
        "R-2"
    ]
    assert focal.get("/api/v1/recommendations?theme=Digital").get_json()["total"] == 1
    assert focal.get(f"/api/v1/recommendations?source={world.source_id}").get_json()["total"] == 2
    assert _fields(focal.get("/api/v1/recommendations?source=x")) == {"source"}
    _problem(focal.get("/api/v1/recommendations/999999"), 404)


def test_an_archived_source_takes_no_new_recommendations(app, world, api):
    with app.app_context():
        old = Source(title="Old meeting", archived_at=datetime.now(UTC))
        db.session.add(old)
        db.session.commit()
        old_id = old.id
    body = {"code": "R-3", "title": "T", "text": "T", "theme": "T", "source_id": old_id}
    assert _fields(api("reviewer").post("/api/v1/recommendations", json=body)) == {"source_id"}


# --- bad input of every kind -------------------------------------------------------------------------


def _writes(world) -> list[tuple[str, str]]:
    return [
        ("POST", "/api/v1/actions"),
        ("PATCH", f"/api/v1/actions/{world.items['SG']}"),
        ("POST", "/api/v1/recommendations"),
        ("PATCH", f"/api/v1/recommendations/{world.recommendation_id}"),
    ]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b'{"progress": ', "application/json", 400),  # malformed
        (b'{"progress": NaN}', "application/json", 400),  # not JSON, though Python would read it
        (b"\xff\xfe{}", "application/json", 400),  # not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),  # nested past any parser's depth
        (b'{"progress": 1' + b"0" * 5000 + b"}", "application/json", 400),  # a number too long to read
        (b"", "application/json", 400),
        (b'{"progress": 1e999}', "application/json", 422),  # read as infinity: not a whole number
        (b"[1, 2]", "application/json", 422),  # JSON, but not an object
        (b'"text"', "application/json", 422),
        (b"null", "application/json", 422),
        (b"{}", "application/json", 422),  # nothing given
        (b"progress=5", "application/x-www-form-urlencoded", 415),
        (b'{"progress": 5}', "text/plain", 415),
        (b'{"note": "' + b"x" * (1024 * 1024) + b'"}', "application/json", 413),  # over 1 MB
    ],
)
def test_malformed_bodies_get_a_clear_problem_and_write_nothing(app, world, api, data, content_type, status):
    reviewer = api("reviewer")
    before = _snapshot(app)
    for method, url in _writes(world):
        response = reviewer.open(method, url, data=data, headers={"Content-Type": content_type})
        body = _problem(response, status)
        if status == 422:
            assert body["errors"], (method, url)
    assert _snapshot(app) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"progress": "50"}, "progress"),
        ({"progress": 50.5}, "progress"),
        ({"progress": True}, "progress"),
        ({"progress": 101}, "progress"),
        ({"progress": -1}, "progress"),
        ({"progress": 10**40}, "progress"),
        ({"status": "done"}, "status"),
        ({"status": None}, "status"),
        ({"status": ["in_progress"]}, "status"),
        ({"note": 5}, "note"),
        ({"note": "x" * 5001}, "note"),
        ({"note": "a\x00b"}, "note"),
        ({"note": "\ud800"}, "note"),
        ({"deadline": "2027-13-01"}, "deadline"),
        ({"deadline": "２０２７-０１-０１"}, "deadline"),
        ({"deadline": 20270101}, "deadline"),
        ({"evidence_url": "javascript:alert(1)"}, "evidence_url"),
        ({"evidence_url": "https://"}, "evidence_url"),
        ({"owner": 7}, "owner"),
        ({"owner": None}, "owner"),
        ({"owner": ""}, "owner"),
        ({"version": 3}, "version"),
    ],
)
def test_wrong_types_and_values_name_the_field_and_write_nothing(app, world, api, body, field):
    before = _snapshot(app)
    response = api("reviewer").patch(f"/api/v1/actions/{world.items['SG']}", json=body)
    assert field in _fields(response)
    assert _snapshot(app) == before


def test_unknown_paths_methods_and_ids_are_problems_too(world, api, client):
    reviewer = api("reviewer")
    for url in (
        "/api/v1/nothing",
        "/api/v1/actions/abc",
        "/api/v1/actions/0",
        "/api/v1/actions/-1",
        "/api/v1/actions/99999999999999999999",
        "/api/v1/actions/99999",
        "/api/v1/recommendations/0",
    ):
        _problem(reviewer.get(url), 404)
    _problem(reviewer.get("/api/v1/actions/99999999999999999999/updates"), 404)
    _problem(client.get("/api/v1/nothing"), 404)  # no token needed to learn that nothing is there
    for method in ("DELETE", "PUT", "TRACE"):
        response = reviewer.open(method, f"/api/v1/actions/{world.items['SG']}")
        _problem(response, 405)
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "PATCH"}
    options = client.options("/api/v1/recommendations")
    assert options.status_code == 204 and options.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    # The site's own pages keep their HTML error pages.
    assert client.get("/no-such-page").mimetype == "text/html"


# --- the command line ----------------------------------------------------------------------------------


def test_create_token_command(app, world, runner):
    result = runner.invoke(
        args=["tracker", "create-token", "FOCAL.SG@example.test", "--name", "nightly export"]
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.get_json()["email"] == world.users["focal_sg"]
    with app.app_context():
        row = db.session.scalars(sa.select(ApiToken)).one()
        assert (row.name, row.token_hash) == ("nightly export", _sha(secret))

    for email, message in (("nobody@example.test", "no user"), (world.users["inactive_sg"], "deactivated")):
        refused = runner.invoke(args=["tracker", "create-token", email])
        assert refused.exit_code == 1 and message in refused.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 1


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/recommendations?priority=urgent", "priority"),
        ("/api/v1/recommendations?archived=1", "archived"),
        ("/api/v1/recommendations?q=" + "x" * 201, "q"),
        ("/api/v1/recommendations?per_page=0", "per_page"),
        ("/api/v1/actions/{id}/updates?per_page=1000", "per_page"),
        ("/api/v1/actions/{id}/updates?page=x", "page"),
    ],
)
def test_bad_queries_elsewhere_name_the_parameter(world, api, url, field):
    assert _fields(api("reviewer").get(url.replace("{id}", str(world.items["SG"])))) == {field}


def test_an_unexpected_error_is_a_problem_too(app, world, api, monkeypatch):
    def broken(user):
        raise RuntimeError("a bug")

    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    monkeypatch.setattr("tracker.api.schemas.me_json", broken)
    body = _problem(api("reviewer").get("/api/v1/me"), 500)
    assert "a bug" not in body["detail"]
