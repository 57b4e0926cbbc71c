"""Each role signs in through the real sign-in page and starts where its work is; a focal point
narrows My work to what is overdue by following the count."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD
from tracker.extensions import db
from tracker.models import ActionItem, User


def _sign_in(page, email: str) -> None:
    """Open the site's address, which asks for a sign-in, and sign in."""
    page.goto("/")
    assert "/auth/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.parametrize(
    ("role", "path", "heading"),
    [
        ("focal_sg", "/my", "My work"),
        ("reviewer", "/verification", "Review queue"),
        ("manager_sg", "/dashboard", "Dashboard"),
        ("admin", "/admin", "Administration"),
    ],
)
def test_each_role_lands_on_its_page(page, world, role, path, heading):
    _sign_in(page, world.users[role])
    page.wait_for_url(f"**{path}")
    assert page.get_by_role("heading", name=heading, level=1).is_visible()
    # The Actions list stays one click away.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Actions", exact=True).click()
    page.wait_for_url("**/")
    screenshot(page, f"landing-{role}-actions")


def test_a_focal_point_follows_the_overdue_count(app, page, world):
    today = date.today()  # the live server runs in real time; SG is at most a day off UTC
    with app.app_context():
        focal = db.session.get(User, world.user_ids["focal_sg"])
        world_item = db.session.get(ActionItem, world.items["SG"])
        world_item.deadline = today + timedelta(days=60)
        for title, days in (("Late report", -5), ("Late survey", -3), ("Soon workshop", 6)):
            db.session.add(
                ActionItem(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["SG"],
                    title=title,
                    deadline=today + timedelta(days=days),
                    status="in_progress",
                    owner=focal,
                )
            )
        db.session.commit()
    _sign_in(page, world.users["focal_sg"])
    page.wait_for_url("**/my")
    counts = page.get_by_role("navigation", name="Filter my work")
    overdue = counts.get_by_role("link", name="2 Overdue")
    assert overdue.get_attribute("aria-current") is None
    screenshot(page, "my-work-counts")
    overdue.click()
    page.wait_for_url("**/my?show=overdue")
    titles = page.locator("main table.list tbody tr td[data-label=Action]").all_inner_texts()
    assert sorted(titles) == ["Late report", "Late survey"]
    assert page.get_by_text("2 overdue actions").is_visible()
    assert counts.get_by_role("link", name="2 Overdue").get_attribute("aria-current") == "true"
    screenshot(page, "my-work-overdue")
    page.get_by_role("link", name="Show all my open actions").click()
    page.wait_for_url("**/my")
    titles = page.locator("main table.list tbody tr td[data-label=Action]").all_inner_texts()
    assert sorted(titles) == ["E-filing for SG", "Late report", "Late survey", "Soon workshop"]
