"""Deadline extensions by approval: the office asks, a reviewer decides, through the page and the API.

The agreed deadline never moves; the current one moves only by an approved request or a reviewer's
own change; the requester hears the decision by mail over real SMTP; refusals write nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tests.test_api import _fields, _problem, api  # noqa: F401 - the api fixture
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, ExtensionRequest, Notification
from tracker.notifications.dispatch import dispatch

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _snapshot(app, item_id: int) -> tuple:
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        requests = db.session.execute(
            sa.select(ExtensionRequest.id, ExtensionRequest.state).order_by(ExtensionRequest.id)
        ).all()
        history = db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate))
        return item.deadline, item.agreed_deadline, item.version, tuple(requests), history


def _ask(client, item_id: int, **data: str):
    page = client.get(f"/actions/{item_id}")
    return client.post(f"/actions/{item_id}/extensions", data={"csrf_token": csrf_token(page.text), **data})


def _decide(client, item_id: int, extension_id: int, **data: str):
    page = client.get(f"/actions/{item_id}")
    return client.post(
        f"/extensions/{extension_id}/decision", data={"csrf_token": csrf_token(page.text), **data}
    )


def _pending_id(app, item_id: int) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(ExtensionRequest.id).where(
                ExtensionRequest.action_item_id == item_id, ExtensionRequest.state == "pending"
            )
        )


@time_machine.travel(NOW, tick=False)
def test_office_asks_reviewer_approves_and_the_requester_is_told(app, world, login_as, smtp_server):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    page = focal.get(f"/actions/{item_id}")
    assert "Request an extension" in page.text
    # The update form has no deadline field for the office any more.
    assert 'name="deadline"' not in page.text

    asked = _ask(focal, item_id, new_deadline="2027-06-30", reason="Procurement slipped by a quarter.")
    assert asked.status_code == 302
    page = focal.get(f"/actions/{item_id}").text
    assert "Extension requested" in page and "Procurement slipped" in page
    assert "Until a reviewer decides, the current deadline holds." in page
    deadline, agreed, *_ = _snapshot(app, item_id)
    assert deadline == agreed == date(2026, 11, 24)  # nothing moves before the decision

    reviewer = login_as(world.users["reviewer"])
    page = reviewer.get(f"/actions/{item_id}").text
    assert "Record the decision" in page
    # The review queue lists the request too.
    queue = reviewer.get("/verification").text
    assert "Procurement slipped" in queue

    extension_id = _pending_id(app, item_id)
    decided = _decide(reviewer, item_id, extension_id, decision="approved", note="Fine.")
    assert decided.status_code == 302
    deadline, agreed, *_ = _snapshot(app, item_id)
    assert (deadline, agreed) == (date(2027, 6, 30), date(2026, 11, 24))
    page = reviewer.get(f"/actions/{item_id}").text
    assert "(agreed: November 24, 2026)" in page
    assert "Extension approved" in page and "Extension requested" in page  # both in the history

    with app.app_context():
        assert dispatch(datetime.now(UTC)).sent >= 1
    mails = [m for m in smtp_server.messages if m.rcpt_tos == [world.users["focal_sg"]]]
    assert len(mails) == 1
    message = mails[0].parsed()
    assert "Extension approved" in message["Subject"]
    assert "June 30, 2027" in message.get_body(("plain",)).get_content()


@time_machine.travel(NOW, tick=False)
def test_rejection_needs_a_note_keeps_the_deadline_and_is_told(app, world, login_as, smtp_server):
    item_id = world.items["SG"]
    focal, reviewer = login_as(world.users["focal_sg"]), login_as(world.users["reviewer"])
    assert _ask(focal, item_id, new_deadline="2027-01-31", reason="Holidays.").status_code == 302
    extension_id = _pending_id(app, item_id)
    before = _snapshot(app, item_id)
    refused = _decide(reviewer, item_id, extension_id, decision="rejected", note="")
    assert refused.status_code == 422 and "Say why the request is rejected." in refused.text
    assert _snapshot(app, item_id) == before
    assert (
        _decide(reviewer, item_id, extension_id, decision="rejected", note="Not needed.").status_code == 302
    )
    deadline, *_ = _snapshot(app, item_id)
    assert deadline == date(2026, 11, 24)
    # Deciding again: 409 with what the state is now.
    again = _decide(reviewer, item_id, extension_id, decision="approved", note="")
    assert again.status_code == 409 and "already decided: rejected" in again.text
    with app.app_context():
        dispatch(datetime.now(UTC))
    subjects = [m.parsed()["Subject"] for m in smtp_server.messages]
    assert any("Extension rejected" in s for s in subjects)


@time_machine.travel(NOW, tick=False)
def test_bad_requests_are_refused_by_field_and_nothing_is_written(app, world, login_as):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    before = _snapshot(app, item_id)
    cases = [
        ({"new_deadline": "2026-11-24", "reason": "Same day"}, "must be after the current one"),
        ({"new_deadline": "2026-10-01", "reason": "Earlier"}, "must be after the current one"),
        ({"new_deadline": "", "reason": "No date"}, "Give the new deadline"),
        ({"new_deadline": "2027-03-01", "reason": "  "}, "Give the reason for the extension."),
    ]
    for data, message in cases:
        response = _ask(focal, item_id, **data)
        assert response.status_code == 422, data
        assert message in response.text, data
    assert _snapshot(app, item_id) == before

    # A second request while one waits: 409.
    assert _ask(focal, item_id, new_deadline="2027-03-01", reason="Budget").status_code == 302
    before = _snapshot(app, item_id)
    second = _ask(focal, item_id, new_deadline="2027-04-01", reason="More")
    assert second.status_code == 409 and "already waiting for a decision" in second.text
    assert _snapshot(app, item_id) == before


@time_machine.travel(NOW, tick=False)
def test_who_may_ask_and_decide(app, world, login_as):
    item_id, other_id = world.items["SG"], world.items["MY"]
    focal = login_as(world.users["focal_sg"])
    # Another office's action: 404, whether asking or deciding.
    assert _ask(focal, item_id, new_deadline="2027-03-01", reason="x").status_code == 302
    extension_id = _pending_id(app, item_id)
    my_focal = login_as(world.users["focal_my"])
    page = my_focal.get(f"/actions/{other_id}")
    token = csrf_token(page.text)
    posted = my_focal.post(
        f"/actions/{item_id}/extensions",
        data={"csrf_token": token, "new_deadline": "2027-05-01", "reason": "x"},
    )
    assert posted.status_code == 404
    decided = my_focal.post(
        f"/extensions/{extension_id}/decision", data={"csrf_token": token, "decision": "approved"}
    )
    assert decided.status_code == 404
    # The office's own focal point cannot decide its request; a manager cannot ask.
    before = _snapshot(app, item_id)
    assert _decide(focal, item_id, extension_id, decision="approved").status_code == 403
    manager = login_as(world.users["manager_sg"])
    token = csrf_token(manager.get("/profile").text)
    asked = manager.post(
        f"/actions/{item_id}/extensions",
        data={"csrf_token": token, "new_deadline": "2027-05-01", "reason": "x"},
    )
    assert asked.status_code == 403
    assert _snapshot(app, item_id) == before


@time_machine.travel(NOW, tick=False)
def test_overdue_counts_against_the_current_deadline_until_approval(app, world, login_as, api):  # noqa: F811
    item_id = world.items["SG"]
    focal = api("focal_sg")
    url = f"/api/v1/actions/{item_id}"
    with time_machine.travel(datetime(2026, 12, 1, 9, tzinfo=UTC), tick=False):
        created = focal.post(f"{url}/extensions", json={"deadline": "2027-06-30", "reason": "Budget."})
        assert created.status_code == 201
        body = focal.get(url).get_json()
        assert body["overdue"] is True  # the request alone changes nothing
        assert body["pending_extension"]["requested_deadline"] == "2027-06-30"
        assert (body["deadline"], body["agreed_deadline"]) == ("2026-11-24", "2026-11-24")
        reviewer = api("reviewer")
        decided = reviewer.post(
            f"/api/v1/extensions/{created.get_json()['id']}/decision", json={"decision": "approved"}
        )
        assert decided.status_code == 200 and decided.get_json()["state"] == "approved"
        body = focal.get(url).get_json()
        assert (body["overdue"], body["deadline"], body["pending_extension"]) == (False, "2027-06-30", None)
        assert body["agreed_deadline"] == "2026-11-24"


@time_machine.travel(NOW, tick=False)
def test_api_refusals(app, world, api):  # noqa: F811
    item_id = world.items["SG"]
    focal, reviewer, other = api("focal_sg"), api("reviewer"), api("focal_my")
    url = f"/api/v1/actions/{item_id}/extensions"
    before = _snapshot(app, item_id)
    assert _fields(focal.post(url, json={"deadline": "2026-11-01", "reason": "x"})) == {"deadline"}
    assert _fields(focal.post(url, json={"deadline": "2027-01-01", "reason": " "})) == {"reason"}
    assert _fields(focal.post(url, json={"deadline": "2027-01-01"})) == {"reason"}
    _problem(other.post(url, json={"deadline": "2027-01-01", "reason": "x"}), 404)
    _problem(reviewer.post(url, json={"deadline": "2027-01-01", "reason": "x"}), 403)  # reviewers set it
    assert _snapshot(app, item_id) == before

    created = focal.post(url, json={"deadline": "2027-01-01", "reason": "x"}).get_json()
    _problem(focal.post(url, json={"deadline": "2027-02-01", "reason": "y"}), 409)
    decision = f"/api/v1/extensions/{created['id']}/decision"
    _problem(focal.post(decision, json={"decision": "approved"}), 403)
    _problem(other.post(decision, json={"decision": "approved"}), 404)
    assert _fields(reviewer.post(decision, json={"decision": "rejected"})) == {"note"}
    assert _fields(reviewer.post(decision, json={"decision": "maybe"})) == {"decision"}
    assert reviewer.post(decision, json={"decision": "rejected", "note": "No."}).status_code == 200
    conflict = _problem(reviewer.post(decision, json={"decision": "approved"}), 409)
    assert "rejected" in conflict["detail"]
    listed = focal.get(url).get_json()["items"]
    assert [(e["state"], e["decided_by"], e["decision_note"]) for e in listed] == [
        ("rejected", world.users["reviewer"], "No.")
    ]
    _problem(other.get(url), 404)


@time_machine.travel(NOW, tick=False)
def test_a_reviewers_direct_deadline_is_recorded_as_theirs(app, world, login_as):
    item_id = world.items["SG"]
    reviewer = login_as(world.users["reviewer"])
    page = reviewer.get(f"/actions/{item_id}")
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page.text).group(1)
    saved = reviewer.post(
        f"/actions/{item_id}",
        data={
            "csrf_token": csrf_token(page.text),
            "version": version,
            "status": "",
            "deadline": "2027-02-01",
        },
    )
    assert saved.status_code == 302
    page = reviewer.get(f"/actions/{item_id}").text
    assert "Deadline set by a reviewer" in page
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        assert (item.deadline, item.agreed_deadline) == (date(2027, 2, 1), date(2026, 11, 24))
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


@time_machine.travel(NOW, tick=False)
def test_dashboard_and_report_show_extensions_granted_and_days_slipped(app, world, login_as, count_queries):
    item_id = world.items["SG"]
    focal, reviewer = login_as(world.users["focal_sg"]), login_as(world.users["reviewer"])
    # Two approved extensions (+30 days, then +10), one rejected: 2 granted, 40 days slipped.
    for new, decision in (("2026-12-24", "approved"), ("2027-01-03", "approved"), ("2027-06-01", "rejected")):
        assert _ask(focal, item_id, new_deadline=new, reason="More time").status_code == 302
        extension_id = _pending_id(app, item_id)
        assert _decide(reviewer, item_id, extension_id, decision=decision, note="Noted").status_code == 302

    def figures(page: str, code: str) -> tuple[str, str]:
        row = re.search(rf'<tr data-office="{code}">(.*?)</tr>', page, re.S).group(1)
        extensions = re.search(r'data-figure="extensions">([^<]*)<', row).group(1)
        slipped = re.search(r'data-figure="slipped">([^<]*)<', row).group(1)
        return extensions, slipped

    dashboard = reviewer.get("/dashboard").text
    assert figures(dashboard, "SG") == ("2", "40")
    assert figures(dashboard, "MY") == ("0", "0")
    report = reviewer.get("/reports/programme").text
    assert figures(report, "SG") == ("2", "40")
    # A focal point of MY sees only MY's figures.
    other = login_as(world.users["focal_my"]).get("/dashboard").text
    assert 'data-office="SG"' not in other
