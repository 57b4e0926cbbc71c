"""My work (owners, deputies, managers) and the reviewers' verification queue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, User

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)  # noon in Singapore


def _items(app, world, specs) -> dict[str, int]:
    """Create items on SG: title → (deadline offset in days, status, owner label, deputy label)."""
    ids = {}
    with app.app_context():
        users = {label: db.session.get(User, uid) for label, uid in world.user_ids.items()}
        for title, (days, status, owner, deputy) in specs.items():
            item = ActionItem(
                recommendation_id=world.recommendation_id,
                office_id=world.offices["SG"],
                title=title,
                deadline=date(2026, 11, 24) + timedelta(days=days),
                status=status,
                owner=users.get(owner),
                deputy=users.get(deputy),
            )
            db.session.add(item)
            db.session.flush()
            ids[title] = item.id
        db.session.commit()
    return ids


SPECS = {
    "Late one": (-3, "in_progress", "focal_sg", None),
    "Soon one": (5, "not_started", "focal_sg", None),
    "Later one": (60, "blocked", None, "focal_sg"),
    "Done one": (-10, "completed", "focal_sg", None),
    "Someone else's": (1, "in_progress", "inactive_sg", None),
}


def test_my_work_lists_what_i_own_or_deputise_by_deadline(app, world, login_as):
    _items(app, world, SPECS)
    with time_machine.travel(NOW, tick=False):
        page = login_as(world.users["focal_sg"]).get("/my").text
    titles = [t for t in SPECS if t in page]
    assert titles == ["Late one", "Soon one", "Later one"]
    assert page.index("Late one") < page.index("Soon one") < page.index("Later one")
    # The world's own SG item is due today: due soon too.
    assert page.count('overdue-flag">Overdue</span>') == 1
    assert page.count('due-soon-flag">Due soon</span>') == 2
    assert "Deputy" in page and "4 open actions" in page and "Someone else" not in page


def test_manager_sees_every_open_action_of_their_scope(app, world, login_as):
    _items(app, world, SPECS)
    with time_machine.travel(NOW, tick=False):
        page = login_as(world.users["manager_sg"]).get("/my").text
    assert "Someone else&#39;s" in page and "E-filing for SG" in page and "E-filing for MY" not in page
    assert "Done one" not in page


def test_verification_queue_and_one_click_verify(app, world, login_as):
    ids = _items(app, world, {"Reported": (-1, "completed", "focal_sg", None)})
    with app.app_context():
        db.session.add(
            ActionUpdate(
                action_item_id=ids["Reported"],
                author_id=world.user_ids["focal_sg"],
                old_status="in_progress",
                new_status="completed",
                note="All published",
                evidence_url="https://ipos.example/report",
            )
        )
        db.session.commit()
    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification")
    assert queue.status_code == 200
    assert (
        "Reported" in queue.text
        and "All published" in queue.text
        and "https://ipos.example/report" in queue.text
    )
    assert "1 action awaits verification" in queue.text
    done = reviewer.post(
        f"/actions/{ids['Reported']}",
        query_string={"next": "/verification"},
        data={"csrf_token": csrf_token(queue.text), "version": "1", "status": "verified"},
    )
    assert done.status_code == 302 and done.headers["Location"] == "/verification"
    after = reviewer.get("/verification").text
    assert "Nothing awaits verification." in after and "Your update is saved." in after
    with app.app_context():
        assert db.session.get(ActionItem, ids["Reported"]).status == "verified"


def test_queue_is_for_reviewers_and_admins(world, login_as):
    for role in ("manager", "manager_sg", "focal_sg"):
        c = login_as(world.users[role])
        assert c.get("/verification").status_code == 403
        assert 'href="/verification"' not in c.get("/").text
    assert login_as(world.users["admin"]).get("/verification").status_code == 200


def test_my_work_and_queue_run_bounded_statements(app, world, login_as, count_queries):
    focal = login_as(world.users["focal_sg"])
    reviewer = login_as(world.users["reviewer"])

    def statements() -> list[int]:
        counts = []
        for client, url in ((focal, "/my"), (reviewer, "/verification")):
            with count_queries() as seen:
                assert client.get(url).status_code == 200
            counts.append(len(seen))
        return counts

    def grow(n: int, start: int) -> None:
        specs = {
            f"Item {i}": (i % 30 - 10, ("completed", "in_progress")[i % 2], "focal_sg", "focal_sg")
            for i in range(start, start + n)
        }
        ids = _items(app, world, specs)
        with app.app_context():
            for item_id in ids.values():
                db.session.add(ActionUpdate(action_item_id=item_id, new_status="completed", note="done"))
            db.session.commit()

    grow(4, 0)
    small = statements()
    grow(40, 100)
    assert statements() == small
