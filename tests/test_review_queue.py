"""The review queue: filters by office, recommendation and kind, "waiting N days" (in the reviewer's
own time zone), the longest waiting first, pages, bounded statements; several completions verified
together after one confirmation, those changed meanwhile skipped."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_token
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    Notification,
    Recommendation,
    User,
)
from tracker.notifications.dispatch import dispatch

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def _add(app, world, title, office, status, *, since, recommendation_id=None, note="Done and published"):
    """An item in ``status`` since ``since`` (completion reported, extension asked, proposed)."""
    with app.app_context():
        owner = db.session.get(User, world.user_ids["focal_sg" if office == "SG" else "focal_my"])
        item = ActionItem(
            recommendation_id=recommendation_id or world.recommendation_id,
            office_id=world.offices[office],
            title=title,
            deadline=date(2026, 12, 31),
            agreed_deadline=date(2026, 12, 31),
            status="in_progress" if status == "extension" else status,
            owner=owner,
            created_at=since,
            updated_at=since,
        )
        db.session.add(item)
        if status == "completed":
            db.session.add_all(
                [
                    ActionUpdate(
                        action_item=item,
                        author=owner,
                        created_at=since,
                        old_status="in_progress",
                        new_status="completed",
                        note=note,
                    ),
                    # A note added while it waits is not the report: the wait counts from the report.
                    ActionUpdate(
                        action_item=item,
                        author=owner,
                        created_at=since + timedelta(hours=1),
                        old_status="completed",
                        new_status="completed",
                        note="One more photo",
                    ),
                ]
            )
        elif status == "proposed":
            db.session.add(
                ActionUpdate(
                    action_item=item, author=owner, created_at=since, new_status="proposed", event="proposed"
                )
            )
        elif status == "extension":
            db.session.add(
                ExtensionRequest(
                    action_item=item,
                    requested_by=owner,
                    requested_at=since,
                    current_deadline=item.deadline,
                    requested_deadline=date(2027, 3, 31),
                    reason=f"Reason for {title}",
                    state="pending",
                )
            )
        db.session.commit()
        return item.id


def _titles(html: str) -> list[str]:
    return re.findall(r'<h2><a href="/actions/\d+">([^<]+)</a></h2>', html)


@time_machine.travel(NOW, tick=False)
def test_filters_kinds_waiting_days_and_order(app, world, login_as):
    with app.app_context():
        second = Recommendation(
            source_id=world.source_id, code="R-2", title="Share data", text="t", theme="Data"
        )
        db.session.add(second)
        db.session.commit()
        second_id = second.id
    _add(app, world, "SG report", "SG", "completed", since=NOW - timedelta(days=3))
    _add(app, world, "MY report", "MY", "completed", since=NOW - timedelta(days=1, hours=1))
    _add(app, world, "SG later date", "SG", "extension", since=NOW - timedelta(days=10))
    _add(app, world, "MY idea", "MY", "proposed", since=NOW - timedelta(hours=2), recommendation_id=second_id)
    reviewer = login_as(world.users["reviewer"])

    page = reviewer.get("/verification").text
    # The longest waiting first, whatever the kind; each with its wait, in days of the reviewer's zone (UTC).
    assert _titles(page) == ["SG later date", "SG report", "MY report", "MY idea"]
    assert "waiting 10 days" in page and "waiting 3 days" in page and "waiting 1 day<" in page
    assert "waiting since today" in page and "Days are counted in your time zone (UTC)" in page
    assert "2 actions await verification" in page and "1 request awaits a decision" in page
    assert "1 proposed action awaits acceptance" in page
    assert "One more photo" not in page and "Done and published" in page  # the report, not the later note

    assert _titles(reviewer.get("/verification?office=SG").text) == ["SG later date", "SG report"]
    assert _titles(reviewer.get("/verification?kind=completions").text) == ["SG report", "MY report"]
    assert _titles(reviewer.get("/verification?kind=proposals").text) == ["MY idea"]
    assert _titles(reviewer.get("/verification?recommendation=R-2").text) == ["MY idea"]
    filtered = reviewer.get("/verification?office=MY&kind=completions").text
    assert _titles(filtered) == ["MY report"]
    assert '<option value="MY" selected>' in filtered and '<option value="completions" selected>' in filtered
    # The counts follow the office and recommendation filters and link to each kind.
    assert (
        "Nothing awaits verification." not in filtered
        and "No extension request awaits a decision." in filtered
    )
    assert 'href="/verification?office=MY&amp;kind=proposals"' in filtered

    nothing = reviewer.get("/verification?office=SG&kind=proposals").text
    assert _titles(nothing) == [] and "Nothing in the queue matches these filters." in nothing
    assert '<a href="/verification">Show the whole queue</a>' in nothing
    # A forged kind means every kind; an unknown office, nothing.
    assert len(_titles(reviewer.get("/verification?kind=everything").text)) == 4
    assert _titles(reviewer.get("/verification?office=XX").text) == []

    # The same waits in Auckland (UTC+13): the proposal of 10:00 UTC was made yesterday there.
    with app.app_context():
        db.session.get(User, world.user_ids["reviewer"]).timezone = "Pacific/Auckland"
        db.session.commit()
    page = reviewer.get("/verification").text
    assert "Days are counted in your time zone (Pacific/Auckland)" in page
    assert "waiting since today" not in page and page.count("waiting 1 day<") == 2


@time_machine.travel(NOW, tick=False)
def test_pages_keep_the_filters(app, world, login_as, mail_settings):
    mail_settings(TRACKER_PAGE_SIZE=2)
    for n in range(5):
        _add(app, world, f"SG item {n}", "SG", "completed", since=NOW - timedelta(days=10 - n))
    _add(app, world, "MY item", "MY", "completed", since=NOW - timedelta(days=20))
    reviewer = login_as(world.users["reviewer"])
    first = reviewer.get("/verification?office=SG&kind=completions").text
    assert _titles(first) == ["SG item 0", "SG item 1"] and "Page 1 of 3" in first
    link = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "office=SG" in link and "kind=completions" in link and "page=2" in link
    assert _titles(reviewer.get(link).text) == ["SG item 2", "SG item 3"]
    # Past the end: the last page.
    assert _titles(reviewer.get("/verification?office=SG&page=99").text) == ["SG item 4"]


@time_machine.travel(NOW, tick=False)
def test_verify_several_after_one_confirmation(app, world, login_as, smtp_server):
    one = _add(app, world, "SG report", "SG", "completed", since=NOW - timedelta(days=3), note="Launched")
    two = _add(app, world, "MY report", "MY", "completed", since=NOW - timedelta(days=2), note="Trained 40")
    three = _add(app, world, "SG other", "SG", "completed", since=NOW - timedelta(days=1))
    reviewer = login_as(world.users["reviewer"])
    queue = reviewer.get("/verification?kind=completions").text
    assert queue.count('name="id"') == 3 and 'form="verify-selected"' in queue
    assert 'Select to verify<span class="visually-hidden"> “SG report”</span>' in queue
    assert "Verify selected" in queue

    confirm = reviewer.get("/verification/verify", query_string={"id": [one, two], "kind": "completions"})
    assert confirm.status_code == 200
    text = confirm.text
    assert (
        "Verify 2 actions" in text and "SG report" in text and "MY report" in text and "SG other" not in text
    )
    assert "Launched" in text and "Trained 40" in text and "IP Corporation of Malaysia" in text
    assert text.count('name="item"') == 2 and 'name="kind" value="completions"' in text
    with app.app_context():  # nothing changed by looking
        assert db.session.scalar(sa.select(sa.func.count()).where(ActionItem.status == "verified")) == 0

    data = {"csrf_token": csrf_token(text), "kind": "completions", "item": [f"{one}:1", f"{two}:1"]}
    # Without the CSRF token: refused, nothing done.
    assert reviewer.post("/verification/verify", data={**data, "csrf_token": ""}).status_code == 400
    done = reviewer.post("/verification/verify", data=data)
    assert done.status_code == 302 and done.headers["Location"] == "/verification?kind=completions"
    page = reviewer.get(done.headers["Location"]).text
    assert "2 actions verified." in page and _titles(page) == ["SG other"]
    with app.app_context():
        statuses = dict(db.session.execute(sa.select(ActionItem.id, ActionItem.status)).all())
        assert (statuses[one], statuses[two], statuses[three]) == ("verified", "verified", "completed")
        events = db.session.scalars(
            sa.select(ActionUpdate.event).where(
                ActionUpdate.action_item_id.in_([one, two]), ActionUpdate.event.isnot(None)
            )
        ).all()
        assert sorted(events) == ["verified", "verified"]
        assert dispatch(datetime.now(UTC)).sent == 2
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        [world.users["focal_sg"], world.users["focal_my"]]
    )
    assert all(m.parsed()["Subject"].startswith("Verified:") for m in smtp_server.messages)


@time_machine.travel(NOW, tick=False)
def test_items_changed_meanwhile_are_skipped_and_named(app, world, login_as):
    one = _add(app, world, "Still waiting", "SG", "completed", since=NOW - timedelta(days=3))
    two = _add(app, world, "Withdrawn meanwhile", "SG", "completed", since=NOW - timedelta(days=2))
    three = _add(app, world, "Noted meanwhile", "MY", "completed", since=NOW - timedelta(days=2))
    reviewer = login_as(world.users["reviewer"])
    confirm = reviewer.get(
        "/verification/verify", query_string={"id": [one, two, three], "office": "SG"}
    ).text
    # After the confirmation page was shown: one withdrawn, one given a note (its version moves).
    with app.app_context():
        withdrawn = db.session.get(ActionItem, two)
        withdrawn.status = "in_progress"
        noted = db.session.get(ActionItem, three)
        noted.progress = 100
        noted.updated_at = NOW
        db.session.commit()
    data = {"csrf_token": csrf_token(confirm), "office": "SG", "item": [f"{one}:1", f"{two}:1", f"{three}:1"]}
    done = reviewer.post("/verification/verify", data=data)
    assert done.status_code == 302 and done.headers["Location"] == "/verification?office=SG"
    page = reviewer.get("/verification?office=SG").text
    assert "1 action verified." in page
    assert "Not verified, as they changed meanwhile" in page
    assert "“Withdrawn meanwhile”" in page and "“Noted meanwhile”" in page
    with app.app_context():
        statuses = dict(db.session.execute(sa.select(ActionItem.id, ActionItem.status)).all())
        assert (statuses[one], statuses[two], statuses[three]) == ("verified", "in_progress", "completed")
        # Nothing half-done: no history row for the skipped ones beyond what they had.
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).where(
                    ActionUpdate.action_item_id == three, ActionUpdate.new_status == "verified"
                )
            )
            == 0
        )
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 1

    # The confirmation page names what no longer awaits verification and offers only the rest.
    again = reviewer.get("/verification/verify", query_string={"id": [one, two]}).text
    assert "No longer awaiting verification" in again and "Verify 0 actions" in again
    assert 'name="item"' not in again
    # Nothing chosen: back to the queue with a message.
    empty = reviewer.get("/verification/verify", query_string={"office": "SG"})
    assert empty.status_code == 302 and empty.headers["Location"] == "/verification?office=SG"


def test_only_reviewers_verify_several(app, world, login_as):
    item = _add(app, world, "SG report", "SG", "completed", since=NOW - timedelta(days=3))
    for label in ("focal_sg", "manager_sg", "manager"):
        client = login_as(world.users[label])
        assert client.get("/verification/verify", query_string={"id": item}).status_code == 403
        token = csrf_token(client.get("/my").text)
        assert (
            client.post("/verification/verify", data={"csrf_token": token, "item": f"{item}:1"}).status_code
            == 403
        )
    with app.app_context():
        assert db.session.get(ActionItem, item).status == "completed"
    assert (
        login_as(world.users["admin"]).get("/verification/verify", query_string={"id": item}).status_code
        == 200
    )


def test_queue_statements_do_not_grow_with_the_queue(app, world, login_as, count_queries):
    reviewer = login_as(world.users["reviewer"])

    def statements() -> int:
        with count_queries() as seen:
            assert reviewer.get("/verification").status_code == 200
        return len(seen)

    def grow(start: int, n: int) -> None:
        for i in range(start, start + n):
            since = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=i)
            office = ("SG", "MY")[i % 2]
            _add(app, world, f"Item {i}", office, ("completed", "extension", "proposed")[i % 3], since=since)

    grow(0, 6)
    small = statements()
    grow(6, 30)
    assert statements() == small
