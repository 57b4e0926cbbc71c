"""The second factor in a real browser: enrol from the profile (QR code, key, recovery codes), sign
out, and sign in again with the password and the authenticator's code; the page obeys the CSP."""

import re
import time

import pyotp

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD


def test_enrol_from_the_profile_then_sign_in_with_the_code(page, world):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)

    page.goto("/auth/login")
    page.get_by_label("Email").fill(world.users["focal_sg"])
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/my")  # a focal point starts on My work

    page.goto("/profile")
    section = page.locator("section", has=page.get_by_role("heading", name="Two-factor authentication"))
    assert "Your second factor is off." in section.inner_text()
    section.get_by_role("link", name="Set up a second factor").click()
    page.wait_for_url("**/auth/second-factor/enrol")
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    box = qr.bounding_box()
    assert box and box["width"] >= 150 and abs(box["width"] - box["height"]) < 1, box
    screenshot(page, "second-factor-enrol")
    secret = page.locator("code.totp-key").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)

    page.get_by_label("Code from your authenticator app").fill(
        "000000" if totp.now() != "000000" else "111111"
    )
    page.get_by_role("button", name="Turn on the second factor").click()
    assert page.get_by_text("This code is not right").is_visible()
    page.get_by_label("Code from your authenticator app").fill(totp.now())
    page.get_by_role("button", name="Turn on the second factor").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    codes = page.locator("ol.recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2}", c) for c in codes)
    screenshot(page, "second-factor-recovery-codes")
    page.get_by_role("link", name="I have saved these codes").click()
    page.wait_for_url(re.compile(r"/profile"))
    assert "You have 10 unused recovery codes." in page.locator("#second-factor-heading + p + p").inner_text()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/auth/login")
    page.get_by_label("Email").fill(world.users["focal_sg"])
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/auth/second-factor")
    code_field = page.get_by_label("Code from your authenticator app")
    assert code_field.evaluate("el => el === document.activeElement")  # ready to type
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    screenshot(page, "second-factor-sign-in")
    # The code used to enrol is spent; the next step's (a phone clock a little ahead) is accepted.
    code_field.fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/my")
    assert page.get_by_role("button", name="Sign out").is_visible()
    assert not problems, problems
