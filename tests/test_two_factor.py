"""The second factor (TOTP, RFC 6238) through HTTP: enrolment from the profile and forced at sign-in,
codes checked with a real authenticator's algorithm (pyotp, computed here), replays refused,
recovery codes, the rate limit, removal, the admins' reset and the pending sign-in's 10 minutes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import PASSWORD, csrf_token, login
from tracker.auth import twofactor
from tracker.extensions import db, limiter
from tracker.models import AuditEvent, RecoveryCode, User, UserSession

#: An hour ago, in the middle of a 30-second step (so that "the step before" and "after" are clear);
#: sessions opened then are still open now.
T0 = datetime.now(UTC).replace(second=15, microsecond=0) - timedelta(hours=1)
RECOVERY_CODE = re.compile(r"<code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{2})</code>")


@pytest.fixture(autouse=True)
def _fresh_limits(app) -> Iterator[None]:
    """Each test starts with empty rate-limit counters, and leaves none behind."""
    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture
def required_roles(app) -> Iterator[Callable[..., None]]:
    """Set TRACKER_2FA_REQUIRED_ROLES for one test; restored afterwards."""
    saved = app.config["TRACKER_2FA_REQUIRED_ROLES"]

    def set_(*roles: str) -> None:
        app.config["TRACKER_2FA_REQUIRED_ROLES"] = tuple(roles)

    yield set_
    app.config["TRACKER_2FA_REQUIRED_ROLES"] = saved


def _user(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def _enrol(app, user_id: int, when: datetime) -> tuple[str, list[str]]:
    """Turn the second factor on for a user as of ``when`` (through the service); (secret, codes)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        secret = twofactor.new_secret()
        codes = twofactor.enable(user, secret, pyotp.TOTP(secret).at(when), when)
        db.session.commit()
    assert codes is not None
    return secret, codes


def _events(app, kind: str, subject_id: int) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.kind == kind, AuditEvent.subject_id == subject_id)
            .order_by(AuditEvent.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def _sessions(app, user_id: int) -> list[UserSession]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def _give_code(client, code: str, *, recovery: bool = False):
    """POST a code to the second-factor page (with the page's CSRF token)."""
    url = "/auth/second-factor" + ("?use=recovery" if recovery else "")
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    return client.post(url, data={"csrf_token": csrf_token(page.text), "code": code})


def _signed_in(client) -> bool:
    return client.get("/profile").status_code == 200


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- enrolment -------------------------------------------------------------------------------------


def test_enrolment_from_the_profile(app, world, login_as):
    uid = world.user_ids["focal_sg"]
    c = login_as(world.users["focal_sg"])
    profile = c.get("/profile").text
    assert "Two-factor authentication" in profile and "Your second factor is off." in profile
    assert 'href="/auth/second-factor/enrol"' in profile

    page = c.get("/auth/second-factor/enrol")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    svg = re.search(r"<svg .*?</svg>", page.text, re.S).group(0)
    assert 'role="img"' in svg and "<title>QR code for your authenticator app</title>" in svg
    assert "style=" not in svg  # the CSP allows no inline style: colours are attributes
    key = re.search(r'<code class="totp-key">([A-Z2-7 ]+)</code>', page.text).group(1)
    secret = key.replace(" ", "")
    assert len(secret) == 32 and key.count(" ") == 7  # in groups of four for typing
    assert _user(app, uid).totp_secret is None  # kept in the Flask session until confirmed
    assert c.get("/auth/second-factor/enrol").text.count(key) == 1  # the same key on reload

    token = csrf_token(page.text)
    wrong = c.post(
        "/auth/second-factor/enrol", data={"csrf_token": token, "code": _wrong(pyotp.TOTP(secret).now())}
    )
    assert wrong.status_code == 422 and "This code is not right" in wrong.text
    assert _user(app, uid).totp_secret is None
    assert len(_events(app, "second_factor_failed", uid)) == 1

    done = c.post("/auth/second-factor/enrol", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    codes = RECOVERY_CODE.findall(done.text)
    assert len(codes) == len(set(codes)) == 10
    assert "I have saved these codes" in done.text and 'href="/profile#second-factor-heading"' in done.text
    user = _user(app, uid)
    assert user.totp_secret == secret and user.totp_enabled_at is not None
    with app.app_context():
        hashes = db.session.scalars(
            sa.select(RecoveryCode.code_hash).where(RecoveryCode.user_id == uid)
        ).all()
    assert len(hashes) == 10 and not any(
        code in h or code.replace("-", "") in h for code in codes for h in hashes
    )
    assert len(_events(app, "second_factor_enrolled", uid)) == 1

    # Shown once: the enrolment page now sends back to the profile, which shows no code.
    again = c.get("/auth/second-factor/enrol")
    assert again.status_code == 302 and again.headers["Location"].startswith("/profile")
    profile = c.get("/profile").text
    assert "Your second factor is on since" in profile and "You have 10 unused recovery codes." in profile
    assert not any(code in profile for code in codes)


# --- signing in with the second factor ---------------------------------------------------------------


def test_the_password_alone_does_not_sign_in_the_code_does(app, world, client):
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    first = login(client, world.users["focal_sg"])
    assert first.status_code == 302 and first.headers["Location"] == "/auth/second-factor"
    assert not _signed_in(client)
    page = client.get("/auth/second-factor")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
    assert 'href="/auth/second-factor?use=recovery"' in page.text

    wrong = _give_code(client, _wrong(pyotp.TOTP(secret).now()))
    assert wrong.status_code == 200 and "This code is not right" in wrong.text
    assert not _signed_in(client)
    assert [e.detail for e in _events(app, "second_factor_failed", uid)] == ["code at sign-in"]

    right = _give_code(client, pyotp.TOTP(secret).now())
    assert right.status_code == 302 and right.headers["Location"] == "/my"
    assert _signed_in(client)
    assert [s.method for s in _sessions(app, uid)] == ["password+totp"]
    assert [e.detail for e in _events(app, "sign_in", uid)] == ["password+totp"]


def test_a_code_is_never_accepted_twice(app, world):
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    totp = pyotp.TOTP(secret)
    with time_machine.travel(T0, tick=False):
        one, two = app.test_client(), app.test_client()
        login(one, world.users["focal_sg"])
        assert _give_code(one, totp.now()).status_code == 302
        assert _signed_in(one)
        # Someone who saw the code (or a replayed request) does not get in with it.
        login(two, world.users["focal_sg"])
        replay = _give_code(two, totp.now())
        assert replay.status_code == 200 and "it has been used already" in replay.text
        assert not _signed_in(two)
    with time_machine.travel(T0 + timedelta(seconds=30), tick=False):  # the next step: its code works
        assert _give_code(two, totp.now()).status_code == 302
        assert _signed_in(two)


def test_codes_of_the_step_before_and_after_are_accepted(app, world):
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    totp = pyotp.TOTP(secret)
    with time_machine.travel(T0, tick=False):
        previous, current, following, later = (totp.at(T0 + timedelta(seconds=s)) for s in (-30, 0, 30, 60))
        c = app.test_client()
        login(c, world.users["focal_sg"])
        assert _give_code(c, later).status_code == 200  # two steps ahead: too far
        assert _give_code(c, previous).status_code == 302  # a slow typist's
        c = app.test_client()
        login(c, world.users["focal_sg"])
        assert _give_code(c, following).status_code == 302  # a phone's clock a little ahead
        c = app.test_client()
        login(c, world.users["focal_sg"])
        # The current step comes before the one just used: refused like a replay.
        assert _give_code(c, current).status_code == 200
        assert not _signed_in(c)
    with app.app_context():
        assert db.session.get(User, uid).totp_last_step == totp.timecode(T0) + 1


def test_a_recovery_code_signs_in_once(app, world, client):
    uid = world.user_ids["focal_sg"]
    _secret, codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    login(client, world.users["focal_sg"])
    page = client.get("/auth/second-factor?use=recovery")
    assert "Recovery code" in page.text and 'href="/auth/second-factor"' in page.text
    # Typed in capitals and without the dashes, as people do.
    used = _give_code(client, codes[3].upper().replace("-", " "), recovery=True)
    assert used.status_code == 302 and _signed_in(client)
    assert [s.method for s in _sessions(app, uid)] == ["password+recovery"]
    assert [e.detail for e in _events(app, "recovery_code_used", uid)] == ["9 recovery codes left"]

    other = app.test_client()
    login(other, world.users["focal_sg"])
    again = _give_code(other, codes[3], recovery=True)
    assert again.status_code == 200 and "This recovery code is not right" in again.text
    assert not _signed_in(other)
    with app.app_context():
        assert twofactor.recovery_codes_left(db.session.get(User, uid)) == 9


def test_the_second_factor_step_is_rate_limited(app, world, client):
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    totp = pyotp.TOTP(secret)
    login(client, world.users["focal_sg"])
    for attempt in range(4):
        assert _give_code(client, _wrong(totp.now())).status_code == 200, attempt
    # The fifth wrong code drops the pending sign-in: the password is asked for again.
    fifth = _give_code(client, _wrong(totp.now()))
    assert fifth.status_code == 302 and fifth.headers["Location"] == "/auth/login"
    assert "Too many wrong codes" in client.get("/auth/login").text
    assert client.get("/auth/second-factor").status_code == 302
    # Signing in again does not reset the count kept for the person: the limit holds.
    login(client, world.users["focal_sg"])
    page = client.get("/auth/second-factor")
    blocked = client.post(
        "/auth/second-factor", data={"csrf_token": csrf_token(page.text), "code": totp.now()}
    )
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers
    assert not _signed_in(client)
    assert len(_events(app, "second_factor_failed", uid)) == 5


def test_the_pending_sign_in_lasts_ten_minutes(app, world, client):
    secret, _codes = _enrol(app, world.user_ids["focal_sg"], T0 - timedelta(minutes=5))
    with time_machine.travel(T0, tick=False) as traveller:
        login(client, world.users["focal_sg"])
        token = csrf_token(client.get("/auth/second-factor").text)
        traveller.shift(timedelta(minutes=9, seconds=50))
        assert client.get("/auth/second-factor").status_code == 200  # still waiting
        traveller.shift(timedelta(seconds=20))
        late = client.post(
            "/auth/second-factor", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()}
        )
        assert late.status_code == 302 and late.headers["Location"] == "/auth/login"
        assert "not finished within 10 minutes" in client.get("/auth/login").text
        assert not _signed_in(client)
        assert client.get("/auth/second-factor").status_code == 302  # the marker is gone


def test_the_second_factor_page_without_a_pending_sign_in(app, world, client, login_as):
    assert client.get("/auth/second-factor").headers["Location"] == "/auth/login"
    assert client.get("/auth/second-factor/enrol").headers["Location"] == "/auth/login"
    signed_in = login_as(world.users["focal_sg"])
    assert signed_in.get("/auth/second-factor").headers["Location"] == "/my"


def test_a_password_set_from_a_reset_link_still_asks_for_the_second_factor(app, world, client):
    from tracker.notifications import account

    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    with app.app_context():
        token = account.password_token(db.session.get(User, uid), "reset")
    form = client.get(f"/account/reset/{token}")
    done = client.post(
        f"/account/reset/{token}",
        data={"csrf_token": csrf_token(form.text), "new": "brand-new-pass", "confirm": "brand-new-pass"},
    )
    assert done.status_code == 302 and done.headers["Location"] == "/auth/second-factor"
    assert not _signed_in(client)
    assert _give_code(client, pyotp.TOTP(secret).now()).status_code == 302
    assert _signed_in(client)


# --- roles that require a second factor ----------------------------------------------------------------


def test_a_required_role_enrols_before_the_session_opens(app, world, client, required_roles):
    required_roles("admin", "reviewer")
    uid = world.user_ids["reviewer"]
    first = login(client, world.users["reviewer"])
    assert first.status_code == 302 and first.headers["Location"] == "/auth/second-factor/enrol"
    assert not _signed_in(client)
    page = client.get("/auth/second-factor/enrol")
    assert "Your role requires a second factor" in page.text and "<svg" in page.text
    secret = re.search(r'<code class="totp-key">([A-Z2-7 ]+)</code>', page.text).group(1).replace(" ", "")
    # The pending person cannot skip the enrolment by going to its last step.
    early = client.post("/auth/second-factor/enrol/done", data={"csrf_token": csrf_token(page.text)})
    assert early.headers["Location"] == "/auth/second-factor/enrol" and not _signed_in(client)

    codes_page = client.post(
        "/auth/second-factor/enrol",
        data={"csrf_token": csrf_token(page.text), "code": pyotp.TOTP(secret).now()},
    )
    assert codes_page.status_code == 200 and len(RECOVERY_CODE.findall(codes_page.text)) == 10
    assert 'action="/auth/second-factor/enrol/done"' in codes_page.text
    assert not _signed_in(client)  # not before the codes were seen
    go_on = client.post("/auth/second-factor/enrol/done", data={"csrf_token": csrf_token(codes_page.text)})
    assert go_on.status_code == 302 and go_on.headers["Location"] == "/verification"
    assert _signed_in(client)
    assert [s.method for s in _sessions(app, uid)] == ["password+totp"]

    # People in other roles sign in with their password alone.
    other = app.test_client()
    assert login(other, world.users["focal_sg"]).headers["Location"] == "/my"
    assert _signed_in(other)


def test_enrolment_done_does_not_stand_in_for_an_existing_second_factor(app, world, client):
    _enrol(app, world.user_ids["focal_sg"], T0 - timedelta(minutes=5))
    login(client, world.users["focal_sg"])
    page = client.get("/auth/second-factor")
    skipped = client.post("/auth/second-factor/enrol/done", data={"csrf_token": csrf_token(page.text)})
    assert skipped.headers["Location"] == "/auth/second-factor"
    assert client.get("/auth/second-factor/enrol").headers["Location"] == "/auth/second-factor"
    assert not _signed_in(client)


def _sign_in_with_code(app, email: str, secret: str, when: datetime):
    c = app.test_client()
    with time_machine.travel(when, tick=False):
        login(c, email)
        assert _give_code(c, pyotp.TOTP(secret).now()).status_code == 302
    return c


def test_removal_is_refused_for_a_required_role_and_allowed_otherwise(app, world, required_roles):
    required_roles("reviewer")
    reviewer_id, focal_id = world.user_ids["reviewer"], world.user_ids["focal_sg"]
    reviewer_secret, _ = _enrol(app, reviewer_id, T0 - timedelta(minutes=5))
    focal_secret, _ = _enrol(app, focal_id, T0 - timedelta(minutes=5))

    reviewer = _sign_in_with_code(app, world.users["reviewer"], reviewer_secret, T0)
    profile = reviewer.get("/profile").text
    assert "Your role requires a second factor, so it cannot be removed." in profile
    assert "/auth/second-factor/remove" not in profile
    refused = reviewer.get("/auth/second-factor/remove")
    assert refused.status_code == 302
    assert "Your role requires a second factor: it cannot be removed." in reviewer.get("/profile").text
    forged = reviewer.post(
        "/auth/second-factor/remove",
        data={"csrf_token": csrf_token(profile), "password": PASSWORD, "code": reviewer_secret},
    )
    assert forged.status_code == 302
    assert _user(app, reviewer_id).has_second_factor

    focal = _sign_in_with_code(app, world.users["focal_sg"], focal_secret, T0)
    assert 'href="/auth/second-factor/remove"' in focal.get("/profile").text
    form = focal.get("/auth/second-factor/remove")
    token = csrf_token(form.text)
    code = pyotp.TOTP(focal_secret).now()
    bad_password = focal.post(
        "/auth/second-factor/remove", data={"csrf_token": token, "password": "wrong", "code": code}
    )
    assert bad_password.status_code == 422 and "The password is not right." in bad_password.text
    bad_code = focal.post(
        "/auth/second-factor/remove",
        data={"csrf_token": token, "password": PASSWORD, "code": _wrong(code)},
    )
    assert bad_code.status_code == 422 and "This code is not right" in bad_code.text
    assert _user(app, focal_id).has_second_factor
    assert [e.detail for e in _events(app, "second_factor_failed", focal_id)] == [
        "removing the second factor"
    ]
    removed = focal.post(
        "/auth/second-factor/remove", data={"csrf_token": token, "password": PASSWORD, "code": code}
    )
    assert removed.status_code == 302
    assert "Your second factor is removed" in focal.get("/profile").text
    user = _user(app, focal_id)
    assert (user.totp_secret, user.totp_enabled_at, user.totp_last_step) == (None, None, None)
    assert len(_events(app, "second_factor_disabled", focal_id)) == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 10  # the reviewer's
    fresh = app.test_client()
    assert login(fresh, world.users["focal_sg"]).headers["Location"] == "/my"  # the password alone again


# --- recovery codes renewed --------------------------------------------------------------------------


def test_recovery_codes_are_renewed_after_a_confirmation(app, world):
    uid = world.user_ids["focal_sg"]
    secret, old_codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    c = _sign_in_with_code(app, world.users["focal_sg"], secret, T0)
    assert 'href="/auth/second-factor/recovery-codes"' in c.get("/profile").text
    confirm = c.get("/auth/second-factor/recovery-codes")
    assert confirm.status_code == 200 and "Make new recovery codes?" in confirm.text
    renewed = c.post("/auth/second-factor/recovery-codes", data={"csrf_token": csrf_token(confirm.text)})
    assert renewed.status_code == 200 and renewed.headers["Cache-Control"] == "no-store"
    new_codes = RECOVERY_CODE.findall(renewed.text)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert "Your earlier recovery codes no longer work." in renewed.text
    assert len(_events(app, "recovery_codes_renewed", uid)) == 1

    other = app.test_client()
    login(other, world.users["focal_sg"])
    assert _give_code(other, old_codes[0], recovery=True).status_code == 200  # an old one: refused
    assert _give_code(other, new_codes[0], recovery=True).status_code == 302


# --- the admins' reset -------------------------------------------------------------------------------


def test_an_admin_resets_a_second_factor(app, world, login_as, required_roles):
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    person = _sign_in_with_code(app, world.users["focal_sg"], secret, T0)
    assert _signed_in(person)

    reviewer = login_as(world.users["reviewer"])
    assert reviewer.get(f"/admin/users/{uid}/reset-second-factor").status_code == 403

    admin = login_as(world.users["admin"])
    edit = admin.get(f"/admin/users/{uid}/edit").text
    assert re.search(r'data-figure="second-factor">On since [^<]*; 10 unused recovery codes<', edit)
    assert f'href="/admin/users/{uid}/reset-second-factor"' in edit
    confirm = admin.get(f"/admin/users/{uid}/reset-second-factor")
    assert confirm.status_code == 200 and "Reset the second factor of Focal Sg?" in confirm.text
    assert _user(app, uid).has_second_factor  # asking changes nothing
    done = admin.post(
        f"/admin/users/{uid}/reset-second-factor", data={"csrf_token": csrf_token(confirm.text)}
    )
    assert done.status_code == 302 and done.headers["Location"] == f"/admin/users/{uid}/edit"
    assert "is reset and they are signed out everywhere" in admin.get(done.headers["Location"]).text

    user = _user(app, uid)
    assert (user.totp_secret, user.totp_enabled_at, user.totp_last_step) == (None, None, None)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    events = _events(app, "second_factor_reset", uid)
    assert [(e.actor_id, e.detail) for e in events] == [(world.user_ids["admin"], "1 sessions ended")]
    assert [(s.ended_at is not None, s.end_reason) for s in _sessions(app, uid)] == [
        (True, "second_factor_reset")
    ]
    assert not _signed_in(person)

    # Next time: the password alone, or, when the role requires it, a new enrolment first.
    assert login(app.test_client(), world.users["focal_sg"]).headers["Location"] == "/my"
    required_roles("focal_point")
    assert (
        login(app.test_client(), world.users["focal_sg"]).headers["Location"] == "/auth/second-factor/enrol"
    )

    # Nothing left to reset; and an admin does not reset their own.
    again = admin.get(f"/admin/users/{uid}/reset-second-factor")
    assert again.status_code == 302
    own = admin.get(f"/admin/users/{world.user_ids['admin']}/reset-second-factor")
    assert own.status_code == 302


def test_the_api_is_unaffected(app, world):
    """Tokens are made in a signed-in session (which had its second factor); the API takes the token alone."""
    uid = world.user_ids["focal_sg"]
    secret, _codes = _enrol(app, uid, T0 - timedelta(minutes=5))
    c = _sign_in_with_code(app, world.users["focal_sg"], secret, T0)
    profile = c.get("/profile")
    made = c.post("/profile/tokens", data={"csrf_token": csrf_token(profile.text), "name": "script"})
    assert made.status_code == 200
    token = re.search(r'id="new-token"[^>]*value="([^"]+)"', made.text).group(1)
    api = app.test_client().get("/api/v1/actions", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
