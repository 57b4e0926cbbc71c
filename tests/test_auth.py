"""Sign-in, sign-out, password change, CSRF and redirects, through HTTP."""

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, csrf_token, login
from tracker.extensions import db
from tracker.models import User

GENERIC = "Invalid email or password."


def test_sign_in_page_has_labelled_fields_and_csrf(client):
    page = client.get("/auth/login")
    assert page.status_code == 200
    assert '<label for="email">Email</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert csrf_token(page.text)


def test_pages_need_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_sign_in_and_out(client, world):
    response = login(client, world.users["focal_sg"])
    assert response.status_code == 302 and response.headers["Location"] == "/my"  # a focal point's home
    assert "E-filing for SG" in client.get("/").text
    token = csrf_token(client.get("/").text)
    response = client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_email_is_case_insensitive(client, world):
    assert login(client, "  Focal.SG@Example.TEST ").status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("focal.sg@example.test", "wrong-password"),  # wrong password
        ("nobody@example.test", PASSWORD),  # unknown email
        ("gone.sg@example.test", PASSWORD),  # deactivated account
    ],
)
def test_refusals_all_look_the_same(client, world, email, password):
    response = login(client, email, password)
    assert response.status_code == 200
    assert GENERIC in response.text
    assert "deactivated" not in response.text.lower() and "unknown" not in response.text.lower()
    assert client.get("/").status_code == 302


def test_sign_in_without_csrf_token_is_refused(client, world):
    response = client.post("/auth/login", data={"email": world.users["focal_sg"], "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_logout_by_get_is_not_possible(login_as, world):
    c = login_as(world.users["focal_sg"])
    assert c.get("/auth/logout").status_code == 405
    assert c.post("/auth/logout", data={}).status_code == 400  # no CSRF token: refused
    assert c.get("/").status_code == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/actions/1", "/actions/1"),
        ("/admin/users?page=2", "/admin/users?page=2"),
        # Refused: the admin's home instead.
        ("https://evil.test/", "/admin"),
        ("//evil.test/", "/admin"),
        ("/\\evil.test", "/admin"),
        ("javascript:alert(1)", "/admin"),
        ("http:/evil.test", "/admin"),
    ],
)
def test_next_only_redirects_within_the_site(client, world, target, expected):
    page = client.get("/auth/login")
    response = client.post(
        "/auth/login",
        query_string={"next": target},
        data={"email": world.users["admin"], "password": PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_deactivating_a_user_ends_their_session(app, login_as, world):
    c = login_as(world.users["focal_sg"])
    with app.app_context():
        db.session.get(User, world.user_ids["focal_sg"]).active = False
        db.session.commit()
    assert c.get("/").status_code == 302


def test_password_change(app, login_as, client, world):
    email = world.users["focal_sg"]
    c = login_as(email)
    other_device = login_as(email)
    page = c.get("/auth/password")
    token = csrf_token(page.text)
    form = {
        "current": PASSWORD,
        "new": "a-new-password-1",
        "confirm": "a-new-password-1",
        "csrf_token": token,
    }

    wrong = c.post("/auth/password", data=dict(form, current="not-it"))
    assert "The current password is not right." in wrong.text
    short = c.post("/auth/password", data=dict(form, new="short", confirm="short"))
    assert "Use at least 10 characters." in short.text
    differ = c.post("/auth/password", data=dict(form, confirm="something-else"))
    assert "The two passwords differ." in differ.text

    done = c.post("/auth/password", data=form, follow_redirects=True)
    assert "Your password has been changed." in done.text
    assert c.get("/").status_code == 200  # this session goes on
    assert other_device.get("/").status_code == 302  # the other one has ended
    assert login(client, email, PASSWORD).status_code == 200
    assert login(client, email, "a-new-password-1").status_code == 302
    with app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash).where(User.email == email))
    assert stored.startswith("scrypt:")


def test_last_login_is_recorded(app, client, world):
    login(client, world.users["reviewer"])
    with app.app_context():
        user = db.session.get(User, world.user_ids["reviewer"])
        assert user.last_login_at is not None


def test_sign_in_attempts_are_rate_limited(app, client, world):
    from tracker.extensions import limiter

    app.config["TRACKER_LOGIN_RATE_LIMIT"] = "3 per minute"
    limiter.reset()
    try:
        for _ in range(3):
            assert login(client, world.users["focal_sg"], "wrong-password").status_code == 200
        blocked = login(client, world.users["focal_sg"], PASSWORD)
        assert blocked.status_code == 429
        assert "Too many attempts" in blocked.text and "Retry-After" in blocked.headers
        assert client.get("/auth/login").status_code == 200  # the form itself stays reachable
    finally:
        app.config["TRACKER_LOGIN_RATE_LIMIT"] = "1000 per minute"
        limiter.reset()


def test_language_switcher_and_choice(app, client, world, login_as):
    page = client.get("/auth/login")
    assert '<option value="fr" lang="fr">Français</option>' in page.text
    assert '<option value="es" lang="es">Español</option>' in page.text
    switched = client.post(
        "/auth/language", data={"csrf_token": csrf_token(page.text), "language": "fr", "next": "/auth/login"}
    )
    assert switched.status_code == 302 and switched.headers["Location"] == "/auth/login"
    assert '<html lang="fr"' in client.get("/auth/login").text
    assert (
        client.post(
            "/auth/language", data={"csrf_token": csrf_token(page.text), "language": "xx"}
        ).status_code
        == 302
    )
    assert '<html lang="fr"' in client.get("/auth/login").text  # an unknown language changes nothing
    # Signed in, the choice is kept on the account; the browser's preference comes after it.
    c = login_as(world.users["focal_sg"])
    token = csrf_token(c.get("/").text)
    c.post("/auth/language", data={"csrf_token": token, "language": "es", "next": "//evil.test/"})
    with app.app_context():
        assert db.session.get(User, world.user_ids["focal_sg"]).language == "es"
    assert '<html lang="es"' in c.get("/", headers={"Accept-Language": "fr"}).text


def test_browser_language_is_used_before_signing_in(client):
    assert '<html lang="fr"' in client.get("/auth/login", headers={"Accept-Language": "fr-CA,fr;q=0.9"}).text
    assert '<html lang="en"' in client.get("/auth/login", headers={"Accept-Language": "de"}).text
