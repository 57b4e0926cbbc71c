"""Accessibility in chromium: axe-core on every main page, the keyboard, a 375-px phone, 200 % zoom
and right-to-left layout.

The pages are one list, MAIN_PAGES: each line says who signs in, which URL, and what they do first
(send a form with an error, upload a file to reach the import preview). A page added there is
checked by every test below that goes through the list.

axe-core comes from npm (package.json, package-lock.json; `make test` runs `npm ci`). It is injected
into each page with Playwright and run with the WCAG 2.0 and 2.1 A and AA rules; a serious or
critical violation fails the test. The pages checked, with their violation counts by impact, are
printed and written to test-artifacts/accessibility.txt; screenshots land in test-artifacts/ too.

Keyboard: Tab goes round each page; every link, button and field must be reached (what is visible
and focusable but never reached fails), and each stop must be visible with a focus indicator that
differs from its unfocused look, at least 2 px wide and with 3:1 contrast against what surrounds it.

200 % zoom is emulated as the browser does it: a 1280 x 800 window zoomed to 200 % lays the page
out in a 640 x 400 CSS-pixel viewport with two device pixels per CSS pixel, and media queries see
640 px. That is the context used here (viewport 640 x 400, device_scale_factor 2).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask, render_template_string
from flask_babel import force_locale

from tests.browser.conftest import ARTIFACTS, screenshot
from tests.browser.test_indicators_browser import send_a_bad_value
from tests.conftest import PASSWORD, World, build_indicators
from tracker import files
from tracker.auth import twofactor
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    ExtensionRequest,
    Notification,
    Office,
    OfficeResponse,
    Recommendation,
    ResponseRequest,
    SchedulerLease,
    User,
    UserSession,
)

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CSS = ROOT / "tracker" / "static" / "css" / "tracker.css"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FAILING_IMPACTS = ("critical", "serious")
IMPACTS = ("critical", "serious", "moderate", "minor")
# Structure rules that axe files under "best practice", run beside the WCAG ones (reported by impact).
STRUCTURE_RULES = [
    "heading-order",
    "page-has-heading-one",
    "empty-heading",
    "landmark-one-main",
    "landmark-unique",
    "region",
    "empty-table-header",
]
# The HTML of a message in the outbox is shown in a sandboxed iframe (mail content, not a page).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": WCAG_TAGS},
    "rules": {rule: {"enabled": True} for rule in STRUCTURE_RULES},
    "iframes": False,
}

# Violations in pages this work may not change, reported to their owners: (page, rule) → where and why.
# They are printed, not failed on; remove an entry when its page is fixed.
KNOWN_ISSUES: dict[tuple[str, str], str] = {}

PHONE = {
    "viewport": {"width": 375, "height": 812},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
ZOOM_200 = {"viewport": {"width": 640, "height": 400}, "device_scale_factor": 2}


def _report_problem(problem: str) -> None:
    """Fail in CI (TRACKER_REQUIRE_BROWSER), skip elsewhere."""
    if os.environ.get("TRACKER_REQUIRE_BROWSER"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """The axe-core script installed by npm."""
    if not AXE_JS.is_file():
        _report_problem(f"{AXE_JS.relative_to(ROOT)} is missing: run `npm ci` (make test does it)")
    return AXE_JS


# --- The pages -------------------------------------------------------------------------------------


def _sign_in_wrongly(page, ids: dict[str, int]) -> None:
    page.get_by_label("Email").fill("nobody@example.test")
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Invalid email or password.").wait_for()


def _bad_audit_filters(page, ids: dict[str, int]) -> None:
    page.get_by_label("IP address").fill("not an address")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_text("Not an IP address").wait_for()


def _pending_second_factor(page, ids: dict[str, int]) -> None:
    """Give the password of the manager, who has a second factor: the code is asked for."""
    page.get_by_label("Email").fill("manager@example.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/auth/second-factor$"))


def _wrong_second_factor(page, ids: dict[str, int]) -> None:
    _pending_second_factor(page, ids)
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("This code is not right").wait_for()


def _pending_recovery_code(page, ids: dict[str, int]) -> None:
    _pending_second_factor(page, ids)
    page.get_by_role("link", name="Use a recovery code instead").click()
    page.wait_for_url(re.compile(r"use=recovery$"))


def _new_recovery_codes(page, ids: dict[str, int]) -> None:
    """Finish the enrolment with the code of the key the page shows: the recovery codes appear."""
    key = page.locator("code.totp-key").inner_text().replace(" ", "")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Turn on the second factor").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()


def _refused_update(page, ids: dict[str, int]) -> None:
    page.get_by_label("Progress (%)").fill("150")
    page.get_by_role("button", name="Save update").click()
    page.get_by_text("Give a number from 0 to 100.").wait_for()


IMPORT_HEADER = (
    "recommendation_code,recommendation_title,recommendation_text,theme,priority,source,office_code,"
    "action_id,action_title,description,owner_email,deputy_email,deadline,status,progress"
)


def _upload(page, rows: list[str]) -> None:
    """Upload a CSV file on the import page and wait for its preview."""
    page.get_by_label("File (CSV or XLSX)").set_input_files(
        files=[{"name": "plan.csv", "mimeType": "text/csv", "buffer": "\n".join(rows).encode()}]
    )
    page.get_by_role("button", name="Upload and preview").click()
    page.wait_for_url(re.compile(r"/import/[^/]+$"))


def _import_preview(page, ids: dict[str, int]) -> None:
    _upload(
        page,
        [
            IMPORT_HEADER,
            f"R-1,Go digital,Text,Digital,medium,Dialogue,SG,{ids['item']},E-filing for SG,,"
            "focal.sg@example.test,,2027-01-31,in_progress,40",
            "R-1,Go digital,Text,Digital,medium,Dialogue,MY,,Publish the fees online,,"
            "focal.my@example.test,,2027-03-31,not_started,0",
        ],
    )


def _import_preview_with_problems(page, ids: dict[str, int]) -> None:
    _upload(
        page,
        [
            IMPORT_HEADER,
            "R-9,New one,Text,Digital,urgent,Nowhere,XX,,Something,,nobody@example.test,,tomorrow,done,140",
        ],
    )


def _indicator_import_with_problems(page, ids: dict[str, int]) -> None:
    _upload(
        page,
        [
            "indicator,office,period,value,note,evidence_url",
            "ONLINE,SG,2026Q1,70,From the annual report,https://ipos.example/stats",
            "ONLINE,XX,2026Q7,140,,",
            "NOPE,MY,2026Q2,abc,,not a link",
        ],
    )


@dataclass(frozen=True)
class MainPage:
    """A page to check: who looks at it, where, and what they do first (a form sent with an error)."""

    name: str  # names the screenshots, e.g. test-artifacts/phone-dashboard.png
    role: str | None  # a label of World.users; None: signed out
    path: str  # formatted with the ids of the `pages_data` fixture
    prepare: Callable[..., None] | None = None  # called with the page and the ids


MAIN_PAGES = [
    MainPage("sign-in", None, "/auth/login"),
    MainPage("sign-in-refused", None, "/auth/login", _sign_in_wrongly),
    MainPage("second-factor", None, "/auth/login", _pending_second_factor),
    MainPage("second-factor-refused", None, "/auth/login", _wrong_second_factor),
    MainPage("second-factor-recovery", None, "/auth/login", _pending_recovery_code),
    MainPage("actions", "reviewer", "/"),
    MainPage("dashboard", "reviewer", "/dashboard"),
    MainPage("recommendations", "reviewer", "/recommendations"),
    MainPage("recommendation", "reviewer", "/recommendations/{recommendation}"),
    MainPage("recommendation-send", "reviewer", "/recommendations/{recommendation}/send"),
    MainPage("offices", "reviewer", "/offices"),
    MainPage("office", "reviewer", "/offices/SG"),
    MainPage("action", "focal_sg", "/actions/{item}"),
    MainPage("action-refused-update", "focal_sg", "/actions/{item}", _refused_update),
    MainPage("action-completed", "reviewer", "/actions/{completed}"),
    MainPage("action-form-new", "reviewer", "/offices/SG/actions/new"),
    MainPage("action-form-edit", "reviewer", "/actions/{item}/edit"),
    MainPage("my-actions", "focal_sg", "/my"),
    MainPage("my-actions-overdue", "focal_sg", "/my?show=overdue"),
    MainPage("verification", "reviewer", "/verification"),
    MainPage("verification-filtered", "reviewer", "/verification?office=SG&kind=proposals"),
    MainPage("verification-values", "reviewer", "/verification?kind=values"),
    MainPage("indicator-report", "focal_sg", "/indicators/report"),
    MainPage("indicator-report-errors", "focal_sg", "/indicators/report", send_a_bad_value),
    MainPage("measurement", "reviewer", "/indicators/measurements/{measurement}"),
    MainPage("verify-several", "reviewer", "/verification/verify?id={completed}"),
    MainPage("propose-action", "focal_sg", "/offices/SG/actions/propose"),
    MainPage("proposal-decision", "reviewer", "/actions/{proposal}/proposal"),
    MainPage("verify-confirmation", "reviewer", "/actions/{completed}/verify"),
    MainPage("action-extension-decision", "reviewer", "/actions/{overdue}"),
    MainPage("admin-home", "admin", "/admin"),
    MainPage("outbox", "admin", "/admin/outbox"),
    MainPage("outbox-message", "admin", "/admin/outbox/{failed_mail}"),
    MainPage("audit-log", "admin", "/admin/audit"),
    MainPage("audit-log-bad-filters", "admin", "/admin/audit", _bad_audit_filters),
    MainPage("preferences", "manager_sg", "/preferences"),
    MainPage("import", "admin", "/import"),
    MainPage("import-preview", "admin", "/import", _import_preview),
    MainPage("import-preview-problems", "admin", "/import", _import_preview_with_problems),
    MainPage("profile", "focal_sg", "/profile"),
    MainPage("profile-end-session", "focal_sg", "/profile/sessions/{other_session}/end"),
    MainPage("second-factor-enrol", "focal_sg", "/auth/second-factor/enrol"),
    MainPage("recovery-codes", "focal_my", "/auth/second-factor/enrol", _new_recovery_codes),
    MainPage("report-programme", "reviewer", "/reports/programme"),
    MainPage("report-office", "focal_sg", "/reports/offices/SG"),
    MainPage("indicators", "manager_sg", "/indicators/"),  # "manager" has a second factor here
    MainPage("indicator", "focal_sg", "/indicators/{indicator}"),
    MainPage("indicator-form-new", "reviewer", "/indicators/new"),
    MainPage("indicator-goals", "reviewer", "/indicators/{indicator}/goals"),
    MainPage("indicator-import", "reviewer", "/indicators/import"),
    MainPage("indicator-import-problems", "reviewer", "/indicators/import", _indicator_import_with_problems),
]


@pytest.fixture
def pages_data(app: Flask, world: World) -> dict[str, int]:
    """Beside the small world: a completion awaiting verification with a note, a link and a file;
    overdue, blocked and verified items; a response; mail in every state; a scheduler heartbeat."""
    today = date.today()
    now = datetime.now(UTC)
    with app.app_context():
        guide = files.write(io.BytesIO(b"%PDF-1.7\n% guide\n"))  # written first: it flushes
        sg, my = (db.session.get(Office, world.offices[code]) for code in ("SG", "MY"))
        focal_sg, focal_my, reviewer, manager_sg = (
            db.session.get(User, world.user_ids[label])
            for label in ("focal_sg", "focal_my", "reviewer", "manager_sg")
        )
        rec = db.session.get(Recommendation, world.recommendation_id)
        rec2 = Recommendation(
            source=rec.source,
            code="R-2",
            title="Publish service standards",
            text="Each office publishes how long its services take.",
            theme="Service",
            priority="high",
            target_date=today + timedelta(days=90),
        )
        completed = ActionItem(
            recommendation=rec,
            office=sg,
            title="Publish the e-filing guide",
            owner=focal_sg,
            deputy=manager_sg,
            deadline=today + timedelta(days=10),
            status="completed",
            progress=100,
        )
        report = ActionUpdate(
            author=focal_sg,
            old_status="in_progress",
            new_status="completed",
            old_progress=60,
            new_progress=100,
            note="Published on the website.",
            # long and unbroken, as real links are: it must wrap on a phone
            evidence_url="https://intranet.example.org/sites/IPODigital/SharedDocuments/2026/EFiling/"
            "LaunchReportFinalVersionApprovedByTheBoard.pdf",
        )
        report.files = [
            EvidenceFile(
                action_item=completed,
                filename="guide.pdf",
                stored_file_id=guide.id,
                content_type="application/pdf",
                size=17,
            )
        ]
        completed.updates = [ActionUpdate(author=reviewer, new_status="not_started", note="Agreed"), report]
        overdue = ActionItem(
            recommendation=rec2,
            office=sg,
            title="Train the examiners",
            owner=focal_sg,
            deadline=today - timedelta(days=40),
            status="in_progress",
            progress=30,
        )
        blocked = ActionItem(
            recommendation=rec2,
            office=my,
            title="Take payments online",
            owner=focal_my,
            deadline=today + timedelta(days=7),
            status="blocked",
            progress=10,
        )
        verified = ActionItem(
            recommendation=rec,
            office=my,
            title="Open the e-filing helpdesk",
            owner=focal_my,
            deadline=today - timedelta(days=20),
            status="verified",
            progress=100,
        )
        response = OfficeResponse(
            recommendation=rec,
            office=sg,
            response="accepted",
            comment="In the 2027 plan.",
            responded_by=focal_sg,
        )
        mails = [
            Notification(
                kind=kind,
                recipient=focal_sg,
                to_address=focal_sg.email,
                idempotency_key=f"{kind}:a11y:{state}",
                subject=subject,
                body_text="Hello,\n\nSee the action.\n",
                body_html="<p>Hello,</p><p>See the action.</p>",
                state=state,
                attempts=attempts,
                last_error=error,
                sent_at=now if state == "sent" else None,
            )
            for kind, state, attempts, error, subject in (
                ("overdue", "failed", 10, "550 5.1.1 mailbox unavailable", "1 action is overdue"),
                ("due_soon", "sent", 1, None, "1 action is due soon"),
                ("stale", "pending", 2, "421 try again later", "1 action has had no update"),
            )
        ]
        lease = SchedulerLease(
            name="scheduler",
            holder="host:1234:abcd",
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=45),
            next_runs=json.dumps({"compose": (now + timedelta(minutes=15)).isoformat()}),
        )
        # An extension request waiting for a decision: in the review queue and on its action's page.
        extension = ExtensionRequest(
            action_item=overdue,
            requested_by=focal_sg,
            current_deadline=overdue.deadline,
            requested_deadline=overdue.deadline + timedelta(days=90),
            reason="The trainers are only free next quarter.",
        )
        # An action the office proposed: in the review queue with its Accept and Decline buttons.
        proposal = ActionItem(
            recommendation=rec,
            office=sg,
            title="Translate the e-filing guide",
            description="Into the four official languages.",
            owner=focal_sg,
            deadline=today + timedelta(days=120),
            status="proposed",
        )
        proposal.updates = [ActionUpdate(author=focal_sg, new_status="proposed", event="proposed")]
        # focal_sg is signed in on a phone too: the profile lists it with its "End" link.
        phone = UserSession(
            user_id=focal_sg.id,
            secret_hash=secrets.token_hex(32),
            created_at=now - timedelta(days=2),
            last_seen_at=now - timedelta(hours=3),
            expires_at=now + timedelta(days=28),
            remember=True,
            method="password",
            address="203.0.113.7",
            user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        )
        db.session.add_all(
            [rec2, completed, overdue, blocked, verified, response, *mails, lease, extension, phone, proposal]
        )
        # R-1 was sent to MY, which has not responded: its focal point sees the request.
        db.session.add(ResponseRequest(recommendation=rec, office=my, requested_by=reviewer))
        # The programme manager has a second factor: the sign-in asks them for a code.
        manager = db.session.get(User, world.user_ids["manager"])
        key, enrolled_at = twofactor.new_secret(), now - timedelta(minutes=5)
        twofactor.enable(manager, key, pyotp.TOTP(key).at(enrolled_at), enrolled_at)
        db.session.commit()
        # Indicators: SG's 2026Q3 online share awaits validation, MY's examination time was sent back.
        found = build_indicators(world)
        return {
            "indicator": found.indicators["ONLINE"],
            "measurement": found.measurements["online_sg_q3"],
            "sent_back_measurement": found.measurements["exam_my_q3"],
            "item": world.items["SG"],
            "recommendation": world.recommendation_id,
            "completed": completed.id,
            "overdue": overdue.id,
            "proposal": proposal.id,
            "failed_mail": mails[0].id,
            "other_session": phone.id,
        }


@pytest.fixture
def visitor(browser, live_server, world: World) -> Iterator[Callable[..., object]]:
    """Factory: a page signed in as a role (one browser context per role and screen, reused)."""
    contexts: dict[tuple[str | None, str], object] = {}

    def page_for(role: str | None, **options) -> object:
        key = (role, json.dumps(options, sort_keys=True))
        if key not in contexts:
            # axe-core goes in as an inline script, which the site's Content-Security-Policy refuses;
            # tests/browser/test_security_browser.py checks the pages under the policy.
            context = browser.new_context(base_url=live_server, bypass_csp=True, **options)
            page = context.new_page()
            page.set_default_timeout(10_000)
            if role:
                page.goto("/auth/login")
                page.get_by_label("Email").fill(world.users[role])
                page.get_by_label("Password", exact=True).fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(lambda url: "/auth/" not in url)  # each role lands on its own page
            contexts[key] = page
        return contexts[key]

    yield page_for
    for page in contexts.values():
        page.context.close()


def _wait_for_autofocus(page) -> None:
    """Browsers move the focus to an autofocus field after the load event: wait for it."""
    page.wait_for_function(
        "!document.querySelector('[autofocus]')"
        " || document.activeElement === document.querySelector('[autofocus]')"
    )


def _open(visitor, main_page: MainPage, ids: dict[str, int], **options):
    """Open one main page as its role; fails on an HTTP error."""
    page = visitor(main_page.role, **options)
    response = page.goto(main_page.path.format(**ids))
    assert response is not None and response.ok, f"{main_page.name}: HTTP {response and response.status}"
    if main_page.prepare:
        main_page.prepare(page, ids)
    _wait_for_autofocus(page)
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")  # show all
    return page


# --- axe-core --------------------------------------------------------------------------------------


def _describe(violation: dict) -> list[str]:
    lines = [f"  [{violation['impact']}] {violation['id']}: {violation['help']} ({violation['helpUrl']})"]
    for node in violation["nodes"][:8]:
        lines.append(f"      {' '.join(map(str, node['target']))}")
    if len(violation["nodes"]) > 8:
        lines.append(f"      … and {len(violation['nodes']) - 8} more")
    return lines


def test_main_pages_have_no_serious_axe_violation(visitor, pages_data, axe_js, capsys):
    """axe-core, WCAG 2.0/2.1 A and AA, on every main page: no serious or critical violation."""
    rows, details, failing = [], [], []
    version = ""
    for main_page in MAIN_PAGES:
        page = _open(visitor, main_page, pages_data)
        page.add_script_tag(path=str(axe_js))
        result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
        version = result["testEngine"]["version"]
        violations, undecided = result["violations"], result["incomplete"]
        counts = {impact: sum(v["impact"] == impact for v in violations) for impact in IMPACTS}
        counts["review"] = len(undecided)
        path = re.sub(r"/[\w-]{20,}", "/<token>", urlsplit(page.url).path)
        rows.append((main_page, path, counts))
        if violations or undecided:
            details.append(f"{main_page.name} ({path}):")
        for rule in undecided:
            details.append(f"  needs review: {rule['id']}: {rule['help']} ({rule['helpUrl']})")
        for violation in violations:
            details.extend(_describe(violation))
            if (main_page.name, violation["id"]) in KNOWN_ISSUES:
                details.append(f"      known, reported: {KNOWN_ISSUES[main_page.name, violation['id']]}")
            elif violation["impact"] in FAILING_IMPACTS:
                failing.append(f"{main_page.name}:")
                failing.extend(_describe(violation))

    columns = [*IMPACTS, "review"]
    header = f"{'page':<24} {'signed in as':<13} {'path':<30} " + " ".join(f"{c:>8}" for c in columns)
    table = [header, "-" * len(header)]
    for main_page, path, counts in rows:
        role = main_page.role or "(nobody)"
        figures = " ".join(f"{counts[c]:>8}" for c in columns)
        table.append(f"{main_page.name:<24} {role:<13} {path:<30} {figures}")
    report = "\n".join(
        [
            f"axe-core {version}, rules tagged {', '.join(WCAG_TAGS)} and {', '.join(STRUCTURE_RULES)};",
            "serious and critical violations fail.",
            f"{len(rows)} pages checked; violations by impact, and results axe could not decide (review):",
            "",
            *table,
            "",
            *(["Details:", *details] if details else ["No violation, nothing to review."]),
            "",
        ]
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "accessibility.txt").write_text(report, encoding="utf-8")
    with capsys.disabled():
        print("\n" + report)
    assert not failing, "serious or critical accessibility violations:\n" + "\n".join(failing)


# --- Keyboard --------------------------------------------------------------------------------------

# The focused element: where it is, and what its focus indicator looks like against what is around it.
FOCUS_STATE_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const stops = (window.__tabStops ||= []);
  let index = stops.indexOf(el);
  if (index < 0) { stops.push(el); index = stops.length - 1; }
  const rgb = (text) => {
    const m = /rgba?\\(([\\d.]+),\\s*([\\d.]+),\\s*([\\d.]+)(?:,\\s*([\\d.]+))?\\)/.exec(text || '');
    return m ? {r: +m[1], g: +m[2], b: +m[3], a: m[4] === undefined ? 1 : +m[4]} : null;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const contrast = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  let behind = null;  // the background around the element: its nearest painted ancestor
  for (let n = el.parentElement; n && !behind; n = n.parentElement) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c && c.a > 0.5) behind = c;
  }
  behind = behind || {r: 255, g: 255, b: 255, a: 1};
  const cs = getComputedStyle(el);
  const outline = cs.outlineStyle !== 'none' ? parseFloat(cs.outlineWidth) : 0;
  const outlineColour = rgb(cs.outlineColor);
  const shadowColour = cs.boxShadow !== 'none' ? rgb(cs.boxShadow) : null;
  const shadowLengths = cs.boxShadow.replace(/rgba?\\([^)]*\\)/g, '').match(/-?[\\d.]+px/g) || [];
  const shadowWidth = cs.boxShadow !== 'none' ? Math.max(0, ...shadowLengths.map(parseFloat)) : 0;
  const r = el.getBoundingClientRect();
  const text = (el.getAttribute('aria-label') || el.innerText || el.value || el.name || el.id || '').trim();
  return {
    index,
    label: `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} “${text.slice(0, 40)}”`,
    inMain: !!document.querySelector('main')?.contains(el),
    // false when the focus is on a part the browser draws itself (a date field's calendar button)
    ownFocus: el.matches(':focus'),
    visible: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0
      && r.top < innerHeight && r.left < innerWidth && cs.visibility !== 'hidden' && +cs.opacity > 0,
    outline,
    outlineContrast: outline && outlineColour ? contrast(outlineColour, behind) : 0,
    shadow: cs.boxShadow,
    shadowWidth,
    shadowContrast: shadowColour && shadowColour.a > 0.5 ? contrast(shadowColour, behind) : 0,
  };
}
"""

# After tabbing: each stop's look without focus, and the visible focusable elements never reached.
UNFOCUSED_JS = """
() => {
  document.activeElement?.blur();
  const stops = window.__tabStops || [];
  const looks = stops.map((el) => {
    const cs = getComputedStyle(el);
    return {outline: cs.outlineStyle !== 'none' ? parseFloat(cs.outlineWidth) : 0, shadow: cs.boxShadow};
  });
  // (an iframe is no stop of its own: Tab goes to what is inside it, if anything)
  const focusable = 'a[href], button, input:not([type=hidden]), select, textarea, summary, '
    + '[tabindex]:not([tabindex="-1"])';
  const missed = [...document.querySelectorAll(focusable)].filter((el) => {
    if (stops.includes(el) || el.disabled || el.closest('[inert]')) return false;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || el.getClientRects().length === 0) return false;
    if (el.closest('details:not([open])') && el.tagName !== 'SUMMARY') return false;
    return true;
  }).map((el) => el.outerHTML.slice(0, 120));
  return {looks, missed};
}
"""


def _tab_through(page, max_steps: int = 150) -> list[dict]:
    """From the focused element, press Tab until focus comes back to it; each stop's state, in order."""
    first = page.evaluate(FOCUS_STATE_JS)
    states: list[dict] = [first] if first else []
    for _ in range(max_steps):
        page.keyboard.press("Tab")
        state = page.evaluate(FOCUS_STATE_JS)
        if state is None:  # focus left the document (browser chrome): the next Tab comes back
            continue
        if states and state["index"] == states[0]["index"] and state["ownFocus"]:
            return states
        if not state["ownFocus"]:  # the browser draws this part's focus ring: compare pictures
            handle = page.evaluate_handle("document.activeElement")
            state["picture"] = (handle, handle.screenshot())
        states.append(state)
    raise AssertionError(f"focus did not come back to the first stop within {max_steps} presses of Tab")


def _check_focus_indicators(page, states: list[dict]) -> list[str]:
    """Every stop is visible and has its own focus indicator of at least 2 px and 3:1 contrast."""
    result = page.evaluate(UNFOCUSED_JS)
    problems = [f"reachable by mouse but not by Tab: {html}" for html in result["missed"]]
    for state in states:
        if "picture" in state:
            handle, focused = state["picture"]
            if handle.screenshot() == focused:
                problems.append(f"{state['label']}: a part of it takes the focus and nothing shows it")
            continue
        unfocused = result["looks"][state["index"]]
        changed = state["outline"] != unfocused["outline"] or state["shadow"] != unfocused["shadow"]
        strong = (state["outline"] >= 2 and state["outlineContrast"] >= 3) or (
            state["shadowWidth"] >= 2 and state["shadowContrast"] >= 3
        )
        if not state["visible"]:
            problems.append(f"{state['label']}: focused but not visible")
        if not (changed and strong):
            problems.append(
                f"{state['label']}: no visible focus indicator (outline {state['outline']}px, "
                f"contrast {state['outlineContrast']:.1f}; box-shadow {state['shadow']!r}, "
                f"contrast {state['shadowContrast']:.1f})"
            )
    return problems


def test_sign_in_form_by_keyboard(visitor, pages_data):
    """The skip link comes first, then the form; every stop shows where the focus is."""
    page = visitor(None)
    page.goto("/auth/login")
    _wait_for_autofocus(page)
    assert page.evaluate("document.activeElement.id") == "email", "the email field has the focus"
    for _ in range(5):  # back to the top: the brand, then the skip link
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.matches('.skip-link')"):
            break
    else:
        raise AssertionError("Shift+Tab from the email field does not reach the skip link")
    states = _tab_through(page)
    labels = [s["label"] for s in states]
    assert labels[0].startswith("a “Skip to content”"), labels
    expected = ["input#email", "input#password", "input#remember", "button “Sign in”", "a “Forgotten"]
    positions = [next(i for i, label in enumerate(labels) if label.startswith(e)) for e in expected]
    assert positions == sorted(positions), f"the form's tab order is not the reading order: {labels}"
    problems = _check_focus_indicators(page, states)
    assert not problems, "\n".join(problems)

    # Signing in with the keyboard alone.
    page.goto("/auth/login")
    _wait_for_autofocus(page)
    page.keyboard.type("focal.sg@example.test")  # the email field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my$"))  # a focal point starts on My work
    assert page.get_by_role("button", name="Sign out").is_visible()


def test_action_update_form_by_keyboard(visitor, pages_data):
    """Skip link to the content, then every control of the update form, each with visible focus."""
    page = visitor("focal_sg")
    page.goto(f"/actions/{pages_data['item']}")
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUS_STATE_JS)
    assert first["label"].startswith("a “Skip to content”"), first
    assert first["visible"], "the skip link shows when it has the focus"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    page.keyboard.press("Tab")
    after_skip = page.evaluate(FOCUS_STATE_JS)
    assert after_skip["inMain"], f"after the skip link, Tab goes into the main content: {after_skip}"

    page.goto(f"/actions/{pages_data['item']}")
    page.keyboard.press("Tab")
    states = _tab_through(page)
    labels = [s["label"] for s in states]
    controls = ["select#status", "input#progress", "input#evidence_url", "textarea#note", "input#files"]
    # The office asks for a later deadline in its own form (reviewers set one in the update form).
    extension = ["input#new_deadline", "textarea#reason", "button “Request the extension”"]
    for control in [*controls, "button “Save update”", *extension]:
        assert any(label.startswith(control) for label in labels), f"{control} is not reachable: {labels}"
    problems = _check_focus_indicators(page, states)
    assert not problems, "\n".join(problems)

    # Saving with the keyboard alone.
    page.get_by_label("Status").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Control+a")
    page.keyboard.type("20")
    page.get_by_label("Note").focus()
    page.keyboard.type("Started with the keyboard.")
    page.get_by_role("button", name="Save update").focus()
    page.keyboard.press("Enter")
    page.get_by_text("Your update is saved.").wait_for()


def test_main_pages_by_keyboard(visitor, pages_data, capsys):
    """On every main page, Tab reaches every link, button and field (nothing only a mouse can use),
    and each shows a focus indicator; the matrix's cells are among them."""
    problems, counted = [], []
    for main_page in MAIN_PAGES:
        page = _open(visitor, main_page, pages_data)
        states = _tab_through(page)
        counted.append(f"{main_page.name} {len(states)}")
        problems.extend(f"{main_page.name}: {p}" for p in _check_focus_indicators(page, states))
        if main_page.name == "dashboard":
            links = page.evaluate("document.querySelectorAll('table.matrix td.cell a').length")
            assert links > 3 and sum("action" in s["label"] for s in states) >= links
    with capsys.disabled():
        print("\nTab stops per page: " + ", ".join(counted))
    assert not problems, "\n".join(problems)


def test_matrix_is_a_table_with_a_text_label_in_every_cell(visitor, pages_data):
    """Headers for every row and column; each cell says in words what its colour shows."""
    page = visitor("reviewer")
    page.goto("/dashboard")
    matrix = page.evaluate(
        """() => {
      const t = document.querySelector('table#matrix');
      return {
        caption: t.caption?.innerText.trim(),
        columns: [...t.tHead.rows[0].cells].map((c) => [c.tagName, c.scope, c.innerText.trim()]),
        rows: [...t.tBodies[0].rows].map((row) => ({
          header: [row.cells[0].tagName, row.cells[0].scope, row.cells[0].innerText.trim()],
          cells: [...row.cells].slice(1).map((c) => ({
            tag: c.tagName,
            text: c.textContent.replace(/\\s+/g, ' ').trim(),
            overdue: c.matches('.cell-overdue'),
            status: c.querySelector('.cell-status')?.innerText.trim() || null,
          })),
        })),
      };
    }"""
    )
    assert matrix["caption"]
    assert all(tag == "TH" and scope == "col" and text for tag, scope, text in matrix["columns"])
    statuses = {"Not started", "In progress", "Blocked", "Completed, awaiting verification", "Verified",
                "Cancelled"}  # fmt: skip
    for row in matrix["rows"]:
        tag, scope, text = row["header"]
        assert tag == "TH" and scope == "row" and text, row["header"]
        assert len(row["cells"]) == len(matrix["columns"]) - 1
        for cell in row["cells"]:
            assert cell["tag"] == "TD" and cell["text"], cell
            if cell["status"] is not None:
                assert cell["status"] in statuses, cell
                assert re.match(r"\d+ actions?\b", cell["text"]), cell
            else:
                assert cell["text"] == "– No actions", cell
            if cell["overdue"]:
                assert "overdue" in cell["text"], cell


# --- Small screens and zoom ------------------------------------------------------------------------

OVERFLOW_JS = """
() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((el) => {
    if (el.closest('.table-wrap') || el.matches('.skip-link, .visually-hidden')) return false;
    if (el.closest('.visually-hidden')) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > width + 1 || r.left < -1);
  }).slice(0, 5).map((el) => el.outerHTML.slice(0, 100));
  return {scrollWidth: document.documentElement.scrollWidth, width, wide};
}
"""


@pytest.mark.parametrize(
    ("screen", "options", "width"), [("phone", PHONE, 375), ("zoom200", ZOOM_200, 640)], ids=["375px", "200%"]
)
def test_main_pages_fit_the_width(visitor, pages_data, axe_js, capsys, screen, options, width):
    """On a 375-px phone and at 200 % zoom: no sideways scrolling of the page (tables scroll in
    their own .table-wrap box, which the keyboard can scroll too: axe again, at this width); a
    full-page screenshot of each page is kept."""
    problems, known = [], []
    for main_page in MAIN_PAGES:
        page = _open(visitor, main_page, pages_data, **options)
        result = page.evaluate(OVERFLOW_JS)
        screenshot(page, f"{screen}-{main_page.name}")
        if result["scrollWidth"] > width + 1 or result["wide"]:
            problems.append(
                f"{main_page.name}: the page is {result['scrollWidth']}px wide on a {width}px screen; "
                f"too wide: {result['wide']}"
            )
        page.add_script_tag(path=str(axe_js))
        axe = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
        for violation in axe["violations"]:
            if violation["impact"] not in FAILING_IMPACTS:
                continue
            if (main_page.name, violation["id"]) in KNOWN_ISSUES:
                known.append(
                    f"{main_page.name}: {violation['id']}: {KNOWN_ISSUES[main_page.name, violation['id']]}"
                )
            else:
                problems.append(f"{main_page.name}:")
                problems.extend(_describe(violation))
    if known:
        with capsys.disabled():
            print(f"\nKnown and reported, not failed on ({screen}):\n" + "\n".join(known))
    assert not problems, "\n".join(problems)


# --- Right to left ---------------------------------------------------------------------------------

# Where each element starts, measured from the inline-start edge of the body (left in LTR, right in
# RTL): a mirrored layout gives the same figures in both directions. "sel::text" measures the text.
BOXES_JS = """
(selectors) => {
  const rtl = getComputedStyle(document.documentElement).direction === 'rtl';
  const body = document.body.getBoundingClientRect();
  const out = {};
  for (const sel of selectors) {
    const [css, part] = sel.split('::');
    const el = document.querySelector(css);
    if (!el) { out[sel] = null; continue; }
    let r = el.getBoundingClientRect();
    if (part === 'text') {
      const range = document.createRange();
      range.selectNodeContents(el);
      r = range.getBoundingClientRect();
    }
    const start = rtl ? body.right - r.right : r.left - body.left;
    out[sel] = {start: Math.round(start), width: Math.round(r.width), top: Math.round(r.top + scrollY)};
  }
  return out;
}
"""

MIRRORED = {
    "action": [
        ".skip-link",
        ".site-header .brand",
        ".site-header nav li:first-child a",
        ".site-header nav li:last-child button",
        ".site-header .who",
        ".crumbs::text",
        "main h1::text",
        "main .badge",
        "dl.facts dt",
        "dl.facts dd",
        "label[for=status]::text",
        "#status",
        "label[for=progress]::text",
        "#progress",
        "#note",
        ".update-form button.primary",
        "ol.timeline li .meta::text",
        ".language-switcher label",
    ],
    "recommendations": [
        ".title-row h1::text",
        ".title-row a.button",
        ".filters .field label[for=q]::text",
        "#q",
        "#source",
        ".filters button",
        "table.list thead th:first-child::text",
        "table.list thead th:last-child::text",
        "table.list tbody td:first-child::text",
    ],
    "dashboard": [
        "#totals-heading",
        "ul.tiles li:first-child",
        "ul.tiles li:last-child",
        "table.matrix thead th:first-child",
        "table.matrix tbody th",
        "table.matrix td.cell",
    ],
}


@pytest.mark.parametrize("name", list(MIRRORED))
def test_layout_mirrors_right_to_left(visitor, pages_data, name):
    """With dir="rtl" (what a right-to-left locale renders), the page is the mirror image of LTR."""
    main_page = next(p for p in MAIN_PAGES if p.name == name)
    selectors = MIRRORED[name]
    page = _open(visitor, main_page, pages_data)
    ltr = page.evaluate(BOXES_JS, selectors)
    page.evaluate("document.documentElement.dir = 'rtl'")
    rtl = page.evaluate(BOXES_JS, selectors)
    screenshot(page, f"rtl-{name}")
    missing = [sel for sel, box in ltr.items() if box is None]
    assert not missing, f"not on the page: {missing}"
    wrong = [
        f"{sel}: LTR {ltr[sel]} / RTL {rtl[sel]}"
        for sel in selectors
        if any(abs(ltr[sel][k] - rtl[sel][k]) > 2 for k in ("start", "width", "top"))
    ]
    assert not wrong, "these do not mirror:\n" + "\n".join(wrong)
    width = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert width <= 1, "the right-to-left page scrolls sideways"
    # Charts are drawn left to right by the server: in RTL their text must still sit inside them.
    outside = page.evaluate(
        """() => [...document.querySelectorAll('svg.chart text')].filter((t) => {
          const box = t.closest('svg').getBoundingClientRect(), r = t.getBoundingClientRect();
          return r.left < box.left - 1 || r.right > box.right + 1;
        }).map((t) => t.textContent)"""
    )
    assert not outside, f"chart text outside its chart: {outside}"


def test_direction_comes_from_the_locale(app: Flask):
    """A right-to-left locale renders <html dir="rtl">, a left-to-right one dir="ltr"."""
    template = '{% extends "base.html" %}{% block title %}T{% endblock %}'
    with app.test_request_context("/"):
        for locale, direction in (("ar", "rtl"), ("he", "rtl"), ("en", "ltr"), ("fr", "ltr")):
            with force_locale(locale):
                html = render_template_string(template)
            assert f'<html lang="{locale}" dir="{direction}">' in html


PHYSICAL = re.compile(
    r"^(margin|padding|border|inset)-(left|right)\b|^(left|right)$|^(float|clear|text-align)$"
)


def test_stylesheet_uses_logical_properties():
    """No left/right in the stylesheet (margin-inline-start, text-align: start …) so RTL mirrors,
    except in rules written for one direction ([dir=…])."""
    css = re.sub(r"/\*.*?\*/", "", CSS.read_text(encoding="utf-8"), flags=re.S)
    problems = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        if "[dir=" in selector:
            continue
        for name, value in re.findall(r"([\w-]+)\s*:\s*([^;]+)", body):
            value = value.strip()
            if PHYSICAL.match(name) and not (name.startswith(("float", "clear", "text-align")) and
                                             value not in ("left", "right")):  # fmt: skip
                problems.append(f"{selector.strip()} {{ {name}: {value} }}")
            parts = value.split()
            if name in ("margin", "padding", "inset") and len(parts) == 4 and parts[1] != parts[3]:
                problems.append(f"{selector.strip()} {{ {name}: {value} }} (left and right differ)")
    assert not problems, "physical left/right in tracker.css:\n" + "\n".join(problems)
