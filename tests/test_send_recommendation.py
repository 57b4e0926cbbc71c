"""Sending a recommendation to offices in one step, through HTTP: response requests, drafted first
actions, one mail per focal point delivered by the outbox to a real SMTP server, idempotence, one
transaction, permissions, and the focal point's side (the request shown, the response given)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD_HASH, csrf_token
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    Notification,
    Office,
    OfficeResponse,
    Recommendation,
    ResponseRequest,
    User,
)
from tracker.recommendations import sending

TARGET = date.today() + timedelta(days=120)


@pytest.fixture
def programme(app, world) -> dict[str, int]:
    """The world plus: R-1 with a target date; a second SG focal point who comes first by name; an
    office TH without a focal point; an inactive office KH (never offered)."""
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec.target_date = TARGET
        sg = db.session.get(Office, world.offices["SG"])
        aaron = User(email="aaron.sg@example.test", name="Aaron SG", role="focal_point", office=sg)
        aaron.password_hash = PASSWORD_HASH
        th = Office(code="TH", name="DIP Thailand", country="Thailand", timezone="Asia/Bangkok")
        kh = Office(
            code="KH", name="DIPR Cambodia", country="Cambodia", timezone="Asia/Phnom_Penh", active=False
        )
        db.session.add_all([aaron, th, kh])
        db.session.commit()
        return {"TH": th.id, "KH": kh.id, "aaron": aaron.id}


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def _mails(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification).order_by(Notification.to_address))
        return [(r.kind, r.to_address, r.body_text) for r in rows]


def _send(client, url: str, **data):
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, data={"csrf_token": csrf_token(page.text), **data}, follow_redirects=True)


def test_send_page_offers_every_active_office_ticked(app, world, programme, login_as):
    page = login_as(world.users["reviewer"]).get(f"/recommendations/{world.recommendation_id}/send").text
    ticked = re.findall(
        r'<input checked id="offices-\d+" name="offices" type="checkbox" value="(\d+)">', page
    )
    assert sorted(map(int, ticked)) == sorted([world.offices["SG"], world.offices["MY"], programme["TH"]])
    assert "KH" not in page  # inactive
    assert 'value="Plan the response to %(code)s"' in page


def test_reviewer_sends_to_all_offices_with_drafted_actions_and_mail(
    app, world, programme, login_as, runner, smtp_server
):
    reviewer = login_as(world.users["reviewer"])
    url = f"/recommendations/{world.recommendation_id}/send"
    offices = [world.offices["SG"], world.offices["MY"], programme["TH"]]
    done = _send(reviewer, url, offices=offices, draft="y", draft_title="Plan %(code)s in %(office)s")
    assert done.status_code == 200 and done.request.path == f"/recommendations/{world.recommendation_id}"
    assert "Sent to 3 offices; 0 already asked; 2 actions drafted." in done.text
    assert "No active focal point in TH: nobody there was told and no action was drafted." in done.text
    assert done.text.count("Requested on") == 3
    with app.app_context():
        requests = db.session.scalars(sa.select(ResponseRequest)).all()
        assert sorted(r.office_id for r in requests) == sorted(offices)
        assert {r.requested_by_id for r in requests} == {world.user_ids["reviewer"]}
        drafted = db.session.scalars(
            sa.select(ActionItem).where(ActionItem.title.like("Plan R-1 in %"))
        ).all()
        by_office = {i.office.code: i for i in drafted}
        assert sorted(by_office) == ["MY", "SG"]
        # The first active focal point by name: Aaron before "Focal Sg".
        assert by_office["SG"].owner_id == programme["aaron"]
        assert by_office["MY"].owner_id == world.user_ids["focal_my"]
        assert {i.deadline for i in drafted} == {TARGET} and {i.status for i in drafted} == {"not_started"}
        history = db.session.scalars(
            sa.select(ActionUpdate).where(ActionUpdate.action_item_id == by_office["SG"].id)
        )
        assert [(h.event, h.author_id) for h in history] == [("created", world.user_ids["reviewer"])]
        sg_item_id = by_office["SG"].id
    # One mail per active focal point of the offices asked, none to the inactive one or managers,
    # and no separate assignment mail.
    mails = _mails(app)
    assert [(k, to) for k, to, _text in mails] == [
        ("response_request", "aaron.sg@example.test"),
        ("response_request", "focal.my@example.test"),
        ("response_request", "focal.sg@example.test"),
    ]
    aaron_text = mails[0][2]
    assert "with you as its owner" in aaron_text and f"/actions/{sg_item_id}" in aaron_text
    assert "owned by Aaron SG" in mails[2][2]
    # Delivered through the outbox by the command, to a real SMTP server.
    sent = runner.invoke(args=["tracker", "send-mail"])
    assert (sent.exit_code, sent.output) == (0, "sent 3, retried 0, failed 0\n")
    received = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages}
    assert sorted(received) == ["aaron.sg@example.test", "focal.my@example.test", "focal.sg@example.test"]
    message = received["focal.my@example.test"]
    assert message["Subject"] == "Your response is requested: R-1 — MY"
    body = message.get_body(("plain",)).get_content()
    link = re.search(r"http://\S+/recommendations/(\d+)#respond-heading", body)
    assert link and int(link.group(1)) == world.recommendation_id
    html = message.get_body(("html",)).get_content()
    assert f"/recommendations/{world.recommendation_id}#respond-heading" in html


def test_sending_again_asks_nobody_twice(app, world, programme, login_as):
    reviewer = login_as(world.users["reviewer"])
    url = f"/recommendations/{world.recommendation_id}/send"
    first = _send(reviewer, url, offices=[world.offices["SG"]], draft="y")
    assert "Sent to 1 office; 0 already asked; 1 action drafted." in first.text
    counts = (_count(app, ResponseRequest), _count(app, ActionItem), _count(app, Notification))
    # The page now leaves SG unticked and says when it was asked.
    page = reviewer.get(url).text
    assert re.search(
        rf'<input id="offices-\d+" name="offices" type="checkbox" value="{world.offices["SG"]}">', page
    )
    assert "(asked on " in page
    again = _send(reviewer, url, offices=[world.offices["SG"], world.offices["MY"]], draft="y")
    assert "Sent to 1 office; 1 already asked; 1 action drafted." in again.text
    assert "Asked before, skipped: SG." in again.text
    assert _count(app, ResponseRequest) == counts[0] + 1
    assert _count(app, ActionItem) == counts[1] + 1
    assert _count(app, Notification) == counts[2] + 1  # MY's focal point only
    third = _send(reviewer, url, offices=[world.offices["SG"], world.offices["MY"]])
    assert "Sent to 0 offices; 2 already asked; 0 actions drafted." in third.text


def test_a_request_committed_meanwhile_is_reported_not_an_error(app, world, programme, login_as):
    """A double submit: the other one's request lands between this page's load and its post."""
    reviewer = login_as(world.users["reviewer"])
    url = f"/recommendations/{world.recommendation_id}/send"
    page = reviewer.get(url)
    with app.app_context():
        db.session.add(
            ResponseRequest(recommendation_id=world.recommendation_id, office_id=world.offices["SG"])
        )
        db.session.commit()
    done = reviewer.post(
        url,
        data={"csrf_token": csrf_token(page.text), "offices": [world.offices["SG"], world.offices["MY"]]},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "Sent to 1 office; 1 already asked; 0 actions drafted." in done.text
    assert _count(app, ResponseRequest) == 2


def test_concurrent_submits_ask_each_office_once(app, world, programme, login_as):
    """Two submits at the same time (threads, each its own connection): no error, one request each."""
    clients = [login_as(world.users["reviewer"]), login_as(world.users["admin"])]
    url = f"/recommendations/{world.recommendation_id}/send"
    offices = [world.offices["SG"], world.offices["MY"], programme["TH"]]
    tokens = [csrf_token(c.get(url).text) for c in clients]
    results: list[int] = []
    start = threading.Barrier(len(clients))

    def submit(client, token) -> None:
        start.wait()
        response = client.post(url, data={"csrf_token": token, "offices": offices, "draft": "y"})
        results.append(response.status_code)

    threads = [threading.Thread(target=submit, args=pair) for pair in zip(clients, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [302, 302]
    assert _count(app, ResponseRequest) == 3
    with app.app_context():
        drafted = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ActionItem)
            .where(ActionItem.title == "Plan the response to R-1")
        )
    assert drafted == 2  # SG and MY once each (TH has no focal point)
    assert len(_mails(app)) == 3


def test_drafting_needs_a_deadline_and_nothing_is_half_written(app, world, programme, login_as):
    with app.app_context():
        db.session.get(Recommendation, world.recommendation_id).target_date = None
        db.session.commit()
    reviewer = login_as(world.users["reviewer"])
    url = f"/recommendations/{world.recommendation_id}/send"
    refused = _send(reviewer, url, offices=[world.offices["SG"], world.offices["MY"]], draft="y")
    assert refused.status_code == 422
    assert "Give the deadline of the drafted actions: the recommendation has no target date." in refused.text
    assert (_count(app, ResponseRequest), _count(app, Notification)) == (0, 0)
    nothing = _send(reviewer, url)  # no office ticked
    assert nothing.status_code == 422 and "Choose at least one office." in nothing.text
    later = (date.today() + timedelta(days=30)).isoformat()
    ok = _send(reviewer, url, offices=[world.offices["SG"]], draft="y", draft_deadline=later)
    assert "1 action drafted" in ok.text
    with app.app_context():
        item = db.session.scalar(sa.select(ActionItem).where(ActionItem.title == "Plan the response to R-1"))
        assert item.deadline.isoformat() == later


def test_a_new_recommendation_is_sent_in_the_same_transaction(app, world, programme, login_as):
    reviewer = login_as(world.users["reviewer"])
    page = reviewer.get("/recommendations/new")
    assert page.text.count('name="offices" type="checkbox"') == 3
    form = {
        "csrf_token": csrf_token(page.text),
        "code": "R-2027-01",
        "title": "Publish fees",
        "text": "Each office publishes its fees.",
        "theme": "Service",
        "priority": "high",
        "source_id": world.source_id,
        "offices": [world.offices["SG"], world.offices["MY"]],
        "draft": "y",
    }
    # No target date and no deadline: the send is refused, and the recommendation is not saved either.
    refused = reviewer.post("/recommendations/new", data=form)
    assert refused.status_code == 422 and "the recommendation has no target date" in refused.text
    with app.app_context():
        assert db.session.scalar(sa.select(Recommendation).where(Recommendation.code == "R-2027-01")) is None
    assert (_count(app, ResponseRequest), _count(app, Notification)) == (0, 0)
    saved = reviewer.post(
        "/recommendations/new", data={**form, "target_date": TARGET.isoformat()}, follow_redirects=True
    )
    assert "Recommendation R-2027-01 is saved." in saved.text
    assert "Sent to 2 offices; 0 already asked; 2 actions drafted." in saved.text
    assert _count(app, ResponseRequest) == 2 and len(_mails(app)) == 3
    # Unticking every office writes the recommendation without sending it.
    unsent = {k: v for k, v in form.items() if k not in ("offices", "draft")} | {"code": "R-2027-02"}
    assert reviewer.post("/recommendations/new", data=unsent).status_code == 302
    assert _count(app, ResponseRequest) == 2


def test_only_reviewers_and_admins_send(app, world, programme, login_as, client):
    url = f"/recommendations/{world.recommendation_id}/send"
    for label in ("focal_sg", "manager_sg", "manager"):
        c = login_as(world.users[label])
        detail = c.get(f"/recommendations/{world.recommendation_id}")
        assert "Send to offices" not in detail.text
        assert c.get(url).status_code == 403
        token = csrf_token(detail.text)
        assert c.post(url, data={"csrf_token": token, "offices": [world.offices["SG"]]}).status_code == 403
    assert client.get(url).status_code == 302  # signed out: to the sign-in page
    assert (
        "Send to offices"
        in login_as(world.users["admin"]).get(f"/recommendations/{world.recommendation_id}").text
    )
    assert _count(app, ResponseRequest) == 0


def test_a_post_without_its_csrf_token_is_refused(app, world, programme, login_as):
    reviewer = login_as(world.users["reviewer"])
    url = f"/recommendations/{world.recommendation_id}/send"
    reviewer.get(url)
    refused = reviewer.post(url, data={"offices": [world.offices["SG"]]})
    assert refused.status_code == 400
    assert _count(app, ResponseRequest) == 0


def test_focal_point_sees_the_request_and_responds_for_their_office_only(app, world, programme, login_as):
    reviewer = login_as(world.users["reviewer"])
    _send(
        reviewer,
        f"/recommendations/{world.recommendation_id}/send",
        offices=[world.offices["SG"], world.offices["MY"]],
    )
    detail_url = f"/recommendations/{world.recommendation_id}"
    focal = login_as(world.users["focal_sg"])
    page = focal.get(detail_url).text
    assert "SG is asked to respond to this recommendation" in page and "Requested on" in page
    assert (
        f'href="/recommendations/{world.recommendation_id}?office={world.offices["SG"]}#respond-heading"'
        in page
    )
    office_page = focal.get("/offices/SG").text
    assert "Responses requested from your office" in office_page and "R-1 — Go digital" in office_page
    my_work = focal.get("/my").text  # where a focal point lands
    assert "Responses requested from your office" in my_work and "R-1 — Go digital" in my_work
    with app.app_context():
        me = db.session.get(User, world.user_ids["focal_sg"])
        assert [r.office_id for r in sending.open_response_requests(me)] == [world.offices["SG"]]
    # Not for another office: the form does not offer it and refuses it.
    forged = focal.post(
        detail_url,
        data={"csrf_token": csrf_token(page), "office_id": world.offices["MY"], "response": "accepted"},
    )
    assert forged.status_code == 422
    ok = focal.post(
        detail_url,
        data={"csrf_token": csrf_token(page), "office_id": world.offices["SG"], "response": "accepted"},
    )
    assert ok.status_code == 302
    page = focal.get(detail_url).text
    assert "is asked to respond" not in page
    assert "Responses requested from your office" not in focal.get("/offices/SG").text
    assert "Responses requested from your office" not in focal.get("/my").text
    with app.app_context():
        me = db.session.get(User, world.user_ids["focal_sg"])
        assert sending.open_response_requests(me) == []
        rows = db.session.scalars(sa.select(OfficeResponse)).all()
        assert [(r.office_id, r.response) for r in rows] == [(world.offices["SG"], "accepted")]
    # MY's focal point still has theirs; a reviewer's page shows both requests and the one response.
    assert "MY is asked to respond" in login_as(world.users["focal_my"]).get(detail_url).text
    reviewer_page = reviewer.get(detail_url).text
    assert reviewer_page.count("Requested on") == 2 and "No response yet" in reviewer_page


def test_open_requests_take_a_bounded_number_of_statements(app, world, programme, count_queries):
    def statements() -> tuple[int, int]:
        with app.app_context():
            me = db.session.get(User, world.user_ids["focal_sg"])
            with count_queries() as seen:
                found = sending.open_response_requests(me)
                [r.recommendation.code for r in found]
            return len(seen), len(found)

    def add(first: int, n: int) -> None:
        with app.app_context():
            now = datetime.now(UTC)
            for i in range(first, first + n):
                rec = Recommendation(
                    source_id=world.source_id, code=f"R-Q-{i}", title=f"Q{i}", text="T", theme="X"
                )
                db.session.add(rec)
                db.session.add(
                    ResponseRequest(
                        recommendation=rec,
                        office_id=world.offices["SG"],
                        requested_at=now + timedelta(seconds=i),
                    )
                )
            db.session.commit()

    add(0, 3)
    small, found = statements()
    assert found == 3
    add(3, 30)
    assert statements() == (small, 33)
    with app.app_context():
        me = db.session.get(User, world.user_ids["focal_sg"])
        codes = [r.recommendation.code for r in sending.open_response_requests(me)]
    assert codes[:3] == ["R-Q-0", "R-Q-1", "R-Q-2"]  # oldest first
