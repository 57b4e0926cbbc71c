"""Every main page is valid HTML, as the Nu HTML Checker (vnu, the W3C validator) reads it.

The pages are those of tests/browser/test_accessibility.py (MAIN_PAGES, with its `pages_data`),
reached here with the Flask test client signed in as each role; a page whose first step is a form
sent in the browser has its twin in CLIENT_STEPS. EXTRA_PAGES adds what that list leaves out: the
admin pages, the jobs, the forms of recommendations and sources, the links sent by mail, a review
queue of several items (its forms repeat on one page), an error page.

vnu.jar comes from npm (package.json, `make test` runs `npm ci`) and runs on Java, once for all the
pages: the JVM is slow to start. Any "error" fails the test; warnings are printed. The HTML does not
depend on the database: the test runs on SQLite only. Without Java or the jar it is skipped, unless
TRACKER_REQUIRE_BROWSER is set (CI), where it fails.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.browser import test_accessibility as a11y
from tests.conftest import World, csrf_token, login
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    BackgroundJob,
    ExtensionRequest,
    JobState,
    Recommendation,
    User,
)
from tracker.notifications import tokens
from tracker.notifications.account import password_token

ROOT = Path(__file__).resolve().parents[1]
VNU_JAR = ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"

IMPORT_HEADER, MAIN_PAGES = a11y.IMPORT_HEADER, a11y.MAIN_PAGES
pages_data = a11y.pages_data  # the fixture: the same data as the browser test

# The markup does not depend on the database: check it once, on SQLite.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# --- Forms, as a browser would send them -----------------------------------------------------------


class _Forms(HTMLParser):
    """The forms of a page: action, method and the values their fields would send as they are."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
        elif not self.forms or ("name" not in a and tag != "option"):
            return
        elif tag == "input" and a.get("type") not in {"submit", "file", "checkbox", "radio"}:
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("type") in {"checkbox", "radio"} and "checked" in a:
            self.forms[-1]["fields"][a["name"]] = a.get("value", "on")
        elif tag == "select":
            self._select = a["name"]
            self.forms[-1]["fields"].setdefault(a["name"], None)
        elif tag == "option" and self._select:
            fields = self.forms[-1]["fields"]
            if fields[self._select] is None or "selected" in a:
                fields[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.forms[-1]["fields"][a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.forms[-1]["fields"][self._textarea] += data


def submit(client: FlaskClient, page, field: str, **values: object):
    """Send the form of ``page`` (a response) that has ``field``, with ``values`` changed; follows
    redirects."""
    parser = _Forms()
    parser.feed(page.text)
    form = next(f for f in parser.forms if field in f["fields"])
    data = {k: v for k, v in form["fields"].items() if v is not None} | values
    return client.post(urljoin(page.request.url, form["action"]), data=data, follow_redirects=True)


# --- The first steps of the browser test's pages, with the test client --------------------------


def _sign_in_wrongly(c: FlaskClient, ids: dict):
    return login(c, "nobody@example.test", "wrong-password")


def _pending_second_factor(c: FlaskClient, ids: dict):
    login(c, "manager@example.test")
    return c.get("/auth/second-factor")


def _wrong_second_factor(c: FlaskClient, ids: dict):
    return submit(c, _pending_second_factor(c, ids), "code", code="000000")


def _pending_recovery_code(c: FlaskClient, ids: dict):
    _pending_second_factor(c, ids)
    return c.get("/auth/second-factor?use=recovery")


def _refused_update(c: FlaskClient, ids: dict):
    return submit(c, c.get(f"/actions/{ids['item']}"), "progress", progress="150")


def _bad_audit_filters(c: FlaskClient, ids: dict):
    return c.get("/admin/audit?address=not+an+address")


def _upload(c: FlaskClient, rows: list[str]):
    page = c.get("/import")
    data = {"csrf_token": csrf_token(page.text), "file": (io.BytesIO("\n".join(rows).encode()), "plan.csv")}
    return c.post("/import", data=data, content_type="multipart/form-data", follow_redirects=True)


def _import_preview(c: FlaskClient, ids: dict):
    return _upload(
        c,
        [
            IMPORT_HEADER,
            f"R-1,Go digital,Text,Digital,medium,Dialogue,SG,{ids['item']},E-filing for SG,,"
            "focal.sg@example.test,,2027-01-31,in_progress,40",
            "R-1,Go digital,Text,Digital,medium,Dialogue,MY,,Publish the fees online,,"
            "focal.my@example.test,,2027-03-31,not_started,0",
        ],
    )


def _import_preview_with_problems(c: FlaskClient, ids: dict):
    return _upload(
        c,
        [
            IMPORT_HEADER,
            "R-9,New one,Text,Digital,urgent,Nowhere,XX,,Something,,nobody@example.test,,tomorrow,done,140",
        ],
    )


def _indicator_import_with_problems(c: FlaskClient, ids: dict):
    rows = [
        "indicator,office,period,value",
        "ONLINE,SG,2026Q1,70",
        "ONLINE,XX,2026Q7,140",
        "NOPE,MY,2026Q2,abc",
    ]
    page = c.get("/indicators/import")
    data = {"csrf_token": csrf_token(page.text), "file": (io.BytesIO("\n".join(rows).encode()), "values.csv")}
    return c.post("/indicators/import", data=data, content_type="multipart/form-data", follow_redirects=True)


def _indicator_report_errors(c: FlaskClient, ids: dict):
    page = c.get("/indicators/report")
    data = {"csrf_token": csrf_token(page.text), f"value-{ids['indicator']}": "150"}
    return c.post("/indicators/report", data=data)


def _new_recovery_codes(c: FlaskClient, ids: dict):
    page = c.get("/auth/second-factor/enrol")
    key = re.search(r'<code class="totp-key"[^>]*>([^<]+)</code>', page.text).group(1).replace(" ", "")
    return submit(c, page, "code", code=pyotp.TOTP(key).now())


#: MAIN_PAGES name → the same first step with the test client; returns the page to check.
CLIENT_STEPS: dict[str, Callable[[FlaskClient, dict], object]] = {
    "sign-in-refused": _sign_in_wrongly,
    "second-factor": _pending_second_factor,
    "second-factor-refused": _wrong_second_factor,
    "second-factor-recovery": _pending_recovery_code,
    "action-refused-update": _refused_update,
    "audit-log-bad-filters": _bad_audit_filters,
    "import-preview": _import_preview,
    "import-preview-problems": _import_preview_with_problems,
    "recovery-codes": _new_recovery_codes,
    "indicator-import-problems": _indicator_import_with_problems,
    "indicator-report-errors": _indicator_report_errors,
}


@dataclass(frozen=True)
class Page:
    """A page to validate: who asks, where (formatted with the ids), an optional first step."""

    name: str
    role: str | None
    path: str
    step: Callable[[FlaskClient, dict], object] | None = None
    status: int = 200


EXTRA_PAGES = [
    Page("forgot-password", None, "/auth/forgot"),
    Page("welcome", None, "/account/welcome/{invite_token}"),
    Page("reset-password", None, "/account/reset/{reset_token}"),
    Page("unsubscribe", None, "/unsubscribe/{unsubscribe_token}"),
    Page("not-found", "focal_sg", "/actions/2147483647", status=404),
    Page("actions-focal", "focal_sg", "/"),
    Page("action-completed-focal", "focal_sg", "/actions/{completed}"),
    Page("my-work-reviewer", "reviewer", "/my"),
    Page("my-work-awaiting", "focal_sg", "/my?show=awaiting"),
    Page("my-work-empty-filter", "focal_my", "/my?show=sent_back"),
    Page("verification-several", "reviewer", "/verification"),
    Page("verification-proposals", "reviewer", "/verification?kind=proposals&office=SG"),
    Page("verification-no-match", "reviewer", "/verification?office=MY&kind=proposals"),
    Page("verify-several", "reviewer", "/verification/verify?id={completed_0}&id={in_progress_1}"),
    Page("propose-action", "focal_sg", "/offices/SG/actions/propose"),
    Page("proposal-decision", "reviewer", "/actions/{proposal}/proposal"),
    Page("proposal-focal", "focal_sg", "/actions/{proposal}"),
    Page("dashboard-manager", "manager_sg", "/dashboard"),
    Page("office-focal", "focal_sg", "/offices/SG"),
    Page("reassign", "admin", "/offices/SG/reassign"),
    Page("recommendation-new", "reviewer", "/recommendations/new"),
    Page("recommendation-edit", "reviewer", "/recommendations/{recommendation}/edit"),
    Page("recommendation-archive", "reviewer", "/recommendations/{recommendation}/archive"),
    Page("recommendation-requested-focal", "focal_my", "/recommendations/{recommendation}"),
    Page("office-requests-focal", "focal_my", "/offices/MY"),
    Page("sources", "reviewer", "/sources"),
    Page("source-new", "reviewer", "/sources/new"),
    Page("password", "focal_sg", "/auth/password"),
    Page("users", "admin", "/admin/users"),
    Page("user-new", "admin", "/admin/users/new"),
    Page("user-edit", "admin", "/admin/users/{focal_sg}/edit"),
    Page("user-absences", "admin", "/admin/users/{focal_sg}/absences"),
    Page("user-deactivate", "admin", "/admin/users/{focal_sg}/deactivate"),
    Page("admin-offices", "admin", "/admin/offices"),
    Page("office-new", "admin", "/admin/offices/new"),
    Page("office-edit", "admin", "/admin/offices/{sg}/edit"),
    Page("outbox-resend", "admin", "/admin/outbox/resend?resend=1&kind=overdue"),
    Page("jobs", "reviewer", "/jobs"),
    Page("job-running", "reviewer", "/jobs/{running_job}"),
    Page("job-done", "reviewer", "/jobs/{done_job}"),
    Page("job-failed", "reviewer", "/jobs/{failed_job}"),
    Page("job-cancel", "reviewer", "/jobs/{running_job}/cancel"),
]


def all_pages() -> list[Page]:
    """The browser test's main pages (with their client steps), then the extra ones."""
    pages = [
        Page(p.name, p.role, p.path, CLIENT_STEPS.get(p.name) if p.prepare else None) for p in MAIN_PAGES
    ]
    return pages + EXTRA_PAGES


@pytest.fixture
def more_data(app: Flask, world: World, pages_data: dict[str, int]) -> dict[str, object]:
    """Beside the browser test's data: a review queue of several completions and extension requests,
    background jobs in three states, and the signed links that mail carries."""
    today, now = date.today(), datetime.now(UTC)
    with app.app_context():
        rec = db.session.get(Recommendation, world.recommendation_id)
        focal_sg, reviewer = (db.session.get(User, world.user_ids[k]) for k in ("focal_sg", "reviewer"))
        items = []
        for n in range(6):
            item = ActionItem(
                recommendation=rec,
                office=focal_sg.office,
                title=f"Completed step {n}",
                owner=focal_sg,
                deadline=today + timedelta(days=n),
                status="completed" if n % 2 == 0 else "in_progress",
                progress=100 if n % 2 == 0 else 50,
            )
            item.updates = [ActionUpdate(author=focal_sg, new_status=item.status, note="Done")]
            if n % 2:
                item.extensions = [
                    ExtensionRequest(
                        requested_by=focal_sg,
                        current_deadline=item.deadline,
                        requested_deadline=item.deadline + timedelta(days=30),
                        reason="Waiting for the budget.",
                    )
                ]
            items.append(item)
        proposal = ActionItem(
            recommendation=rec,
            office=focal_sg.office,
            title="Proposed by the office",
            description="Two sessions.",
            owner=focal_sg,
            deadline=today + timedelta(days=90),
            status="proposed",
        )
        proposal.updates = [ActionUpdate(author=focal_sg, new_status="proposed", event="proposed")]
        items.append(proposal)
        jobs = {
            state: BackgroundJob(
                kind="export_csv",
                user_id=reviewer.id,
                state=state.value,
                params="{}",
                total=120,
                done=120 if state == JobState.DONE else 40,
                message="The export failed." if state == JobState.FAILED else None,
                created_at=now - timedelta(minutes=5),
                started_at=now - timedelta(minutes=4),
                finished_at=None if state == JobState.RUNNING else now,
            )
            for state in (JobState.RUNNING, JobState.DONE, JobState.FAILED)
        }
        db.session.add_all([*items, *jobs.values()])
        db.session.commit()
        return pages_data | {
            "sg": world.offices["SG"],
            "focal_sg": world.user_ids["focal_sg"],
            "running_job": jobs[JobState.RUNNING].id,
            "completed_0": items[0].id,
            "completed_2": items[2].id,
            "in_progress_1": items[1].id,
            "proposal": proposal.id,
            "done_job": jobs[JobState.DONE].id,
            "failed_job": jobs[JobState.FAILED].id,
            "invite_token": password_token(db.session.get(User, world.user_ids["focal_my"]), "invite"),
            "reset_token": password_token(focal_sg, "reset"),
            "unsubscribe_token": tokens.make("unsubscribe", {"u": focal_sg.id, "k": "due_soon"}),
        }


# --- The checker -----------------------------------------------------------------------------------


def _vnu_command() -> list[str]:
    """java -jar vnu.jar, or a skip (a failure in CI) naming what is missing."""
    java = shutil.which("java")
    problem = None
    if not java:
        problem = "java is missing (apt-get install default-jre-headless)"
    elif not VNU_JAR.is_file():
        problem = f"{VNU_JAR.relative_to(ROOT)} is missing: run `npm ci` (make test does it)"
    if problem:
        if os.environ.get("TRACKER_REQUIRE_BROWSER"):
            pytest.fail(problem)
        pytest.skip(problem)
    return [java, "-Xss2m", "-jar", str(VNU_JAR), "--format", "json", "--exit-zero-always", "--stdout"]


def run_vnu(files: list[Path]) -> list[dict]:
    """The checker's messages for these files, in one run of the JVM."""
    done = subprocess.run(
        [*_vnu_command(), *map(str, files)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"vnu did not run: {done.stderr or done.stdout}"
    return json.loads(done.stdout)["messages"]


def test_every_main_page_is_valid_html(app, world, login_as, more_data, tmp_path, capsys):
    """vnu finds no error in any main page (warnings are printed)."""
    clients: dict[str, FlaskClient] = {}
    files: dict[Path, str] = {}
    missing_steps = []
    for page in all_pages():
        if page.role is None:
            client = app.test_client()  # the sign-in steps change the session: a new one each time
        elif page.role not in clients:
            client = clients[page.role] = login_as(world.users[page.role])
        else:
            client = clients[page.role]
        source = next((p for p in MAIN_PAGES if p.name == page.name), None)
        if source and source.prepare and page.step is None:
            missing_steps.append(page.name)
        response = page.step(client, more_data) if page.step else client.get(page.path.format(**more_data))
        expected = (page.status,) if not page.step else (200, 400, 422)  # a form refused
        assert response.status_code in expected, f"{page.name}: HTTP {response.status_code}"
        assert response.mimetype == "text/html", f"{page.name}: {response.mimetype}"
        path = tmp_path / f"{page.name}.html"
        path.write_text(response.text, encoding="utf-8")
        files[path] = page.name

    messages = run_vnu(list(files))
    by_page: dict[str, list[str]] = {}
    errors = warnings = 0
    for m in messages:
        name = files.get(Path(m.get("url", "").removeprefix("file:")), m.get("url", "?"))
        kind = "warning" if m["type"] == "info" else m["type"]
        errors += kind != "warning"
        warnings += kind == "warning"
        line = f"  [{kind}] line {m.get('lastLine', '?')}: {m['message']}"
        if m.get("extract"):
            line += f"\n      {m['extract'].strip()[:160]!r}"
        by_page.setdefault(name, []).append(line)
    report = [f"Nu HTML Checker on {len(files)} pages: {errors} errors, {warnings} warnings."]
    for name, lines in by_page.items():
        report += [f"{name}:", *lines]
    if missing_steps:
        report.append(f"Checked before their first step (no client twin in CLIENT_STEPS): {missing_steps}")
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert not errors, "\n".join(report)


def test_the_icon_is_found_where_browsers_look(client):
    """Pages link the SVG icon; /favicon.ico, asked for by browsers anyway, leads to it (no 404)."""
    page = client.get("/auth/login")
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text).group(1)
    assert re.search(r'<meta name="description" content="[^"]{20,}">', page.text)
    legacy = client.get("/favicon.ico")
    assert legacy.status_code == 301 and legacy.location == icon
    with client.get(icon) as svg:  # a static file: its response holds the file open until closed
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        assert svg.data.startswith(b"<svg ")
