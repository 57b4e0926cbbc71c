"""Actions proposed by an office: a focal point proposes, a reviewer accepts or declines from the
review queue, the proposer is told by mail; a proposal is outside the plan until accepted."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tests.test_api import _fields, _problem, api  # noqa: F401 - the api fixture
from tracker.dashboard.reports import build_report
from tracker.dashboard.services import Filters
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Notification, User
from tracker.notifications.digest import _rate
from tracker.notifications.dispatch import dispatch

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)  # noon in Singapore


def _propose(client, world, office="SG", **changes):
    page = client.get(f"/offices/{office}/actions/propose")
    data = {
        # Refused pages carry no form: the token of the sign-out form of any page serves.
        "csrf_token": csrf_token(page.text if page.status_code == 200 else client.get("/my").text),
        "title": "Train examiners on e-filing",
        "recommendation_id": str(world.recommendation_id),
        "owner_id": str(world.user_ids["focal_sg"]),
        "deputy_id": str(world.user_ids["manager_sg"]),
        "deadline": "2027-03-31",
        "description": "Two sessions, one per quarter.",
    }
    data.update(changes)
    return client.post(f"/offices/{office}/actions/propose", data=data)


def _proposal(app) -> ActionItem | None:
    with app.app_context():
        item = db.session.scalar(
            sa.select(ActionItem).where(ActionItem.title == "Train examiners on e-filing")
        )
        if item is not None:
            db.session.expunge(item)
        return item


def _history(app, item_id: int) -> list[tuple[str | None, str | None, str | None, int | None]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(ActionUpdate.event, ActionUpdate.new_status, ActionUpdate.note, ActionUpdate.author_id)
            .where(ActionUpdate.action_item_id == item_id)
            .order_by(ActionUpdate.id)
        )
        return [tuple(r) for r in rows]


def _decide(client, item_id: int, version: int, button: str, note: str = "", next_url: str | None = None):
    queue = client.get("/verification", query_string={"kind": "proposals"})
    data = {"csrf_token": csrf_token(queue.text), "version": str(version), "note": note, button: "1"}
    return client.post(
        f"/actions/{item_id}/proposal", query_string={"next": next_url} if next_url else {}, data=data
    )


@time_machine.travel(NOW, tick=False)
def test_focal_point_proposes_reviewer_accepts_from_the_queue_and_mail_is_delivered(
    app, world, login_as, smtp_server
):
    focal = login_as(world.users["focal_sg"])
    plan = focal.get("/offices/SG").text
    assert 'href="/offices/SG/actions/propose"' in plan and "Propose an action" in plan
    form = focal.get("/offices/SG/actions/propose")
    assert form.status_code == 200 and "Propose an action for SG" in form.text
    done = _propose(focal, world)
    assert done.status_code == 302
    item = _proposal(app)
    assert item is not None and item.status == "proposed" and item.agreed_deadline == date(2027, 3, 31)
    assert _history(app, item.id) == [
        (
            "proposed",
            "proposed",
            "Proposed by the office. Owner: Focal Sg. Deputy: Manager Sg.",
            world.user_ids["focal_sg"],
        )
    ]
    # The proposer sees it marked, without an update form, and nobody is told yet.
    page = focal.get(f"/actions/{item.id}").text
    assert "Proposed, awaiting acceptance" in page and "Update this action" not in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0

    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification", query_string={"kind": "proposals", "office": "SG"})
    assert queue.status_code == 200
    assert "Train examiners on e-filing" in queue.text and "Two sessions, one per quarter." in queue.text
    assert "1 proposed action awaits acceptance" in queue.text and "waiting since today" in queue.text
    back = "/verification?kind=proposals&office=SG"
    accepted = _decide(reviewer, item.id, item.version, "accept", next_url=back)
    assert accepted.status_code == 302 and accepted.headers["Location"] == back
    after = _proposal(app)
    assert after.status == "not_started" and after.agreed_deadline == after.deadline == date(2027, 3, 31)
    assert [h[:2] for h in _history(app, item.id)] == [("proposed", "proposed"), ("accepted", "not_started")]
    assert "No proposed action awaits acceptance." in reviewer.get(back).text

    with app.app_context():
        assert (
            dispatch(datetime.now(UTC)).sent == 3
        )  # the proposer's answer, the owner's and deputy's assignment
    to_focal = [m.parsed() for m in smtp_server.messages if m.rcpt_tos == [world.users["focal_sg"]]]
    subjects = sorted(m["Subject"] for m in to_focal)
    assert "Proposal accepted: “Train examiners on e-filing” — SG" in subjects, subjects
    decided = next(m for m in to_focal if m["Subject"].startswith("Proposal accepted"))
    text = decided.get_body(("plain",)).get_content()
    assert "accepted the action you proposed into the plan of SG: it is due on March 31, 2027." in text
    assert f"/actions/{item.id}" in text
    assert "Proposal accepted" not in "".join(
        m.parsed()["Subject"] for m in smtp_server.messages if m.rcpt_tos != [world.users["focal_sg"]]
    )


@time_machine.travel(NOW, tick=False)
def test_declining_needs_a_note_cancels_and_tells_the_proposer(app, world, login_as, smtp_server):
    focal, reviewer = login_as(world.users["focal_sg"]), login_as(world.users["reviewer"])
    assert _propose(focal, world, deputy_id="").status_code == 302
    item = _proposal(app)
    refused = _decide(reviewer, item.id, item.version, "decline", note="  ")
    assert refused.status_code == 422 and "Say why the proposal is declined." in refused.text
    assert _proposal(app).status == "proposed"
    # A decision on a version someone has since changed: 409, nothing decided, the page again.
    stale = _decide(reviewer, item.id, item.version - 1, "accept")
    assert stale.status_code == 409 and "Someone changed this action meanwhile." in stale.text
    assert _proposal(app).status == "proposed" and "Train examiners on e-filing" in stale.text
    declined = _decide(reviewer, item.id, item.version, "decline", note="Covered by the national plan.")
    assert declined.status_code == 302
    assert _proposal(app).status == "cancelled"
    assert _history(app, item.id)[-1][:3] == ("declined", "cancelled", "Covered by the national plan.")
    # Deciding again: 409 with what it is now.
    again = _decide(reviewer, item.id, item.version + 1, "accept")
    assert again.status_code == 409 and "no longer a proposal" in again.text
    with app.app_context():
        assert dispatch(datetime.now(UTC)).sent == 1  # the proposer only: nobody is assigned
    (mail,) = smtp_server.messages
    message = mail.parsed()
    assert mail.rcpt_tos == [world.users["focal_sg"]]
    assert message["Subject"] == "Proposal declined: “Train examiners on e-filing” — SG"
    body = message.get_body(("plain",)).get_content()
    assert (
        "declined the action you proposed for the plan of SG" in body
        and "Covered by the national plan." in body
    )
    assert "Covered by the national plan." in message.get_body(("html",)).get_content()


@time_machine.travel(NOW, tick=False)
def test_who_may_propose_see_and_decide(app, world, login_as):
    focal_my, manager = login_as(world.users["focal_my"]), login_as(world.users["manager_sg"])
    # Another office's plan: not found; a manager of the office: forbidden; a reviewer adds, not proposes.
    assert focal_my.get("/offices/SG/actions/propose").status_code == 404
    assert _propose(focal_my, world).status_code == 404
    assert manager.get("/offices/SG/actions/propose").status_code == 403
    assert _propose(manager, world).status_code == 403
    assert login_as(world.users["reviewer"]).get("/offices/SG/actions/propose").status_code == 403
    assert "Propose an action" not in manager.get("/offices/SG").text
    assert _proposal(app) is None

    focal = login_as(world.users["focal_sg"])
    # The owner must be one of the office's own people.
    foreign = _propose(focal, world, owner_id=str(world.user_ids["focal_my"]))
    assert (
        foreign.status_code == 422 and "Only an active focal point or manager of SG can own" in foreign.text
    )
    assert _proposal(app) is None
    assert _propose(focal, world).status_code == 302
    item = _proposal(app)
    # Malaysia's focal point neither sees it nor decides it; SG's own focal point cannot decide it.
    assert focal_my.get(f"/actions/{item.id}").status_code == 404
    assert focal_my.get(f"/actions/{item.id}/proposal").status_code == 404
    token = csrf_token(focal.get(f"/actions/{item.id}").text)
    data = {"csrf_token": token, "version": str(item.version), "accept": "1"}
    assert focal.post(f"/actions/{item.id}/proposal", data=data).status_code == 403
    data["csrf_token"] = csrf_token(manager.get(f"/actions/{item.id}").text)
    assert manager.post(f"/actions/{item.id}/proposal", data=data).status_code == 403
    assert focal.get("/verification").status_code == 403
    assert _proposal(app).status == "proposed"


@time_machine.travel(NOW, tick=False)
def test_a_proposal_cannot_be_updated_and_is_left_out_of_rates(app, world, login_as, api):  # noqa: F811
    focal = login_as(world.users["focal_sg"])
    assert _propose(focal, world).status_code == 302
    item = _proposal(app)
    page = focal.get(f"/actions/{item.id}").text
    token = csrf_token(page)
    # A forged update form: refused, with what it is.
    forged = focal.post(
        f"/actions/{item.id}",
        data={"csrf_token": token, "version": str(item.version), "status": "in_progress", "note": "Go"},
    )
    assert forged.status_code == 403
    # The API: the status is listed, a move or a note refused with a problem document.
    client = api("focal_sg")
    listed = client.get("/api/v1/actions", query_string={"status": "proposed"})
    assert listed.status_code == 200 and [a["id"] for a in listed.json["items"]] == [item.id]
    assert listed.json["items"][0]["status"] == "proposed"
    moved = client.patch(f"/api/v1/actions/{item.id}", json={"status": "in_progress"})
    assert "status" in _fields(moved)
    noted = _problem(client.patch(f"/api/v1/actions/{item.id}", json={"note": "Started early"}), 409)
    assert "only proposed" in noted["detail"]
    assert _proposal(app).status == "proposed" and len(_history(app, item.id)) == 1

    # Out of every rate's denominator: the world's two items are not started, none done.
    assert _rate({"proposed": 5, "verified": 1, "not_started": 1}) == 0.5
    with app.app_context():
        reviewer = db.session.scalar(sa.select(User).where(User.email == world.users["reviewer"]))
        report = build_report(reviewer, NOW, Filters())
        assert report.counted == 2 and report.totals.total == 3
