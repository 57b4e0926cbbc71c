"""The main menu on a phone: folded behind a "Menu" button that the mouse and the keyboard open,
Escape closes; on a wide screen, and without script, it is simply shown.

The pages are served with their real Content-Security-Policy (script-src 'self'): the menu's script
is a static file, so it runs.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import PHONE
from tests.conftest import PASSWORD, World

WINDOW = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def signed_in(browser, live_server, world: World):
    """Factory: a page of a new context with these options, signed in as the focal point of SG."""
    contexts = []

    def make(**options):
        context = browser.new_context(base_url=live_server, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto("/auth/login")
        page.get_by_label("Email").fill(world.users["focal_sg"])
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.goto("/profile")
        return page

    yield make
    for context in contexts:
        context.close()


def _menu(page):
    return page.get_by_role("navigation", name="Main")


def test_phone_menu_is_closed_and_opens_with_a_click(signed_in):
    page = signed_in(**PHONE)
    button = page.get_by_role("button", name="Menu")
    assert button.is_visible()
    assert button.get_attribute("aria-expanded") == "false"
    assert button.get_attribute("aria-controls") == "main-menu"
    assert not _menu(page).is_visible()
    # The header is one line: the brand and the button (then who is signed in).
    assert page.locator(".site-header").bounding_box()["height"] < 120
    screenshot(page, "phone-menu-closed")

    button.click()
    assert button.get_attribute("aria-expanded") == "true"
    assert _menu(page).is_visible()
    screenshot(page, "phone-menu-open")
    link = page.get_by_role("link", name="My work")
    assert link.is_visible()
    link.click()
    page.wait_for_url("**/my**")
    # A new page starts with the menu closed again.
    assert page.get_by_role("button", name="Menu").get_attribute("aria-expanded") == "false"
    assert not _menu(page).is_visible()

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("button", name="Menu").click()
    assert not _menu(page).is_visible(), "a second click closes the menu"
    # No sideways scroll with the menu open either.
    page.get_by_role("button", name="Menu").click()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("key", ["Enter", " "], ids=["Enter", "Space"])
def test_phone_menu_by_keyboard_and_escape(signed_in, key):
    page = signed_in(**PHONE)
    button = page.get_by_role("button", name="Menu")
    button.focus()
    page.keyboard.press(key)
    assert button.get_attribute("aria-expanded") == "true"
    assert _menu(page).is_visible()
    # Tab goes from the button into the menu.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('nav')?.id") == "main-menu"
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    assert button.get_attribute("aria-expanded") == "false"
    assert not _menu(page).is_visible()
    assert page.evaluate("document.activeElement.matches('.menu-toggle')"), "focus is back on the button"
    # Again: the button toggles both ways, and Escape on the button itself closes too.
    page.keyboard.press(key)
    assert _menu(page).is_visible()
    page.keyboard.press("Escape")
    assert not _menu(page).is_visible()
    page.keyboard.press(key)
    page.keyboard.press(key)
    assert not _menu(page).is_visible()


def test_wide_screen_shows_the_menu_without_a_button(signed_in):
    page = signed_in(**WINDOW)
    assert not page.get_by_role("button", name="Menu").is_visible()
    assert _menu(page).is_visible()
    assert page.get_by_role("link", name="My work").is_visible()
    # The menu fits one or two lines beside the brand, as before.
    assert page.locator(".site-header").bounding_box()["height"] < 120


def test_without_script_the_phone_menu_is_shown(signed_in):
    page = signed_in(java_script_enabled=False, **PHONE)
    assert not page.get_by_role("button", name="Menu").is_visible()
    assert _menu(page).is_visible()
    assert page.get_by_role("link", name="My work").is_visible()
