"""The profile page: API tokens (created and shown once, listed, revoked after a confirmation) and
the calendar link (made, regenerated, turned off), all through the browser's forms."""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ApiToken, User


def _secret_on(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*value="([^"]+)"', html)
    assert match, f"no #{element_id} on the page"
    return match.group(1)


def _create(client, name: str):
    page = client.get("/profile")
    return client.post("/profile/tokens", data={"name": name, "csrf_token": csrf_token(page.text)})


def test_profile_needs_sign_in_and_is_in_the_menu(world, client, login_as):
    assert client.get("/profile").status_code == 302
    home = login_as(world.users["focal_sg"]).get("/").text
    assert 'href="/profile"' in home


def test_a_token_is_shown_once_stored_hashed_and_works(app, world, login_as):
    browser = login_as(world.users["focal_sg"])
    page = browser.get("/profile")
    assert page.status_code == 200 and "You have no API tokens." in page.text
    assert "shown once" in page.text

    created = _create(browser, "Reporting script")
    assert created.status_code == 200 and created.headers["Cache-Control"] == "no-store"
    secret = _secret_on(created.text, "new-token")
    assert "shown only once" in created.text and len(secret) >= 40
    with app.app_context():
        row = db.session.scalars(sa.select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert (row.user_id, row.name, row.revoked_at) == (
            world.user_ids["focal_sg"],
            "Reporting script",
            None,
        )

    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.get_json()["email"] == world.users["focal_sg"]
    listed = browser.get("/profile").text
    assert "Reporting script" in listed and "Active" in listed and secret not in listed


def test_token_names_are_checked_and_csrf_is_required(app, world, login_as):
    browser = login_as(world.users["focal_sg"])
    blank = _create(browser, "   ")
    assert blank.status_code == 422 and "Give the token a name" in blank.text
    long = _create(browser, "x" * 101)
    assert long.status_code == 422
    forged = browser.post("/profile/tokens", data={"name": "Forged"})
    assert forged.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_revoking_needs_a_confirmation_and_stops_the_token(app, world, login_as):
    browser = login_as(world.users["focal_sg"])
    secret = _secret_on(_create(browser, "Old laptop").text, "new-token")
    with app.app_context():
        token_id = db.session.scalars(sa.select(ApiToken.id)).one()
    assert f"/profile/tokens/{token_id}/revoke" in browser.get("/profile").text

    confirm = browser.get(f"/profile/tokens/{token_id}/revoke")
    assert confirm.status_code == 200 and "Revoke the token “Old laptop”?" in confirm.text
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None  # a GET changes nothing
    assert browser.post(f"/profile/tokens/{token_id}/revoke", data={}).status_code == 400  # no CSRF token
    done = browser.post(f"/profile/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(confirm.text)})
    assert done.status_code == 302
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is not None
    api = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    page = browser.get("/profile").text
    assert "Revoked on" in page and f"/profile/tokens/{token_id}/revoke" not in page


def test_nobody_revokes_or_sees_another_persons_tokens(app, world, login_as):
    owner = login_as(world.users["focal_sg"])
    secret = _secret_on(_create(owner, "Mine").text, "new-token")
    with app.app_context():
        token_id = db.session.scalars(sa.select(ApiToken.id)).one()
    other = login_as(world.users["admin"])
    assert "Mine" not in other.get("/profile").text
    assert other.get(f"/profile/tokens/{token_id}/revoke").status_code == 404
    token = csrf_token(other.get("/profile").text)
    assert other.post(f"/profile/tokens/{token_id}/revoke", data={"csrf_token": token}).status_code == 404
    with app.app_context():
        assert db.session.get(ApiToken, token_id).revoked_at is None
    assert (
        app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    )


def test_at_most_twenty_active_tokens(app, world, login_as):
    browser = login_as(world.users["reviewer"])
    for i in range(20):
        assert _create(browser, f"t{i}").status_code == 200
    refused = _create(browser, "one too many")
    assert refused.status_code == 422 and "revoke one" in refused.text


def test_the_calendar_link_is_shown_once_and_regenerating_replaces_it(app, world, login_as, client):
    browser = login_as(world.users["focal_sg"])
    page = browser.get("/profile")
    assert "Make a calendar link" in page.text
    made = browser.post("/profile/calendar", data={"csrf_token": csrf_token(page.text)})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    first = _secret_on(made.text, "calendar-url")
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/calendar/[A-Za-z0-9_-]{40,}\.ics", first)
    path = first.removeprefix("http://127.0.0.1:5000")
    assert client.get(path).status_code == 200
    with app.app_context():
        stored = db.session.get(User, world.user_ids["focal_sg"]).calendar_token_hash
        secret = path.removeprefix("/calendar/").removesuffix(".ics")
        assert stored == hashlib.sha256(secret.encode()).hexdigest()

    page = browser.get("/profile").text
    assert "You have a calendar link." in page and first not in page
    confirm = browser.get("/profile/calendar")
    assert "Make a new calendar link?" in confirm.text
    renewed = browser.post("/profile/calendar", data={"csrf_token": csrf_token(confirm.text)})
    second = _secret_on(renewed.text, "calendar-url").removeprefix("http://127.0.0.1:5000")
    assert "Your old link no longer works." in renewed.text and second != path
    assert client.get(path).status_code == 404
    assert client.get(second).status_code == 200

    off = browser.get("/profile/calendar/off")
    assert browser.post("/profile/calendar/off", data={"csrf_token": csrf_token(off.text)}).status_code == 302
    assert client.get(second).status_code == 404
    with app.app_context():
        assert db.session.get(User, world.user_ids["focal_sg"]).calendar_token_hash is None


def test_calendar_forms_need_csrf(app, world, login_as):
    browser = login_as(world.users["focal_sg"])
    assert browser.post("/profile/calendar", data={}).status_code == 400
    assert browser.post("/profile/calendar/off", data={}).status_code == 400
    with app.app_context():
        assert db.session.get(User, world.user_ids["focal_sg"]).calendar_token_hash is None
