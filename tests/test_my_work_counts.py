"""My work's counts (overdue, due within 14 days, awaiting verification, sent back) and the
filters they link to, read through the page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, User

NOW = datetime(2026, 11, 24, 4, tzinfo=UTC)  # noon in Singapore and Kuala Lumpur
TODAY = date(2026, 11, 24)
COUNT = re.compile(r'id="count-(\w+)"[^>]*>\s*<span class="tile-count">(\d+)</span>')
TITLE = re.compile(r'<td data-label="Action"><a href="/actions/\d+">([^<]+)</a>')


def _item(world, users, title, days, status, owner="focal_sg", deputy=None, office="SG", history=()):
    """An item with history rows: (minutes before NOW, author, old status, new status, event)."""
    item = ActionItem(
        recommendation_id=world.recommendation_id,
        office_id=world.offices[office],
        title=title,
        deadline=TODAY + timedelta(days=days),
        status=status,
        progress=100 if status == "completed" else 10,
        owner=users.get(owner),
        deputy=users.get(deputy),
    )
    item.updates = [
        ActionUpdate(
            author=users[author],
            created_at=NOW - timedelta(minutes=minutes),
            old_status=old,
            new_status=new,
            event=event,
            note="n",
        )
        for minutes, author, old, new, event in history
    ]
    db.session.add(item)
    return item


REPORTED = (300, "focal_sg", "in_progress", "completed", None)
SENT_BACK = (200, "reviewer", "completed", "in_progress", "sent_back")


def _programme(app, world) -> None:
    """Items of every kind around focal_sg; the world's own SG item is due today (due soon)."""
    with app.app_context():
        users = {label: db.session.get(User, uid) for label, uid in world.user_ids.items()}
        specs = [
            ("Late owned", -3, "in_progress", "focal_sg", None, "SG", ()),
            ("Late deputised", -1, "blocked", "inactive_sg", "focal_sg", "SG", ()),
            ("Late colleague", -5, "in_progress", "inactive_sg", None, "SG", ()),
            ("Soon owned", 5, "not_started", "focal_sg", None, "SG", ()),
            ("Last due-soon day", 14, "in_progress", "focal_sg", None, "SG", ()),
            ("Day after due soon", 15, "in_progress", "focal_sg", None, "SG", ()),
            ("Completed owned", 30, "completed", "focal_sg", None, "SG", (REPORTED,)),
            ("Reported for a colleague", 30, "completed", "inactive_sg", None, "SG", (REPORTED,)),
            ("Colleague reported", 30, "completed", "inactive_sg", None, "SG", ()),
            ("Verified owned", 30, "verified", "focal_sg", None, "SG", (REPORTED,)),
            # Sent back, then only a note (no status change): still sent back.
            (
                "Sent back with a note",
                40,
                "in_progress",
                "focal_sg",
                None,
                "SG",
                (REPORTED, SENT_BACK, (100, "focal_sg", "in_progress", "in_progress", None)),
            ),
            # Sent back, then blocked and unblocked: the status moved since, no longer "sent back".
            (
                "Sent back then moved",
                40,
                "in_progress",
                "focal_sg",
                None,
                "SG",
                (
                    REPORTED,
                    SENT_BACK,
                    (150, "focal_sg", "in_progress", "blocked", None),
                    (100, "focal_sg", "blocked", "in_progress", None),
                ),
            ),
            # An extension asked for after the send-back changes no status: still sent back.
            (
                "Sent back, extension asked",
                40,
                "in_progress",
                "focal_sg",
                None,
                "SG",
                (REPORTED, SENT_BACK, (100, "focal_sg", None, None, "extension_requested")),
            ),
            ("Sent back to a colleague", 40, "in_progress", "inactive_sg", None, "SG", (REPORTED, SENT_BACK)),
            ("Sent back in Malaysia", -2, "in_progress", "focal_my", None, "MY", (REPORTED, SENT_BACK)),
        ]
        for title, days, status, owner, deputy, office, history in specs:
            _item(world, users, title, days, status, owner, deputy, office, history)
        db.session.commit()


def _counts(page: str) -> dict[str, int]:
    return {name: int(n) for name, n in COUNT.findall(page)}


def _titles(page: str) -> set[str]:
    return set(TITLE.findall(page))


EXPECTED_FOCAL = {
    "overdue": {"Late owned", "Late deputised"},
    "due_soon": {"E-filing for SG", "Soon owned", "Last due-soon day"},
    "awaiting": {"Completed owned", "Reported for a colleague"},
    "sent_back": {"Sent back with a note", "Sent back, extension asked"},
}


@time_machine.travel(NOW, tick=False)
def test_counts_link_to_filters_that_list_what_they_count(app, world, login_as):
    _programme(app, world)
    focal = login_as(world.users["focal_sg"])
    page = focal.get("/my").text
    assert _counts(page) == {name: len(titles) for name, titles in EXPECTED_FOCAL.items()}
    assert 'aria-current="true"' not in page and 'id="show-all"' not in page
    for name, titles in EXPECTED_FOCAL.items():
        assert f'href="/my?show={name}"' in page
        shown = focal.get(f"/my?show={name}").text
        assert _titles(shown) == titles, name
        # The chosen count is marked, the others not; "show all" leads back to the whole list.
        assert re.search(rf'id="count-{name}"[^>]*aria-current="true"', shown)
        assert shown.count('aria-current="true"') == 1
        assert '<a href="/my" id="show-all">' in shown
        assert _counts(shown) == _counts(page)  # the counts stay whatever the list shows
    # Unfiltered: every open item the person owns or deputises, as before.
    assert _titles(page) == {
        "E-filing for SG",
        "Late owned",
        "Late deputised",
        "Soon owned",
        "Last due-soon day",
        "Day after due soon",
        "Sent back with a note",
        "Sent back then moved",
        "Sent back, extension asked",
    }


@time_machine.travel(NOW, tick=False)
def test_the_list_says_what_it_shows_and_an_unknown_filter_shows_all(app, world, login_as):
    _programme(app, world)
    focal = login_as(world.users["focal_sg"])
    assert "2 overdue actions" in focal.get("/my?show=overdue").text
    assert "3 open actions due within 14 days" in focal.get("/my?show=due_soon").text
    assert "2 actions awaiting verification" in focal.get("/my?show=awaiting").text
    assert "2 actions sent back" in focal.get("/my?show=sent_back").text
    unknown = focal.get("/my?show=everything").text
    assert "9 open actions" in unknown and 'aria-current="true"' not in unknown
    nothing = login_as(world.users["focal_my"]).get("/my?show=awaiting").text
    assert "No action matches this filter." in nothing and "Nothing open for you" not in nothing


@time_machine.travel(NOW, tick=False)
def test_a_manager_counts_their_whole_scope(app, world, login_as):
    _programme(app, world)
    page = login_as(world.users["manager_sg"]).get("/my").text
    assert _counts(page) == {"overdue": 3, "due_soon": 3, "awaiting": 3, "sent_back": 3}
    awaiting = login_as(world.users["manager_sg"]).get("/my?show=awaiting").text
    assert _titles(awaiting) == {"Completed owned", "Reported for a colleague", "Colleague reported"}


def _update(client, item_id: int, **data: str):
    page = client.get(f"/actions/{item_id}").text
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    form = {"csrf_token": csrf_token(page), "version": version, "status": "", "note": ""}
    form.update(data)
    return client.post(f"/actions/{item_id}", data=form)


def test_a_completion_sent_back_through_the_pages_counts_until_reported_again(app, world, login_as):
    # In real time: the history rows follow the world's first one, written a moment ago.
    item_id = world.items["SG"]
    focal, reviewer = login_as(world.users["focal_sg"]), login_as(world.users["reviewer"])
    assert _update(focal, item_id, status="in_progress", progress="40", note="Begun").status_code == 302
    assert _update(focal, item_id, status="completed", note="Done").status_code == 302
    assert _counts(focal.get("/my").text)["awaiting"] == 1
    sent = _update(reviewer, item_id, status="in_progress", progress="40", note="The evidence is missing.")
    assert sent.status_code == 302
    counts = _counts(focal.get("/my").text)
    assert (counts["awaiting"], counts["sent_back"]) == (0, 1)
    assert _titles(focal.get("/my?show=sent_back").text) == {"E-filing for SG"}
    # A note alone keeps it "sent back"; reporting it completed again ends that.
    assert _update(focal, item_id, progress="60", note="Evidence found").status_code == 302
    assert _counts(focal.get("/my").text)["sent_back"] == 1
    assert _update(focal, item_id, status="completed", note="With the evidence").status_code == 302
    counts = _counts(focal.get("/my").text)
    assert (counts["awaiting"], counts["sent_back"]) == (1, 0)


@time_machine.travel(NOW, tick=False)
def test_counts_and_filters_run_a_bounded_number_of_statements(app, world, login_as, count_queries):
    focal = login_as(world.users["focal_sg"])
    urls = ["/my", *(f"/my?show={name}" for name in EXPECTED_FOCAL)]

    def statements() -> list[int]:
        counts = []
        for url in urls:
            with count_queries() as seen:
                assert focal.get(url).status_code == 200
            counts.append(len(seen))
        return counts

    _programme(app, world)
    small = statements()
    with app.app_context():
        users = {label: db.session.get(User, uid) for label, uid in world.user_ids.items()}
        for n in range(60):
            status = ("in_progress", "completed", "blocked")[n % 3]
            history = (REPORTED, SENT_BACK) if status == "in_progress" else (REPORTED,)
            _item(world, users, f"More {n}", n % 40 - 10, status, history=history)
        db.session.commit()
    assert statements() == small
