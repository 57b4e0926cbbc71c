"""Reassignment never removes a deputy silently: the preview asks for a new deputy of each action
that would be left without one, a confirmation without an answer is refused (nothing written), and
"none" clears the deputy on purpose, with history."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD_HASH
from tests.test_offices import _confirm_data, _history, _item, _reassign_form, _snapshot
from tracker.extensions import db
from tracker.models import ActionItem, HistoryEvent, Notification, User


@pytest.fixture
def deputies(app, world) -> dict[str, int]:
    """Inactive SG leaves; manager SG takes over. A second focal point, Second Sg, may deputise."""
    with app.app_context():
        second = User(email="second.sg@example.test", name="Second Sg", role="focal_point")
        second.office_id, second.password_hash = world.offices["SG"], PASSWORD_HASH
        db.session.add(second)
        db.session.commit()
        world.user_ids["second_sg"] = second.id
    return {
        # The successor deputises what they now own.
        "successor_deputy": _item(app, world, "Successor deputises", "inactive_sg", "manager_sg"),
        # The leaver deputises what the successor owns.
        "deputy_of_successor": _item(app, world, "Leaver deputises", "manager_sg", "inactive_sg"),
        # Neither: the successor simply takes over; nothing to ask.
        "plain": _item(app, world, "Plain", "inactive_sg", "focal_sg"),
    }


def _deputy_select(html: str, item_id: int) -> str:
    match = re.search(rf'<select id="deputy-{item_id}".*?</select>', html, re.S)
    assert match, f"no deputy select for item {item_id}"
    return match.group(0)


def _people(app, item_id: int) -> tuple:
    with app.app_context():
        return tuple(
            db.session.execute(
                sa.select(ActionItem.owner_id, ActionItem.deputy_id).where(ActionItem.id == item_id)
            ).one()
        )


def test_the_preview_asks_for_a_new_deputy_and_refuses_a_confirmation_without_one(
    app, world, login_as, deputies
):
    c = login_as(world.users["reviewer"])
    preview = c.post("/offices/SG/reassign", data=_reassign_form(c, world))
    assert preview.status_code == 200
    text = preview.text
    assert "New deputies" in text
    assert "2 actions would be left without a deputy: Manager Sg owns them" in text
    for key in ("successor_deputy", "deputy_of_successor"):
        select = _deputy_select(text, deputies[key])
        # Offered: the office's assignable people other than the new owner (and the leaver), or none.
        assert "Second Sg — Focal point" in select and "Focal Sg — Focal point" in select
        assert "Manager Sg" not in select and "Inactive Sg" not in select
        assert '<option value="none"' in select and '<option value="" selected>' in select
    assert f'id="deputy-{deputies["plain"]}"' not in text
    assert 'href="#deputy-' in text  # the table points to the question

    before = _snapshot(app)
    refused = c.post("/offices/SG/reassign", data=_confirm_data(text, deputies=None))
    assert refused.status_code == 422
    assert "Nothing was reassigned: see the messages in the form." in refused.text
    for title in ("Successor deputises", "Leaver deputises"):
        assert f"New deputy of “{title}”: choose someone, or “none”." in refused.text
    assert _snapshot(app) == before

    # One answered, one not: still refused, and the answer given is kept on the page.
    second = str(world.user_ids["second_sg"])
    partly = c.post(
        "/offices/SG/reassign",
        data=_confirm_data(text, {"Successor deputises": second, "Leaver deputises": ""}),
    )
    assert partly.status_code == 422
    assert "New deputy of “Leaver deputises”: choose someone, or “none”." in partly.text
    assert "New deputy of “Successor deputises”" in partly.text  # still asked
    assert f'<option value="{second}" selected>' in _deputy_select(partly.text, deputies["successor_deputy"])
    assert _snapshot(app) == before


@pytest.mark.parametrize("who", ["manager_sg", "inactive_sg", "focal_my", "reviewer", "forged"])
def test_a_new_deputy_must_be_one_of_those_offered(app, world, login_as, deputies, who):
    c = login_as(world.users["reviewer"])
    text = c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text
    before = _snapshot(app)
    answer = "x1" if who == "forged" else str(world.user_ids[who])
    refused = c.post("/offices/SG/reassign", data=_confirm_data(text, answer))
    assert refused.status_code == 422
    assert "New deputy of “Successor deputises”: choose someone from the list, or “none”." in refused.text
    assert _snapshot(app) == before


def test_none_clears_the_deputy_on_purpose_and_a_chosen_deputy_is_told(app, world, login_as, deputies):
    c = login_as(world.users["reviewer"])
    text = c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text
    second = str(world.user_ids["second_sg"])
    applied = c.post(
        "/offices/SG/reassign",
        data=_confirm_data(text, {"Successor deputises": "none", "Leaver deputises": second}),
    )
    assert applied.status_code == 302
    u = world.user_ids
    assert _people(app, deputies["successor_deputy"]) == (u["manager_sg"], None)
    assert _people(app, deputies["deputy_of_successor"]) == (u["manager_sg"], u["second_sg"])
    assert _people(app, deputies["plain"]) == (u["manager_sg"], u["focal_sg"])
    history = {key: _history(app, i) for key, i in deputies.items()}
    assert [(h.note, h.event) for h in history["successor_deputy"]] == [
        ("Owner: Inactive Sg → Manager Sg; Deputy: Manager Sg → none", HistoryEvent.REASSIGNED.value)
    ]
    assert [(h.note, h.event) for h in history["deputy_of_successor"]] == [
        ("Deputy: Inactive Sg → Second Sg", HistoryEvent.REASSIGNED.value)
    ]
    assert [h.note for h in history["plain"]] == ["Owner: Inactive Sg → Manager Sg"]
    with app.app_context():
        mails = sorted(db.session.execute(sa.select(Notification.to_address, Notification.subject)).all())
    assert [tuple(m) for m in mails] == [
        ("manager.sg@example.test", "You are now owner of 2 actions — SG"),
        ("second.sg@example.test", "You are now deputy of 1 action — SG"),
    ]
    # The action page shows the explicit change in its history.
    page = c.get(f"/actions/{deputies['successor_deputy']}").text
    assert "Deputy: Manager Sg → none" in page


def test_with_nobody_else_to_offer_none_is_the_only_answer(app, world, login_as):
    """Only the successor is assignable besides the leaver: the question offers "none" alone."""
    item_id = _item(app, world, "Successor deputises", "inactive_sg", "manager_sg")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == world.user_ids["focal_sg"]).values(active=False))
        db.session.commit()
    c = login_as(world.users["reviewer"])
    text = c.post("/offices/SG/reassign", data=_reassign_form(c, world)).text
    select = _deputy_select(text, item_id)
    assert re.findall(r'<option value="([^"]*)"', select) == ["", "none"]
    assert c.post("/offices/SG/reassign", data=_confirm_data(text, "none")).status_code == 302
    assert _people(app, item_id) == (world.user_ids["manager_sg"], None)
