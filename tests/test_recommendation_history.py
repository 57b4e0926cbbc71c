"""History of recommendations and office responses through HTTP: the forms and the API record who
changed which field and when; the page and GET /api/v1/recommendations/<id>/history show it with
the visibility of the responses on the page, in a bounded number of statements."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token, login
from tracker.api.auth import create_token
from tracker.extensions import db
from tracker.models import Office, Recommendation, RecommendationChange, User
from tracker.recommendations import services

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
LONG_TEXT = "Publish the register as open data, " * 10  # over the page's 160 characters


@pytest.fixture
def clock():
    """Time frozen at T0 for the whole test (sign-in included); move it on with move_to()."""
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _rows(app, recommendation_id: int) -> list[tuple]:
    with app.app_context():
        return [
            (
                c.field,
                c.office.code if c.office else None,
                c.author.email if c.author else None,
                c.old_value,
                c.new_value,
            )
            for c in db.session.scalars(
                sa.select(RecommendationChange)
                .where(RecommendationChange.recommendation_id == recommendation_id)
                .order_by(RecommendationChange.id)
            )
        ]


def _bearer(app, world, label: str) -> dict[str, str]:
    with app.app_context():
        _row, secret = create_token(db.session.get(User, world.user_ids[label]), "test", datetime.now(UTC))
        db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def _respond(client, world, recommendation_id: int, office: str, response: str, comment: str = ""):
    url = f"/recommendations/{recommendation_id}"
    data = {
        "csrf_token": csrf_token(client.get(url).text),
        "office_id": world.offices[office],
        "response": response,
        "comment": comment,
    }
    answer = client.post(url, data=data)
    assert answer.status_code == 302, answer.text
    return answer


def _kept_signed_in(app, email: str):
    """A client signed in with "Keep me signed in": its session outlives the idle hours between steps."""
    c = app.test_client()
    assert login(c, email, remember="y").status_code == 302
    return c


def test_forms_record_who_changed_what_and_when(app, world, clock):
    reviewer, focal = (
        _kept_signed_in(app, world.users["reviewer"]),
        _kept_signed_in(app, world.users["focal_sg"]),
    )
    data = {
        "code": "R-2026-01",
        "title": "Open data",
        "text": "Publish data.",
        "theme": "Digital",
        "priority": "high",
        "source_id": world.source_id,
        "target_date": "2027-06-30",
    }
    clock.move_to(T0)
    token = csrf_token(reviewer.get("/recommendations/new").text)
    assert reviewer.post("/recommendations/new", data={**data, "csrf_token": token}).status_code == 302
    with app.app_context():
        rec_id = db.session.scalar(sa.select(Recommendation.id).where(Recommendation.code == "R-2026-01"))
    reviewer_email = world.users["reviewer"]
    assert _rows(app, rec_id) == [
        ("code", None, reviewer_email, None, "R-2026-01"),
        ("title", None, reviewer_email, None, "Open data"),
        ("text", None, reviewer_email, None, "Publish data."),
        ("theme", None, reviewer_email, None, "Digital"),
        ("priority", None, reviewer_email, None, "high"),
        ("target_date", None, reviewer_email, None, "2027-06-30"),
        ("source", None, reviewer_email, None, "Dialogue"),
    ]

    clock.move_to(T0 + timedelta(days=1))
    edit_url = f"/recommendations/{rec_id}/edit"
    token = csrf_token(reviewer.get(edit_url).text)
    edited = {
        **data,
        "csrf_token": token,
        "title": "Open data, reused",
        "text": LONG_TEXT,
        "priority": "low",
    }
    assert reviewer.post(edit_url, data=edited).status_code == 302
    # Saving again unchanged records nothing.
    assert reviewer.post(edit_url, data=edited).status_code == 302
    clock.move_to(T0 + timedelta(days=2))
    _respond(focal, world, rec_id, "SG", "accepted", "From next year")
    clock.move_to(T0 + timedelta(days=3))
    _respond(reviewer, world, rec_id, "SG", "partially_accepted", "From next year")
    confirm = reviewer.get(f"/recommendations/{rec_id}/archive")
    archived = reviewer.post(
        f"/recommendations/{rec_id}/archive", data={"csrf_token": csrf_token(confirm.text)}
    )
    assert archived.status_code == 302

    focal_email = world.users["focal_sg"]
    assert _rows(app, rec_id)[7:] == [
        ("title", None, reviewer_email, "Open data", "Open data, reused"),
        ("text", None, reviewer_email, "Publish data.", LONG_TEXT.strip()),
        ("priority", None, reviewer_email, "high", "low"),
        ("response", "SG", focal_email, None, "accepted"),
        ("comment", "SG", focal_email, None, "From next year"),
        ("response", "SG", reviewer_email, "accepted", "partially_accepted"),
        ("archived", None, reviewer_email, "false", "true"),
    ]
    with app.app_context():
        times = db.session.scalars(
            sa.select(RecommendationChange.created_at)
            .where(RecommendationChange.field == "response")
            .order_by(RecommendationChange.id)
        ).all()
        assert times == [T0 + timedelta(days=2), T0 + timedelta(days=3)]

    page = reviewer.get(f"/recommendations/{rec_id}")
    assert page.status_code == 200
    history = page.text.split('id="history"', 1)[1]
    rows = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in history.split("<tr>")[2:]]
    # Who recorded "accepted", and when (the reviewer reads UTC; newest first).
    # To the minute: no seconds in any moment shown (Babel's "medium" would write "9:00:00 AM").
    assert "Dec 2, 2026, 9:00 AM" in rows[3] and "Focal Sg Response of SG – Accepted" in rows[3]
    assert not re.search(r"\d:\d\d:\d\d", " ".join(rows))
    assert "Dec 3, 2026" in rows[1] and "Reviewer Response of SG Accepted Partially accepted" in rows[1]
    assert "Focal Sg Comment of SG – From next year" in rows[2]
    assert "Reviewer Archived No Yes" in rows[0]
    assert "Priority High Low" in rows[4] and "Title Open data Open data, reused" in rows[6]
    assert "Text Publish data. Publish the register" in rows[5]
    assert "Source – Dialogue" in rows[7] and "Target date – Jun 30, 2027" in rows[8]
    assert "Nov 30, 2026" in rows[13] and "Code – R-2026-01" in rows[13] and len(rows) == 14
    assert "<details><summary>" in history and LONG_TEXT.strip() in history
    assert history.index('<time datetime="2026-12-03T09:00:00+00:00">') < history.index(
        '<time datetime="2026-11-30T09:00:00+00:00">'
    )
    # Times in the viewer's zone: 09:00 UTC is 17:00 in Singapore.
    focal_history = focal.get(f"/recommendations/{rec_id}").text.split('id="history"', 1)[1]
    shown = focal_history.split('datetime="2026-12-02T09:00:00+00:00">', 1)[1][:40]
    assert "Dec 2, 2026, 5:00\u202fPM<" in shown


def test_api_writes_are_recorded_and_listed(app, world, clock):
    client = app.test_client()
    reviewer = _bearer(app, world, "reviewer")
    clock.move_to(T0)
    created = client.post(
        "/api/v1/recommendations",
        headers=reviewer,
        json={
            "code": "R-API",
            "title": "Shared search",
            "text": "One search for all offices.",
            "theme": "Digital",
            "source_id": world.source_id,
        },
    )
    assert created.status_code == 201, created.text
    rec_id = created.get_json()["id"]
    clock.move_to(T0 + timedelta(hours=1))
    patched = client.patch(
        f"/api/v1/recommendations/{rec_id}",
        headers=reviewer,
        json={"title": "Shared search engine", "target_date": "2027-01-31", "archived": True},
    )
    assert patched.status_code == 200, patched.text

    answer = client.get(f"/api/v1/recommendations/{rec_id}/history", headers=reviewer)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    items = answer.get_json()["items"]
    author = {"email": world.users["reviewer"], "name": "Reviewer"}
    assert items[:3] == [
        {
            "at": "2026-11-30T10:00:00Z",
            "author": author,
            "office": None,
            "field": "archived",
            "old": "false",
            "new": "true",
        },
        {
            "at": "2026-11-30T10:00:00Z",
            "author": author,
            "office": None,
            "field": "target_date",
            "old": None,
            "new": "2027-01-31",
        },
        {
            "at": "2026-11-30T10:00:00Z",
            "author": author,
            "office": None,
            "field": "title",
            "old": "Shared search",
            "new": "Shared search engine",
        },
    ]
    assert {(i["field"], i["old"], i["new"]) for i in items[3:]} == {
        ("code", None, "R-API"),
        ("title", None, "Shared search"),
        ("text", None, "One search for all offices."),
        ("theme", None, "Digital"),
        ("priority", None, "medium"),
        ("source", None, "Dialogue"),
    }
    assert {i["at"] for i in items[3:]} == {"2026-11-30T09:00:00Z"}

    assert client.get(f"/api/v1/recommendations/{rec_id}/history").status_code == 401
    missing = client.get("/api/v1/recommendations/999999/history", headers=reviewer)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_response_history_is_visible_where_the_response_is(app, world, login_as):
    rec_id, url = world.recommendation_id, f"/recommendations/{world.recommendation_id}"
    _respond(login_as(world.users["focal_my"]), world, rec_id, "MY", "noted", "Not for us")
    _respond(login_as(world.users["focal_sg"]), world, rec_id, "SG", "accepted")
    reviewer = login_as(world.users["reviewer"])
    token = csrf_token(reviewer.get(f"{url}/edit").text)
    edit = {
        "csrf_token": token,
        "code": "R-1",
        "title": "Go digital, now",
        "text": "Text",
        "theme": "Digital",
        "priority": "medium",
        "source_id": world.source_id,
    }
    assert reviewer.post(f"{url}/edit", data=edit).status_code == 302

    def seen(label: str) -> tuple[str, set]:
        page = login_as(world.users[label]).get(url).text
        api = app.test_client().get(f"/api/v1{url}/history", headers=_bearer(app, world, label))
        assert api.status_code == 200
        return page, {(i["office"], i["field"]) for i in api.get_json()["items"]}

    own = {(None, "title"), ("SG", "response")}
    everyone = own | {("MY", "response"), ("MY", "comment")}
    for label in ("focal_sg", "manager_sg"):
        page, api = seen(label)
        # The page shows SG's response only, so its history shows SG's changes only.
        assert "Not for us" not in page and "Response of MY" not in page and "Comment of MY" not in page
        assert "Response of SG" in page and "Go digital, now" in page
        assert api == own, label
    for label in ("reviewer", "manager", "admin"):
        page, api = seen(label)
        assert "Response of MY" in page and "Not for us" in page
        assert api == everyone, label
    page, api = seen("focal_my")
    assert "Response of SG" not in page and api == {(None, "title"), ("MY", "response"), ("MY", "comment")}

    # An inactive office's response is left off the page, and so is its history.
    with app.app_context():
        db.session.get(Office, world.offices["MY"]).active = False
        db.session.commit()
    page, api = seen("reviewer")
    assert "Response of MY" not in page and "Not for us" not in page and api == own


def test_history_page_and_api_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    reviewer = login_as(world.users["reviewer"])
    headers = _bearer(app, world, "reviewer")
    url = f"/recommendations/{world.recommendation_id}"

    def change(rounds: int, start: int) -> None:
        with app.app_context():
            actor = db.session.get(User, world.user_ids["reviewer"])
            rec = services.get_recommendation(world.recommendation_id)
            offices = {code: db.session.get(Office, office_id) for code, office_id in world.offices.items()}
            for i in range(start, start + rounds):
                now = T0 + timedelta(minutes=i)
                services.save_recommendation(
                    actor,
                    rec,
                    code="R-1",
                    title=f"Title {i}",
                    text=f"Text {i}",
                    theme=rec.theme,
                    priority=rec.priority,
                    source_id=rec.source_id,
                    target_date=rec.target_date,
                    now=now,
                )
                for office in offices.values():
                    services.respond(actor, rec, office, ("accepted", "noted")[i % 2], f"Comment {i}", now)
            db.session.commit()

    def statements() -> tuple[int, int]:
        with count_queries() as page_statements:
            page = reviewer.get(url)
        with count_queries() as api_statements:
            api = app.test_client().get(f"/api/v1{url}/history", headers=headers)
        assert page.status_code == 200 and api.status_code == 200
        return len(page_statements), len(api_statements)

    change(2, 0)  # 12 changes
    statements()  # the token's first use is recorded once
    small = statements()
    change(18, 2)  # 120 changes: the page shows 50 and counts them all (one more statement)
    page_big, api_big = statements()
    assert api_big == small[1] and page_big <= small[0] + 1
    page = reviewer.get(url).text
    assert "The latest 50 of 120 changes." in page and page.count("<time datetime=") == 50
    api = app.test_client().get(f"/api/v1{url}/history", headers=headers).get_json()["items"]
    assert len(api) == 120 and api[0]["new"] in ("Comment 19", "accepted", "noted", "Title 19", "Text 19")
