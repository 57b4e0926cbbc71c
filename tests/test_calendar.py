"""The calendar feed: parsed with the icalendar package as a calendar client would, whose events
are in it (and whose never), stable UIDs, all-day deadlines, stamps, links, caching, and dead links."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest
import sqlalchemy as sa
import time_machine

from tracker.extensions import db
from tracker.models import ActionItem, User
from tracker.profile.calendar import create_secret

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)


def _feed_url(app, world, label: str) -> str:
    with app.app_context():
        secret = create_secret(db.session.get(User, world.user_ids[label]))
        db.session.commit()
    return f"/calendar/{secret}.ics"


def _events(client, url: str) -> dict[str, icalendar.Event]:
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/calendar"
    calendar = icalendar.Calendar.from_ical(response.data)
    assert str(calendar["VERSION"]) == "2.0" and str(calendar["PRODID"])
    assert calendar["X-PUBLISHED-TTL"].to_ical() == b"PT1H"
    assert calendar["REFRESH-INTERVAL"].to_ical() == b"PT1H"
    return {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}


def _add(app, world, code: str, title: str, **values) -> int:
    with app.app_context():
        item = ActionItem(
            recommendation_id=world.recommendation_id,
            office_id=world.offices[code],
            title=title,
            owner_id=values.pop("owner_id", world.user_ids["focal_sg" if code == "SG" else "focal_my"]),
            deadline=values.pop("deadline", date(2027, 1, 15)),
            **values,
        )
        db.session.add(item)
        db.session.commit()
        return item.id


def test_the_feed_lists_the_open_deadlines_one_owns_or_deputises(app, world, client):
    deputised = _add(
        app,
        world,
        "SG",
        "Deputised",
        owner_id=world.user_ids["manager_sg"],
        deputy_id=world.user_ids["focal_sg"],
        status="in_progress",
        progress=30,
    )
    _add(app, world, "SG", "Someone else's", owner_id=world.user_ids["manager_sg"])
    _add(app, world, "SG", "Done already", status="verified")
    _add(app, world, "SG", "Awaiting verification", status="completed")
    url = _feed_url(app, world, "focal_sg")

    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.headers["Cache-Control"] == "private, max-age=900"
    assert response.headers["ETag"] and "no-referrer" in response.headers["Referrer-Policy"]

    events = _events(client, url)
    assert set(events) == {"SG: E-filing for SG", "SG: Deputised"}
    mine = events["SG: E-filing for SG"]
    assert mine.decoded("DTSTART") == date(2026, 11, 24) and not isinstance(mine.decoded("DTSTART"), datetime)
    assert mine.decoded("DTEND") == date(2026, 11, 25)
    link = f"http://127.0.0.1:5000/actions/{world.items['SG']}"
    assert str(mine["URL"]) == link and link in str(mine["DESCRIPTION"])
    assert "R-1" in str(mine["DESCRIPTION"]) and "Overdue." in str(mine["DESCRIPTION"])
    assert str(mine["UID"]) == f"action-{world.items['SG']}@127.0.0.1"
    other = events["SG: Deputised"]
    assert str(other["UID"]) == f"action-{deputised}@127.0.0.1" and "30% done" in str(other["DESCRIPTION"])


def test_uids_stay_when_the_deadline_moves(app, world, client):
    url = _feed_url(app, world, "focal_sg")
    before = _events(client, url)["SG: E-filing for SG"]
    with app.app_context():
        item = db.session.get(ActionItem, world.items["SG"])
        item.deadline = date(2027, 2, 1)
        db.session.commit()
    after = _events(client, url)["SG: E-filing for SG"]
    assert str(after["UID"]) == str(before["UID"])
    assert after.decoded("DTSTART") == date(2027, 2, 1)
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])


def test_another_users_items_are_never_in_a_feed(app, world, client):
    _add(app, world, "MY", "Malaysian only")
    my_feed = _events(client, _feed_url(app, world, "focal_my"))
    assert set(my_feed) == {"MY: E-filing for MY", "MY: Malaysian only"}
    assert set(_events(client, _feed_url(app, world, "focal_sg"))) == {"SG: E-filing for SG"}
    # Managers oversee every open action of their scope: the SG manager only Singapore's.
    assert set(_events(client, _feed_url(app, world, "manager_sg"))) == {"SG: E-filing for SG"}
    assert set(_events(client, _feed_url(app, world, "manager"))) == {
        "SG: E-filing for SG",
        "MY: E-filing for MY",
        "MY: Malaysian only",
    }
    assert _events(client, _feed_url(app, world, "reviewer")) == {}  # owns nothing


def test_a_published_feed_is_stamped_when_it_is_made_and_each_event_when_it_changed(app, world, client):
    changed = datetime(2026, 11, 20, 14, 5, 7, tzinfo=UTC)
    with time_machine.travel(changed, tick=False):
        _add(app, world, "SG", "Changed earlier", deadline=date(2027, 3, 1))
    url = _feed_url(app, world, "focal_sg")
    generated = datetime(2026, 11, 30, 9, 15, 42, 123456, tzinfo=UTC)
    with time_machine.travel(generated, tick=False):
        calendar = icalendar.Calendar.from_ical(client.get(url).data)
    assert str(calendar["METHOD"]) == "PUBLISH"
    events = {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}
    assert len(events) == 2
    # RFC 5545 3.8.7.2: with METHOD, DTSTAMP is when the feed was made, the same for every event.
    assert {e.decoded("DTSTAMP") for e in events.values()} == {generated.replace(microsecond=0)}
    assert events["SG: Changed earlier"].decoded("LAST-MODIFIED") == changed
    with app.app_context():
        first_changed = db.session.get(ActionItem, world.items["SG"]).updated_at
    assert events["SG: E-filing for SG"].decoded("LAST-MODIFIED") == first_changed.replace(microsecond=0)
    assert all(e["DTSTAMP"].to_ical().endswith(b"Z") for e in events.values())  # in UTC


def test_an_unchanged_feed_answers_304(app, world, client):
    url = _feed_url(app, world, "focal_sg")
    with time_machine.travel(NOW, tick=False):
        first = client.get(url)
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    # An hour later the stamps differ but the events do not: still 304 ...
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        later = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert later.status_code == 304
    # ... until an event changes.
    with app.app_context():
        db.session.get(ActionItem, world.items["SG"]).progress = 40
        db.session.commit()
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        changed = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != first.headers["ETag"]


@pytest.mark.parametrize("token", ["not-a-token", "x" * 500, "%00", "a.b"])
def test_unknown_links_are_404(world, client, token):
    assert client.get(f"/calendar/{token}.ics").status_code == 404


def test_regenerating_or_deactivation_kills_the_old_link(app, world, client):
    old = _feed_url(app, world, "focal_sg")
    new = _feed_url(app, world, "focal_sg")
    assert client.get(old).status_code == 404 and client.get(new).status_code == 200
    with app.app_context():
        db.session.get(User, world.user_ids["focal_sg"]).active = False
        db.session.commit()
    assert client.get(new).status_code == 404


def test_the_feed_takes_the_same_number_of_queries_however_long(app, world, client, count_queries):
    url = _feed_url(app, world, "manager")

    def counted() -> int:
        with count_queries() as statements:
            assert client.get(url).status_code == 200
        return len(statements)

    small = counted()
    with app.app_context():
        for i in range(10):
            owner = User(
                email=f"o{i}@example.test", name=f"O {i}", role="focal_point", office_id=world.offices["MY"]
            )
            db.session.add(owner)
            db.session.flush()
            db.session.add(
                ActionItem(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices["MY"],
                    title=f"Item {i}",
                    owner_id=owner.id,
                    deadline=date(2027, 1, i + 1),
                )
            )
        db.session.commit()
    assert counted() == small
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ActionItem)) == 12
