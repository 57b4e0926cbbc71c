"""In chromium: a reviewer writes a recommendation and sends it to every office with a first action
drafted for each; a focal point signs in, sees that their office is asked and responds."""

from __future__ import annotations

import re
from datetime import date, timedelta

import sqlalchemy as sa

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD
from tracker.extensions import db
from tracker.models import ActionItem, Notification, OfficeResponse, ResponseRequest


def sign_in(page, email: str) -> None:
    """Sign in through the form; wherever the role lands."""
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)


def test_reviewer_sends_to_all_offices_and_a_focal_point_responds(app, browser, live_server, world):
    target = date.today() + timedelta(days=180)
    reviewer = browser.new_context(base_url=live_server).new_page()
    reviewer.set_default_timeout(10_000)
    sign_in(reviewer, world.users["reviewer"])
    reviewer.goto("/recommendations")
    reviewer.get_by_role("link", name="New recommendation").click()
    reviewer.get_by_label("Code").fill("R-2027-07")
    reviewer.get_by_label("Theme").fill("Service")
    reviewer.get_by_label("Target date").fill(target.isoformat())
    reviewer.get_by_label("Title", exact=True).fill("Publish service standards")
    reviewer.get_by_label("Text").fill("Each office publishes how long its services take.")
    # Every active office is ticked already.
    offices = reviewer.get_by_role("group", name="Offices asked to respond").get_by_role("checkbox")
    assert offices.count() == 2 and all(offices.nth(i).is_checked() for i in range(2))
    reviewer.get_by_label("Draft a first action for each office").check()
    assert (
        reviewer.get_by_label("Title of the drafted actions").input_value() == "Plan the response to %(code)s"
    )
    screenshot(reviewer, "recommendation-new-send")
    reviewer.get_by_role("button", name="Save recommendation").click()
    assert reviewer.get_by_text("Recommendation R-2027-07 is saved.").is_visible()
    assert reviewer.get_by_text("Sent to 2 offices; 0 already asked; 2 actions drafted.").is_visible()
    assert reviewer.get_by_role("link", name="Plan the response to R-2027-07").count() == 2
    assert reviewer.get_by_text(re.compile(r"^Requested on ")).count() == 2
    # Sending again asks nobody twice.
    reviewer.get_by_role("link", name="Send to offices").click()
    offices = reviewer.get_by_role("group", name="Offices asked to respond").get_by_role("checkbox")
    assert not any(offices.nth(i).is_checked() for i in range(offices.count()))
    offices.first.check()
    reviewer.get_by_role("button", name="Send to the offices").click()
    assert reviewer.get_by_text("Sent to 0 offices; 1 already asked; 0 actions drafted.").is_visible()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ResponseRequest)) == 2
        kinds = db.session.scalars(sa.select(Notification.kind)).all()
        assert sorted(kinds) == ["response_request", "response_request"]
        drafted = db.session.scalars(sa.select(ActionItem).where(ActionItem.deadline == target)).all()
        assert len(drafted) == 2

    # The list shows the new figures; its codes stay on one line.
    reviewer.goto("/recommendations")
    row = reviewer.locator("table.recommendations tbody tr", has_text="R-2027-07")
    assert "0 of 2" in row.locator("td[data-label='Offices responded']").inner_text()
    code_cell = row.locator("td").first
    assert code_cell.evaluate("td => getComputedStyle(td).whiteSpace") == "nowrap"

    focal = browser.new_context(base_url=live_server).new_page()
    focal.set_default_timeout(10_000)
    sign_in(focal, world.users["focal_sg"])
    focal.goto("/offices/SG")
    panel = focal.get_by_role("region", name="Responses requested from your office")
    panel.get_by_role("link", name=re.compile("R-2027-07")).click()
    assert focal.get_by_text("SG is asked to respond to this recommendation").is_visible()
    form = focal.get_by_role("region", name="Record a response")
    form.get_by_label("Response").select_option(label="Accepted")
    form.get_by_label("Comment").fill("In next year's plan.")
    screenshot(focal, "recommendation-respond")
    form.get_by_role("button", name="Save response").click()
    assert focal.get_by_text("The response of SG is saved.").is_visible()
    assert focal.get_by_text("SG is asked to respond to this recommendation").count() == 0
    with app.app_context():
        response = db.session.scalar(sa.select(OfficeResponse))
        assert (response.office_id, response.response) == (world.offices["SG"], "accepted")
    focal.goto("/offices/SG")
    assert focal.get_by_role("region", name="Responses requested from your office").count() == 0
