"""Server-side sessions, through HTTP: a saved cookie opens nothing once its session has ended (sign-out,
idle, too old, ended from the profile or by an admin, a new password, a deactivation); the profile
lists where one is signed in; old records are purged by the scheduler and its CLI twin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import sqlalchemy as sa
import time_machine
from flask.testing import FlaskClient
from flask_login.utils import encode_cookie

from tests.conftest import PASSWORD, PASSWORD_HASH, csrf_token, login
from tracker.extensions import db
from tracker.models import AuditEvent, Notification, User, UserSession
from tracker.profile.sessions import browser_summary

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


def _signed_in(app, email: str, *, remember: bool = False, agent: str | None = None) -> FlaskClient:
    c = app.test_client()
    if agent:
        c.environ_base["HTTP_USER_AGENT"] = agent
    extra = {"remember": "y"} if remember else {}
    assert login(c, email, **extra).status_code == 302, f"sign-in of {email} failed"
    return c


def _is_signed_in(c: FlaskClient) -> bool:
    response = c.get("/profile")
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        assert "/auth/login" in response.location
        return False
    return True


def _with_cookie(app, name: str, value: str) -> FlaskClient:
    """A fresh client that carries only this one cookie."""
    c = app.test_client()
    c.set_cookie(name, value)
    return c


def _logout(c: FlaskClient) -> None:
    token = csrf_token(c.get("/profile").text)
    assert c.post("/auth/logout", data={"csrf_token": token}).status_code == 302


def _sessions_on_profile(c: FlaskClient) -> tuple[int, list[int]]:
    """(this session's id, the other ids) as the profile lists them."""
    page = c.get("/profile").text
    current = [int(i) for i in re.findall(r'<tr class="current-session" data-session="(\d+)"', page)]
    others = [int(i) for i in re.findall(r'<tr data-session="(\d+)"', page)]
    assert len(current) == 1, "the profile marks this session"
    return current[0], others


def _events(app, kind: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(
            db.session.scalars(sa.select(AuditEvent).where(AuditEvent.kind == kind).order_by(AuditEvent.id))
        )
        db.session.expunge_all()
        return rows


def _session_rows(app, user_id: int) -> list[UserSession]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(UserSession).where(UserSession.user_id == user_id)))
        db.session.expunge_all()
        return rows


# --- sign-out ---------------------------------------------------------------------------------


def test_after_sign_out_the_saved_session_cookie_opens_nothing(app, world):
    c = _signed_in(app, world.users["focal_sg"])
    saved = c.get_cookie("session").value
    assert _is_signed_in(_with_cookie(app, "session", saved))  # a copy of the cookie works before
    _logout(c)
    assert not _is_signed_in(c)
    assert not _is_signed_in(_with_cookie(app, "session", saved))
    (row,) = _session_rows(app, world.user_ids["focal_sg"])
    assert row.end_reason == "signed_out" and row.ended_at is not None


def test_keep_me_signed_in_cookie_opens_a_session_until_sign_out(app, world):
    plain = _signed_in(app, world.users["focal_my"])
    assert plain.get_cookie("remember_token") is None  # no cookie without the box ticked

    c = _signed_in(app, world.users["focal_sg"], remember=True)
    remember = c.get_cookie("remember_token").value
    # The remember cookie alone opens the session (so the check below can fail) …
    assert _is_signed_in(_with_cookie(app, "remember_token", remember))
    _logout(c)
    # … and after sign-out it opens nothing, although its signature is still good.
    assert not _is_signed_in(_with_cookie(app, "remember_token", remember))


@pytest.mark.parametrize("max_days", [30, 2])
def test_the_remember_cookie_lives_no_longer_than_the_longest_session(app, world, mail_settings, max_days):
    mail_settings(TRACKER_SESSION_MAX_DAYS=max_days)
    c = app.test_client()
    with time_machine.travel(NOW, tick=False):
        page = c.get("/auth/login")
        response = c.post(
            "/auth/login",
            data={
                "email": world.users["focal_sg"],
                "password": PASSWORD,
                "remember": "y",
                "csrf_token": csrf_token(page.text),
            },
        )
    assert response.status_code == 302
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("remember_token="))
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    assert NOW < expires <= NOW + timedelta(days=max_days)
    (row,) = _session_rows(app, world.user_ids["focal_sg"])
    assert row.expires_at == NOW + timedelta(days=max_days) and row.remember


# --- idle and maximum lifetimes ---------------------------------------------------------------


def test_a_session_unused_for_the_idle_hours_ends_one_in_use_stays(app, world):
    idle = timedelta(hours=app.config["TRACKER_SESSION_IDLE_HOURS"])
    with time_machine.travel(NOW, tick=False) as clock:
        used = _signed_in(app, world.users["focal_sg"])
        unused = _signed_in(app, world.users["focal_sg"])
        clock.move_to(NOW + idle - timedelta(minutes=5))
        assert _is_signed_in(used)  # within the idle hours: still open, and now "last active"
        clock.move_to(NOW + idle + timedelta(minutes=1))
        assert not _is_signed_in(unused)
        assert _is_signed_in(used)
        clock.move_to(NOW + 2 * idle - timedelta(minutes=10))
        assert _is_signed_in(used)
        clock.move_to(NOW + 3 * idle)
        assert not _is_signed_in(used)
    reasons = sorted(row.end_reason for row in _session_rows(app, world.user_ids["focal_sg"]))
    assert reasons == ["idle", "idle"]


def test_a_remembered_session_survives_idle_hours(app, world):
    idle = timedelta(hours=app.config["TRACKER_SESSION_IDLE_HOURS"])
    with time_machine.travel(NOW, tick=False) as clock:
        c = _signed_in(app, world.users["focal_sg"], remember=True)
        clock.move_to(NOW + 3 * idle)
        assert _is_signed_in(c)
        clock.move_to(NOW + timedelta(days=5))
        remember = c.get_cookie("remember_token").value
        assert _is_signed_in(_with_cookie(app, "remember_token", remember))  # the browser was closed


def test_every_session_ends_after_the_maximum_days_remembered_or_not(app, world, mail_settings):
    mail_settings(TRACKER_SESSION_MAX_DAYS=2)  # short, so that a session used every few hours gets there
    step = timedelta(hours=app.config["TRACKER_SESSION_IDLE_HOURS"] - 1)
    with time_machine.travel(NOW, tick=False) as clock:
        busy = _signed_in(app, world.users["focal_sg"])
        kept = _signed_in(app, world.users["focal_my"], remember=True)
        remember = kept.get_cookie("remember_token").value
        at = NOW
        while at + step < NOW + timedelta(days=2):
            at += step
            clock.move_to(at)
            assert _is_signed_in(busy) and _is_signed_in(kept), at
        clock.move_to(NOW + timedelta(days=2, minutes=1))
        assert not _is_signed_in(busy)
        assert not _is_signed_in(kept)
        assert not _is_signed_in(_with_cookie(app, "remember_token", remember))
    ended = _session_rows(app, world.user_ids["focal_sg"]) + _session_rows(app, world.user_ids["focal_my"])
    assert [row.end_reason for row in ended] == ["expired", "expired"]


# --- the profile: where you are signed in ------------------------------------------------------


def test_the_profile_lists_where_one_is_signed_in(app, world):
    with time_machine.travel(NOW, tick=False) as clock:
        phone = _signed_in(app, world.users["focal_sg"], remember=True, agent=SAFARI_IPHONE)
        clock.move_to(NOW + timedelta(hours=3))
        desk = _signed_in(app, world.users["focal_sg"], agent=FIREFOX)
        _signed_in(app, world.users["focal_my"], agent=FIREFOX)  # someone else's: never listed
        clock.move_to(NOW + timedelta(hours=3, minutes=20))
        page = desk.get("/profile").text
        current, others = _sessions_on_profile(desk)
        assert _is_signed_in(phone)
    section = page[page.index('id="sessions-heading"') :]
    assert "Where you are signed in" in page
    assert section.index("Firefox 128 on Windows") < section.index("Safari 17 on iPhone")  # this one first
    assert "This session" in section and section.count("Kept signed in") == 1
    assert "127.0.0.1" in section
    assert "3 hours ago" in section  # the phone, last active at sign-in
    assert "Just now" in section  # this one
    assert re.search(r"\d{1,2}:\d{2}\s?[AP]M<", section) and not re.search(
        r"\d:\d{2}:\d{2}\s?[AP]M<", section
    )
    assert len(others) == 1 and f'href="/profile/sessions/{others[0]}/end"' in section
    assert f'href="/profile/sessions/{current}/end"' not in section  # this one: sign out instead
    assert "End all other sessions" in section


def test_browser_summaries_are_readable():
    assert browser_summary(FIREFOX) == "Firefox 128 on Windows"
    assert browser_summary(SAFARI_IPHONE) == "Safari 17 on iPhone"
    edge = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87"
    )
    assert browser_summary(edge) == "Edge 126 on Windows"
    chrome_android = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.6478.122 Mobile Safari/537.36"
    )
    assert browser_summary(chrome_android) == "Chrome 126 on Android"
    mac_safari = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15"
    )
    assert browser_summary(mac_safari) == "Safari 17 on macOS"
    assert browser_summary("curl/8.5.0") == "curl 8"
    assert browser_summary("") == browser_summary(None) == browser_summary("???") == "Unknown browser"


def test_ending_a_session_from_the_profile_signs_that_browser_out(app, world):
    here = _signed_in(app, world.users["focal_sg"], agent=FIREFOX)
    there = _signed_in(app, world.users["focal_sg"], agent=SAFARI_IPHONE)
    current, (other,) = _sessions_on_profile(here)
    confirm = here.get(f"/profile/sessions/{other}/end")
    assert confirm.status_code == 200 and "End the session in Safari 17 on iPhone?" in confirm.text
    assert _is_signed_in(there)  # asking changes nothing
    done = here.post(f"/profile/sessions/{other}/end", data={"csrf_token": csrf_token(confirm.text)})
    assert done.status_code == 302
    assert not _is_signed_in(there)
    assert _is_signed_in(here)
    assert here.get(f"/profile/sessions/{other}/end").status_code == 404  # already ended
    assert here.get(f"/profile/sessions/{current}/end").status_code == 302  # this one: sign out instead
    assert _is_signed_in(here)
    (event,) = _events(app, "session_ended")
    assert event.actor_id == event.subject_id == world.user_ids["focal_sg"]
    assert event.detail.startswith("ended by the person") and f"#{other}" in event.detail


def test_ending_needs_a_post_with_a_csrf_token(app, world):
    here = _signed_in(app, world.users["focal_sg"])
    there = _signed_in(app, world.users["focal_sg"])
    _current, (other,) = _sessions_on_profile(here)
    assert here.post(f"/profile/sessions/{other}/end").status_code == 400
    assert here.post("/profile/sessions/end-others").status_code == 400
    assert _is_signed_in(there)


def test_nobody_sees_or_ends_another_persons_sessions(app, world):
    mine = _signed_in(app, world.users["focal_sg"])
    theirs = _signed_in(app, world.users["focal_my"])
    their_id, _ = _sessions_on_profile(theirs)
    my_id, _ = _sessions_on_profile(mine)
    assert f'data-session="{their_id}"' not in mine.get("/profile").text
    token = csrf_token(mine.get("/profile").text)
    assert mine.get(f"/profile/sessions/{their_id}/end").status_code == 404
    assert mine.post(f"/profile/sessions/{their_id}/end", data={"csrf_token": token}).status_code == 404
    # "End all other sessions" ends only one's own.
    assert mine.post("/profile/sessions/end-others", data={"csrf_token": token}).status_code == 302
    assert _is_signed_in(theirs) and _is_signed_in(mine)
    # An admin's own profile is no door into anyone else's sessions either.
    admin = _signed_in(app, world.users["admin"])
    assert admin.get(f"/profile/sessions/{their_id}/end").status_code == 404
    assert admin.get(f"/profile/sessions/{my_id}/end").status_code == 404
    assert _events(app, "session_ended") == []


def test_end_all_other_sessions_keeps_this_one(app, world):
    here = _signed_in(app, world.users["focal_sg"])
    elsewhere = [
        _signed_in(app, world.users["focal_sg"]),
        _signed_in(app, world.users["focal_sg"], remember=True),
    ]
    remember = elsewhere[1].get_cookie("remember_token").value
    confirm = here.get("/profile/sessions/end-others")
    assert confirm.status_code == 200 and "End all your other sessions?" in confirm.text
    assert (
        here.post("/profile/sessions/end-others", data={"csrf_token": csrf_token(confirm.text)}).status_code
        == 302
    )
    assert _is_signed_in(here)
    assert not any(_is_signed_in(c) for c in elsewhere)
    assert not _is_signed_in(_with_cookie(app, "remember_token", remember))
    _current, others = _sessions_on_profile(here)
    assert others == [] and "You are signed in here only." in here.get("/profile").text
    (event,) = _events(app, "session_ended")
    assert event.detail.startswith("ended by the person") and "2 other sessions" in event.detail


# --- admins ------------------------------------------------------------------------------------


def test_an_admin_ends_every_session_of_a_user(app, world):
    uid = world.user_ids["focal_sg"]
    phone = _signed_in(app, world.users["focal_sg"], remember=True)
    desk = _signed_in(app, world.users["focal_sg"])
    remember = phone.get_cookie("remember_token").value
    admin = _signed_in(app, world.users["admin"])
    edit = admin.get(f"/admin/users/{uid}/edit").text
    assert re.search(r'data-figure="open-sessions">2<', edit)
    assert f'href="/admin/users/{uid}/end-sessions"' in edit
    confirm = admin.get(f"/admin/users/{uid}/end-sessions")
    assert confirm.status_code == 200 and "2 open sessions" in confirm.text
    assert _is_signed_in(desk)
    done = admin.post(f"/admin/users/{uid}/end-sessions", data={"csrf_token": csrf_token(confirm.text)})
    assert done.status_code == 302 and done.location.endswith(f"/admin/users/{uid}/edit")
    assert not _is_signed_in(desk) and not _is_signed_in(phone)
    assert not _is_signed_in(_with_cookie(app, "remember_token", remember))
    assert _is_signed_in(admin)
    edit = admin.get(f"/admin/users/{uid}/edit").text
    assert re.search(r'data-figure="open-sessions">0<', edit) and "end-sessions" not in edit
    (event,) = _events(app, "session_ended")
    assert (event.actor_id, event.subject_id) == (world.user_ids["admin"], uid)
    assert event.detail.startswith("ended by an admin")
    assert {row.end_reason for row in _session_rows(app, uid)} == {"ended_by_admin"}
    # They sign in again with their password.
    assert _is_signed_in(_signed_in(app, world.users["focal_sg"]))


def test_only_admins_end_other_peoples_sessions(app, world):
    uid = world.user_ids["focal_sg"]
    focal = _signed_in(app, world.users["focal_sg"])
    for role in ("reviewer", "manager", "focal_my"):
        c = _signed_in(app, world.users[role])
        token = csrf_token(c.get("/profile").text)
        assert c.get(f"/admin/users/{uid}/end-sessions").status_code == 403, role
        assert c.post(f"/admin/users/{uid}/end-sessions", data={"csrf_token": token}).status_code == 403, role
    assert _is_signed_in(focal)
    admin = _signed_in(app, world.users["admin"])
    token = csrf_token(admin.get("/profile").text)
    assert admin.get("/admin/users/999999/end-sessions").status_code == 404
    assert admin.post("/admin/users/999999/end-sessions", data={"csrf_token": token}).status_code == 404
    assert admin.post(f"/admin/users/{uid}/end-sessions").status_code == 400  # no CSRF token
    own = admin.post(f"/admin/users/{world.user_ids['admin']}/end-sessions", data={"csrf_token": token})
    assert own.status_code == 302 and _is_signed_in(admin)  # one's own: from the profile
    assert _is_signed_in(focal)
    assert _events(app, "session_ended") == []


# --- passwords and deactivation -------------------------------------------------------------


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(app, world):
    here = _signed_in(app, world.users["focal_sg"])
    there = _signed_in(app, world.users["focal_sg"], remember=True)
    remember = there.get_cookie("remember_token").value
    page = here.get("/auth/password")
    changed = here.post(
        "/auth/password",
        data={
            "csrf_token": csrf_token(page.text),
            "current": PASSWORD,
            "new": "another-long-password",
            "confirm": "another-long-password",
        },
    )
    assert changed.status_code == 302
    assert _is_signed_in(here)
    assert not _is_signed_in(there)
    assert not _is_signed_in(_with_cookie(app, "remember_token", remember))


def test_deactivation_ends_sessions_and_revokes_tokens_for_good(app, world):
    uid = world.user_ids["focal_sg"]
    focal = _signed_in(app, world.users["focal_sg"])
    page = focal.get("/profile")
    created = focal.post("/profile/tokens", data={"name": "script", "csrf_token": csrf_token(page.text)})
    secret = re.search(r'id="new-token"[^>]*value="([^"]+)"', created.text).group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert app.test_client().get("/api/v1/actions", headers=bearer).status_code == 200
    admin = _signed_in(app, world.users["admin"])
    for step in ("deactivate", "reactivate"):
        confirm = admin.get(f"/admin/users/{uid}/{step}")
        assert (
            admin.post(
                f"/admin/users/{uid}/{step}", data={"csrf_token": csrf_token(confirm.text)}
            ).status_code
            == 302
        )
        if step == "deactivate":
            assert not _is_signed_in(focal)
            assert app.test_client().get("/api/v1/actions", headers=bearer).status_code == 401
    # Active again: the old session and the old token stay dead; a new sign-in works.
    assert not _is_signed_in(focal)
    assert app.test_client().get("/api/v1/actions", headers=bearer).status_code == 401
    assert _is_signed_in(_signed_in(app, world.users["focal_sg"]))
    assert [row.end_reason for row in _session_rows(app, uid) if row.ended_at] == ["deactivated"]


def test_a_password_set_from_a_reset_link_ends_earlier_sessions(app, world, client):
    earlier = _signed_in(app, world.users["focal_sg"], remember=True)
    remember = earlier.get_cookie("remember_token").value
    page = client.get("/auth/forgot")
    client.post("/auth/forgot", data={"csrf_token": csrf_token(page.text), "email": world.users["focal_sg"]})
    with app.app_context():
        body = db.session.scalars(sa.select(Notification.body_text)).one()
    path = "/" + re.search(r"http://[^\s/]+/(account/reset/\S+)", body).group(1)
    form = client.get(path)
    done = client.post(
        path,
        data={"csrf_token": csrf_token(form.text), "new": "fresh-password-1", "confirm": "fresh-password-1"},
    )
    assert done.status_code == 302
    assert not _is_signed_in(earlier)
    assert not _is_signed_in(_with_cookie(app, "remember_token", remember))
    assert _is_signed_in(client)  # the reset signs this browser in, with a new session


# --- hostile or broken cookies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        "99999999999999999999.secret",
        str(2**31) + ".secret",
        "2147483647.secret",
        "-1.secret",
        "1.",
        ".secret",
        "1",
        "abc.def",
        "1.wrong-secret",
        "1." + "x" * 2000,
        "١٢.secret",  # digits, but not ASCII ones
        "",
    ],
)
def test_session_ids_out_of_range_give_an_anonymous_user(app, world, identity):
    _signed_in(app, world.users["focal_sg"])  # a real session #1 (or so) exists
    with app.app_context():
        remember = encode_cookie(identity)  # signed with the app's key: only the content is hostile
        serializer = app.session_interface.get_signing_serializer(app)
        session = serializer.dumps({"_user_id": identity, "_fresh": True})
    for name, value in (("remember_token", remember), ("session", session)):
        c = _with_cookie(app, name, value)
        assert not _is_signed_in(c), (name, identity)
        assert c.get("/").status_code == 302


@pytest.mark.parametrize("value", ["garbage", "a.b.c", "x" * 4000, "eyJfdXNlcl9pZCI6IjEuYSJ9.bad.sig", "%00"])
def test_garbage_cookies_give_an_anonymous_user(app, world, value):
    for name in ("session", "remember_token"):
        c = _with_cookie(app, name, value)
        assert not _is_signed_in(c), name
        assert c.get("/auth/login").status_code == 200


def test_unknown_session_ids_in_urls_are_404(app, world):
    c = _signed_in(app, world.users["focal_sg"])
    for session_id in ("999999", "2147483647", "2147483648", "99999999999999999999"):
        assert c.get(f"/profile/sessions/{session_id}/end").status_code == 404, session_id


# --- cost per request ---------------------------------------------------------------------------


def test_the_session_costs_one_query_and_at_most_one_update_a_minute(app, world, count_queries):
    with time_machine.travel(NOW, tick=False) as clock:
        c = _signed_in(app, world.users["focal_sg"])

        def statements() -> list[str]:
            with count_queries() as seen:
                assert c.get("/").status_code == 200
            return list(seen)

        clock.move_to(NOW + timedelta(seconds=20))
        quiet = statements()
        clock.move_to(NOW + timedelta(seconds=50))
        assert len(statements()) == len(quiet)  # within the minute: no write
        clock.move_to(NOW + timedelta(minutes=2))
        noted = statements()
        clock.move_to(NOW + timedelta(minutes=2, seconds=30))
        again = statements()
    touching = [s for s in quiet if "user_session" in s]
    assert len(touching) == 1, touching  # one query …
    assert "JOIN user_account" in touching[0] and "JOIN office" in touching[0]  # … with the user and office
    assert not any(re.search(r"FROM user_account\s+WHERE user_account.id =", s) for s in quiet)
    assert (
        len(noted) == len(quiet) + 1
        and sum(s.lstrip().upper().startswith("UPDATE USER_SESSION") for s in noted) == 1
    )
    assert len(again) == len(quiet)
    (row,) = _session_rows(app, world.user_ids["focal_sg"])
    assert row.last_seen_at == NOW + timedelta(minutes=2)


# --- purging old records ------------------------------------------------------------------------


def _old_and_new_records(app) -> None:
    """A person who signed in and out long ago, and again recently (no world: nothing to compose)."""
    with app.app_context():
        user = User(email="old@example.test", name="Old", role="reviewer", password_hash=PASSWORD_HASH)
        db.session.add(user)
        db.session.commit()
    days = app.config["TRACKER_AUDIT_DAYS"]
    with time_machine.travel(NOW - timedelta(days=days + 5), tick=False):
        c = _signed_in(app, "old@example.test")
        _logout(c)  # events sign_in, sign_out and an ended session, all too old
    with time_machine.travel(NOW - timedelta(days=days - 5), tick=False):
        _signed_in(app, "old@example.test")  # a sign-in and an open (expired) session, kept


def _counts(app) -> tuple[int, int]:
    with app.app_context():
        events = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        sessions = db.session.scalar(sa.select(sa.func.count()).select_from(UserSession))
        return events, sessions


def test_the_scheduler_purges_old_events_and_sessions_daily(app):
    from tracker.scheduler import JOBS, Scheduler

    (purge,) = [job for job in JOBS if job.id == "purge"]
    assert app.config[purge.every_setting] == 24 * 3600
    _old_and_new_records(app)
    assert _counts(app) == (3, 2)
    with time_machine.travel(NOW, tick=False):
        assert Scheduler(app).run_once()
    assert _counts(app) == (1, 1)
    with time_machine.travel(NOW + timedelta(seconds=1), tick=False):  # after the released lease
        assert Scheduler(app).run_once()  # idempotent
    assert _counts(app) == (1, 1)


def test_purge_audit_command(app, runner):
    _old_and_new_records(app)
    with time_machine.travel(NOW, tick=False):
        dry = runner.invoke(args=["tracker", "purge-audit", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "2 security events and 1 sessions older than 400 days would be deleted" in dry.output
        assert _counts(app) == (3, 2)
        done = runner.invoke(args=["tracker", "purge-audit"])
        assert done.exit_code == 0, done.output
        assert "2 security events and 1 sessions older than 400 days deleted." in done.output
        assert _counts(app) == (1, 1)
        again = runner.invoke(args=["tracker", "purge-audit"])
        assert "0 security events and 0 sessions" in again.output
