"""Preferences, one-click unsubscribe, reset and invitation links, and workflow mail in the outbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import time_machine

from tests.conftest import PASSWORD, csrf_token, login
from tracker.extensions import db
from tracker.models import ActionItem, Notification, User
from tracker.notifications import account, tokens


def _outbox(app, kind: str | None = None) -> list[Notification]:
    with app.app_context():
        query = sa.select(Notification).order_by(Notification.id)
        if kind:
            query = query.where(Notification.kind == kind)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def test_preferences_page_switches_optional_mail(app, world, login_as):
    c = login_as(world.users["focal_sg"])
    page = c.get("/preferences")
    assert page.status_code == 200 and "always goes out" in page.text
    assert "quarterly digest" not in page.text  # not a manager
    saved = c.post("/preferences", data={"csrf_token": csrf_token(page.text), "notify_stale": "y"})
    assert saved.status_code == 302
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        assert (user.notify_due_soon, user.notify_stale, user.notify_assignment) == (False, True, False)


def test_one_click_unsubscribe_without_signing_in(app, world, client):
    with app.app_context():
        token = tokens.make("unsubscribe", {"u": world.user_ids["focal_sg"], "k": "due_soon"})
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "reminders before a deadline" in page.text
    # What a mail client does (RFC 8058): a POST with this body, no cookie, no CSRF token.
    done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "will no longer receive" in done.text
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        assert user.notify_due_soon is False and user.notify_stale is True


def test_bad_unsubscribe_links_change_nothing(app, world, client):
    with app.app_context():
        good = tokens.make("unsubscribe", {"u": world.user_ids["focal_sg"], "k": "due_soon"})
        wrong_purpose = tokens.make("reset", {"u": world.user_ids["focal_sg"], "k": "due_soon"})
        unknown_user = tokens.make("unsubscribe", {"u": 999999, "k": "due_soon"})
        not_optional = tokens.make("unsubscribe", {"u": world.user_ids["focal_sg"], "k": "overdue"})
    for token in (good[:-3] + "abc", wrong_purpose, unknown_user, not_optional, "garbage"):
        response = client.post(f"/unsubscribe/{token}")
        assert response.status_code == 400 and "This link does not work" in response.text
    with time_machine.travel(datetime.now(UTC) + timedelta(days=401)):
        assert client.post(f"/unsubscribe/{good}").status_code == 400  # expired
    with app.app_context():
        assert db.session.get(User, world.user_ids["focal_sg"]).notify_due_soon is True


def test_password_reset_by_mailed_link(app, world, client):
    page = client.get("/auth/forgot")
    unknown = client.post(
        "/auth/forgot", data={"csrf_token": csrf_token(page.text), "email": "nobody@example.test"}
    )
    known = client.post(
        "/auth/forgot", data={"csrf_token": csrf_token(page.text), "email": "Focal.SG@example.test"}
    )
    assert unknown.status_code == known.status_code == 302
    # The same words for the unknown and the known address: nothing is revealed.
    assert client.get("/auth/login").text.count("a link to set a new password is on its way") == 2
    rows = _outbox(app, "password_reset")
    assert [r.to_address for r in rows] == ["focal.sg@example.test"]
    link = re.search(r"http://[^\s]+/account/reset/[^\s]+", rows[0].body_text).group(0)
    assert rows[0].subject == "Set a new tracker password" and link in rows[0].body_html
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = client.get(f"/{path}")
    assert form.status_code == 200 and "focal.sg@example.test" in form.text
    short = client.post(
        f"/{path}", data={"csrf_token": csrf_token(form.text), "new": "short", "confirm": "short"}
    )
    assert short.status_code == 200 and "at least 10" in short.text
    done = client.post(
        f"/{path}",
        data={"csrf_token": csrf_token(form.text), "new": "brand-new-pass", "confirm": "brand-new-pass"},
    )
    assert done.status_code == 302
    assert client.get(f"/{path}").status_code == 400  # used once
    fresh = app.test_client()
    assert login(fresh, world.users["focal_sg"], PASSWORD).status_code == 200
    assert login(fresh, world.users["focal_sg"], "brand-new-pass").status_code == 302


def test_reset_link_expires(app, world, client):
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        token = account.password_token(user, "reset")
        invite = account.password_token(user, "invite")
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=3)):
        assert client.get(f"/account/reset/{token}").status_code == 400
        assert client.get(f"/account/welcome/{invite}").status_code == 200  # invitations last 7 days
    assert client.get(f"/account/welcome/{token}").status_code == 400  # a reset token is no invitation


def test_reviewer_decisions_reach_the_owner(app, world, login_as):
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.status = "completed"
        user = db.session.get(User, world.user_ids["focal_sg"])
        user.notify_verified = False  # verified mail may be switched off, "sent back" may not
        user.notify_due_soon = False
        db.session.commit()
        version = item.version
    reviewer = login_as(world.users["reviewer"])
    url = f"/actions/{world.items['SG']}"
    token = csrf_token(reviewer.get(url).text)
    back = reviewer.post(
        url, data={"csrf_token": token, "version": version, "status": "in_progress", "note": "Add the link"}
    )
    assert back.status_code == 302
    rows = _outbox(app)
    assert [(r.kind, r.to_address) for r in rows] == [("sent_back", "focal.sg@example.test")]
    assert "Add the link" in rows[0].body_text and f"/actions/{world.items['SG']}" in rows[0].body_text
    assert rows[0].subject == "Sent back: “E-filing for SG” — SG"
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.status = "completed"
        db.session.commit()
        version = item.version
    reviewer.post(url, data={"csrf_token": token, "version": version, "status": "verified"})
    assert [r.kind for r in _outbox(app)] == ["sent_back"]  # the owner switched "verified" off


def test_admin_invites_a_user_who_chooses_a_password(app, world, login_as, client):
    admin = login_as(world.users["admin"])
    page = admin.get("/admin/users/new")
    assert '<input checked id="invite" name="invite"' in page.text  # invitations are the default
    data = {
        "csrf_token": csrf_token(page.text),
        "email": "new.focal@example.test",
        "name": "New Focal",
        "role": "focal_point",
        "office": "SG",
        "language": "",
        "timezone": "",
        "invite": "y",
    }
    missing = admin.post("/admin/users/new", data={k: v for k, v in data.items() if k != "invite"})
    assert "Give an initial password, or send an invitation." in missing.text
    assert admin.post("/admin/users/new", data=data).status_code == 302
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "new.focal@example.test"))
        assert user.password_hash is None
    [row] = _outbox(app, "invitation")
    assert row.to_address == "new.focal@example.test" and row.subject == "You are invited to tracker"
    path = re.search(r"http://[^/\s]+(/account/welcome/\S+)", row.body_text).group(1)
    form = client.get(path)
    assert "Welcome to tracker." in form.text
    done = client.post(
        path,
        data={"csrf_token": csrf_token(form.text), "new": "my-own-password", "confirm": "my-own-password"},
    )
    assert done.status_code == 302 and client.get("/").status_code == 200  # signed in
    assert login(app.test_client(), "new.focal@example.test", "my-own-password").status_code == 302


def test_account_and_workflow_mail_match_the_stored_renderings(app, world):
    """Text and HTML of each kind against tests/email_expected/ (UPDATE_EXPECTED=1 rewrites them)."""
    from tests.test_compose import check_expected, normalised
    from tracker.notifications.render import render_email

    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        admin = db.session.get(User, world.user_ids["admin"])
        item = db.session.get(ActionItem, world.items["SG"])
        renderings = {
            "invitation": render_email(
                "invitation",
                user,
                url="http://127.0.0.1:5000/account/welcome/TOKEN",
                invited_by=admin,
                days=7,
            ),
            "password_reset": render_email(
                "password_reset", user, url="http://127.0.0.1:5000/account/reset/TOKEN", hours=2
            ),
            "assignment": render_email("assignment", user, items=[item], role="owner"),
            "sent_back": render_email("sent_back", user, item=item, note="Add the <link> to the report."),
            "verified": render_email("verified", user, item=item, note=None),
        }
    for kind, email in renderings.items():
        check_expected(f"{kind}.txt", f"Subject: {email.subject}\n\n{normalised(email.text, world)}")
        check_expected(f"{kind}.html", normalised(email.html, world))
    assert "Add the &lt;link&gt; to the report." in renderings["sent_back"].html  # user text is escaped
