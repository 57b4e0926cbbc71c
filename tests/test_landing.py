"""Each role starts where its work is, and the admin home: dormant accounts, offices without a
manager, the outbox's health."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, csrf_token, login
from tracker.auth import twofactor
from tracker.extensions import db
from tracker.models import Notification, Office, RelayHealth, User

HOMES = {
    "focal_sg": "/my",
    "reviewer": "/verification",
    "manager": "/dashboard",
    "manager_sg": "/dashboard",
    "admin": "/admin",
}


# --- where each role lands -------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "home"), HOMES.items())
def test_each_role_lands_on_its_own_page_with_the_actions_list_in_the_menu(client, world, role, home):
    signed_in = login(client, world.users[role])
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == home
    page = client.get(home)
    assert page.status_code == 200
    assert '<li><a href="/">Actions</a></li>' in page.text  # the Actions list is one click away
    # Signed in already: the sign-in page sends the person home too.
    assert client.get("/auth/login").headers["Location"] == home


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/recommendations", "/recommendations"),  # a page asked for wins
        ("/?office=SG", "/?office=SG"),  # so does a filtered Actions list
        ("/", "/verification"),  # the site's address alone is no wish: the person's home
        ("https://evil.test/my", "/verification"),  # elsewhere: refused
    ],
)
def test_a_safe_next_page_wins_over_the_home(client, world, target, expected):
    page = client.get("/auth/login", query_string={"next": target})
    response = client.post(
        "/auth/login",
        query_string={"next": target},
        data={"email": world.users["reviewer"], "password": PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302 and response.headers["Location"] == expected


def test_opening_the_site_signed_out_then_signing_in_lands_on_the_home(client, world):
    asked = client.get("/")
    assert asked.headers["Location"] == "/auth/login?next=%2F"
    page = client.get(asked.headers["Location"])
    response = client.post(
        asked.headers["Location"],
        data={"email": world.users["focal_sg"], "password": PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.headers["Location"] == "/my"
    assert client.get("/").status_code == 200  # the root still shows the Actions list


def test_after_the_second_factor_the_reviewer_lands_on_the_review_queue(app, client, world):
    enrolled = datetime.now(UTC) - timedelta(minutes=5)
    with app.app_context():
        user = db.session.get(User, world.user_ids["reviewer"])
        secret = twofactor.new_secret()
        assert twofactor.enable(user, secret, pyotp.TOTP(secret).at(enrolled), enrolled)
        db.session.commit()
    assert login(client, world.users["reviewer"]).headers["Location"] == "/auth/second-factor"
    page = client.get("/auth/second-factor")
    done = client.post(
        "/auth/second-factor",
        data={"csrf_token": csrf_token(page.text), "code": pyotp.TOTP(secret).now()},
    )
    assert done.status_code == 302 and done.headers["Location"] == "/verification"


# --- the admin home --------------------------------------------------------------------------------


def test_only_admins_see_the_admin_home_and_its_menu_entry(world, login_as):
    for role in ("reviewer", "manager", "manager_sg", "focal_sg"):
        c = login_as(world.users[role])
        assert c.get("/admin").status_code == 403
        assert 'href="/admin"' not in c.get("/").text
    admin = login_as(world.users["admin"])
    page = admin.get("/admin").text
    assert '<li><a href="/admin">Administration</a></li>' in admin.get("/").text
    for link in ("/admin/users", "/admin/users/new", "/admin/offices", "/admin/outbox", "/admin/audit"):
        assert f'href="{link}"' in page


def _section(page: str, anchor: str) -> str:
    """The HTML of the admin home's section with this id."""
    return re.search(rf'<section class="card" id="{anchor}".*?</section>', page, re.S).group(0)


def test_dormant_accounts_are_listed_never_signed_in_first(app, world, login_as):
    now = datetime.now(UTC)
    admin = login_as(world.users["admin"])
    # An invited account, made through the admin page: it has never signed in.
    page = admin.get("/admin/users/new")
    invited = {
        "csrf_token": csrf_token(page.text),
        "email": "new.focal@example.test",
        "name": "New Focal",
        "role": "focal_point",
        "office": "SG",
        "language": "",
        "timezone": "",
        "invite": "y",
    }
    assert admin.post("/admin/users/new", data=invited).status_code == 302
    with app.app_context():
        people = {u.email: u for u in db.session.scalars(sa.select(User))}
        people[world.users["reviewer"]].last_login_at = now - timedelta(days=89)  # recent enough
        people[world.users["manager"]].last_login_at = now - timedelta(days=91)
        people[world.users["focal_my"]].last_login_at = now - timedelta(days=400)
        invitation_at = db.session.scalar(
            sa.select(Notification.created_at).where(Notification.kind == "invitation")
        )
        ids = {email: u.id for email, u in people.items()}
        db.session.commit()
    panel = _section(admin.get("/admin").text, "dormant")
    names = re.findall(r'<a href="/admin/users/(\d+)/edit">([^<]+)</a>', panel)
    # Never signed in (the invited account, the other world accounts), then the longest since.
    never = {"New Focal", "Manager Sg", "Focal Sg"}
    assert {name for _id, name in names[: len(never)]} == never
    assert [name for _id, name in names[len(never) :]] == ["Focal My", "Manager"]
    assert (str(ids["new.focal@example.test"]), "New Focal") in names
    assert "Reviewer" not in panel and "Inactive Sg" not in panel and "Admin" not in panel
    row = re.search(r"New Focal.*?</tr>", panel, re.S).group(0)
    assert f'datetime="{invitation_at.strftime("%Y-%m-%dT%H:%M")}' in row  # the invitation's date
    assert "Never" in row
    assert "more account" not in panel


def test_many_dormant_accounts_are_capped_with_how_many_more(app, world, login_as):
    with app.app_context():
        db.session.add_all(
            User(email=f"quiet{i:02}@example.test", name=f"Quiet {i}", role="reviewer") for i in range(30)
        )
        db.session.commit()
    panel = _section(login_as(world.users["admin"]).get("/admin").text, "dormant")
    # 30 new, plus 5 of the world's 6 active accounts (the admin just signed in): 35, 20 shown.
    assert len(re.findall(r'href="/admin/users/\d+/edit"', panel)) == 20
    assert "And 15 more accounts." in panel and 'href="/admin/users?state=active"' in panel


def test_offices_without_an_active_manager(app, world, login_as):
    with app.app_context():
        db.session.add_all(
            [
                Office(code="KH", name="Cambodia IP", country="Cambodia", timezone="Asia/Phnom_Penh"),
                Office(code="LA", name="Lao IP", country="Lao PDR", timezone="Asia/Vientiane", active=False),
            ]
        )
        kh = db.session.scalar(sa.select(Office).where(Office.code == "KH"))
        db.session.add(
            User(email="gone.kh@example.test", name="Gone", role="manager", office=kh, active=False)
        )
        db.session.commit()
        kh_id = kh.id
    panel = _section(login_as(world.users["admin"]).get("/admin").text, "unmanaged")
    codes = re.findall(r'<a href="/admin/offices/\d+/edit">(\w+)</a>', panel)
    assert codes == ["KH", "MY"]  # SG has its manager; LA is inactive; KH's manager is deactivated
    assert f'href="/admin/offices/{kh_id}/edit"' in panel and 'href="/admin/users?office=KH"' in panel


def test_outbox_health_shows_the_backlog_and_the_relay(app, world, login_as):
    now = datetime.now(UTC)
    with app.app_context():
        focal = db.session.get(User, world.user_ids["focal_sg"])
        for n, (state, hours) in enumerate((("pending", 5), ("pending", 1), ("failed", 2), ("sent", 9))):
            db.session.add(
                Notification(
                    kind="overdue",
                    recipient=focal,
                    to_address=focal.email,
                    idempotency_key=f"landing:{n}",
                    subject="s",
                    body_text="t",
                    body_html="<p>t</p>",
                    state=state,
                    created_at=now - timedelta(hours=hours),
                )
            )
        db.session.add(
            RelayHealth(
                name="smtp",
                failing_since=now - timedelta(minutes=30),
                last_failure_at=now,
                last_error="421 try again later",
            )
        )
        db.session.commit()
    panel = _section(login_as(world.users["admin"]).get("/admin").text, "outbox-health")
    assert re.search(r'data-figure="pending">2<', panel)
    assert re.search(r'data-figure="failed"><a href="/admin/outbox\?state=failed">1</a>', panel)
    assert "5 hours ago" in panel
    assert "Failing" in panel and "421 try again later" in panel
    assert 'href="/admin/outbox"' in panel


def test_the_admin_home_runs_a_bounded_number_of_statements(app, world, login_as, count_queries):
    admin = login_as(world.users["admin"])

    def statements() -> int:
        with count_queries() as seen:
            assert admin.get("/admin").status_code == 200
        return len(seen)

    def grow(n: int, start: int) -> None:
        with app.app_context():
            for i in range(start, start + n):
                office = Office(code=f"X{i}", name=f"Office {i}", country="X", timezone="Asia/Bangkok")
                db.session.add(office)
                user = User(
                    email=f"dormant{i}@example.test", name=f"D {i}", role="focal_point", office=office
                )
                db.session.add(user)
                db.session.add(
                    Notification(
                        kind="invitation",
                        recipient=user,
                        to_address=user.email,
                        idempotency_key=f"invitation:{i}",
                        subject="s",
                        body_text="t",
                        body_html="<p>t</p>",
                        state=("pending", "failed", "sent")[i % 3],
                    )
                )
            db.session.commit()

    grow(2, 0)
    small = statements()
    grow(40, 100)
    assert statements() == small
