"""Verification that can be corrected: a confirmed verify, reopening, sending back to a chosen
progress, and the office adding to or withdrawing its completion report — through the pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate
from tracker.notifications.dispatch import dispatch

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _state(app, item_id: int) -> tuple:
    with app.app_context():
        item = db.session.get(ActionItem, item_id)
        history = db.session.scalar(sa.select(sa.func.count()).where(ActionUpdate.action_item_id == item_id))
        return item.status, item.progress, item.version, history


def _version(page_text: str, form: str = "version") -> str:
    return re.search(rf'name="{form}" type="hidden" value="(\d+)"', page_text).group(1)


def _update(client, item_id: int, **data: str):
    page = client.get(f"/actions/{item_id}").text
    form = {"csrf_token": csrf_token(page), "version": _version(page), "status": "", "note": ""}
    form.update(data)
    return client.post(f"/actions/{item_id}", data=form)


def _report_completed(client, item_id: int) -> None:
    """The office starts at 40 %, then reports completion."""
    assert _update(client, item_id, status="in_progress", progress="40", note="Begun").status_code == 302
    assert _update(client, item_id, status="completed", note="All done").status_code == 302


def _post_form(client, item_id: int, path: str, **data: str):
    page = client.get(f"/actions/{item_id}").text
    form = {"csrf_token": csrf_token(page), "version": _version(page)}
    form.update(data)
    return client.post(f"/actions/{item_id}/{path}", data=form)


@time_machine.travel(NOW, tick=False)
def test_verify_from_the_queue_asks_for_a_confirmation(app, world, login_as):
    item_id = world.items["SG"]
    _report_completed(login_as(world.users["focal_sg"]), item_id)
    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification").text
    link = f"/actions/{item_id}/verify"
    assert link in queue
    # Following the link changes nothing: it shows what was reported and asks.
    before = _state(app, item_id)
    confirm = reviewer.get(link)
    assert confirm.status_code == 200
    assert "All done" in confirm.text and "Yes, verify it" in confirm.text
    assert _state(app, item_id) == before
    # Confirmed on a version someone has since changed: 409, the page again, nothing written.
    stale = reviewer.post(
        link, data={"csrf_token": csrf_token(confirm.text), "version": str(int(_version(confirm.text)) - 1)}
    )
    assert stale.status_code == 409 and "Someone changed this action meanwhile." in stale.text
    assert "Yes, verify it" in stale.text and _state(app, item_id) == before
    done = reviewer.post(
        link + "?next=/verification",
        data={"csrf_token": csrf_token(confirm.text), "version": _version(confirm.text)},
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/verification")
    assert _state(app, item_id)[:2] == ("verified", 100)
    # Again: nothing to verify any more, 409 and nothing written.
    before = _state(app, item_id)
    again = reviewer.post(link, data={"csrf_token": csrf_token(confirm.text), "version": before[2]})
    assert again.status_code == 409 and "there is no completion to verify" in again.text
    assert _state(app, item_id) == before
    # A focal point may not verify.
    focal = login_as(world.users["focal_sg"])
    assert focal.get(link).status_code == 403


@time_machine.travel(NOW, tick=False)
def test_reopen_a_verified_action_with_a_note_and_the_owner_is_told(app, world, login_as, smtp_server):
    item_id = world.items["SG"]
    _report_completed(login_as(world.users["focal_sg"]), item_id)
    reviewer = login_as(world.users["reviewer"])
    assert _update(reviewer, item_id, status="verified").status_code == 302
    page = reviewer.get(f"/actions/{item_id}").text
    assert "Reopen" in page
    # The proposed progress is where the office stood before it reported completion.
    assert 'name="progress" type="number" value="40"' in page or 'value="40"' in page

    before = _state(app, item_id)
    no_note = _post_form(reviewer, item_id, "reopen", note="", progress="40")
    assert no_note.status_code == 422 and "Say why in the note." in no_note.text
    focal = login_as(world.users["focal_sg"])
    token = csrf_token(focal.get(f"/actions/{item_id}").text)
    forged = {"csrf_token": token, "version": before[2], "note": "Oops", "progress": "40"}
    assert focal.post(f"/actions/{item_id}/reopen", data=forged).status_code == 403
    other = login_as(world.users["focal_my"])
    token = csrf_token(other.get("/profile").text)
    assert (
        other.post(f"/actions/{item_id}/reopen", data={"csrf_token": token, "version": "1"}).status_code
        == 404
    )
    assert _state(app, item_id) == before

    reopened = _post_form(reviewer, item_id, "reopen", note="The portal is down again.", progress="60")
    assert reopened.status_code == 302
    assert _state(app, item_id)[:2] == ("in_progress", 60)
    assert "Reopened" in reviewer.get(f"/actions/{item_id}").text
    # Reopening what is not verified: 409 with the state it is in.
    again = _post_form(reviewer, item_id, "reopen", note="Again", progress="60")
    assert again.status_code == 409 and "Only a verified action can be reopened" in again.text

    with app.app_context():
        dispatch(datetime.now(UTC))
    reopened_mail = [m for m in smtp_server.messages if "Reopened" in m.parsed()["Subject"]]
    assert [m.rcpt_tos for m in reopened_mail] == [[world.users["focal_sg"]]]
    assert "The portal is down again." in reopened_mail[0].parsed().get_body(("plain",)).get_content()


@time_machine.travel(NOW, tick=False)
def test_sending_back_proposes_the_progress_before_the_report(app, world, login_as):
    item_id = world.items["SG"]
    _report_completed(login_as(world.users["focal_sg"]), item_id)
    reviewer = login_as(world.users["reviewer"])
    page = reviewer.get(f"/actions/{item_id}").text
    assert re.search(r'id="progress"[^>]*value="40"', page) or re.search(
        r'value="40"[^>]*id="progress"', page
    )
    refused = _update(reviewer, item_id, status="in_progress", progress="100", note="Not yet")
    assert refused.status_code == 422 and "below 100" in refused.text
    sent_back = _update(
        reviewer, item_id, status="in_progress", progress="40", note="The evidence is missing."
    )
    assert sent_back.status_code == 302
    assert _state(app, item_id)[:2] == ("in_progress", 40)


@time_machine.travel(NOW, tick=False)
def test_office_adds_evidence_or_withdraws_while_awaiting_verification(app, world, login_as):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    _report_completed(focal, item_id)
    # A note and a link, without changing anything else.
    added = _update(focal, item_id, note="Forgot the link", evidence_url="https://example.org/report")
    assert added.status_code == 302
    status, progress, _version_now, history = _state(app, item_id)
    assert (status, progress, history) == ("completed", 100, 4)  # agreed, begun, completed, the note
    assert "https://example.org/report" in focal.get(f"/actions/{item_id}").text

    withdrawn = _post_form(focal, item_id, "withdraw", note="Not done after all.")
    assert withdrawn.status_code == 302
    assert _state(app, item_id)[:2] == ("in_progress", 40)
    assert "Completion report withdrawn" in focal.get(f"/actions/{item_id}").text

    # Withdrawing what is not awaiting verification: 409, nothing written.
    before = _state(app, item_id)
    again = _post_form(focal, item_id, "withdraw", note="")
    assert again.status_code == 409 and "Only a completion awaiting verification" in again.text
    assert _state(app, item_id) == before
    # Another office: 404.
    other = login_as(world.users["focal_my"])
    token = csrf_token(other.get("/profile").text)
    assert (
        other.post(f"/actions/{item_id}/withdraw", data={"csrf_token": token, "version": "1"}).status_code
        == 404
    )
