"""Sign-in in a real browser: the focal point of SG sees SG only; the reviewer sees both offices."""

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD


def _sign_in(page, email: str, lands_on: str) -> None:
    """Open the site's address, sign in, and land on the role's own page."""
    page.goto("/")
    assert "/auth/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{lands_on}")


def test_focal_point_signs_in_and_sees_their_office_only(page, world):
    _sign_in(page, world.users["focal_sg"], "/my")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Actions").click()
    page.wait_for_url("**/")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1
    assert "E-filing for SG" in rows.first.inner_text()
    assert page.get_by_text("E-filing for MY").count() == 0
    page.get_by_role("link", name="E-filing for SG").click()
    assert page.get_by_role("heading", name="E-filing for SG").is_visible()
    screenshot(page, "action-page")
    page.goto(f"/actions/{world.items['MY']}")
    assert page.get_by_role("heading", name="Not found").is_visible()


def test_wrong_password_shows_one_message(page, world):
    page.goto("/auth/login")
    page.get_by_label("Email").fill(world.users["focal_sg"])
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("Invalid email or password.").is_visible()


def test_reviewer_sees_every_office_and_signs_out(page, world):
    _sign_in(page, world.users["reviewer"], "/verification")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Actions").click()
    page.wait_for_url("**/")
    text = page.locator("table.list").inner_text()
    assert "E-filing for SG" in text and "E-filing for MY" in text
    screenshot(page, "home-reviewer")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/auth/login")
    assert page.get_by_text("You are signed out.").is_visible()


def test_phone_width_stacks_the_list(browser, live_server, world):
    context = browser.new_context(base_url=live_server, viewport={"width": 375, "height": 800})
    page = context.new_page()
    _sign_in(page, world.users["reviewer"], "/verification")
    page.goto("/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"page is {width}px wide on a 375px screen"
    screenshot(page, "home-phone")
    context.close()
