"""The Content-Security-Policy in a real browser: every page works under it, and chromium refuses
nothing (no inline style or script anywhere); a page cannot be framed."""

from tests.browser.test_sign_in import _sign_in

#: Chromium reports each refusal in the console, and as a `securitypolicyviolation` event.
REPORT_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""


def test_the_pages_break_no_rule_of_the_policy(page, world):
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script(REPORT_VIOLATIONS)  # run by the browser itself: the policy does not apply
    page.goto("/auth/login")
    _sign_in(page, world.users["admin"], "/admin")
    urls = [
        "/",
        f"/actions/{world.items['SG']}",
        f"/actions/{world.items['SG']}/edit",
        "/my",
        "/verification",
        "/dashboard",
        "/reports/programme",
        "/reports/offices/SG",
        "/recommendations",
        f"/recommendations/{world.recommendation_id}",
        "/sources",
        "/offices",
        "/offices/SG",
        "/import",
        "/profile",
        "/preferences",
        "/admin/users",
        "/admin/offices",
        "/admin/outbox",
        "/no/such/page",
    ]
    for url in urls:
        page.goto(url)
        # The site's style sheet applies (its custom properties are defined on the root).
        assert page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--line')"), url
    assert refused == [], refused


def test_a_page_of_the_site_cannot_be_framed(page, world, live_server):
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text))
    page.set_content(f'<iframe src="{live_server}/auth/login" title="framed"></iframe>')
    page.wait_for_timeout(1500)
    assert any("frame-ancestors" in m or "X-Frame-Options" in m for m in refused), refused
    assert "Sign in" not in page.frames[-1].content()


def test_the_outbox_shows_a_message_with_its_own_styles_and_nothing_refused(page, world, app):
    """The mail's HTML is styled inline: its frame has a policy of its own (styles, nothing else)."""
    from tests.test_outbox_page import _add
    from tracker.models import NotificationKind

    body = (
        '<div id="m" style="color: rgb(200, 0, 0)">Styled</div><style>#m { font-size: 31px }</style>'
        '<script>document.title = "ran"</script><img src="https://x.test/p.png" alt="">'
    )
    notification_id = _add(app, world, "focal_sg", NotificationKind.DUE_SOON, html_body=body)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto("/auth/login")
    _sign_in(page, world.users["admin"], "/admin")
    page.goto(f"/admin/outbox/{notification_id}")
    frame = page.frame_locator("iframe.mail-html")
    assert frame.locator("#m").evaluate("e => getComputedStyle(e).color") == "rgb(200, 0, 0)"
    assert frame.locator("#m").evaluate("e => getComputedStyle(e).fontSize") == "31px"
    assert frame.locator("#m").evaluate("e => document.title") != "ran"  # no script in mail runs
    # Only what the mail itself tries (its script, its remote image) is refused; the page is clean.
    refusals = [m for m in messages if "Content Security Policy" in m or "sandboxed" in m]
    assert all("script" in m or "img-src" in m or "x.test" in m for m in refusals), refusals
