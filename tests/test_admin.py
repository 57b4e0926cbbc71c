"""The admin pages for users and offices, through HTTP: lists, forms, refusals, confirmations."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, csrf_token, login
from tracker.extensions import db
from tracker.models import Office, User

NEW_PASSWORD = "a-long-initial-password"


def _snapshot(app) -> tuple[list[tuple], list[tuple]]:
    """Every row of the user and office tables, to show that a refusal wrote nothing."""
    with app.app_context():
        users = db.session.execute(sa.select(User.__table__).order_by(User.id)).all()
        offices = db.session.execute(sa.select(Office.__table__).order_by(Office.id)).all()
        return [tuple(r) for r in users], [tuple(r) for r in offices]


def _submit(c, url: str, data: dict[str, str], **kwargs):
    """GET the form at ``url``, then POST ``data`` with its CSRF token."""
    page = c.get(url)
    assert page.status_code == 200, (url, page.status_code)
    return c.post(url, data={"csrf_token": csrf_token(page.text), **data}, **kwargs)


def _user(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is not None:
            db.session.expunge(user)
        return user


def _errors_of(page_text: str, field_id: str) -> str:
    """The error list rendered next to one field ('' when there is none)."""
    match = re.search(rf'<ul class="errors" id="{field_id}-errors">(.*?)</ul>', page_text, re.S)
    return html.unescape(match.group(1)) if match else ""


def _new_user_data(**changes: str) -> dict[str, str]:
    data = {
        "email": "New.Person@Example.test",
        "name": "New Person",
        "role": "focal_point",
        "office": "SG",
        "language": "",
        "timezone": "",
        "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
    }
    data.update(changes)
    return data


def _user_data(app, user_id: int, **changes: str) -> dict[str, str]:
    """The edit form of a user as it stands, with some fields changed."""
    with app.app_context():
        user = db.session.get(User, user_id)
        data = {
            "name": user.name,
            "role": user.role,
            "office": user.office.code if user.office else "",
            "language": user.language or "",
            "timezone": user.timezone or "",
        }
    data.update(changes)
    return data


# --- the list of users -------------------------------------------------------------------------


def test_admin_sees_every_user(world, login_as):
    page = login_as(world.users["admin"]).get("/admin/users")
    assert page.status_code == 200
    for email in world.users.values():
        assert email in page.text
    assert "Deactivated" in page.text and "Focal point" in page.text and "All offices" in page.text
    assert 'href="/admin/users/new"' in page.text
    assert f'href="/admin/users/{world.user_ids["focal_my"]}/edit"' in page.text


@pytest.mark.parametrize("role", ["reviewer", "manager", "manager_sg", "focal_sg"])
def test_others_are_refused(world, login_as, role):
    page = login_as(world.users[role]).get("/admin/users")
    assert page.status_code == 403
    assert "You do not have permission" in page.text


def test_admin_links_only_for_admins(world, login_as):
    home = login_as(world.users["admin"]).get("/").text
    assert 'href="/admin/users"' in home and 'href="/admin/offices"' in home
    for role in ("reviewer", "manager", "focal_sg"):
        home = login_as(world.users[role]).get("/").text
        assert 'href="/admin/users"' not in home and 'href="/admin/offices"' not in home


def test_users_are_paginated(app, world, login_as):
    with app.app_context():
        db.session.add_all(
            User(email=f"u{i:03}@example.test", name=f"U{i}", role="manager") for i in range(60)
        )
        db.session.commit()
    c = login_as(world.users["admin"])
    first = c.get("/admin/users").text
    assert "67 users" in first and "Page 1 of 2" in first
    assert "u059@example.test" in c.get("/admin/users?page=2").text
    # The pager keeps the filters.
    filtered = c.get("/admin/users?role=manager").text
    assert "62 users" in filtered and "role=manager" in html.unescape(filtered.split('rel="next"')[0])


def _listed(c, **query: str) -> set[str]:
    page = c.get("/admin/users", query_string=query)
    assert page.status_code == 200
    return set(re.findall(r'/edit">([^<]+@example\.test)</a>', page.text))


def test_user_list_filters(app, world, login_as):
    c = login_as(world.users["admin"])
    emails = world.users
    assert _listed(c) == set(emails.values())
    assert _listed(c, q="FOCAL.") == {emails["focal_sg"], emails["focal_my"]}  # email, any case
    assert _listed(c, q="manager sg") == {emails["manager_sg"]}  # name "Manager Sg"
    assert _listed(c, q="%") == set()  # a wildcard is a plain character
    assert _listed(c, role="focal_point") == {emails["focal_sg"], emails["focal_my"], emails["inactive_sg"]}
    assert _listed(c, office="sg") == {emails["manager_sg"], emails["focal_sg"], emails["inactive_sg"]}
    assert _listed(c, office="-") == {emails["admin"], emails["reviewer"], emails["manager"]}
    assert _listed(c, state="deactivated") == {emails["inactive_sg"]}
    assert _listed(c, state="active", office="SG", role="focal_point") == {emails["focal_sg"]}
    assert _listed(c, office="ZZ") == set()
    # Unknown filter values are ignored rather than failing.
    assert _listed(c, role="boss", state="sleeping") == set(emails.values())
    page = c.get("/admin/users", query_string={"role": "reviewer", "state": "active", "office": "MY"}).text
    assert '<option value="reviewer" selected>' in page and '<option value="MY" selected>' in page
    assert "No user matches these filters." in page


def test_user_list_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    def add_users(n: int, start: int) -> None:
        with app.app_context():
            sg = db.session.get(Office, world.offices["SG"])
            db.session.add_all(
                User(email=f"b{i:03}@example.test", name=f"B{i}", role="focal_point", office=sg)
                for i in range(start, start + n)
            )
            db.session.commit()

    c = login_as(world.users["admin"])
    add_users(3, 0)
    with count_queries() as few:
        assert "10 users" in c.get("/admin/users").text
    add_users(30, 3)
    with count_queries() as many:
        assert "40 users" in c.get("/admin/users").text
    assert len(many) == len(few) <= 6, many


# --- creating users ----------------------------------------------------------------------------


def test_create_user(app, world, login_as):
    c = login_as(world.users["admin"])
    page = c.get("/admin/users/new")
    assert page.status_code == 200
    for label in ("Email", "Name", "Role", "Office", "Language", "Time zone", "Initial password"):
        assert f">{label}</label>" in page.text
    assert '<select aria-describedby="timezone-hint" id="timezone" name="timezone">' in page.text
    assert '<option value="Asia/Singapore">Asia/Singapore</option>' in page.text
    response = _submit(
        c,
        "/admin/users/new",
        _new_user_data(timezone="Asia/Kuala_Lumpur", language="en"),
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "New Person (new.person@example.test) can now sign in." in html.unescape(response.text)
    user = _user(app, "new.person@example.test")
    assert user is not None and user.active
    assert (user.name, user.role, user.office_id) == ("New Person", "focal_point", world.offices["SG"])
    assert (user.language, user.timezone) == ("en", "Asia/Kuala_Lumpur")
    assert response.request.path == f"/admin/users/{user.id}/edit"
    assert login(app.test_client(), "new.person@example.test", NEW_PASSWORD).status_code == 302


def test_create_programme_wide_user_with_defaults(app, world, login_as):
    c = login_as(world.users["admin"])
    response = _submit(
        c, "/admin/users/new", _new_user_data(email="rev2@example.test", role="reviewer", office="")
    )
    assert response.status_code == 302
    user = _user(app, "rev2@example.test")
    assert (user.role, user.office_id, user.language, user.timezone) == ("reviewer", None, None, None)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"email": "FOCAL.SG@example.test"},
            "email",
            "A user with the email focal.sg@example.test already exists.",
        ),
        ({"email": "not-an-email"}, "email", "is not a valid email address"),
        ({"office": ""}, "office", "A focal point needs an office."),
        ({"role": "reviewer"}, "office", "has no office"),
        ({"role": "admin"}, "office", "has no office"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Unknown time zone"),
        ({"password": "short", "confirm": "short"}, "password", "Use at least 10 characters."),
        ({"confirm": "something-else-entirely"}, "confirm", "The two passwords differ."),
        ({"role": "superuser"}, "role", "Not a valid choice"),  # a forged value
        ({"office": "ZZ"}, "office", "Not a valid choice"),
        ({"language": "xx"}, "language", "Not a valid choice"),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_create_user_refusals_write_nothing(app, world, login_as, changes, field, message):
    c = login_as(world.users["admin"])
    before = _snapshot(app)
    response = _submit(c, "/admin/users/new", _new_user_data(**changes))
    assert response.status_code == 200
    assert message in _errors_of(response.text, field), response.text
    assert "Nothing was saved: see the messages in the form." in response.text
    assert _snapshot(app) == before
    # The form keeps what was typed, except the passwords.
    if "email" not in changes:
        assert 'value="New.Person@Example.test"' in response.text
    assert NEW_PASSWORD not in response.text


def test_a_new_user_cannot_join_an_inactive_office(app, world, login_as):
    with app.app_context():
        db.session.get(Office, world.offices["MY"]).active = False
        db.session.commit()
    c = login_as(world.users["admin"])
    assert '<option value="MY"' not in c.get("/admin/users/new").text
    before = _snapshot(app)
    response = _submit(c, "/admin/users/new", _new_user_data(office="MY"))
    assert "Not a valid choice" in _errors_of(response.text, "office")
    assert _snapshot(app) == before


# --- editing users -----------------------------------------------------------------------------


def test_edit_user(app, world, login_as):
    c = login_as(world.users["admin"])
    uid = world.user_ids["focal_sg"]
    page = c.get(f"/admin/users/{uid}/edit")
    assert page.status_code == 200
    assert world.users["focal_sg"] in page.text and 'name="email"' not in page.text  # shown, not editable
    assert '<option selected value="SG">' in page.text or '<option value="SG" selected>' in page.text
    data = _user_data(app, uid, name="Focal Renamed", office="MY", language="en", timezone="Asia/Bangkok")
    response = _submit(c, f"/admin/users/{uid}/edit", data, follow_redirects=True)
    assert "The changes to Focal Renamed are saved." in response.text
    user = _user(app, world.users["focal_sg"])
    assert (user.name, user.office_id, user.language, user.timezone) == (
        "Focal Renamed",
        world.offices["MY"],
        "en",
        "Asia/Bangkok",
    )
    # A focal point becomes a programme-wide manager; then the overrides are cleared.
    data = _user_data(app, uid, role="manager", office="", language="", timezone="")
    assert _submit(c, f"/admin/users/{uid}/edit", data).status_code == 302
    user = _user(app, world.users["focal_sg"])
    assert (user.role, user.office_id, user.language, user.timezone) == ("manager", None, None, None)


def test_an_admin_may_edit_themselves_but_keeps_the_role(app, world, login_as):
    c = login_as(world.users["admin"])
    uid = world.user_ids["admin"]
    assert _submit(c, f"/admin/users/{uid}/edit", _user_data(app, uid, name="Chief")).status_code == 302
    assert _user(app, world.users["admin"]).name == "Chief"
    page = c.get(f"/admin/users/{uid}/edit").text
    assert "Deactivate" not in page and "Reset the password" not in page  # nothing to lock oneself out


@pytest.mark.parametrize(
    ("who", "changes", "field", "message"),
    [
        ("focal_sg", {"office": ""}, "office", "A focal point needs an office."),
        ("manager_sg", {"role": "focal_point", "office": ""}, "office", "A focal point needs an office."),
        ("focal_sg", {"role": "reviewer"}, "office", "has no office"),
        ("reviewer", {"office": "SG"}, "office", "has no office"),
        ("focal_sg", {"timezone": "Asia/Nowhere"}, "timezone", "Unknown time zone"),
        ("admin", {"role": "reviewer"}, "role", "You cannot remove your own administrator role"),
        ("admin", {"role": "manager"}, "role", "You cannot remove your own administrator role"),
        ("focal_sg", {"role": "owner"}, "role", "Not a valid choice"),
        ("focal_sg", {"name": "  "}, "name", "This field is required."),
    ],
)
def test_edit_user_refusals_write_nothing(app, world, login_as, who, changes, field, message):
    c = login_as(world.users["admin"])
    uid = world.user_ids[who]
    before = _snapshot(app)
    response = _submit(c, f"/admin/users/{uid}/edit", _user_data(app, uid, **changes))
    assert response.status_code == 200
    assert message in _errors_of(response.text, field), response.text
    assert _snapshot(app) == before


def test_the_database_checks_are_the_backstop(app, world, login_as, monkeypatch):
    """Were the service's rule forgotten, the check constraint refuses and the form says so."""
    from tracker.admin import services

    monkeypatch.setattr(services, "_check_role_and_office", lambda role, office: None)
    c = login_as(world.users["admin"])
    uid = world.user_ids["reviewer"]
    before = _snapshot(app)
    response = _submit(c, f"/admin/users/{uid}/edit", _user_data(app, uid, office="SG"))
    assert response.status_code == 200
    assert "The database refused the change" in response.text
    assert "Nothing was saved: see the messages in the form." in response.text
    assert _snapshot(app) == before


# --- deactivating, reactivating, resetting -----------------------------------------------------


def test_deactivate_asks_then_ends_sign_in_and_sessions(app, world, login_as):
    victim = login_as(world.users["focal_sg"])
    assert victim.get("/").status_code == 200
    c = login_as(world.users["admin"])
    uid = world.user_ids["focal_sg"]
    assert f'href="/admin/users/{uid}/deactivate"' in c.get(f"/admin/users/{uid}/edit").text
    page = c.get(f"/admin/users/{uid}/deactivate")
    assert page.status_code == 200
    assert '<button type="submit" class="primary">Deactivate Focal Sg</button>' in page.text
    assert _user(app, world.users["focal_sg"]).active  # asking changes nothing
    response = c.post(
        f"/admin/users/{uid}/deactivate", data={"csrf_token": csrf_token(page.text)}, follow_redirects=True
    )
    assert "Focal Sg is deactivated and signed out everywhere." in response.text
    assert not _user(app, world.users["focal_sg"]).active
    assert victim.get("/").status_code == 302  # the open session has ended
    refused = login(app.test_client(), world.users["focal_sg"])
    assert refused.status_code == 200 and "Invalid email or password." in refused.text
    # Deactivating again changes nothing and says so.
    before = _snapshot(app)
    again = c.post(
        f"/admin/users/{uid}/deactivate", data={"csrf_token": csrf_token(page.text)}, follow_redirects=True
    )
    assert "Focal Sg is already deactivated." in again.text
    assert (
        "Focal Sg is already deactivated."
        in c.get(f"/admin/users/{uid}/deactivate", follow_redirects=True).text
    )
    assert _snapshot(app) == before


def test_reactivate_asks_then_lets_the_user_sign_in(app, world, login_as):
    c = login_as(world.users["admin"])
    uid = world.user_ids["inactive_sg"]
    assert f'href="/admin/users/{uid}/reactivate"' in c.get(f"/admin/users/{uid}/edit").text
    page = c.get(f"/admin/users/{uid}/reactivate")
    assert '<button type="submit" class="primary">Reactivate Inactive Sg</button>' in page.text
    assert login(app.test_client(), world.users["inactive_sg"]).status_code == 200  # still refused
    response = c.post(
        f"/admin/users/{uid}/reactivate", data={"csrf_token": csrf_token(page.text)}, follow_redirects=True
    )
    assert "Inactive Sg is active again and can sign in." in response.text
    assert _user(app, world.users["inactive_sg"]).active
    assert login(app.test_client(), world.users["inactive_sg"]).status_code == 302


def test_sessions_ended_by_deactivation_stay_ended_after_reactivation(app, world, login_as):
    victim = app.test_client()
    assert login(victim, world.users["focal_sg"], remember="y").status_code == 302
    remembered = app.test_client()
    assert login(remembered, world.users["focal_sg"], remember="y").status_code == 302
    remembered.delete_cookie("session")  # only the remember-me cookie is left
    assert remembered.get("/").status_code == 200
    remembered.delete_cookie("session")
    c = login_as(world.users["admin"])
    uid = world.user_ids["focal_sg"]
    assert _submit(c, f"/admin/users/{uid}/deactivate", {}).status_code == 302
    assert _submit(c, f"/admin/users/{uid}/reactivate", {}).status_code == 302
    assert victim.get("/").status_code == 302
    assert remembered.get("/").status_code == 302
    assert login(app.test_client(), world.users["focal_sg"]).status_code == 302  # a new sign-in works


def test_an_admin_cannot_deactivate_themselves(app, world, login_as):
    c = login_as(world.users["admin"])
    uid = world.user_ids["admin"]
    token = csrf_token(c.get("/admin/users").text)
    before = _snapshot(app)
    page = c.get(f"/admin/users/{uid}/deactivate", follow_redirects=True)
    assert "You cannot deactivate your own account." in page.text
    response = c.post(f"/admin/users/{uid}/deactivate", data={"csrf_token": token}, follow_redirects=True)
    assert "You cannot deactivate your own account." in response.text
    assert _snapshot(app) == before
    assert c.get("/admin/users").status_code == 200  # still signed in


def test_reset_password_shows_a_temporary_password_once(app, world, login_as):
    victim = login_as(world.users["focal_sg"])
    c = login_as(world.users["admin"])
    uid = world.user_ids["focal_sg"]
    page = c.get(f"/admin/users/{uid}/reset-password")
    assert page.status_code == 200
    assert '<button type="submit" class="primary">Reset the password of Focal Sg</button>' in page.text
    assert _user(app, world.users["focal_sg"]).check_password(PASSWORD)  # asking changes nothing
    response = c.post(f"/admin/users/{uid}/reset-password", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    temporary = re.search(r'<code id="temporary-password">([^<]+)</code>', response.text).group(1)
    assert len(temporary) >= 10
    assert "The password of Focal Sg has been reset." in response.text
    assert "/auth/password" in response.text and "secure" in response.text
    # Shown once: not on the next page (no flash holds it), and not in any URL.
    later = c.get(f"/admin/users/{uid}/edit").text
    assert temporary not in later
    assert victim.get("/").status_code == 302  # their session ended
    assert login(app.test_client(), world.users["focal_sg"], PASSWORD).status_code == 200  # old one refused
    assert login(app.test_client(), world.users["focal_sg"], temporary).status_code == 302


def test_an_admin_resets_their_own_password_on_the_password_page(app, world, login_as):
    c = login_as(world.users["admin"])
    uid = world.user_ids["admin"]
    token = csrf_token(c.get("/admin/users").text)
    before = _snapshot(app)
    response = c.post(f"/admin/users/{uid}/reset-password", data={"csrf_token": token}, follow_redirects=True)
    assert "Change your own password on the Password page." in response.text
    assert _snapshot(app) == before


# --- offices -----------------------------------------------------------------------------------


def _office_data(**changes: str) -> dict[str, str]:
    data = {
        "code": "kh",
        "name": "Department of Industrial Property",
        "country": "Cambodia",
        "timezone": "Asia/Phnom_Penh",
        "language": "en",
        "active": "y",
    }
    data.update(changes)
    return data


def test_offices_list(app, world, login_as):
    page = login_as(world.users["admin"]).get("/admin/offices")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "IP Office of Singapore" in text and "Asia/Kuala_Lumpur" in text and "2 offices" in text
    assert f'href="/admin/offices/{world.offices["SG"]}/edit"' in text
    assert '<a href="/admin/users?office=SG">3 users</a>' in text  # manager, focal point, inactive one
    assert '<a href="/admin/users?office=MY">1 user</a>' in text
    assert 'href="/admin/offices/new"' in text


def test_offices_list_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    def add_offices(n: int, start: int) -> None:
        with app.app_context():
            for i in range(start, start + n):
                code = "X" + "".join(chr(ord("A") + int(d)) for d in f"{i:03}")
                office = Office(code=code, name=f"Office {i}", country="C", timezone="UTC")
                db.session.add(office)
                db.session.add(User(email=f"f{i}@example.test", name="F", role="focal_point", office=office))
            db.session.commit()

    c = login_as(world.users["admin"])
    add_offices(3, 0)
    with count_queries() as few:
        assert "5 offices" in c.get("/admin/offices").text
    add_offices(30, 3)
    with count_queries() as many:
        assert "35 offices" in c.get("/admin/offices").text
    assert len(many) == len(few) <= 4, many


def test_create_office(app, world, login_as):
    c = login_as(world.users["admin"])
    page = c.get("/admin/offices/new")
    for label in ("Code", "Name", "Country", "Time zone"):
        assert f">{label}</label>" in page.text
    response = _submit(c, "/admin/offices/new", _office_data(), follow_redirects=True)
    assert "The office KH is created." in response.text
    with app.app_context():
        office = db.session.scalar(sa.select(Office).where(Office.code == "KH"))
        assert (office.name, office.country, office.timezone, office.language, office.active) == (
            "Department of Industrial Property",
            "Cambodia",
            "Asia/Phnom_Penh",
            "en",
            True,
        )
    # An office created inactive.
    assert _submit(c, "/admin/offices/new", _office_data(code="Asean", active="")).status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(Office.active).where(Office.code == "ASEAN")) is False


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"code": "sg"}, "code", "An office with the code SG already exists."),
        ({"code": "S"}, "code", "The code is 2 to 8 letters"),
        ({"code": "S1"}, "code", "The code is 2 to 8 letters"),
        ({"code": "ABCDEFGHI"}, "code", "The code is 2 to 8 letters"),
        ({"timezone": "Asia/Atlantis"}, "timezone", "Unknown time zone"),
        ({"timezone": ""}, "timezone", "This field is required."),
        ({"name": ""}, "name", "This field is required."),
        ({"language": "xx"}, "language", "Not a valid choice"),
    ],
)
def test_create_office_refusals_write_nothing(app, world, login_as, changes, field, message):
    c = login_as(world.users["admin"])
    before = _snapshot(app)
    response = _submit(c, "/admin/offices/new", _office_data(**changes))
    assert response.status_code == 200
    assert message in _errors_of(response.text, field), response.text
    assert _snapshot(app) == before


def test_edit_office(app, world, login_as):
    c = login_as(world.users["admin"])
    oid = world.offices["MY"]
    page = c.get(f"/admin/offices/{oid}/edit")
    assert (
        page.status_code == 200
        and 'name="code"' not in page.text
        and "IP Corporation of Malaysia" in page.text
    )
    data = _office_data(code="ZZ", name="MyIPO", country="Malaysia", timezone="Asia/Kuching", active="")
    response = _submit(c, f"/admin/offices/{oid}/edit", data, follow_redirects=True)
    assert "The changes to the office MY are saved." in response.text
    with app.app_context():
        office = db.session.get(Office, oid)
        assert (office.code, office.name, office.timezone, office.active) == (
            "MY",
            "MyIPO",
            "Asia/Kuching",
            False,
        )


def test_edit_office_refuses_a_bad_time_zone(app, world, login_as):
    c = login_as(world.users["admin"])
    oid = world.offices["SG"]
    before = _snapshot(app)
    data = _office_data(name="Renamed", country="Singapore", timezone="Singapore/Downtown")
    response = _submit(c, f"/admin/offices/{oid}/edit", data)
    assert response.status_code == 200 and "Unknown time zone" in _errors_of(response.text, "timezone")
    assert _snapshot(app) == before


# --- refusals common to every page -------------------------------------------------------------


def _admin_urls(app, world) -> list[tuple[str, str]]:
    """(method, URL) of every admin page, with SG's focal point and office as arguments."""
    values = {"user_id": world.user_ids["focal_sg"], "office_id": world.offices["SG"], "absence_id": 1}
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        url = rule.rule
        for name in rule.arguments:
            url = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(values[name]), url)
        found.extend((method, url) for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return found


@pytest.mark.parametrize("role", ["reviewer", "manager", "manager_sg", "focal_sg"])
def test_every_admin_url_is_refused_to_other_roles(app, world, login_as, role):
    c = login_as(world.users[role])
    token = csrf_token(c.get("/auth/password").text)
    before = _snapshot(app)
    urls = _admin_urls(app, world)
    assert len(urls) >= 16
    for method, url in urls:
        data = {"csrf_token": token, **_new_user_data(), **_office_data()} if method == "POST" else None
        response = c.open(url, method=method, data=data)
        assert response.status_code == 403, (role, method, url, response.status_code)
    assert _snapshot(app) == before


def test_unknown_ids_are_404(app, world, login_as):
    c = login_as(world.users["admin"])
    token = csrf_token(c.get("/admin/users").text)
    for url in (
        "/admin/users/999999/edit",
        "/admin/users/999999/deactivate",
        "/admin/users/999999/reactivate",
        "/admin/users/999999/reset-password",
        "/admin/offices/999999/edit",
    ):
        assert c.get(url).status_code == 404, url
        assert c.post(url, data={"csrf_token": token}).status_code == 404, url


def test_posts_without_a_csrf_token_are_refused(app, world, login_as):
    c = login_as(world.users["admin"])
    before = _snapshot(app)
    uid, oid = world.user_ids["focal_sg"], world.offices["SG"]
    for url, data in (
        ("/admin/users/new", _new_user_data()),
        (f"/admin/users/{uid}/edit", _user_data(app, uid, name="Forged")),
        (f"/admin/users/{uid}/deactivate", {}),
        (f"/admin/users/{world.user_ids['inactive_sg']}/reactivate", {}),
        (f"/admin/users/{uid}/reset-password", {}),
        ("/admin/offices/new", _office_data()),
        (f"/admin/offices/{oid}/edit", _office_data(name="Forged")),
    ):
        response = c.post(url, data=data)
        assert response.status_code == 400, url
    assert _snapshot(app) == before
