"""Office pages and action plans through HTTP: who sees which office, the plan by recommendation,
adding and editing actions (with every refusal and the lost-update check), bulk reassignment, and
bounded statement counts."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Notification, OfficeResponse, Recommendation, User

PAST, FUTURE = date(2000, 1, 1), date(2999, 12, 31)


def _item(app, world, title: str, owner: str | None = "focal_sg", deputy: str | None = None, **values) -> int:
    """Add an item to SG's plan (or ``office_id=``) and return its id."""
    with app.app_context():
        values.setdefault("office_id", world.offices["SG"])
        values.setdefault("recommendation_id", world.recommendation_id)
        values.setdefault("deadline", FUTURE)
        item = ActionItem(
            title=title,
            owner_id=world.user_ids[owner] if owner else None,
            deputy_id=world.user_ids[deputy] if deputy else None,
            **values,
        )
        db.session.add(item)
        db.session.commit()
        return item.id


def _set(app, item_id: int, **values) -> None:
    with app.app_context():
        db.session.execute(sa.update(ActionItem).where(ActionItem.id == item_id).values(**values))
        db.session.commit()


def _history(app, item_id: int) -> list[ActionUpdate]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(ActionUpdate).where(ActionUpdate.action_item_id == item_id).order_by(ActionUpdate.id)
        ).all()
        db.session.expunge_all()
        return rows


def _snapshot(app) -> list[tuple]:
    """Every item's changeable columns and the number of history rows: "nothing changed" checks."""
    with app.app_context():
        items = db.session.execute(
            sa.select(
                ActionItem.id,
                ActionItem.title,
                ActionItem.owner_id,
                ActionItem.deputy_id,
                ActionItem.deadline,
                ActionItem.recommendation_id,
                ActionItem.version,
            ).order_by(ActionItem.id)
        ).all()
        history = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        return [tuple(r) for r in items] + [("history", history)]


def _counts(page: str, code: str) -> tuple[int, int, int]:
    """Open, overdue and done of an office's row on /offices."""
    row = re.search(rf">{code} — .*?</tr>", page, re.S).group(0)
    cells = re.findall(r'class="num">(?:<span class="badge overdue-flag">)?(\d+)', row)
    return tuple(int(c) for c in cells)


# --- seeing offices --------------------------------------------------------------------------


def test_offices_list_counts_by_role(app, world, login_as):
    _set(app, world.items["SG"], deadline=PAST)  # open and overdue
    _item(app, world, "Done one", status="verified")
    _item(app, world, "Reported", status="completed")
    _item(app, world, "Cancelled", status="cancelled")
    _item(app, world, "Later", status="in_progress")
    _set(app, world.items["MY"], deadline=FUTURE)
    with app.app_context():  # an archived recommendation's actions are not counted
        archived = Recommendation(
            source_id=world.source_id,
            code="R-OLD",
            title="Old",
            text="t",
            theme="T",
            archived_at=datetime.now(UTC),
        )
        db.session.add(archived)
        db.session.commit()
        archived_id = archived.id
    _item(app, world, "Archived work", recommendation_id=archived_id, deadline=PAST)
    for role in ("reviewer", "admin", "manager"):
        page = login_as(world.users[role]).get("/offices")
        assert page.status_code == 200
        assert _counts(page.text, "SG") == (2, 1, 2), role
        assert _counts(page.text, "MY") == (1, 0, 0), role
        assert "2 offices" in page.text
    for role in ("focal_sg", "manager_sg"):
        c = login_as(world.users[role])
        response = c.get("/offices")
        assert response.status_code == 302 and response.headers["Location"].endswith("/offices/SG")
        home = c.get("/").text
        assert 'href="/offices/SG">Action plans</a>' in home
    assert 'href="/offices">Action plans</a>' in login_as(world.users["reviewer"]).get("/").text


@pytest.mark.parametrize("role", ["focal_sg", "manager_sg"])
def test_office_people_see_their_office_only(world, login_as, role):
    c = login_as(world.users[role])
    page = c.get(f"/offices/SG?show={world.recommendation_id}")
    assert page.status_code == 200 and "E-filing for SG" in page.text and "E-filing for MY" not in page.text
    assert c.get("/offices/sg").status_code == 200  # the code in any case
    for other in ("/offices/MY", "/offices/my", "/offices/XX", "/offices/" + "X" * 300):
        assert c.get(other).status_code == 404, other
    # Neither may change the plan: no buttons for it.
    assert (
        "Add an action" not in page.text and "Reassign actions" not in page.text and ">Edit<" not in page.text
    )


def test_reviewer_sees_every_office_and_unknown_codes_are_404(world, login_as):
    c = login_as(world.users["reviewer"])
    assert "E-filing for SG" in c.get(f"/offices/SG?show={world.recommendation_id}").text
    my = c.get(f"/offices/MY?show={world.recommendation_id}").text
    assert "E-filing for MY" in my and "E-filing for SG" not in my
    for url in ("/offices/XX", "/offices/XX/actions/new", "/offices/XX/reassign", "/actions/999999/edit"):
        assert c.get(url).status_code == 404, url


def test_plan_groups_actions_by_recommendation_with_the_office_response(app, world, login_as):
    with app.app_context():
        second = Recommendation(source_id=world.source_id, code="R-2", title="Open data", text="t", theme="T")
        first = Recommendation(source_id=world.source_id, code="R-0", title="Earlier", text="t", theme="T")
        gone = Recommendation(
            source_id=world.source_id,
            code="R-00",
            title="Archived one",
            text="t",
            theme="T",
            archived_at=datetime.now(UTC),
        )
        db.session.add_all([second, first, gone])
        db.session.flush()
        db.session.add_all(
            [
                OfficeResponse(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["SG"],
                    response="partially_accepted",
                    comment="Designs later",
                ),
                OfficeResponse(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["MY"],
                    response="noted",
                    comment="Malaysian view",
                ),
            ]
        )
        db.session.commit()
        ids = {"R-2": second.id, "R-0": first.id, "R-00": gone.id}
    _set(app, world.items["SG"], deadline=PAST)
    _item(app, world, "Publish datasets", deputy="manager_sg", recommendation_id=ids["R-2"], progress=40)
    _item(app, world, "Hidden work", recommendation_id=ids["R-00"])
    c = login_as(world.users["focal_sg"])
    page = c.get("/offices/SG").text
    # Recommendations in use, by code; each row with the response and the counts, no action listed.
    rows = {code: page.index(f'id="rec-{ids[code]}"') for code in ("R-0", "R-2")}
    rows["R-1"] = page.index(f'id="rec-{world.recommendation_id}"')
    assert rows["R-0"] < rows["R-1"] < rows["R-2"]
    assert "Archived one" not in page and "Hidden work" not in page and "E-filing for SG" not in page
    r1 = page[rows["R-1"] : rows["R-2"]]
    assert "Partially accepted" in r1 and "Designs later" in r1 and "overdue-flag" in r1
    counts = re.findall(r'class="num">(?:<span class="badge overdue-flag">)?(\d+)', r1)
    assert counts == ["1", "1", "1", "0", "0"]  # actions, open, overdue, awaiting verification, verified
    assert 'href="/?office=SG&amp;recommendation=R-1"' in r1
    r2 = page[rows["R-2"] :].split("</tr>")[0]
    assert "No response yet" in r2 and "overdue-flag" not in r2 and "Show the actions" in r2
    r0 = page[rows["R-0"] : rows["R-1"]]
    assert "No action yet." in r0 and "Show the actions" not in r0
    assert "Malaysian view" not in page and "Noted (not accepted)" not in page
    assert "Record a response" in page  # a focal point may respond for their office
    # Asked for, a recommendation's actions are listed under the table.
    page = c.get(f"/offices/SG?show={ids['R-2']}").text
    shown = page[page.index(f'id="rec-{ids["R-2"]}-actions"') :].split("</section>")[0]
    assert "Publish datasets" in shown and "Manager Sg" in shown and "Focal Sg" in shown and "40%" in shown
    assert "overdue-flag" not in shown and "E-filing for SG" not in shown
    page = c.get(f"/offices/SG?show={world.recommendation_id}").text
    shown = page[page.index(f'id="rec-{world.recommendation_id}-actions"') :].split("</section>")[0]
    assert "E-filing for SG" in shown and "overdue-flag" in shown and "Publish datasets" not in shown


# --- adding actions --------------------------------------------------------------------------


def _new_form(c, world, **query) -> dict:
    page = c.get("/offices/SG/actions/new", query_string=query)
    assert page.status_code == 200
    return {
        "csrf_token": csrf_token(page.text),
        "title": "Train examiners",
        "recommendation_id": str(world.recommendation_id),
        "owner_id": str(world.user_ids["focal_sg"]),
        "deputy_id": str(world.user_ids["manager_sg"]),
        "deadline": "2027-03-31",
        "description": "Two sessions.",
    }


def test_reviewer_adds_an_action_with_its_history(app, world, login_as):
    c = login_as(world.users["reviewer"])
    form = c.get("/offices/SG/actions/new", query_string={"recommendation": world.recommendation_id}).text
    assert f'<option selected value="{world.recommendation_id}">R-1 — Go digital</option>' in form
    # Only active focal points and managers of SG are offered as owner.
    owners = form[form.index('id="owner_id"') : form.index("</select>", form.index('id="owner_id"'))]
    assert "Focal Sg" in owners and "Manager Sg" in owners
    assert "Inactive Sg" not in owners and "Focal My" not in owners and "Reviewer" not in owners
    created = c.post("/offices/SG/actions/new", data=_new_form(c, world))
    assert created.status_code == 302
    rec = world.recommendation_id
    assert created.headers["Location"].endswith(f"/offices/SG?show={rec}#rec-{rec}-actions")
    page = c.get(created.headers["Location"]).text
    assert "The action “Train examiners” is added to the plan of SG." in page and "Train examiners" in page
    with app.app_context():
        item = db.session.scalar(sa.select(ActionItem).where(ActionItem.title == "Train examiners"))
        assert (item.office_id, item.owner_id, item.deputy_id, item.deadline, item.status, item.progress) == (
            world.offices["SG"],
            world.user_ids["focal_sg"],
            world.user_ids["manager_sg"],
            date(2027, 3, 31),
            "not_started",
            0,
        )
        assert (item.description, item.version) == ("Two sessions.", 1)
        item_id = item.id
    [history] = _history(app, item_id)
    assert (history.new_status, history.new_progress, history.new_deadline, history.item_version) == (
        "not_started",
        0,
        date(2027, 3, 31),
        1,
    )
    assert "Action added to the plan" in history.note and history.author_id == world.user_ids["reviewer"]
    with app.app_context():  # the new owner and deputy are told, each in one mail
        mails = db.session.execute(
            sa.select(Notification.kind, Notification.to_address, Notification.subject)
        ).all()
    assert sorted(mails) == [
        ("assignment", "focal.sg@example.test", "You are now owner of 1 action — SG"),
        ("assignment", "manager.sg@example.test", "You are now deputy of 1 action — SG"),
    ]


def test_add_an_action_link_on_the_recommendation_page(world, login_as):
    url = f"/recommendations/{world.recommendation_id}"
    link = f"/offices/SG/actions/new?recommendation={world.recommendation_id}"
    assert link in login_as(world.users["reviewer"]).get(url).text
    assert link not in login_as(world.users["focal_sg"]).get(url).text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"owner_id": "focal_my"}, "Only an active focal point or manager of SG can own its actions."),
        ({"owner_id": "inactive_sg"}, "Only an active focal point or manager of SG can own its actions."),
        ({"owner_id": "reviewer"}, "Only an active focal point or manager of SG can own its actions."),
        ({"owner_id": ""}, "Choose the owner from the list."),
        ({"owner_id": "999999"}, "Choose the owner from the list."),
        ({"owner_id": "abc"}, "Invalid Choice: could not coerce."),
        ({"deputy_id": "focal_sg"}, "The deputy must be someone other than the owner."),
        ({"deputy_id": "focal_my"}, "Only an active focal point or manager of SG can be the deputy"),
        ({"title": "   "}, "Give the action a title."),
        ({"title": "x" * 301}, "Field cannot be longer than 300 characters."),
        ({"deadline": "31/02/2027"}, "Not a valid date value."),
        ({"deadline": ""}, "Give the deadline."),
        ({"recommendation_id": "999999"}, "Choose a recommendation from the list."),
        ({"recommendation_id": "archived"}, "Choose a recommendation from the list."),
        ({"recommendation_id": ""}, "Choose a recommendation from the list."),
    ],
)
def test_adding_refuses_bad_input_next_to_the_field(app, world, login_as, changes, message):
    with app.app_context():
        archived = Recommendation(
            source_id=world.source_id,
            code="R-OLD",
            title="Old",
            text="t",
            theme="T",
            archived_at=datetime.now(UTC),
        )
        db.session.add(archived)
        db.session.commit()
        names = dict(world.user_ids, archived=archived.id)
    before = _snapshot(app)
    c = login_as(world.users["reviewer"])
    data = _new_form(c, world)
    data.update({k: str(names.get(v, v)) for k, v in changes.items()})
    response = c.post("/offices/SG/actions/new", data=data)
    assert response.status_code == 422
    assert message in response.text
    assert "Nothing was saved: see the messages in the form." in response.text
    field = next(iter(changes))
    assert f'id="{field}-errors"' in response.text  # the message is next to its field
    assert f'value="{data["description"]}"' not in response.text  # textarea: content, not value
    assert "Two sessions." in response.text  # input kept
    assert _snapshot(app) == before


# --- editing actions -------------------------------------------------------------------------


def _edit_form(c, item_id: int) -> dict:
    page = c.get(f"/actions/{item_id}/edit")
    assert page.status_code == 200
    text = page.text

    def selected(name: str) -> str:
        select = text[text.index(f'id="{name}"') : text.index("</select>", text.index(f'id="{name}"'))]
        found = re.search(r'<option selected value="([^"]*)"', select)
        return found.group(1) if found else ""

    return {
        "csrf_token": csrf_token(text),
        "version": re.search(r'id="version" name="version" type="hidden" value="(\d+)"', text).group(1),
        "title": re.search(
            r'id="title" maxlength="300" name="title" required type="text" value="([^"]*)"', text
        ).group(1),
        "recommendation_id": selected("recommendation_id"),
        "owner_id": selected("owner_id"),
        "deputy_id": selected("deputy_id"),
        "deadline": re.search(r'name="deadline" required type="date" value="([^"]*)"', text).group(1),
        "description": "",
        "note": "",
    }


def test_reviewer_edits_an_action_and_history_records_it(app, world, login_as):
    item_id = world.items["SG"]
    _set(app, item_id, deadline=date(2027, 1, 31))
    c = login_as(world.users["reviewer"])
    assert f'href="/actions/{item_id}/edit">Edit</a>' in c.get(f"/actions/{item_id}").text
    assert f"/actions/{item_id}/edit" not in login_as(world.users["focal_sg"]).get(f"/actions/{item_id}").text
    data = _edit_form(c, item_id)
    assert (data["title"], data["owner_id"], data["deputy_id"], data["version"]) == (
        "E-filing for SG",
        str(world.user_ids["focal_sg"]),
        "",
        "1",
    )
    data.update(
        title="E-filing for everyone",
        owner_id=str(world.user_ids["manager_sg"]),
        deputy_id=str(world.user_ids["focal_sg"]),
        deadline="2027-06-30",
        note="Agreed at the review.",
    )
    saved = c.post(f"/actions/{item_id}/edit", data=data)
    assert saved.status_code == 302 and saved.headers["Location"].endswith(f"/actions/{item_id}")
    page = c.get(f"/actions/{item_id}").text
    assert "Your changes to “E-filing for everyone” are saved." in page
    assert "Owner: Focal Sg → Manager Sg" in page and "Agreed at the review." in page
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.title, item.owner_id, item.deputy_id, item.deadline, item.version) == (
            "E-filing for everyone",
            world.user_ids["manager_sg"],
            world.user_ids["focal_sg"],
            date(2027, 6, 30),
            2,
        )
    last = _history(app, item_id)[-1]
    assert (last.old_deadline, last.new_deadline, last.item_version, last.author_id) == (
        date(2027, 1, 31),
        date(2027, 6, 30),
        2,
        world.user_ids["reviewer"],
    )
    assert last.note == (
        "Title: E-filing for SG → E-filing for everyone; Owner: Focal Sg → Manager Sg; "
        "Deputy: nobody → Focal Sg. Agreed at the review."
    )
    # Only the deputy this time: one more row, deadline columns empty.
    data = _edit_form(c, item_id)
    assert c.post(f"/actions/{item_id}/edit", data=dict(data, deputy_id="")).status_code == 302
    last = _history(app, item_id)[-1]
    assert (last.note, last.old_deadline, last.new_deadline, last.item_version) == (
        "Deputy: Focal Sg → nobody",
        None,
        None,
        3,
    )
    # Only the deadline, without a note: the deadline columns say it all.
    data = _edit_form(c, item_id)
    assert c.post(f"/actions/{item_id}/edit", data=dict(data, deadline="2027-07-31")).status_code == 302
    last = _history(app, item_id)[-1]
    assert (last.note, last.old_deadline, last.new_deadline, last.item_version) == (
        None,
        date(2027, 6, 30),
        date(2027, 7, 31),
        4,
    )
    assert "deadline Jun 30, 2027 → Jul 31, 2027" in c.get(f"/actions/{item_id}").text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"owner_id": "focal_my"}, "Only an active focal point or manager of SG can own its actions."),
        ({"owner_id": "inactive_sg"}, "Only an active focal point or manager of SG can own its actions."),
        ({"deputy_id": "focal_sg"}, "The deputy must be someone other than the owner."),
        ({"title": ""}, "Give the action a title."),
        ({"deadline": "2027-13-01"}, "Not a valid date value."),
        ({"recommendation_id": "999999"}, "Choose a recommendation from the list."),
        ({}, "Nothing to save: change something first."),
    ],
)
def test_editing_refuses_bad_input_and_saves_nothing(app, world, login_as, changes, message):
    c = login_as(world.users["reviewer"])
    data = _edit_form(c, world.items["SG"])
    data.update({k: str(world.user_ids.get(v, v)) for k, v in changes.items()})
    before = _snapshot(app)
    response = c.post(f"/actions/{world.items['SG']}/edit", data=data)
    assert response.status_code == 422 and message in response.text
    assert "Nothing was saved" in response.text
    assert _snapshot(app) == before


def test_an_inactive_owner_may_stay_while_other_fields_change(app, world, login_as):
    item_id = _item(app, world, "Kept by someone gone", owner="inactive_sg")
    c = login_as(world.users["reviewer"])
    data = _edit_form(c, item_id)
    assert data["owner_id"] == str(world.user_ids["inactive_sg"])  # offered, marked, as it is the owner
    assert "Inactive Sg — Focal point (inactive)" in c.get(f"/actions/{item_id}/edit").text
    assert c.post(f"/actions/{item_id}/edit", data=dict(data, title="Renamed")).status_code == 302
    # But they cannot be given a new action.
    refused = c.post(
        f"/actions/{item_id}/edit", data=dict(_edit_form(c, item_id), deputy_id=data["owner_id"])
    )
    assert refused.status_code == 422 and "The deputy must be someone other than the owner." in refused.text


def test_a_stale_edit_is_refused_with_the_changes_and_keeps_the_input(app, world, login_as):
    item_id = world.items["SG"]
    first = login_as(world.users["admin"])
    second = login_as(world.users["reviewer"])
    form_a = _edit_form(first, item_id)
    form_b = _edit_form(second, item_id)
    assert first.post(f"/actions/{item_id}/edit", data=dict(form_a, deadline="2027-02-01")).status_code == 302
    refused = second.post(
        f"/actions/{item_id}/edit", data=dict(form_b, title="My careful title", note="My careful note")
    )
    assert refused.status_code == 409
    text = refused.text
    assert "Someone else saved this action after you opened it" in text
    assert "Admin" in text and "deadline" in text  # who changed what
    assert 'value="My careful title"' in text and "My careful note" in text
    assert 'name="version" type="hidden" value="2"' in text
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.title, item.deadline, item.version) == ("E-filing for SG", date(2027, 2, 1), 2)
    # Saving again from the conflict page applies on top of the new version.
    again = dict(
        form_b, csrf_token=csrf_token(text), version="2", title="My careful title", deadline="2027-02-01"
    )
    assert second.post(f"/actions/{item_id}/edit", data=again).status_code == 302
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.title, item.version) == ("My careful title", 3)
    # A forged version is a conflict too.
    forged = second.post(f"/actions/{item_id}/edit", data=dict(again, version="x", title="Other"))
    assert forged.status_code == 409


def test_a_save_racing_another_is_refused_as_a_conflict(app, world, login_as):
    """Someone saves between our read and our write: the version check in the UPDATE catches it."""
    item_id = world.items["SG"]
    c = login_as(world.users["reviewer"])
    data = _edit_form(c, item_id)
    with app.app_context():
        engine = db.engine

    done = []

    def meanwhile(mapper, connection, target):
        if not done:  # once: the save of the item by "someone else"
            done.append(target.id)
            with engine.begin() as other:
                other.execute(
                    sa.update(ActionItem)
                    .where(ActionItem.id == item_id)
                    .values(version=ActionItem.version + 1)
                )

    sa.event.listen(ActionItem, "before_update", meanwhile)
    try:
        refused = c.post(f"/actions/{item_id}/edit", data=dict(data, title="Lost?"))
    finally:
        sa.event.remove(ActionItem, "before_update", meanwhile)
    assert refused.status_code == 409 and 'value="Lost?"' in refused.text
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.title, item.version) == ("E-filing for SG", 2)
    assert len(_history(app, item_id)) == 1


@pytest.mark.parametrize("status", ["verified", "cancelled"])
def test_verified_or_cancelled_actions_cannot_be_edited(app, world, login_as, status):
    item_id = world.items["SG"]
    c = login_as(world.users["reviewer"])
    data = _edit_form(c, item_id)
    _set(app, item_id, status=status)
    before = _snapshot(app)
    for response in (c.get(f"/actions/{item_id}/edit"), c.post(f"/actions/{item_id}/edit", data=data)):
        assert response.status_code == 302 and response.headers["Location"].endswith(f"/actions/{item_id}")
    page = c.get(f"/actions/{item_id}").text
    assert "This action is verified or cancelled; it can no longer be edited." in page
    assert f'href="/actions/{item_id}/edit"' not in page
    assert _snapshot(app) == before


def test_a_completed_action_keeps_its_deadline(app, world, login_as):
    item_id = world.items["SG"]
    _set(app, item_id, status="completed")
    c = login_as(world.users["reviewer"])
    refused = c.post(f"/actions/{item_id}/edit", data=dict(_edit_form(c, item_id), deadline="2030-01-01"))
    assert refused.status_code == 422 and "The deadline of a closed action cannot change." in refused.text


# --- reassigning -----------------------------------------------------------------------------


@pytest.fixture
def leaving(app, world) -> dict[str, int]:
    """Inactive SG owns three open items and a verified one, and deputises two; MY is untouched."""
    return {
        "owned": _item(app, world, "Owned plain", owner="inactive_sg"),
        "owned_with_successor_deputy": _item(
            app, world, "Owned, successor deputy", "inactive_sg", "manager_sg"
        ),
        "owned_other_deputy": _item(
            app, world, "Owned, other deputy", "inactive_sg", "focal_sg", status="blocked"
        ),
        "closed": _item(app, world, "Owned but verified", owner="inactive_sg", status="verified"),
        "deputised": _item(app, world, "Deputised", owner="focal_sg", deputy="inactive_sg"),
        "deputised_for_successor": _item(app, world, "Deputy of successor", "manager_sg", "inactive_sg"),
        "my": _item(app, world, "Malaysian", owner="focal_my", office_id=world.offices["MY"]),
    }


def _reassign_form(c, world, **extra) -> dict:
    page = c.get("/offices/SG/reassign")
    assert page.status_code == 200
    data = {
        "csrf_token": csrf_token(page.text),
        "leaving_id": str(world.user_ids["inactive_sg"]),
        "successor_id": str(world.user_ids["manager_sg"]),
        "preview": "y",
    }
    data.update(extra)
    return data


def _confirm_data(preview_text: str, deputies: dict[str, str] | str | None = "none") -> dict:
    """The confirmation form of a preview; each new deputy it asks for is answered with ``deputies``
    (one value for all, or a value by action title; None leaves them unanswered)."""
    form = preview_text[preview_text.index('class="reassign-confirm"') :]
    form = form[: form.index("</form>")]
    data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
    for name, title in re.findall(r'<label for="(deputy-\d+)">New deputy of “([^”]*)”</label>', form):
        answer = deputies.get(title, "") if isinstance(deputies, dict) else deputies
        if answer is not None:
            data[name] = answer
    data["confirm"] = "y"
    return data


def test_reassignment_preview_then_apply(app, world, login_as, leaving):
    c = login_as(world.users["reviewer"])
    page = c.get("/offices/SG/reassign").text
    chooser = page[page.index('id="leaving_id"') : page.index("</select>", page.index('id="leaving_id"'))]
    assert "Inactive Sg — Focal point (inactive)" in chooser and "Focal Sg" in chooser
    assert "Focal My" not in chooser  # owns nothing of SG
    before = _snapshot(app)
    preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world))
    assert preview.status_code == 200
    text = preview.text
    assert "5 actions will change:" in text and "3 as owner" in text and "2 as deputy" in text
    assert "Nothing is changed yet: check the list, then confirm." in text
    for title in (
        "Owned plain",
        "Owned, successor deputy",
        "Owned, other deputy",
        "Deputised",
        "Deputy of successor",
    ):
        assert title in text
    assert "Owned but verified" not in text and "Malaysian" not in text
    # Two actions would be left without a deputy: the preview asks who, offering neither the new
    # owner nor the leaver.
    assert "Deputy Manager Sg cannot stay: choose the new deputy below" in text
    assert "Deputy Inactive Sg cannot stay: choose the new deputy below" in text
    asked = text[text.index('class="reassign-deputies"') : text.index("</fieldset>")]
    assert asked.count("<select") == 2 and "Focal Sg" in asked
    assert "Manager Sg —" not in asked and "Inactive Sg —" not in asked
    assert "Reassign 5 actions" in text
    assert _snapshot(app) == before  # a preview changes nothing

    focal = str(world.user_ids["focal_sg"])
    answers = {"Owned, successor deputy": focal, "Deputy of successor": "none"}
    applied = c.post("/offices/SG/reassign", data=_confirm_data(text, answers))
    assert applied.status_code == 302 and applied.headers["Location"].endswith("/offices/SG")
    assert "5 actions reassigned." in c.get("/offices/SG").text
    with app.app_context():
        people = {
            key: db.session.execute(
                sa.select(ActionItem.owner_id, ActionItem.deputy_id, ActionItem.version).where(
                    ActionItem.id == i
                )
            ).one()
            for key, i in leaving.items()
        }
    u = world.user_ids
    assert people["owned"] == (u["manager_sg"], None, 2)
    assert people["owned_with_successor_deputy"] == (u["manager_sg"], u["focal_sg"], 2)  # as chosen
    assert people["owned_other_deputy"] == (u["manager_sg"], u["focal_sg"], 2)
    assert people["deputised"] == (u["focal_sg"], u["manager_sg"], 2)
    assert people["deputised_for_successor"] == (u["manager_sg"], None, 2)
    assert people["closed"] == (u["inactive_sg"], None, 1)  # closed ones are left alone by default
    assert people["my"] == (u["focal_my"], None, 1)
    notes = {key: [h.note for h in _history(app, i)] for key, i in leaving.items()}
    assert notes["owned"] == ["Owner: Inactive Sg → Manager Sg"]
    assert notes["owned_with_successor_deputy"] == [
        "Owner: Inactive Sg → Manager Sg; Deputy: Manager Sg → Focal Sg"
    ]
    assert notes["deputised"] == ["Deputy: Inactive Sg → Manager Sg"]
    assert notes["deputised_for_successor"] == ["Deputy: Inactive Sg → none"]
    assert notes["closed"] == notes["my"] == []
    last = _history(app, leaving["owned"])[-1]
    assert (last.item_version, last.author_id) == (2, u["reviewer"])
    with app.app_context():  # one mail per role for the successor, listing all their new actions
        mails = db.session.execute(
            sa.select(Notification.to_address, Notification.subject, Notification.body_text)
        ).all()
    assert sorted((to, subject) for to, subject, _ in mails) == [
        ("focal.sg@example.test", "You are now deputy of 1 action — SG"),
        ("manager.sg@example.test", "You are now deputy of 1 action — SG"),
        ("manager.sg@example.test", "You are now owner of 3 actions — SG"),
    ]
    owner_mail = next(body for _, subject, body in mails if "owner" in subject)
    assert "Owned plain" in owner_mail and "Deputised" not in owner_mail


def test_reassignment_may_include_closed_actions(app, world, login_as, leaving):
    c = login_as(world.users["admin"])
    preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world, include_closed="y"))
    assert "6 actions will change:" in preview.text and "Owned but verified" in preview.text
    assert c.post("/offices/SG/reassign", data=_confirm_data(preview.text)).status_code == 302
    with app.app_context():
        assert db.session.get(ActionItem, leaving["closed"]).owner_id == world.user_ids["manager_sg"]


def test_nothing_to_reassign(app, world, login_as):
    c = login_as(world.users["reviewer"])
    _item(app, world, "Only closed", owner="inactive_sg", status="cancelled")
    preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world))
    assert preview.status_code == 200 and "Nothing to reassign: no action matches." in preview.text
    assert "reassign-confirm" not in preview.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"successor_id": "inactive_sg"}, "Choose someone other than the person who is leaving."),
        ({"successor_id": "focal_my"}, "Only an active focal point or manager of SG can take over."),
        ({"successor_id": "reviewer"}, "Only an active focal point or manager of SG can take over."),
        ({"successor_id": ""}, "Choose who takes over."),
        ({"leaving_id": ""}, "Choose the person who is leaving."),
        ({"leaving_id": "999999"}, "Choose the person who is leaving."),
    ],
)
def test_reassignment_refuses_bad_choices(app, world, login_as, leaving, changes, message):
    c = login_as(world.users["reviewer"])
    data = _reassign_form(c, world)
    data.update({k: str(world.user_ids.get(v, v)) for k, v in changes.items()})
    before = _snapshot(app)
    for step in ("preview", "confirm"):
        response = c.post("/offices/SG/reassign", data=dict(data, **{step: "y"}))
        assert response.status_code == 422 and message in response.text, step
        assert "Nothing was reassigned" in response.text
    assert _snapshot(app) == before


def test_a_refused_confirmation_changes_nothing(app, world, login_as, leaving):
    c = login_as(world.users["reviewer"])
    preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text
    confirm = _confirm_data(preview)
    before = _snapshot(app)
    forged = c.post("/offices/SG/reassign", data=dict(confirm, fingerprint="forged"))
    assert forged.status_code == 409 and "The actions changed since the preview." in forged.text
    assert _snapshot(app) == before
    # An item changed after the preview: the list is shown again, as it is now.
    _set(app, leaving["deputised"], status="completed", version=ActionItem.version + 1)
    before = _snapshot(app)
    stale = c.post("/offices/SG/reassign", data=confirm)
    assert stale.status_code == 409 and "4 actions will change:" in stale.text
    assert "Nothing was reassigned: see the message above the list." in stale.text
    assert _snapshot(app) == before
    # Confirming the new list works.
    assert c.post("/offices/SG/reassign", data=_confirm_data(stale.text)).status_code == 302


def test_a_reassignment_racing_another_save_changes_nothing(app, world, login_as, leaving):
    """One item is saved by someone else during the apply: all or nothing."""
    c = login_as(world.users["reviewer"])
    confirm = _confirm_data(c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text)
    before = _snapshot(app)
    with app.app_context():
        engine = db.engine
    seen = []

    def meanwhile(mapper, connection, target):
        seen.append(target.id)
        if len(seen) == 3:  # after some rows were already prepared
            with engine.begin() as other:
                other.execute(
                    sa.update(ActionItem)
                    .where(ActionItem.id == target.id)
                    .values(version=ActionItem.version + 1)
                )

    sa.event.listen(ActionItem, "before_update", meanwhile)
    try:
        refused = c.post("/offices/SG/reassign", data=confirm)
    finally:
        sa.event.remove(ActionItem, "before_update", meanwhile)
    assert refused.status_code == 409 and "Some of these actions changed meanwhile." in refused.text
    after = _snapshot(app)
    changed = [a for a, b in zip(after, before, strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0] == seen[2]  # only the other person's save


# --- who may do what -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["manager", "manager_sg", "focal_sg"])
def test_only_reviewers_and_admins_change_plans(app, world, login_as, role):
    c = login_as(world.users[role])
    token = csrf_token(c.get("/").text)
    before = _snapshot(app)
    data = {
        "csrf_token": token,
        "title": "Forged",
        "recommendation_id": world.recommendation_id,
        "owner_id": world.user_ids["focal_sg"],
        "deadline": "2027-01-01",
        "version": "1",
        "leaving_id": world.user_ids["focal_sg"],
        "successor_id": world.user_ids["manager_sg"],
        "confirm": "y",
    }
    for url in ("/offices/SG/actions/new", f"/actions/{world.items['SG']}/edit", "/offices/SG/reassign"):
        assert c.get(url).status_code == 403, (role, url)
        assert c.post(url, data=data).status_code == 403, (role, url)
    # Another office's pages do not even exist for an office's own people.
    expected = 403 if role == "manager" else 404
    for url in ("/offices/MY/actions/new", f"/actions/{world.items['MY']}/edit", "/offices/MY/reassign"):
        assert c.get(url).status_code == expected, (role, url)
        assert c.post(url, data=data).status_code == expected, (role, url)
    assert _snapshot(app) == before


# --- bounded statements ----------------------------------------------------------------------


def _grow(app, world, n: int, start: int) -> None:
    """n more recommendations, each with a response and two SG actions (one overdue, with a deputy)."""
    with app.app_context():
        for i in range(start, start + n):
            rec = Recommendation(
                source_id=world.source_id, code=f"R-Z-{i:04}", title=f"Extra {i}", text="t", theme="T"
            )
            db.session.add(rec)
            db.session.add(
                OfficeResponse(recommendation=rec, office_id=world.offices["SG"], response="accepted")
            )
            for k in range(2):
                db.session.add(
                    ActionItem(
                        recommendation=rec,
                        office_id=world.offices["SG" if k or i % 2 else "MY"],
                        title=f"Extra {i}-{k}",
                        owner_id=world.user_ids["inactive_sg" if k else "focal_sg"],
                        deputy_id=world.user_ids["manager_sg"] if k else None,
                        deadline=PAST if k else FUTURE,
                        status=("in_progress", "verified", "not_started")[i % 3],
                    )
                )
        db.session.commit()


def test_pages_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    reviewer = login_as(world.users["reviewer"])
    focal = login_as(world.users["focal_sg"])
    pages = [
        (reviewer, "/offices"),
        (reviewer, "/offices/SG"),
        (focal, "/offices/SG"),
        (reviewer, f"/actions/{world.items['SG']}/edit"),
        (reviewer, "/offices/SG/actions/new"),
        (reviewer, "/offices/SG/reassign"),
    ]

    def statements() -> list[int]:
        counted = []
        for client, url in pages:
            with count_queries() as seen:
                assert client.get(url).status_code == 200, url
            counted.append(len(seen))
        preview = _reassign_form(reviewer, world)
        with count_queries() as seen:
            response = reviewer.post("/offices/SG/reassign", data=preview)
            assert response.status_code == 200
        counted.append(len(seen))
        return counted

    _grow(app, world, 3, 0)
    statements()  # the past quarters' rates are computed once: items added today do not change them
    _grow(app, world, 1, 200)  # so that both counts below follow a write (the rates' "now" is read again)
    small = statements()
    _grow(app, world, 30, 100)
    assert statements() == small
    page = reviewer.get("/offices/SG?page=2").text
    assert "R-Z-0129" in page and "Page 2 of 2" in page  # the large plan is really paged


def test_applying_a_reassignment_selects_once_whatever_the_number_of_items(
    app, world, login_as, count_queries
):
    c = login_as(world.users["reviewer"])

    def apply() -> tuple[int, int]:
        preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text
        with count_queries() as seen:
            assert c.post("/offices/SG/reassign", data=_confirm_data(preview)).status_code == 302
        selects = sum(1 for s in seen if s.lstrip().upper().startswith("SELECT"))
        # Updates of the items (the data version's one update at the commit is not one of them).
        updates = sum(1 for s in seen if s.lstrip().upper().startswith("UPDATE ACTION_ITEM"))
        # Hand everything back for the next round.
        with app.app_context():
            db.session.execute(
                sa.update(ActionItem)
                .where(ActionItem.owner_id == world.user_ids["manager_sg"])
                .values(owner_id=world.user_ids["inactive_sg"])
            )
            db.session.commit()
        return selects, updates

    _grow(app, world, 3, 0)
    with app.app_context():
        small_rows = db.session.scalar(
            sa.select(sa.func.count()).where(
                ActionItem.owner_id == world.user_ids["inactive_sg"], ActionItem.status != "verified"
            )
        )
    small_selects, small_updates = apply()
    _grow(app, world, 30, 100)
    large_selects, large_updates = apply()
    assert small_selects == large_selects
    assert small_updates <= small_rows and large_updates > 0


def test_user_check_of_assignable_people(app, world):
    """The service's rule for owners, directly: active, of the office, focal point or manager."""
    from tracker.models import Office
    from tracker.offices.services import may_be_assigned

    with app.app_context():
        sg = db.session.get(Office, world.offices["SG"])
        answers = {label: may_be_assigned(db.session.get(User, i), sg) for label, i in world.user_ids.items()}
    assert {label for label, ok in answers.items() if ok} == {"focal_sg", "manager_sg"}
