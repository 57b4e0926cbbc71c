"""The whole workflow in chromium: report, verify, see it on the dashboard; conflicts; refusals."""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD
from tracker.extensions import db
from tracker.models import EvidenceFile


def sign_in(page, email: str) -> None:
    """Sign in through the form and land on the role's own page (My work, the review queue, …)."""
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)


def save_update(
    page, status: str | None = None, note: str = "", progress: str | None = None, files=None
) -> None:
    """Fill the action page's update form and save it."""
    if status:
        page.get_by_label("Status").select_option(label=status)
    if progress is not None:
        page.get_by_label("Progress (%)").fill(progress)
    if note:
        page.get_by_label("Note").fill(note)
    if files:
        page.get_by_label("Evidence files").set_input_files(files)
    page.get_by_role("button", name="Save update").click()


def test_report_verify_and_see_it_on_the_dashboard(app, browser, live_server, world, tmp_path):
    item_url = f"/actions/{world.items['SG']}"
    evidence = tmp_path / "launch-report.pdf"
    evidence.write_bytes(b"%PDF-1.7\n% e-filing launch report\n")

    focal = browser.new_context(base_url=live_server).new_page()
    sign_in(focal, world.users["focal_sg"])
    focal.get_by_role("link", name="E-filing for SG").click()
    save_update(focal, status="In progress", progress="40", note="Vendor selected.")
    assert focal.get_by_text("Your update is saved.").is_visible()
    save_update(
        focal, status="Completed, awaiting verification", note="Live since Monday.", files=[str(evidence)]
    )
    assert focal.get_by_text("Your update is saved.").is_visible()
    assert focal.get_by_role("link", name="launch-report.pdf").is_visible()
    screenshot(focal, "action-page-completed")

    reviewer = browser.new_context(base_url=live_server).new_page()
    sign_in(reviewer, world.users["reviewer"])
    reviewer.get_by_role("link", name="Review queue").click()
    assert reviewer.get_by_text("Live since Monday.").is_visible()
    # Verifying asks first, showing what the office reported.
    reviewer.get_by_role("link", name="Verify “E-filing for SG”…").click()
    assert reviewer.get_by_text("Live since Monday.").is_visible()
    assert reviewer.get_by_role("link", name="launch-report.pdf").is_visible()
    reviewer.get_by_role("button", name="Yes, verify it").click()
    assert reviewer.get_by_text("“E-filing for SG” is verified.").is_visible()
    assert reviewer.get_by_text("Nothing awaits verification.").is_visible()

    reviewer.get_by_role("link", name="Dashboard").click()
    screenshot(reviewer, "dashboard")
    cell = reviewer.locator("table.matrix a[href*='office=SG'][href*='recommendation=R-1']")
    assert "Verified" in cell.inner_text()
    totals = reviewer.locator("main").inner_text()
    assert re.search(r"1\s*Verified", totals), totals[:500]

    # The focal point of Malaysia can reach neither the action nor its file.
    with app.app_context():
        file_id = db.session.scalar(sa.select(EvidenceFile.id))
    other = browser.new_context(base_url=live_server).new_page()
    sign_in(other, world.users["focal_my"])
    assert other.goto(item_url).status == 404
    assert other.request.get(f"{live_server}/evidence/{file_id}").status == 404
    assert focal.request.get(f"{live_server}/evidence/{file_id}").status == 200
    for page in (focal, reviewer, other):
        page.context.close()


def test_two_people_editing_one_action_see_the_conflict(browser, live_server, world):
    first = browser.new_context(base_url=live_server).new_page()
    second = browser.new_context(base_url=live_server).new_page()
    sign_in(first, world.users["focal_sg"])
    sign_in(second, world.users["reviewer"])
    url = f"/actions/{world.items['SG']}"
    first.goto(url)
    second.goto(url)
    save_update(first, status="In progress", note="Started by the office.")
    assert first.get_by_text("Your update is saved.").is_visible()
    save_update(second, status="Blocked", note="Waiting for the budget.")
    assert second.get_by_text("Someone else saved this action after you opened it").is_visible()
    assert second.get_by_text("Started by the office.").first.is_visible()
    assert second.get_by_label("Note").input_value() == "Waiting for the budget."
    screenshot(second, "action-page-conflict")
    second.get_by_label("Status").select_option(label="Blocked")
    second.get_by_role("button", name="Save update").click()
    assert second.get_by_text("Your update is saved.").is_visible()
    first.context.close()
    second.context.close()


def test_an_extension_is_asked_for_and_approved_from_the_review_queue(app, browser, live_server, world):
    focal = browser.new_context(base_url=live_server).new_page()
    sign_in(focal, world.users["focal_sg"])
    focal.get_by_role("link", name="E-filing for SG").click()
    focal.get_by_label("New deadline").fill("2027-03-31")
    focal.get_by_label("Reason").fill("The vendor needs a second test round.")
    focal.get_by_role("button", name="Request the extension").click()
    assert focal.get_by_text("Your request is recorded.").is_visible()
    assert focal.get_by_role("heading", name="Extension requested").is_visible()

    reviewer = browser.new_context(base_url=live_server).new_page()
    sign_in(reviewer, world.users["reviewer"])
    reviewer.get_by_role("link", name="Review queue").click()
    assert reviewer.get_by_text("The vendor needs a second test round.").is_visible()
    reviewer.get_by_role("button", name="Record the decision").first.click()  # "Approve" is preselected
    assert reviewer.get_by_text("Extension approved: the new deadline applies.").is_visible()
    assert reviewer.get_by_text("No extension request awaits a decision.").is_visible()

    focal.reload()
    assert focal.get_by_text("March 31, 2027").first.is_visible()
    assert focal.get_by_text("(agreed: November 24, 2026)").is_visible()
