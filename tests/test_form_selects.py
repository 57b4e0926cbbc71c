"""Time zone and language are chosen from lists wherever a person or an office is given them: every
IANA zone (the current one selected, a sensible default), the configured languages each named in
itself; a forged value is still refused next to its field."""

from __future__ import annotations

import html
import re
from zoneinfo import available_timezones

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tests.test_html_valid import submit
from tracker.extensions import db
from tracker.models import Office, User

USER_DEFAULT_ZONE = "Same as the office (UTC without an office)"


def _select(page: str, name: str) -> list[tuple[str, str, bool, str | None]]:
    """(value, label, selected, lang) of each option of the select named ``name``."""
    body = re.search(rf'<select[^>]* name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert body, f"no select named {name}"
    options = re.findall(r"<option([^>]*)>([^<]*)</option>", body.group(1))
    found = []
    for attrs, label in options:
        value = re.search(r'value="([^"]*)"', attrs).group(1)
        lang = re.search(r'lang="([^"]*)"', attrs)
        found.append((value, html.unescape(label), " selected" in attrs, lang and lang.group(1)))
    return found


def _selected(page: str, name: str) -> str:
    chosen = [value for value, _, selected, _ in _select(page, name) if selected]
    return chosen[0] if chosen else _select(page, name)[0][0]


def _errors_of(page: str, field_id: str) -> str:
    match = re.search(rf'<ul class="errors" id="{field_id}-errors">(.*?)</ul>', page, re.S)
    return html.unescape(match.group(1)) if match else ""


ZONES = sorted(available_timezones())


def test_new_user_chooses_among_every_zone_and_defaults_to_the_office(world, login_as):
    c = login_as(world.users["admin"])
    page = c.get("/admin/users/new").text
    zones = _select(page, "timezone")
    assert zones[0][:3] == ("", USER_DEFAULT_ZONE, True)
    assert [value for value, *_ in zones[1:]] == ZONES
    assert not any(selected for _, _, selected, _ in zones[1:])
    assert 'list="timezones"' not in page and "<datalist" not in page


def test_languages_are_named_in_themselves(app, world, login_as):
    """In an English page and in a French one: English, Français, Español (with their lang)."""
    expected = [
        ("en", "English", False, "en"),
        ("fr", "Français", False, "fr"),
        ("es", "Español", False, "es"),
    ]
    c = login_as(world.users["admin"])
    page = c.get("/admin/users/new").text
    languages = _select(page, "language")
    assert languages[0][:3] == ("", "Default (the office’s language)", True)
    assert languages[1:] == expected
    with app.app_context():
        db.session.scalar(sa.select(User).where(User.email == world.users["admin"])).language = "fr"
        db.session.commit()
    page = c.get(f"/admin/offices/{world.offices['SG']}/edit").text
    assert '<html lang="fr"' in page
    assert [(v, label) for v, label, _, _ in _select(page, "language")] == [
        (v, label) for v, label, *_ in expected
    ]


def test_the_current_values_are_selected(app, world, login_as):
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        user.timezone, user.language = "Asia/Bangkok", "es"
        db.session.commit()
    c = login_as(world.users["admin"])
    page = c.get(f"/admin/users/{world.user_ids['focal_sg']}/edit").text
    assert (_selected(page, "timezone"), _selected(page, "language")) == ("Asia/Bangkok", "es")
    page = c.get(f"/admin/offices/{world.offices['MY']}/edit").text
    assert (_selected(page, "timezone"), _selected(page, "language")) == ("Asia/Kuala_Lumpur", "en")
    # A new office starts in UTC.
    page = c.get("/admin/offices/new").text
    assert _selected(page, "timezone") == "UTC"
    assert [value for value, *_ in _select(page, "timezone")] == ZONES


def test_a_zone_chosen_from_the_list_is_saved(app, world, login_as):
    """The forms as a browser sends them, with a zone picked from each list."""
    c = login_as(world.users["admin"])
    page = c.get("/admin/users/new")
    response = submit(
        c,
        page,
        "timezone",
        email="new.person@example.test",
        name="New Person",
        office="MY",
        timezone="Asia/Kuala_Lumpur",
        language="fr",
    )
    assert response.status_code == 200 and "is invited" in html.unescape(response.text)
    assert _selected(response.text, "timezone") == "Asia/Kuala_Lumpur"
    page = c.get(f"/admin/offices/{world.offices['SG']}/edit")
    submit(c, page, "timezone", timezone="Asia/Jakarta")
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "new.person@example.test"))
        assert (user.timezone, user.language) == ("Asia/Kuala_Lumpur", "fr")
        assert db.session.get(Office, world.offices["SG"]).timezone == "Asia/Jakarta"


@pytest.mark.parametrize(
    ("url", "changes", "field", "message"),
    [
        ("/admin/users/new", {"timezone": "Mars/Olympus_Mons"}, "timezone", "Unknown time zone"),
        ("/admin/users/new", {"language": "xx"}, "language", "Not a valid choice"),
        ("/admin/users/{focal_sg}/edit", {"timezone": "Asia/Nowhere"}, "timezone", "Unknown time zone"),
        ("/admin/offices/new", {"timezone": "Singapore/Downtown"}, "timezone", "Unknown time zone"),
        ("/admin/offices/new", {"timezone": ""}, "timezone", "This field is required."),
        ("/admin/offices/{sg}/edit", {"timezone": "<script>"}, "timezone", "Unknown time zone"),
        ("/admin/offices/{sg}/edit", {"language": "klingon"}, "language", "Not a valid choice"),
    ],
)
def test_a_forged_value_is_refused_next_to_its_field(app, world, login_as, url, changes, field, message):
    c = login_as(world.users["admin"])
    url = url.format(focal_sg=world.user_ids["focal_sg"], sg=world.offices["SG"])
    page = c.get(url)
    fields = {"email": "forged@example.test", "name": "Forged", "code": "ZZ", "country": "Z"} | changes
    response = submit(c, page, field, **fields)
    assert message in _errors_of(response.text, field), response.text
    assert "Nothing was saved" in response.text
    if changes.get("timezone"):
        assert "Unknown time zone: choose one from the list." in _errors_of(response.text, "timezone")
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.email == "forged@example.test")) is None
        assert db.session.scalar(sa.select(Office).where(Office.code == "ZZ")) is None
    assert csrf_token(response.text)


def test_own_language_and_time_zone_on_the_profile(app, world, login_as):
    """The profile offers the same lists, the user's values selected; a choice is saved and used."""
    c = login_as(world.users["focal_sg"])
    page = c.get("/profile")
    assert (_selected(page.text, "timezone"), _selected(page.text, "language")) == ("", "")
    assert _select(page.text, "timezone")[0][1] == USER_DEFAULT_ZONE
    assert [value for value, *_ in _select(page.text, "timezone")[1:]] == ZONES
    assert [label for _, label, *_ in _select(page.text, "language")[1:]] == [
        "English",
        "Français",
        "Español",
    ]
    response = submit(c, page, "timezone", timezone="Asia/Colombo", language="es")
    assert response.status_code == 200
    assert '<html lang="es"' in response.text  # the next page is in the chosen language
    assert (_selected(response.text, "timezone"), _selected(response.text, "language")) == (
        "Asia/Colombo",
        "es",
    )
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        assert (user.timezone, user.language, user.zone.key) == ("Asia/Colombo", "es", "Asia/Colombo")
    # Back to the office's settings.
    submit(c, c.get("/profile"), "timezone", timezone="", language="")
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        assert (user.timezone, user.language, user.zone.key) == (None, None, "Asia/Singapore")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"timezone": "Europe/Atlantis"}, "timezone", "Unknown time zone: choose one from the list."),
        ({"language": "xx"}, "language", "Not a valid choice"),
    ],
)
def test_the_profile_refuses_a_forged_value(app, world, login_as, changes, field, message):
    c = login_as(world.users["focal_sg"])
    response = submit(c, c.get("/profile"), "timezone", **changes)
    assert response.status_code == 422
    assert message in _errors_of(response.text, field)
    assert "Nothing was saved" in response.text
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        assert (user.timezone, user.language) == (None, None)
