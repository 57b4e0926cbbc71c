"""Security through HTTP (issue 11): the headers on every answer of every route, ids and page numbers
past the database's range, evidence links, spreadsheet cells, the API's permission before it looks
anyone up, and the Server header of the real servers (`flask run`, gunicorn)."""

from __future__ import annotations

import csv
import http.client
import io
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from tests.conftest import csrf_token
from tests.test_permissions import _add_evidence, _add_extension, _url_for_rule
from tracker import create_app
from tracker.actions import evidence
from tracker.api.auth import create_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Recommendation, User
from tracker.security import BoundedIntConverter

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"

#: Written out from the issue, independently of tracker/security.py.
EXPECTED = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
HUGE = "99999999999999999999"
JUST_PAST = str(2**31)


#: The one answer with a policy of its own: a message's HTML, in the outbox page's sandboxed frame.
MAIL_HTML = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
}


def _check(response, what, *, no_store: bool) -> None:
    expected = dict(EXPECTED)
    if response.status_code == 200 and response.request.path.endswith("/body.html"):
        expected.update(MAIL_HTML)
    for name, value in expected.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))
    assert response.headers.getlist("Server") == ["tracker"], what
    assert "Strict-Transport-Security" not in response.headers, what  # not in production
    cache = response.headers.get("Cache-Control", "")
    if no_store:
        assert "no-store" in cache, (what, response.status_code, cache)


def _token(app, world, label: str) -> str:
    with app.app_context():
        _row, secret = create_token(db.session.get(User, world.user_ids[label]), "t", _now())
        db.session.commit()
    return secret


def _now() -> datetime:
    return datetime.now(UTC)


def _rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]


# --- 1. the headers, on every route ------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "reviewer", "focal_sg", "admin"])
def test_every_route_answers_with_the_security_headers(app, world, login_as, who):
    """Every rule, every method, as nobody or as a signed-in user: pages, redirects, 400/403/404/405.

    POSTs carry no CSRF token, so nothing changes while the walk goes on (they are 400 pages).
    """
    _add_evidence(app, world)
    _add_extension(app, world)
    client = app.test_client() if who == "anonymous" else login_as(world.users[who])
    statuses = set()
    for rule in _rules(app):
        url = _url_for_rule(rule, world)
        for method in sorted(rule.methods - {"OPTIONS"}):
            response = client.open(url, method=method)
            statuses.add(response.status_code)
            # Only the public API document chooses to be cached: the API reads no cookie, so it is
            # the same document for everyone, signed in on the site or not.
            public = url == "/api/v1/openapi.json" and method in ("GET", "HEAD")
            _check(response, (who, method, url), no_store=not public)
            response.close()  # a file download is streamed
    # The walk met real pages, redirects and errors, not one kind of answer.
    if who == "anonymous":
        assert {302, 404}.issubset(statuses), statuses
    else:
        assert {200, 400, 404}.issubset(statuses), statuses


def test_error_pages_and_redirects_carry_them_too(app, world, client, login_as, database_url):
    _check(client.get("/no/such/page"), "404", no_store=True)
    assert client.get("/no/such/page").status_code == 404
    response = client.delete("/auth/login")
    assert response.status_code == 405
    _check(response, "405", no_store=True)
    response = client.get("/")
    assert response.status_code == 302
    _check(response, "redirect to sign in", no_store=True)

    broken = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "PROPAGATE_EXCEPTIONS": False})

    @broken.route("/boom")
    def boom():
        raise RuntimeError("something broke")

    response = broken.test_client().get("/boom")
    assert response.status_code == 500
    _check(response, "500", no_store=True)


def test_static_files_keep_caching_and_signed_in_pages_do_not(app, world, login_as):
    reviewer = login_as(world.users["reviewer"])
    for client in (app.test_client(), reviewer):
        css = client.get("/static/css/tracker.css")
        assert css.status_code == 200
        _check(css, "static", no_store=False)
        assert "no-store" not in css.headers.get("Cache-Control", "")
        css.close()
    page = reviewer.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    # A view's own stricter choice stays.
    assert reviewer.get("/export/actions.csv").headers["Cache-Control"] == "private, no-store"
    # The sign-in page, to nobody in particular, is not kept either.
    assert app.test_client().get("/auth/login").headers["Cache-Control"] == "no-store"


def test_api_answers_with_a_token_are_not_stored(app, world):
    _add_evidence(app, world)
    _add_extension(app, world)
    secret = _token(app, world, "reviewer")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    for rule in _rules(app):
        if not rule.rule.startswith("/api/"):
            continue
        url = _url_for_rule(rule, world)
        for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
            response = client.open(url, method=method, headers=headers)  # no body: nothing is written
            assert response.status_code < 500, (method, url)
            _check(response, (method, url), no_store=True)
    # Without a token, the public document keeps its caching.
    assert client.get("/api/v1/openapi.json").headers["Cache-Control"] == "public, max-age=300"


def test_hsts_in_production_over_https_only(database_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TRACKER_HSTS": True})
    client = app.test_client()
    secure = client.get("/auth/login", base_url="https://tracker.example.org")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in client.get("/auth/login").headers  # plain HTTP
    off = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    assert off.config["TRACKER_HSTS"] is False
    response = off.test_client().get("/auth/login", base_url="https://tracker.example.org")
    assert "Strict-Transport-Security" not in response.headers


def test_no_template_served_as_a_page_has_inline_script_or_style():
    """The policy forbids them: they would be blocked in the browser (mail templates are exempt)."""
    import re

    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        if "email" in path.relative_to(ROOT / "templates").parts:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"<style|\sstyle=|<script(?![^>]*\ssrc=)|\son[a-z]+=|javascript:", text, re.IGNORECASE):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# --- 3. ids and page numbers past the database's range ------------------------------------------------


def _int_arguments(rule) -> set[str]:
    return {name for name, conv in rule._converters.items() if isinstance(conv, BoundedIntConverter)}


class _Filled:
    """A rule whose int arguments are written in already; _url_for_rule fills in the others."""

    def __init__(self, rule, number: str) -> None:
        self.rule = rule.rule
        for name in _int_arguments(rule):
            self.rule = re.sub(rf"<(?:[^:<>]+:)?{name}>", number, self.rule)
        self.arguments = [n for n in rule.arguments if n not in _int_arguments(rule)]


@pytest.mark.parametrize("number", [HUGE, JUST_PAST])
def test_an_id_past_the_database_range_is_a_404_on_every_route(app, world, login_as, number):
    """Every route with an id, every method, as an admin (who may see everything): 404, never 500."""
    _add_evidence(app, world)
    _add_extension(app, world)
    admin = login_as(world.users["admin"])
    token = csrf_token(admin.get("/").text)
    api_headers = {"Authorization": f"Bearer {_token(app, world, 'admin')}"}
    tried = 0
    for rule in _rules(app):
        if not _int_arguments(rule):
            continue
        url = _url_for_rule(_Filled(rule, number), world)
        for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
            if rule.rule.startswith("/api/"):
                response = admin.open(url, method=method, headers=api_headers, json={"note": "x"})
                assert (response.status_code, response.mimetype) == (404, PROBLEM), (method, url)
            else:
                response = admin.open(url, method=method, data={"csrf_token": token, "note": "x"})
                assert (response.status_code, response.mimetype) == (404, "text/html"), (method, url)
            _check(response, (method, url), no_store=True)
            tried += 1
    assert tried >= 30
    # One past the largest id in range is still a route: its id is simply not there.
    assert admin.get(f"/actions/{2**31 - 1}").status_code == 404


def _list_pages(app) -> list[str]:
    """Every page without arguments that answers GET: the lists, and the pages around them."""
    return sorted(
        rule.rule
        for rule in _rules(app)
        if not rule.arguments and "GET" in rule.methods and not rule.rule.startswith("/api/")
    )


#: The paged lists: whatever their page number or id filters, they show a page.
LISTS = {"/", "/my", "/verification", "/recommendations", "/admin/users", "/admin/outbox", "/admin/audit"}
BAD_NUMBERS = [HUGE, JUST_PAST, "-1", "abc", "١", "9" * 400]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1", 1),
        (" 42 ", 42),
        ("+7", 7),
        (str(2**31 - 1), 2**31 - 1),
        (str(2**31), None),
        (HUGE, None),
        ("0", None),
        ("-1", None),
        ("", None),
        (None, None),
        ("abc", None),
        ("1e3", None),
        ("1_000", None),
        ("١٢", None),  # Arabic-Indic digits: int() reads them, a URL should not
        ("9" * 5000, None),  # no int() of a huge string
    ],
)
def test_one_reading_of_whole_numbers(text, number):
    from tracker.params import whole_number

    assert whole_number(text) == number


def test_the_int_converter_matches_exactly_the_database_range():
    import random

    from tracker.security import digits_up_to

    pattern = re.compile(BoundedIntConverter.regex)
    for n in [0, 1, 9, 10, 999_999_999, 1_000_000_000, 2**31 - 2, 2**31 - 1, 2**31, 2**32, 10**10, 10**20]:
        assert bool(pattern.fullmatch(str(n))) == (n < 2**31), n
    rng = random.Random(11)
    for _ in range(20000):
        n = rng.randrange(10 ** rng.randrange(1, 12))
        assert bool(pattern.fullmatch(str(n))) == (n < 2**31), n
    for limit in (0, 1, 7, 10, 19, 20, 101, 999, 1000, 4096):
        small = re.compile(digits_up_to(limit))
        assert [n for n in range(5000) if small.fullmatch(str(n))] == list(range(min(limit, 4999) + 1))


def test_list_pages_take_any_page_number_or_id_filter(app, world, login_as):
    """?page= and the id filters, past the range, negative or not numbers: no page fails, lists show."""
    admin = login_as(world.users["admin"])
    pages = _list_pages(app)
    assert LISTS - {"/admin/audit"} <= set(pages)
    names = ("page", "per_page", "source", "recommendation", "office", "office_id", "user")
    for url in pages:
        queries = [{"page": value} for value in BAD_NUMBERS]
        queries += [dict.fromkeys(names, value) for value in (HUGE, JUST_PAST, "abc")]
        for query in queries:
            response = admin.get(url, query_string=query)
            assert response.status_code < 500, (url, query, response.status_code)
            if url in LISTS:
                assert response.status_code == 200, (url, query, response.status_code)
            response.close()
    assert admin.get("/offices/SG/actions/new", query_string={"recommendation": HUGE}).status_code == 200


#: Every numeric field a form of the site posts, forged at once.
FORM_NUMBERS = (
    "version",
    "office_id",
    "user_id",
    "recommendation_id",
    "owner_id",
    "deputy_id",
    "source_id",
    "leaving_id",
    "successor_id",
    "progress",
    "page",
)


@pytest.mark.parametrize("number", [HUGE, JUST_PAST, "abc"])
def test_forged_numbers_in_forms_are_refused_not_a_500(app, world, login_as, number):
    """Every form of the site, posted by an admin with every numeric field forged: no 500."""
    _add_evidence(app, world)
    _add_extension(app, world)
    admin = login_as(world.users["admin"])
    token = csrf_token(admin.get("/").text)
    for rule in _rules(app):
        if "POST" not in rule.methods or rule.rule.startswith("/api/") or rule.endpoint == "auth.logout":
            continue
        url = _url_for_rule(rule, world)
        response = admin.post(url, data=dict(dict.fromkeys(FORM_NUMBERS, number), csrf_token=token))
        assert response.status_code < 500, (url, response.status_code)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActionUpdate)) == 2  # nothing saved
    # A forged version on the update form is a conflict (409), as a stale page is.
    page = admin.get(f"/actions/{world.items['SG']}").text
    forged = {"csrf_token": csrf_token(page), "version": number, "status": "in_progress", "note": "x"}
    assert admin.post(f"/actions/{world.items['SG']}", data=forged).status_code == 409


def test_the_api_answers_bad_numbers_with_json(app, world):
    headers = {"Authorization": f"Bearer {_token(app, world, 'reviewer')}"}
    client = app.test_client()
    item = world.items["SG"]
    for url in ("/api/v1/actions", "/api/v1/recommendations", f"/api/v1/actions/{item}/updates"):
        for name in ("page", "per_page", "source"):
            for value in BAD_NUMBERS:
                response = client.get(url, query_string={name: value}, headers=headers)
                assert response.status_code in (200, 422), (url, name, value, response.status_code)
                assert response.is_json or response.mimetype == PROBLEM


def test_a_page_past_the_end_shows_the_last_page(app, world, login_as, mail_settings):
    mail_settings(TRACKER_PAGE_SIZE=1)
    reviewer = login_as(world.users["reviewer"])
    last = reviewer.get("/", query_string={"page": 2}).text
    for page in ("3", "5000", str(2**31 - 1)):
        response = reviewer.get("/", query_string={"page": page})
        assert response.status_code == 200 and _titles(response.text) == _titles(last), page
    assert _titles(reviewer.get("/", query_string={"page": HUGE}).text) == _titles(
        reviewer.get("/").text
    )  # not a number the database holds: as if absent


def _titles(html: str) -> list[str]:
    return re.findall(r"E-filing for [A-Z]{2}", html)


# --- evidence links: one check for the form, the API and the command --------------------------------------

BAD_LINKS = [
    ("https://[x", "Give a full web address."),
    ("https://[::1", "Give a full web address."),
    ("http://exa mple.org/", "Give a full web address."),
    ("https://", "Give a full web address."),
    ("https://user:pw@example.org/", "Give a full web address."),
    ("https://example.org:99999/", "Give a full web address."),
    ("https://-bad-.example/", "Give a full web address."),
    ("https://a..b/", "Give a full web address."),
    ("javascript:alert(1)", "Give a web address starting with http:// or https://."),
    ("ftp://example.org/file", "Give a web address starting with http:// or https://."),
    ("example.org/report", "Give a web address starting with http:// or https://."),
    ("https://example.org/" + "a" * 2000, "A web address is at most 2000 characters."),
]
GOOD_LINKS = [
    "https://example.org/report.pdf?x=1#p2",
    "HTTP://EXAMPLE.ORG",
    "http://localhost:8080/x",
    "https://[2001:db8::1]/x",
    "http://192.0.2.1/x",
    "https://bücher.example/ü",
    "https://example.org/" + "a" * (2000 - len("https://example.org/")),
]


def test_the_link_check_matches_the_column():
    assert ActionUpdate.__table__.c.evidence_url.type.length == evidence.MAX_LINK_LENGTH


@pytest.mark.parametrize(("link", "message"), BAD_LINKS)
def test_a_bad_evidence_link_is_refused_by_the_form_and_the_api(app, world, login_as, link, message):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    page = focal.get(f"/actions/{item_id}").text
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    form = {"csrf_token": csrf_token(page), "version": version, "status": "", "note": "See the link"}
    refused = focal.post(f"/actions/{item_id}", data=dict(form, evidence_url=link))
    assert refused.status_code == 422 and message in refused.text

    headers = {"Authorization": f"Bearer {_token(app, world, 'focal_sg')}"}
    answer = app.test_client().patch(
        f"/api/v1/actions/{item_id}", json={"note": "See the link", "evidence_url": link}, headers=headers
    )
    assert answer.status_code == 422 and answer.mimetype == PROBLEM
    (error,) = answer.get_json()["errors"]
    assert error["field"] == "evidence_url"
    if len(link) <= evidence.MAX_LINK_LENGTH:  # a longer one is refused by the schema's length first
        assert error["message"] == message
    with app.app_context():
        assert db.session.get(ActionItem, item_id).version == 1


@pytest.mark.parametrize("link", GOOD_LINKS)
def test_a_good_evidence_link_is_saved_through_the_form_and_the_api(app, world, login_as, link):
    item_id = world.items["SG"]
    focal = login_as(world.users["focal_sg"])
    page = focal.get(f"/actions/{item_id}").text
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    form = {"csrf_token": csrf_token(page), "version": version, "status": "", "note": "Link"}
    assert focal.post(f"/actions/{item_id}", data=dict(form, evidence_url=link)).status_code == 302
    headers = {"Authorization": f"Bearer {_token(app, world, 'focal_sg')}"}
    answer = app.test_client().patch(
        f"/api/v1/actions/{item_id}", json={"note": "Again", "evidence_url": link}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    with app.app_context():
        links = db.session.scalars(
            sa.select(ActionUpdate.evidence_url).where(ActionUpdate.action_item_id == item_id)
        ).all()
    assert links.count(link) == 2


def test_the_command_checks_the_link_too(app, world):
    from tracker.actions.commands import UpdateRequest, WorkflowError, record_update

    with app.app_context():
        focal = db.session.get(User, world.user_ids["focal_sg"])
        item = db.session.get(ActionItem, world.items["SG"])
        with pytest.raises(WorkflowError) as refused:
            record_update(
                focal, item, _now(), UpdateRequest(item.version, note="x", evidence_url="https://[x")
            )
        assert refused.value.field == "evidence_url"
        db.session.rollback()


# --- spreadsheet cells: full-width formula characters ---------------------------------------------------

FORMULAS = ['＝HYPERLINK("http://evil")', "＋1+1", "－1+1", "＠SUM(A1)", "=1+1", "+1", "-1", "@A1", "\tx"]


def test_exports_neutralise_ascii_and_full_width_formula_starts(app, world, login_as):
    with app.app_context():
        items = []
        rec = db.session.get(Recommendation, world.recommendation_id)
        sg = db.session.get(ActionItem, world.items["SG"])
        for text in FORMULAS:
            items.append(
                ActionItem(
                    recommendation=rec, office=sg.office, title=text, owner=sg.owner, deadline=sg.deadline
                )
            )
        rec.title = "＝cmd|' /C calc'!A0"
        db.session.add_all(items)
        db.session.commit()
    reviewer = login_as(world.users["reviewer"])
    csv_text = reviewer.get("/export/actions.csv").get_data(as_text=True)
    cells = {cell for row in csv.reader(io.StringIO(csv_text)) for cell in row}
    for text in FORMULAS:
        assert "'" + text in cells and text not in cells, text
    assert "'＝cmd|' /C calc'!A0" in cells
    xlsx = reviewer.get("/export/actions.xlsx")
    workbook = load_workbook(io.BytesIO(xlsx.data), read_only=True)
    try:
        cells = {c for row in workbook.worksheets[0].iter_rows(values_only=True) for c in row if c}
    finally:
        workbook.close()
    for text in FORMULAS:
        assert "'" + text in cells and text not in cells, text
    assert "'＝cmd|' /C calc'!A0" in cells


# --- the API: the permission comes before any lookup -------------------------------------------------


@pytest.mark.parametrize("field", ["owner", "deputy"])
def test_a_focal_point_learns_nothing_about_emails_from_a_refused_owner_change(app, world, field):
    # One request id for all: the answers carry it and must be the same otherwise.
    headers = {"Authorization": f"Bearer {_token(app, world, 'focal_sg')}", "X-Request-ID": "same"}
    client = app.test_client()
    url = f"/api/v1/actions/{world.items['SG']}"
    answers = []
    for email in ("nobody@x.test", world.users["focal_my"], world.users["manager_sg"]):
        response = client.patch(url, json={field: email}, headers=headers)
        answers.append((response.status_code, response.mimetype, response.get_data(as_text=True)))
        mixed = client.patch(url, json={field: email, "note": "x", "progress": 10}, headers=headers)
        answers.append((mixed.status_code, mixed.mimetype, mixed.get_data(as_text=True)))
    assert answers[0][0] == 403 and answers[0][1] == PROBLEM
    assert len(set(answers)) == 1, answers
    with app.app_context():
        assert db.session.get(ActionItem, world.items["SG"]).version == 1


def test_a_focal_point_who_may_not_add_actions_is_refused_before_any_lookup(app, world):
    client = app.test_client()
    base = {"recommendation_id": world.recommendation_id, "title": "T", "deadline": "2027-02-01"}
    for label in ("focal_sg", "manager_sg"):
        headers = {"Authorization": f"Bearer {_token(app, world, label)}", "X-Request-ID": "same"}
        answers = set()
        for office in ("SG", "MY", "XX"):
            for owner in ("nobody@x.test", world.users["focal_sg"], world.users["focal_my"]):
                body = dict(base, office=office, owner=owner, deputy="nobody.else@x.test")
                response = client.post("/api/v1/actions", json=body, headers=headers)
                answers.add((response.status_code, response.get_data(as_text=True)))
        answers.add(
            (
                (r := client.post("/api/v1/actions", json={}, headers=headers)).status_code,
                r.get_data(as_text=True),
            )
        )
        assert len(answers) == 1 and answers.pop()[0] == 403, label
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActionItem)) == 2


def test_a_reviewer_still_hears_which_email_is_unknown(app, world):
    headers = {"Authorization": f"Bearer {_token(app, world, 'reviewer')}"}
    response = app.test_client().patch(
        f"/api/v1/actions/{world.items['SG']}", json={"owner": "nobody@x.test"}, headers=headers
    )
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "owner"


# --- the real servers: no version in Server --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_headers(port: int, process: subprocess.Popen, path: str) -> tuple[int, list[str], dict]:
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            servers = [v for k, v in response.getheaders() if k.lower() == "server"]
            return response.status, servers, dict(response.getheaders())
        except (ConnectionError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            connection.close()


def _serve(command: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "FLASK_"))}
    env.update(
        TRACKER_CONFIG="development",
        SECRET_KEY="server-header-test-secret-" + "s" * 20,  # no instance/secret_key in the checkout
        DATABASE_URL=f"sqlite:///{tmp_path / 'server.db'}",
        TRACKER_MAIL_DIR=str(tmp_path / "mail"),
    )
    with (tmp_path / "server.log").open("w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.mark.parametrize("server", ["flask run", "gunicorn"])
def test_the_real_servers_name_no_version(tmp_path, server):
    port = _free_port()
    if server == "flask run":
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)]
        command += ["--host", "127.0.0.1", "--no-reload"]
        allowed = {"tracker"}
    else:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        if not gunicorn.exists():
            pytest.skip("gunicorn is not installed in this environment")
        command = [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app"]
        # gunicorn 23 drops the application's Server header and writes its own, without a version.
        allowed = {"gunicorn"}
    process = _serve(command, tmp_path)
    try:
        for path in ("/static/css/tracker.css", "/no/such/page", "/auth/login", "/"):
            status, servers, headers = _server_headers(port, process, path)
            assert status in (200, 302, 404), (path, status)
            assert servers == sorted(allowed), (server, path, servers)  # one Server header
            assert not any(ch.isdigit() or "/" in value for value in servers for ch in value), servers
            assert headers["Content-Security-Policy"] == EXPECTED["Content-Security-Policy"]
            assert headers["X-Frame-Options"] == "DENY"
    finally:
        _stop(process)
