"""The audit log of security events: what is recorded (through the real pages), the admin page with
its filters and pagination, the CSV export, who may read them, and the retention purge."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token, login
from tracker.auth import audit
from tracker.extensions import db
from tracker.models import ApiToken, AuditEvent, User

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


# --- helpers -----------------------------------------------------------------------------------


def _rows(text: str) -> list[dict[str, str]]:
    """The audit table's rows as {column label: text}."""
    if "<tbody>" not in text:
        return []
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r'<td data-label="([^"]+)">(.*?)</td>', tr, re.S)
        rows.append({label: " ".join(html.unescape(re.sub(r"<[^>]+>", "", v)).split()) for label, v in cells})
    return rows


def _summary(text: str) -> list[tuple[str, str, str, str]]:
    return [(r["Event"], r["Done by"], r["Account"], r["Detail"]) for r in _rows(text)]


def _post_form(c, url: str, data: dict[str, str] | None = None):
    """GET the page at ``url`` (a form or a confirmation), then POST it with its CSRF token."""
    page = c.get(url)
    assert page.status_code == 200, (url, page.status_code)
    return c.post(url, data={"csrf_token": csrf_token(page.text), **(data or {})})


def _edit_user(app, c, user_id: int, **changes: str):
    with app.app_context():
        user = db.session.get(User, user_id)
        data = {
            "name": user.name,
            "role": user.role,
            "office": user.office.code if user.office else "",
            "language": user.language or "",
            "timezone": user.timezone or "",
        }
    data.update(changes)
    response = _post_form(c, f"/admin/users/{user_id}/edit", data)
    assert response.status_code == 302, response.text
    return response


def _set_zone(app, user_id: int, zone: str) -> None:
    with app.app_context():
        db.session.get(User, user_id).timezone = zone
        db.session.commit()


def _add_events(app, count: int, *, kind: str = "token_created", start: datetime = T0, people: int = 1):
    """``count`` events a minute apart, each by and about one of ``people`` extra accounts."""
    with app.app_context():
        users = [
            User(email=f"person{i}.{count}@example.test", name=f"P{i}", role="reviewer")
            for i in range(people)
        ]
        db.session.add_all(users)
        db.session.flush()
        for n in range(count):
            user = users[n % people]
            audit.record(kind, start + timedelta(minutes=n), actor=user, subject=user, detail=f"n{n:04d}")
        db.session.commit()


def _csv(response) -> list[list[str]]:
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


# --- what is recorded ----------------------------------------------------------------------------


def test_sign_ins_and_account_changes_appear_with_actor_subject_and_detail(app, world, client, login_as):
    u = world.users
    with time_machine.travel(T0, tick=False) as clock:

        def step() -> None:
            clock.shift(timedelta(minutes=1))

        assert login(client, u["focal_sg"], "wrong password!").status_code == 200
        step()
        assert login(client, "Nobody@Example.test", "whatever").status_code == 200
        step()
        focal = login_as(u["focal_sg"])
        step()
        assert (
            focal.post(
                "/auth/logout", data={"csrf_token": csrf_token(focal.get("/profile").text)}
            ).status_code
            == 302
        )
        step()
        admin = login_as(u["admin"])
        step()
        _edit_user(app, admin, world.user_ids["focal_my"], role="manager")
        step()
        _edit_user(app, admin, world.user_ids["focal_my"], office="SG")
        step()
        assert _post_form(admin, f"/admin/users/{world.user_ids['focal_my']}/deactivate").status_code == 302
        step()
        assert _post_form(admin, f"/admin/users/{world.user_ids['focal_my']}/reactivate").status_code == 302
        step()
        assert (
            _post_form(admin, f"/admin/users/{world.user_ids['manager_sg']}/reset-password").status_code
            == 200
        )
        step()
        reviewer = login_as(u["reviewer"])
        step()
        page = reviewer.get("/profile")
        reviewer.post("/profile/tokens", data={"name": "Reports script", "csrf_token": csrf_token(page.text)})
        with app.app_context():
            token_id = db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == "Reports script"))
        step()
        assert _post_form(reviewer, f"/profile/tokens/{token_id}/revoke").status_code == 302

        response = admin.get("/admin/audit")
    assert response.status_code == 200
    nobody = "not signed in"
    expected = [
        ("Sign-in refused", nobody, u["focal_sg"], "wrong password"),
        ("Sign-in refused", nobody, "nobody@example.test (no account)", "unknown email"),
        ("Signed in", u["focal_sg"], u["focal_sg"], "password"),
        ("Signed out", u["focal_sg"], u["focal_sg"], ""),
        ("Signed in", u["admin"], u["admin"], "password"),
        ("Role changed", u["admin"], u["focal_my"], "focal_point → manager"),
        ("Office changed", u["admin"], u["focal_my"], "MY → SG"),
        ("Account deactivated", u["admin"], u["focal_my"], "0 API tokens revoked"),
        ("Account reactivated", u["admin"], u["focal_my"], ""),
        ("Password reset", u["admin"], u["manager_sg"], "temporary password by an admin"),
        ("Signed in", u["reviewer"], u["reviewer"], "password"),
        ("API token created", u["reviewer"], u["reviewer"], f"#{token_id} Reports script"),
        ("API token revoked", u["reviewer"], u["reviewer"], f"#{token_id} Reports script"),
    ]
    assert _summary(response.text) == expected[::-1]  # newest first
    assert "13 events" in response.text
    assert {r["Address"] for r in _rows(response.text)} == {"127.0.0.1"}


def test_times_show_in_the_viewers_zone_without_seconds(app, world, login_as):
    _set_zone(app, world.user_ids["admin"], "Asia/Singapore")
    with time_machine.travel(datetime(2026, 11, 24, 15, 30, 45, 250000, tzinfo=UTC), tick=False):
        text = login_as(world.users["admin"]).get("/admin/audit").text.replace("\u202f", " ")  # CLDR's space
    assert '<time datetime="2026-11-24T15:30:45+00:00">Nov 24, 2026 11:30 PM</time>' in text
    assert "Asia/Singapore" in text


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def filter_world(app, world, client, login_as):
    """Three moments seen from Singapore (the admin's zone): late on the 24th, just after midnight
    on the 25th, and the 26th; two addresses."""
    u = world.users
    _set_zone(app, world.user_ids["admin"], "Asia/Singapore")
    with time_machine.travel(datetime(2026, 11, 24, 15, 30, tzinfo=UTC), tick=False):  # 23:30 on the 24th
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = "192.0.2.7"
        login(c, u["focal_sg"], "wrong password!")
    with time_machine.travel(datetime(2026, 11, 24, 16, 30, tzinfo=UTC), tick=False):  # 00:30 on the 25th
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = "2001:db8::7"
        login(c, "ghost@example.test", "whatever")
    clock = time_machine.travel(datetime(2026, 11, 26, 2, 0, tzinfo=UTC), tick=False)
    clock.start()
    admin = login_as(u["admin"])
    _edit_user(app, admin, world.user_ids["focal_sg"], role="manager")
    yield admin
    clock.stop()


#: (query string, the events listed, newest first) on the filter_world.
FILTER_CASES = [
    ({"kind": "sign_in_failed"}, ["Sign-in refused", "Sign-in refused"]),
    ({"kind": "role_changed"}, ["Role changed"]),
    ({"kind": "token_created"}, []),
    ({"person": "focal.sg@example.test"}, ["Role changed", "Sign-in refused"]),  # subject
    ({"person": " ADMIN@example.test "}, ["Role changed", "Signed in"]),  # actor
    ({"person": "ghost@example.test"}, ["Sign-in refused"]),  # the email typed, no account
    ({"person": "nobody@example.test"}, []),
    ({"kind": "sign_in_failed", "person": "focal.sg@example.test"}, ["Sign-in refused"]),
    ({"from": "2026-11-25", "to": "2026-11-25"}, ["Sign-in refused"]),  # 00:30 local on the 25th
    ({"to": "2026-11-24"}, ["Sign-in refused"]),  # 23:30 local on the 24th
    ({"from": "2026-11-25"}, ["Role changed", "Signed in", "Sign-in refused"]),
    ({"from": "2026-11-27"}, []),
    ({"address": "192.0.2.7"}, ["Sign-in refused"]),
    ({"address": "2001:DB8:0::7"}, ["Sign-in refused"]),  # written differently, the same address
    ({"address": "127.0.0.1"}, ["Role changed", "Signed in"]),
    ({}, ["Role changed", "Signed in", "Sign-in refused", "Sign-in refused"]),
]


def test_filters_on_the_page_and_in_the_csv(filter_world):
    for query, events in FILTER_CASES:
        response = filter_world.get("/admin/audit", query_string=query)
        assert response.status_code == 200, query
        assert [r["Event"] for r in _rows(response.text)] == events, query
        if events:
            assert f"{len(events)} event" in response.text, query
        else:
            assert "No security event matches these filters." in response.text, query
        csv_rows = _csv(filter_world.get("/admin/audit.csv", query_string=query))
        assert [row[2] for row in csv_rows[1:]] == events, query
        # The CSV link of the page carries the same filters.
        link = html.unescape(re.search(r'href="(/admin/audit\.csv[^"]*)"', response.text).group(1))
        assert _csv(filter_world.get(link)) == csv_rows, query


def test_an_unknown_email_shows_with_its_address_and_local_time(filter_world):
    rows = _rows(filter_world.get("/admin/audit?person=ghost@example.test").text)
    assert rows[0]["Account"] == "ghost@example.test (no account)"
    assert rows[0]["Address"] == "2001:db8::7"
    assert rows[0]["When"] == "Nov 25, 2026 12:30 AM"


#: (query string, the message shown) for filters that cannot be used.
BAD_FILTERS = [
    ({"kind": "sign_in_sideways"}, "Unknown kind of event"),
    ({"from": "2026-13-01"}, "Not a date; write it as YYYY-MM-DD"),
    ({"to": "yesterday"}, "Not a date; write it as YYYY-MM-DD"),
    ({"from": "2026-11-25", "to": "2026-11-24"}, "The last day is before the first day."),
    (
        {"from": "0001-01-01"},
        "This date is out of range.",
    ),  # midnight in Singapore is before year 1 in UTC
    ({"to": "9999-12-31"}, "This date is out of range."),
    ({"address": "999.1.1.1"}, "Not an IP address"),
    ({"address": "192.0.2.0/24"}, "Not an IP address"),
    ({"person": "x" * 255}, "too long or holds control characters"),
    ({"person": "a\x00@example.test"}, "too long or holds control characters"),
]


def test_bad_filters_are_explained_not_a_server_error(app, world, login_as):
    _set_zone(app, world.user_ids["admin"], "Asia/Singapore")
    c = login_as(world.users["admin"])
    for query, message in BAD_FILTERS:
        for url in ("/admin/audit", "/admin/audit.csv"):
            response = c.get(url, query_string=query)
            assert response.status_code == 400, (url, query)
            assert response.mimetype == "text/html"
            assert "Some filters are not valid" in response.text
            assert message in html.unescape(response.text), (url, query)
            assert 'aria-invalid="true"' in response.text
            assert "<tbody>" not in response.text


def test_an_empty_log_says_so(app, world, login_as):
    c = login_as(world.users["admin"])
    with app.app_context():
        db.session.execute(sa.delete(AuditEvent))
        db.session.commit()
    text = c.get("/admin/audit").text
    assert "0 events" in text and "No security event matches these filters." in text


# --- who may read it -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reviewer", "manager", "manager_sg", "focal_sg"])
def test_only_admins_read_the_log(world, login_as, role):
    c = login_as(world.users[role])
    assert c.get("/admin/audit").status_code == 403
    assert c.get("/admin/audit.csv").status_code == 403
    assert c.get("/admin/audit.csv?kind=sign_in").status_code == 403
    assert 'href="/admin/audit"' not in c.get("/").text


def test_signed_out_visitors_are_sent_to_sign_in(world, client):
    for url in ("/admin/audit", "/admin/audit.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_menu_and_each_user_page_link_to_the_log(app, world, login_as):
    c = login_as(world.users["admin"])
    assert 'href="/admin/audit"' in c.get("/").text
    edit = c.get(f"/admin/users/{world.user_ids['focal_sg']}/edit").text
    link = re.search(r'<a href="([^"]+)">Security events for this person</a>', edit)
    assert link and html.unescape(link.group(1)) == "/admin/audit?person=focal.sg@example.test"
    login(app.test_client(), world.users["focal_sg"], "wrong password!")
    rows = _rows(c.get(html.unescape(link.group(1))).text)
    assert [(r["Event"], r["Account"]) for r in rows] == [("Sign-in refused", world.users["focal_sg"])]


# --- pagination ----------------------------------------------------------------------------------


def test_pages_of_the_log_keep_the_filters(app, world, login_as, mail_settings):
    mail_settings(TRACKER_PAGE_SIZE=5)
    _add_events(app, 12)
    c = login_as(world.users["admin"])
    first = c.get("/admin/audit?kind=token_created")
    assert "12 events" in first.text and "Page 1 of 3" in first.text
    assert [r["Detail"] for r in _rows(first.text)] == ["n0011", "n0010", "n0009", "n0008", "n0007"]
    next_link = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1))
    assert "kind=token_created" in next_link and "page=2" in next_link
    second = c.get(next_link)
    assert [r["Detail"] for r in _rows(second.text)] == ["n0006", "n0005", "n0004", "n0003", "n0002"]
    last = c.get("/admin/audit?kind=token_created&page=3")
    assert [r["Detail"] for r in _rows(last.text)] == ["n0001", "n0000"]
    assert 'rel="next"' not in last.text
    beyond = c.get("/admin/audit?kind=token_created&page=999")  # past the end: the last page
    assert beyond.status_code == 200 and [r["Detail"] for r in _rows(beyond.text)] == ["n0001", "n0000"]
    for absurd in ("abc", "-1", "99999999999"):  # ignored: the first page
        response = c.get(f"/admin/audit?kind=token_created&page={absurd}")
        assert response.status_code == 200 and "Page 1 of 3" in response.text


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_has_utc_times_codes_labels_and_neutralised_cells(app, world, client, login_as):
    _set_zone(app, world.user_ids["admin"], "Asia/Singapore")
    with time_machine.travel(datetime(2026, 11, 24, 8, 30, 45, 500000, tzinfo=UTC), tick=False):
        login(client, "=1+2@evil.test", "whatever")
    with app.app_context():
        admin = db.session.get(User, world.user_ids["admin"])
        focal = db.session.get(User, world.user_ids["focal_sg"])
        audit.record(
            "token_created",
            datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            actor=admin,
            subject=focal,
            detail='=HYPERLINK("http://evil.test","click")',
        )
        db.session.commit()
    with time_machine.travel(datetime(2026, 11, 24, 20, 0, tzinfo=UTC), tick=False):  # the 25th in Singapore
        c = login_as(world.users["admin"])
        response = c.get("/admin/audit.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit-20261125.csv"'
    assert "no-store" in response.headers["Cache-Control"]
    rows = _csv(response)
    assert rows[0] == ["Time (UTC)", "Kind", "Event", "Done by", "Account", "Address", "Detail"]
    assert rows[1:] == [
        [
            "2026-11-24T20:00:00+00:00",
            "sign_in",
            "Signed in",
            world.users["admin"],
            world.users["admin"],
            "127.0.0.1",
            "password",
        ],
        [
            "2026-11-24T09:00:00+00:00",
            "token_created",
            "API token created",
            world.users["admin"],
            world.users["focal_sg"],
            "",
            '\'=HYPERLINK("http://evil.test","click")',
        ],
        [
            "2026-11-24T08:30:45+00:00",
            "sign_in_failed",
            "Sign-in refused",
            "",
            "'=1+2@evil.test",
            "127.0.0.1",
            "unknown email",
        ],
    ]
    # The page shows the same text as typed, escaped, not neutralised.
    with time_machine.travel(datetime(2026, 11, 24, 20, 1, tzinfo=UTC), tick=False):
        page = c.get("/admin/audit?kind=sign_in_failed").text
    assert _rows(page)[0]["Account"] == "=1+2@evil.test (no account)"


def test_the_page_and_the_csv_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    c = login_as(world.users["admin"])

    def statements(url: str) -> int:
        with count_queries() as seen, c.get(url) as response:
            assert response.status_code == 200
            response.get_data()  # the CSV is produced while it is read
        return len(seen)

    urls = ["/admin/audit", "/admin/audit.csv", "/admin/audit?person=admin@example.test&kind=sign_in"]
    _add_events(app, 3, people=3)
    small = [statements(u) for u in urls]
    _add_events(app, 1200, people=40)  # more than two CSV batches, and 40 different people
    assert [statements(u) for u in urls] == small
    assert len(_csv(c.get("/admin/audit.csv"))) == 1 + 1 + 3 + 1200


# --- retention -----------------------------------------------------------------------------------


def test_purge_removes_events_older_than_the_retention_and_keeps_newer(app, world, mail_settings):
    mail_settings(TRACKER_AUDIT_DAYS=30)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    ages = {
        "long gone": timedelta(days=400),
        "just too old": timedelta(days=30, seconds=1),
        "exactly at the limit": timedelta(days=30),
        "recent": timedelta(days=29),
        "today": timedelta(0),
    }
    with app.app_context():
        for detail, age in ages.items():
            audit.record("sign_in", now - age, detail=detail)
        db.session.commit()
        assert audit.purge(now) == 2
        db.session.commit()
        kept = set(db.session.scalars(sa.select(AuditEvent.detail)))
    assert kept == {"exactly at the limit", "recent", "today"}


def test_purge_uses_the_configured_days(app, world, mail_settings):
    mail_settings(TRACKER_AUDIT_DAYS=400)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    with app.app_context():
        audit.record("sign_in", now - timedelta(days=399), detail="kept")
        audit.record("sign_in", now - timedelta(days=401), detail="gone")
        db.session.commit()
        assert audit.purge(now) == 1
        db.session.commit()
        assert list(db.session.scalars(sa.select(AuditEvent.detail))) == ["kept"]


def test_every_kind_has_a_label_and_a_filter_choice(world, login_as):
    text = login_as(world.users["admin"]).get("/admin/audit").text
    for kind, label in audit.EVENTS.items():
        assert f'<option value="{kind}">{html.escape(str(label), quote=False)}</option>' in text
