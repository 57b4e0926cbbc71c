"""Browser tests: Debian's chromium driven by Playwright against the app served on loopback.

The server runs in a thread with the same database as the `app` fixture, so data made by the
test factories is what the browser sees. Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session; skipped without it unless CI requires it."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("TRACKER_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and TRACKER_REQUIRE_BROWSER is set")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


def _static_files_closed_early(app: Flask):
    """WSGI wrapper: a static file's body is read and its file closed before the server writes.

    Werkzeug's development server can drop a static file unclosed when chromium closes the
    connection mid-response (a favicon it no longer wants); the ResourceWarning then fails whichever
    test runs (warnings are errors). Deployed, nginx serves /static/ and this server is not used.
    """

    def wsgi(environ, start_response):
        body = app(environ, start_response)
        if not environ.get("PATH_INFO", "").startswith("/static/"):
            return body
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    return wsgi


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served on a free loopback port; yields its base URL."""
    server = make_server("127.0.0.1", 0, _static_files_closed_early(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context and page; its base URL is the live server."""
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
