"""Absences through HTTP: recording and removing one's own on the profile page, an admin doing it
for anyone, every refusal (403, bad dates with 422), My work showing a deputy what they cover (in
a bounded number of statements), and the history saying who acted for whom."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import PASSWORD_HASH, csrf_token
from tracker.extensions import db
from tracker.models import Absence, ActionItem, ActionUpdate, User

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)  # noon in Singapore
TODAY = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def _absence(app, world, who: str, starts_on: date, ends_on: date, note: str | None = None) -> int:
    with app.app_context():
        absence = Absence(user_id=world.user_ids[who], starts_on=starts_on, ends_on=ends_on, note=note)
        db.session.add(absence)
        db.session.commit()
        return absence.id


def _absences(app) -> list[tuple]:
    with app.app_context():
        return [
            tuple(r)
            for r in db.session.execute(
                sa.select(
                    Absence.user_id, Absence.starts_on, Absence.ends_on, Absence.note, Absence.created_by_id
                ).order_by(Absence.id)
            )
        ]


def _record(c, url: str, page_url: str, **values) -> object:
    data = {"csrf_token": csrf_token(c.get(page_url).text), "starts_on": "", "ends_on": "", "note": ""}
    data.update(values)
    return c.post(url, data=data)


def _errors(html: str, field: str) -> str:
    match = re.search(rf'<ul class="errors" id="{field}-errors">(.*?)</ul>', html, re.S)
    return match.group(1) if match else ""


# --- one's own absences ----------------------------------------------------------------------


def test_a_focal_point_records_lists_and_removes_their_own_absence(app, world, login_as):
    c = login_as(world.users["focal_sg"])
    page = c.get("/profile").text
    assert "Absences" in page and "You have no absence recorded." in page
    done = _record(
        c, "/profile/absences", "/profile", starts_on="2026-12-01", ends_on="2026-12-05", note=" Leave "
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/profile#absences-heading")
    u = world.user_ids
    assert _absences(app) == [(u["focal_sg"], date(2026, 12, 1), date(2026, 12, 5), "Leave", u["focal_sg"])]
    page = c.get("/profile").text
    assert "The absence of Focal Sg from Dec 1, 2026 to Dec 5, 2026 is recorded." in page
    assert "Leave" in page and "Away now" not in page

    # A current absence is marked; a past one is no longer listed.
    _absence(app, world, "focal_sg", date(2026, 11, 20), date(2026, 11, 24), note="Mission")
    _absence(app, world, "focal_sg", date(2026, 10, 1), date(2026, 10, 3), note="Long gone")
    page = c.get("/profile").text
    assert "Mission" in page and "Away now" in page and "Long gone" not in page

    # Removing asks first; the GET changes nothing, a POST without its token is refused.
    with app.app_context():
        absence_id = db.session.scalar(sa.select(Absence.id).where(Absence.note == "Leave"))
    url = f"/profile/absences/{absence_id}/delete"
    assert url in page
    confirm = c.get(url)
    assert confirm.status_code == 200 and "Remove this absence?" in confirm.text
    assert "Focal Sg: away from Dec 1, 2026 to Dec 5, 2026." in confirm.text
    assert c.post(url, data={}).status_code == 400
    assert len(_absences(app)) == 3
    removed = c.post(url, data={"csrf_token": csrf_token(confirm.text)})
    assert removed.status_code == 302
    assert "The absence is removed." in c.get("/profile").text
    assert [a[3] for a in _absences(app)] == ["Mission", "Long gone"]
    assert c.get(url).status_code == 404


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        (
            {"starts_on": "2026-12-05", "ends_on": "2026-12-01"},
            "ends_on",
            "The last day cannot be before the first day.",
        ),
        (
            {"starts_on": "2026-11-01", "ends_on": "2026-11-23"},
            "ends_on",
            "This absence is wholly in the past: the last day must be today or later.",
        ),
        ({"starts_on": "", "ends_on": "2026-12-01"}, "starts_on", "Give the first day of the absence."),
        ({"starts_on": "2026-12-01", "ends_on": ""}, "ends_on", "Give the last day of the absence."),
        ({"starts_on": "2026-12-01", "ends_on": "someday"}, "ends_on", "Not a valid date value."),
        (
            {"starts_on": "2026-12-09", "ends_on": "2026-12-20"},
            "starts_on",
            "This overlaps the absence from Dec 1, 2026 to Dec 10, 2026",
        ),
        ({"starts_on": "2026-12-11", "ends_on": "2026-12-12", "note": "x" * 301}, "note", "301"),
    ],
)
@pytest.mark.parametrize("where", ["profile", "admin"])
def test_bad_dates_are_refused_with_the_fields_message(app, world, login_as, values, field, message, where):
    _absence(app, world, "focal_sg", date(2026, 12, 1), date(2026, 12, 10))
    before = _absences(app)
    if where == "profile":
        c = login_as(world.users["focal_sg"])
        response = _record(c, "/profile/absences", "/profile", **values)
    else:
        c = login_as(world.users["admin"])
        url = f"/admin/users/{world.user_ids['focal_sg']}/absences"
        response = _record(c, url, url, **values)
    assert response.status_code == 422
    if field == "note":  # WTForms' own length message names the limit
        assert _errors(response.text, "note") and "300" in _errors(response.text, "note")
    else:
        assert message in _errors(response.text, field)
    assert "Nothing was saved: see the messages in the form." in response.text
    assert _absences(app) == before


def test_today_counts_as_not_past_and_a_one_day_absence_is_fine(app, world, login_as):
    c = login_as(world.users["focal_sg"])
    done = _record(c, "/profile/absences", "/profile", starts_on="2026-11-24", ends_on="2026-11-24")
    assert done.status_code == 302
    # Adjacent (not overlapping) absences are fine.
    done = _record(c, "/profile/absences", "/profile", starts_on="2026-11-25", ends_on="2026-11-30")
    assert done.status_code == 302
    assert len(_absences(app)) == 2


# --- someone else's absences -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg", "reviewer", "manager"])
def test_only_admins_record_or_remove_anothers_absence(app, world, login_as, role):
    other = _absence(app, world, "focal_my", date(2026, 12, 1), date(2026, 12, 5))
    before = _absences(app)
    c = login_as(world.users[role])
    token = csrf_token(c.get("/profile").text)
    target = world.user_ids["focal_my"]
    assert c.get(f"/admin/users/{target}/absences").status_code == 403
    posted = c.post(
        f"/admin/users/{target}/absences",
        data={"csrf_token": token, "starts_on": "2026-12-10", "ends_on": "2026-12-12"},
    )
    assert posted.status_code == 403
    for url in (f"/profile/absences/{other}/delete", f"/admin/users/{target}/absences/{other}/delete"):
        assert c.get(url).status_code == 403, url
        assert c.post(url, data={"csrf_token": token}).status_code == 403, url
    assert _absences(app) == before


def test_an_admin_records_and_removes_anyones_absence(app, world, login_as):
    c = login_as(world.users["admin"])
    target = world.user_ids["focal_my"]
    edit = c.get(f"/admin/users/{target}/edit").text
    assert f'href="/admin/users/{target}/absences">Absences</a>' in edit
    page = c.get(f"/admin/users/{target}/absences")
    assert page.status_code == 200 and "Absences of Focal My" in page.text
    assert "Focal My has no absence recorded." in page.text
    url = f"/admin/users/{target}/absences"
    done = _record(c, url, url, starts_on="2026-12-01", ends_on="2026-12-05", note="Training")
    assert done.status_code == 302 and done.headers["Location"].endswith(url)
    assert _absences(app) == [
        (target, date(2026, 12, 1), date(2026, 12, 5), "Training", world.user_ids["admin"])
    ]
    page = c.get(url).text
    assert (
        "The absence of Focal My from Dec 1, 2026 to Dec 5, 2026 is recorded." in page and "Training" in page
    )
    with app.app_context():
        absence_id = db.session.scalar(sa.select(Absence.id))
    delete = f"/admin/users/{target}/absences/{absence_id}/delete"
    assert delete in page
    # The absence belongs to another user than the one in the URL: not found.
    assert c.get(f"/admin/users/{world.user_ids['focal_sg']}/absences/{absence_id}/delete").status_code == 404
    confirm = c.get(delete)
    assert confirm.status_code == 200 and "Remove this absence?" in confirm.text
    assert len(_absences(app)) == 1
    removed = c.post(delete, data={"csrf_token": csrf_token(confirm.text)})
    assert removed.status_code == 302 and removed.headers["Location"].endswith(url)
    assert _absences(app) == []
    # The admin records their own on their profile, like everyone.
    own = _record(c, "/profile/absences", "/profile", starts_on="2026-12-01", ends_on="2026-12-02")
    assert own.status_code == 302 and _absences(app)[0][0] == world.user_ids["admin"]


# --- My work: what a deputy covers -----------------------------------------------------------


def _person(app, world, label: str, role: str = "focal_point", office: str = "SG") -> int:
    with app.app_context():
        user = User(
            email=f"{label}@example.test",
            name=label.replace("_", " ").title(),
            role=role,
            office_id=world.offices[office],
        )
        user.password_hash = PASSWORD_HASH
        db.session.add(user)
        db.session.commit()
        world.users[label], world.user_ids[label] = user.email, user.id
        return user.id


def _item(app, world, title: str, owner: str, deputy: str | None = None, **values) -> int:
    with app.app_context():
        values.setdefault("office_id", world.offices["SG"])
        values.setdefault("deadline", date(2027, 1, 1))
        item = ActionItem(
            recommendation_id=world.recommendation_id,
            title=title,
            owner_id=world.user_ids[owner],
            deputy_id=world.user_ids[deputy] if deputy else None,
            **values,
        )
        db.session.add(item)
        db.session.commit()
        return item.id


def _covering(html: str) -> dict[str, list[str]]:
    """Heading → action titles of each "Covering for" section of My work."""
    found = {}
    for section in re.findall(r'<section class="card covering".*?</section>', html, re.S):
        heading = re.search(r"<h2[^>]*>(.*?)</h2>", section).group(1)
        found[heading] = re.findall(r'<a href="/actions/\d+">([^<]*)</a>', section)
    return found


def test_my_work_shows_a_deputy_what_they_cover(app, world, login_as):
    _person(app, world, "other_sg")
    _item(app, world, "Deputy at hand", "focal_sg", "manager_sg")
    _item(app, world, "No deputy", "focal_sg", deadline=date(2026, 11, 1))
    _item(app, world, "Deputy away too", "focal_sg", "manager_sg", deadline=date(2026, 12, 1))
    _item(app, world, "Other is deputy", "focal_sg", "other_sg")
    _item(app, world, "Closed", "focal_sg", status="verified")
    _item(app, world, "Malaysian", "focal_my", office_id=world.offices["MY"])
    # Nobody is away yet: nothing to cover.
    assert _covering(login_as(world.users["other_sg"]).get("/my").text) == {}

    _absence(app, world, "focal_sg", date(2026, 11, 20), date(2026, 12, 4))
    _absence(app, world, "focal_my", date(2026, 11, 20), date(2026, 12, 4))
    other = login_as(world.users["other_sg"]).get("/my").text
    heading = "Covering for Focal Sg (away until Dec 4, 2026)"
    # The world's own SG item (focal_sg's, without a deputy) is covered by the office's focal points.
    assert _covering(other) == {heading: ["No deputy", "E-filing for SG", "Other is deputy"]}
    assert "Overdue" in other

    manager = login_as(world.users["manager_sg"]).get("/my").text
    assert _covering(manager) == {heading: ["Deputy away too", "Deputy at hand"]}

    # The deputy is away too: the office's focal points cover that item as well.
    _absence(app, world, "manager_sg", date(2026, 11, 23), date(2026, 11, 30))
    other = login_as(world.users["other_sg"]).get("/my").text
    assert _covering(other) == {
        heading: ["No deputy", "E-filing for SG", "Deputy away too", "Deputy at hand", "Other is deputy"]
    }
    # The absent person covers nobody's work and sees their own list as usual.
    own = login_as(world.users["focal_sg"]).get("/my").text
    assert _covering(own) == {} and "Deputy at hand" in own
    # Another office's focal point covers nothing of SG.
    assert _covering(login_as(world.users["focal_my"]).get("/my").text) == {}


def test_an_absence_that_has_not_started_covers_nothing(app, world, login_as):
    _person(app, world, "other_sg")
    _absence(app, world, "focal_sg", date(2026, 11, 25), date(2026, 12, 4))
    assert _covering(login_as(world.users["other_sg"]).get("/my").text) == {}


def test_my_work_covering_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    _person(app, world, "other_sg")
    _person(app, world, "third_sg")
    _absence(app, world, "focal_sg", date(2026, 11, 20), date(2026, 12, 4))
    _absence(app, world, "third_sg", date(2026, 11, 20), date(2026, 12, 9))
    c = login_as(world.users["other_sg"])

    def grow(n: int) -> None:
        for i in range(n):
            _item(app, world, f"Covered {i}", "focal_sg", "other_sg" if i % 2 else None)
            _item(app, world, f"Third {i}", "third_sg", "manager_sg" if i % 3 else None)

    def statements() -> int:
        with count_queries() as seen:
            page = c.get("/my")
        assert page.status_code == 200
        return len(seen)

    grow(3)
    small = statements()
    grow(27)
    assert statements() == small
    covered = _covering(c.get("/my").text)
    assert len(covered["Covering for Focal Sg (away until Dec 4, 2026)"]) == 31  # 30 + the world's item
    assert len(covered["Covering for Third Sg (away until Dec 9, 2026)"]) == 10  # those without a deputy


# --- history: who acted for whom ---------------------------------------------------------------


def test_the_history_says_for_whom_a_deputy_acted(app, world, login_as):
    """A focal point updates an absent owner's action through the page: recorded as done for them."""
    _person(app, world, "other_sg")
    item_id = world.items["SG"]
    _absence(app, world, "focal_sg", date(2026, 11, 20), date(2026, 12, 4))
    other = login_as(world.users["other_sg"])
    page = other.get(f"/actions/{item_id}").text
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    data = {"csrf_token": csrf_token(page), "version": version, "status": "in_progress", "note": "Covered"}
    assert other.post(f"/actions/{item_id}", data=data).status_code == 302
    with app.app_context():
        last = db.session.scalars(sa.select(ActionUpdate).order_by(ActionUpdate.id.desc())).first()
        assert (last.author_id, last.on_behalf_of_id) == (
            world.user_ids["other_sg"],
            world.user_ids["focal_sg"],
        )
    page = login_as(world.users["focal_sg"]).get(f"/actions/{item_id}")
    assert "Other Sg for Focal Sg" in page.text
    # A reviewer acts in their own right, even while the owner is away.
    reviewer = login_as(world.users["reviewer"])
    page = reviewer.get(f"/actions/{item_id}").text
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    data = {"csrf_token": csrf_token(page), "version": version, "status": "", "note": "Checked"}
    assert reviewer.post(f"/actions/{item_id}", data=data).status_code == 302
    assert "Reviewer for" not in reviewer.get(f"/actions/{item_id}").text
