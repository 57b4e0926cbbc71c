"""The review queue in chromium: a reviewer filters it by office, selects two completions with the
keyboard, confirms and both are verified; a focal point proposes an action, the reviewer accepts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.browser.conftest import screenshot
from tests.browser.test_workflow_flow import sign_in
from tests.test_review_queue import _add
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate


def _statuses(app) -> dict[str, str]:
    with app.app_context():
        return dict(db.session.execute(sa.select(ActionItem.title, ActionItem.status)).all())


def test_filter_select_two_and_verify_them_together(app, browser, live_server, world):
    now = datetime.now(UTC)
    _add(app, world, "Launch e-filing", "SG", "completed", since=now - timedelta(days=4), note="Live.")
    _add(app, world, "Train examiners", "SG", "completed", since=now - timedelta(days=2), note="40 trained.")
    _add(app, world, "Malaysian report", "MY", "completed", since=now - timedelta(days=6))
    reviewer = browser.new_context(base_url=live_server).new_page()
    sign_in(reviewer, world.users["reviewer"])
    reviewer.goto("/verification")
    reviewer.get_by_label("Office").select_option("SG")
    reviewer.get_by_role("button", name="Apply filters").click()
    reviewer.wait_for_url("**/verification?office=SG**")
    assert reviewer.get_by_role("link", name="Malaysian report").count() == 0
    assert reviewer.get_by_text("waiting 4 days").is_visible()

    # With the keyboard: focus the first box, Space ticks it; then the second.
    first = reviewer.get_by_label("Select to verify “Launch e-filing”")
    first.focus()
    reviewer.keyboard.press("Space")
    reviewer.get_by_label("Select to verify “Train examiners”").check()
    assert first.is_checked()
    screenshot(reviewer, "review-queue-selected")
    reviewer.get_by_role("button", name="Verify selected").click()

    assert reviewer.get_by_role("heading", name="Verify 2 actions").is_visible()
    assert reviewer.get_by_text("40 trained.").is_visible() and reviewer.get_by_text("Live.").is_visible()
    screenshot(reviewer, "verify-several-confirmation")
    reviewer.get_by_role("button", name="Verify 2 actions").click()
    reviewer.wait_for_url("**/verification?office=SG")
    assert reviewer.get_by_text("2 actions verified.").is_visible()
    assert reviewer.get_by_label("Office").input_value() == "SG"  # the filter is kept
    statuses = _statuses(app)
    assert statuses["Launch e-filing"] == statuses["Train examiners"] == "verified"
    assert statuses["Malaysian report"] == "completed"


def test_focal_point_proposes_and_reviewer_accepts_from_the_queue(app, browser, live_server, world):
    focal = browser.new_context(base_url=live_server).new_page()
    sign_in(focal, world.users["focal_sg"])
    focal.goto("/offices/SG")
    focal.get_by_role("link", name="Propose an action").first.click()
    focal.get_by_label("Title").fill("Translate the guidelines")
    focal.get_by_label("Recommendation").select_option(label="R-1 — Go digital")
    focal.get_by_label("Owner").select_option(label="Focal Sg — Focal point")
    focal.get_by_label("Deadline").fill("2027-06-30")
    focal.get_by_label("Description").fill("Into Malay, Tamil and Chinese.")
    focal.get_by_role("button", name="Propose the action").click()
    assert focal.get_by_text("Your proposal “Translate the guidelines” is recorded").is_visible()
    assert focal.get_by_text("Proposed, awaiting acceptance").first.is_visible()
    assert _statuses(app)["Translate the guidelines"] == "proposed"

    reviewer = browser.new_context(base_url=live_server).new_page()
    sign_in(reviewer, world.users["reviewer"])
    reviewer.goto("/verification")
    reviewer.get_by_label("Kind").select_option(label="Proposed actions")
    reviewer.get_by_role("button", name="Apply filters").click()
    assert reviewer.get_by_text("Into Malay, Tamil and Chinese.").is_visible()
    screenshot(reviewer, "review-queue-proposal")
    reviewer.get_by_role("button", name="Accept into the plan").click()
    assert reviewer.get_by_text("“Translate the guidelines” is accepted into the plan.").is_visible()
    assert reviewer.get_by_text("No proposed action awaits acceptance.").is_visible()
    assert _statuses(app)["Translate the guidelines"] == "not_started"
    with app.app_context():
        events = db.session.scalars(sa.select(ActionUpdate.event).where(ActionUpdate.event.isnot(None))).all()
    assert "proposed" in events and "accepted" in events
