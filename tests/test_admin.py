"""The admin's list of users."""

import pytest

from tracker.extensions import db
from tracker.models import User


def test_admin_sees_every_user(world, login_as):
    page = login_as(world.users["admin"]).get("/admin/users")
    assert page.status_code == 200
    for email in world.users.values():
        assert email in page.text
    assert "Deactivated" in page.text and "Focal point" in page.text and "All offices" in page.text


@pytest.mark.parametrize("role", ["reviewer", "manager", "manager_sg", "focal_sg"])
def test_others_are_refused(world, login_as, role):
    page = login_as(world.users[role]).get("/admin/users")
    assert page.status_code == 403
    assert "You do not have permission" in page.text


def test_users_link_only_for_admins(world, login_as):
    assert 'href="/admin/users"' in login_as(world.users["admin"]).get("/").text
    assert 'href="/admin/users"' not in login_as(world.users["reviewer"]).get("/").text


def test_users_are_paginated(app, world, login_as):
    with app.app_context():
        db.session.add_all(
            User(email=f"u{i:03}@example.test", name=f"U{i}", role="manager") for i in range(60)
        )
        db.session.commit()
    c = login_as(world.users["admin"])
    first = c.get("/admin/users").text
    assert "67 users" in first and "Page 1 of 2" in first
    assert "u059@example.test" in c.get("/admin/users?page=2").text
