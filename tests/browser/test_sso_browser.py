"""Single sign-on in chromium: the link on the sign-in page, the provider's form, and back — under
the site's Content-Security-Policy — with axe-core on the two pages single sign-on adds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.browser.test_accessibility import AXE_OPTIONS, FAILING_IMPACTS, axe_js  # noqa: F401
from tests.conftest import World
from tests.test_sso import LABEL, provider, provider_server, provider_user  # noqa: F401
from tracker import create_app
from tracker.extensions import db

pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")


@pytest.fixture
def sso_live(app: Flask, provider: str) -> Iterator[str]:  # noqa: F811
    """The app with single sign-on through ``provider``, served on loopback; yields its base URL."""
    sso_app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "TRACKER_SSO_ISSUER": provider,
            "TRACKER_SSO_CLIENT_ID": "tracker-browser",
            "TRACKER_SSO_CLIENT_SECRET": "client-secret",
            "TRACKER_SSO_LABEL": LABEL,
        }
    )
    server = make_server("127.0.0.1", 0, sso_app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    sso_app.config["TRACKER_BASE_URL"] = base  # the redirect URI the provider sends people back to
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with sso_app.app_context():
            db.engine.dispose()


def _no_serious_violation(page, axe_js) -> None:  # noqa: F811
    page.add_script_tag(path=str(axe_js))
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    serious = [v["id"] for v in result["violations"] if v["impact"] in FAILING_IMPACTS]
    assert serious == [], serious


def test_sign_on_round_trip_in_a_browser(browser, sso_live, provider, world: World, axe_js):  # noqa: F811
    sub = provider_user(provider, world.users["focal_sg"])
    context = browser.new_context(base_url=sso_live)
    page = context.new_page()
    page.set_default_timeout(10_000)
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security" in message.text else None,
    )
    try:
        page.goto(f"/actions/{world.items['SG']}")
        assert "/auth/login" in page.url
        page.get_by_role("link", name=f"Sign in with {LABEL}").click()
        page.wait_for_url(f"{provider}/oauth2/authorize*")
        page.locator('input[name="sub"]').fill(sub)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{sso_live}/actions/{world.items['SG']}")
        assert page.get_by_role("heading", name="E-filing for SG").is_visible()
        assert blocked == []
    finally:
        context.close()
    # axe is injected as an inline script, which the policy refuses: check in a context without it.
    relaxed = browser.new_context(base_url=sso_live, bypass_csp=True)
    try:
        page = relaxed.new_page()
        page.goto("/auth/login")
        _no_serious_violation(page, axe_js)
    finally:
        relaxed.close()


def test_refusal_page_in_a_browser(browser, sso_live, provider, axe_js):  # noqa: F811
    sub = provider_user(provider, "nobody@example.org")
    context = browser.new_context(base_url=sso_live, bypass_csp=True)  # for axe's inline script
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto("/auth/login")
        page.get_by_role("link", name=f"Sign in with {LABEL}").click()
        page.wait_for_url(f"{provider}/oauth2/authorize*")
        page.locator('input[name="sub"]').fill(sub)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{sso_live}/auth/sso/callback*")
        assert page.get_by_role("heading", name="You are not signed in").is_visible()
        assert page.get_by_text("No tracker account uses the address nobody@example.org").is_visible()
        _no_serious_violation(page, axe_js)
        page.get_by_role("link", name="Back to the sign-in page").click()
        page.wait_for_url(f"{sso_live}/auth/login")
    finally:
        context.close()
