"""Compose: who is told what around a deadline, in their own morning, once, within what they may see.

The world's SG and MY items are due on 2026-11-24 (owners focal_sg and focal_my); SG has a manager
(manager_sg), MY has none; ``manager`` is programme-wide. Times are frozen or passed explicitly.
Stored renderings live in tests/email_expected/; regenerate them with ``UPDATE_EXPECTED=1``.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine

from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    Escalation,
    ExtensionRequest,
    ItemNotice,
    Notification,
    Office,
    User,
)
from tracker.notifications.compose import compose_reminders

SG = ZoneInfo("Asia/Singapore")
#: Items last changed then, so that nothing is stale unless a test says so.
SETTLED = datetime(2026, 11, 1, tzinfo=UTC)
EXPECTED = Path(__file__).parent / "email_expected"


def at(text: str, zone: ZoneInfo = SG) -> datetime:
    """A moment written as local ``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def run(app, now: datetime, **kwargs) -> list[tuple[str, str, str]]:
    """Compose reminders at ``now`` and commit; (kind, recipient email, key) of what was queued."""
    with app.app_context():
        planned = compose_reminders(now, **kwargs)
        db.session.commit()
        return [(p.kind.value, p.recipient.email, p.key) for p in planned]


def outbox(app) -> list[Notification]:
    """Every outbox row, detached, by key."""
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification).order_by(Notification.idempotency_key)).all()
        db.session.expunge_all()
        return list(rows)


def told(app) -> set[tuple[str, str]]:
    """(kind, recipient email) of every outbox row."""
    return {(n.kind, n.to_address) for n in outbox(app)}


def mail(app, kind: str, email: str) -> Notification:
    """The one outbox row of this kind to this address."""
    rows = [n for n in outbox(app) if n.kind == kind and n.to_address == email]
    assert len(rows) == 1, f"{len(rows)} {kind} mails to {email}"
    return rows[0]


def add_user(app, world, label: str, role: str, office: str | None, **fields) -> int:
    """Create a user called ``label`` (email ``label@example.test``) and record them in the world."""
    with app.app_context():
        user = User(
            email=f"{label.replace('_', '.')}@example.test",
            name=label.replace("_", " ").title(),
            role=role,
            office_id=world.offices[office] if office else None,
            **fields,
        )
        db.session.add(user)
        db.session.commit()
        world.users[label], world.user_ids[label] = user.email, user.id
        return user.id


def add_office(app, world, code: str, zone: str) -> int:
    """Create an office and record it in the world."""
    with app.app_context():
        office = Office(code=code, name=f"Office {code}", country=code, timezone=zone)
        db.session.add(office)
        db.session.commit()
        world.offices[code] = office.id
        return office.id


def add_item(
    app,
    world,
    title: str,
    deadline: date,
    *,
    office: str = "SG",
    owner: str | None = "focal_sg",
    deputy: str | None = None,
    status: str = "not_started",
    updated: datetime = SETTLED,
) -> int:
    """Create an action item of the world's recommendation; returns its id."""
    with app.app_context():
        item = ActionItem(
            recommendation_id=world.recommendation_id,
            office_id=world.offices[office],
            title=title,
            owner_id=world.user_ids[owner] if owner else None,
            deputy_id=world.user_ids[deputy] if deputy else None,
            deadline=deadline,
            status=status,
            created_at=datetime(2026, 6, 1, tzinfo=UTC),
            updated_at=updated,
        )
        db.session.add(item)
        db.session.commit()
        world.items[title] = item.id
        return item.id


def change(app, model, object_id: int, **values) -> None:
    """Set columns of one row directly (no version bump, no history)."""
    with app.app_context():
        db.session.execute(sa.update(model).where(model.id == object_id).values(**values))
        db.session.commit()


def add_extension(
    app, world, title: str, requested: date, at_: datetime, reason: str = "Vendor delay"
) -> int:
    """A pending extension request on an item, asked by its owner at ``at_``."""
    with app.app_context():
        item = db.session.get(ActionItem, world.items[title])
        request = ExtensionRequest(
            action_item_id=item.id,
            requested_by_id=item.owner_id,
            requested_at=at_,
            current_deadline=item.deadline,
            requested_deadline=requested,
            reason=reason,
        )
        db.session.add(request)
        db.session.commit()
        return request.id


def normalised(text: str, world) -> str:
    """A rendering with the database ids in links replaced by the items' names (ids differ by backend)."""
    names = {item_id: name.replace(" ", "_") for name, item_id in world.items.items()}
    return re.sub(r"/actions/(\d+)", lambda m: f"/actions/<{names.get(int(m.group(1)), '?')}>", text)


def check_expected(name: str, rendering: str) -> None:
    """Compare with tests/email_expected/<name>; UPDATE_EXPECTED=1 rewrites the stored file instead."""
    path = EXPECTED / name
    if os.environ.get("UPDATE_EXPECTED") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendering, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; create it with UPDATE_EXPECTED=1"
    expected = path.read_text(encoding="utf-8")
    assert rendering == expected, (
        f"{name} renders differently; if that is intended, run with UPDATE_EXPECTED=1"
    )


@pytest.fixture
def programme(app, world):
    """The world with its items last changed on 1 November 2026 (so that none is stale)."""
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(updated_at=SETTLED))
        db.session.commit()
    return world


# --- around the deadline (2026-11-24) -------------------------------------------------------------


def test_who_is_told_what_day_by_day_around_the_deadline(app, programme):
    """A job every morning from the deadline day: overdue on days 1, 8, 15 …, one escalation each at 31."""
    owners = {("overdue", "focal.sg@example.test"), ("overdue", "focal.my@example.test")}
    expected = dict.fromkeys(("2026-11-25", "2026-12-02", "2026-12-09", "2026-12-16", "2026-12-23"), owners)
    expected["2026-12-30"] = owners
    # 31 days overdue: SG's managers; MY has none, so its item falls through to the programme managers.
    expected["2026-12-25"] = {
        ("escalation", "manager.sg@example.test"),
        ("escalation", "manager@example.test"),
    }
    day = date(2026, 11, 24)
    while day <= date(2026, 12, 31):
        planned = run(app, at(f"{day} 09:00"))
        assert {(kind, email) for kind, email, _key in planned} == expected.get(str(day), set()), day
        day += timedelta(days=1)


def test_the_day_after_the_deadline_each_owner_gets_their_own_office_only(app, programme):
    run(app, at("2026-11-25 09:00"))
    sg = mail(app, "overdue", "focal.sg@example.test")
    assert sg.idempotency_key == f"overdue:user{programme.user_ids['focal_sg']}:2026-11-25"
    assert sg.subject == "1 action overdue — SG"
    assert "E-filing for SG" in sg.body_text and "E-filing for MY" not in sg.body_text
    assert "1 day overdue" in sg.body_text
    assert f"http://127.0.0.1:5000/actions/{programme.items['SG']}" in sg.body_text
    assert f'href="http://127.0.0.1:5000/actions/{programme.items["SG"]}"' in sg.body_html
    my = mail(app, "overdue", "focal.my@example.test")
    assert my.subject == "1 action overdue — MY" and "E-filing for SG" not in my.body_text + my.body_html


def test_overdue_repeats_every_7_days_and_lists_all_items_in_one_mail(app, programme):
    add_item(app, programme, "Second SG action", date(2026, 11, 17))  # 8 days overdue on the 25th
    third = add_item(app, programme, "Third SG action", date(2026, 11, 18))  # 7 days: not today
    with app.app_context():  # its first overdue notice was given on the 19th
        db.session.add(ItemNotice(action_item_id=third, kind="overdue", period=date(2026, 11, 18)))
        db.session.commit()
    run(app, at("2026-11-25 09:00"))
    sg = mail(app, "overdue", "focal.sg@example.test")
    assert sg.subject == "2 actions overdue — SG"
    assert "Second SG action" in sg.body_text and "8 days overdue" in sg.body_text
    assert "Third SG action" not in sg.body_text
    # The longest overdue first.
    assert sg.body_text.index("Second SG action") < sg.body_text.index("E-filing for SG")


def test_repeat_days_are_configurable(app, programme, monkeypatch):
    monkeypatch.setitem(app.config, "TRACKER_OVERDUE_REPEAT_DAYS", 3)
    run(app, at("2026-11-28 09:00"))  # 4 days overdue: 1 + 3
    assert ("overdue", "focal.sg@example.test") in told(app)


# --- due soon ---------------------------------------------------------------------------------------


def test_due_soon_14_and_3_days_before(app, programme):
    add_item(app, programme, "Due in 14 days", date(2026, 12, 8))
    add_item(app, programme, "Due in 3 days", date(2026, 11, 27))
    add_item(app, programme, "Due in 6 days", date(2026, 11, 30))
    add_item(app, programme, "MY due in 3 days", date(2026, 11, 27), office="MY", owner="focal_my")
    run(app, at("2026-11-24 09:00"))
    assert told(app) == {("due_soon", "focal.sg@example.test"), ("due_soon", "focal.my@example.test")}
    sg = mail(app, "due_soon", "focal.sg@example.test")
    assert sg.subject == "2 actions due soon — SG"
    assert "Due in 14 days" in sg.body_text and "Due in 3 days" in sg.body_text
    assert "Due in 6 days" not in sg.body_text and "MY due" not in sg.body_text
    assert "14 days left" in sg.body_text and "3 days left" in sg.body_text
    assert sg.body_text.index("Due in 3 days") < sg.body_text.index("Due in 14 days")  # soonest first


def test_due_soon_days_are_configurable_and_follow_the_preference(app, programme, monkeypatch):
    add_item(app, programme, "Due in 6 days", date(2026, 11, 30))
    add_item(app, programme, "MY due in 6 days", date(2026, 11, 30), office="MY", owner="focal_my")
    monkeypatch.setitem(app.config, "TRACKER_DUE_SOON_DAYS", (6,))
    change(app, User, programme.user_ids["focal_my"], notify_due_soon=False)
    run(app, at("2026-11-24 09:00"))
    assert told(app) == {("due_soon", "focal.sg@example.test")}


def test_overdue_cannot_be_switched_off(app, programme):
    change(app, User, programme.user_ids["focal_sg"], notify_due_soon=False, notify_stale=False)
    run(app, at("2026-11-25 09:00"))
    assert ("overdue", "focal.sg@example.test") in told(app)


# --- each recipient's morning ---------------------------------------------------------------------


def test_colombo_and_ulaanbaatar_are_composed_in_their_own_morning(app, programme):
    add_office(app, programme, "LK", "Asia/Colombo")  # UTC+05:30
    add_office(app, programme, "MN", "Asia/Ulaanbaatar")  # UTC+08:00
    add_user(app, programme, "focal_lk", "focal_point", "LK")
    add_user(app, programme, "focal_mn", "focal_point", "MN")
    add_item(app, programme, "LK action", date(2026, 11, 24), office="LK", owner="focal_lk")
    add_item(app, programme, "MN action", date(2026, 11, 24), office="MN", owner="focal_mn")
    lk, mn = "focal.lk@example.test", "focal.mn@example.test"

    run(app, datetime(2026, 11, 24, 23, 30, tzinfo=UTC))  # Ulaanbaatar 07:30, Colombo 05:00 on the 25th
    assert told(app) == set()
    run(app, datetime(2026, 11, 25, 0, 0, tzinfo=UTC))  # Ulaanbaatar 08:00
    assert ("overdue", mn) in told(app) and ("overdue", lk) not in told(app)
    run(app, datetime(2026, 11, 25, 2, 29, tzinfo=UTC))  # Colombo 07:59
    assert ("overdue", lk) not in told(app)
    run(app, datetime(2026, 11, 25, 2, 30, tzinfo=UTC))  # Colombo 08:00
    assert ("overdue", lk) in told(app)
    assert mail(app, "overdue", lk).idempotency_key.endswith(":2026-11-25")
    assert mail(app, "overdue", mn).idempotency_key.endswith(":2026-11-25")  # once, not again at 02:30


def test_a_users_own_time_zone_overrides_the_offices(app, programme):
    change(app, User, programme.user_ids["focal_sg"], timezone="Asia/Colombo")
    run(app, datetime(2026, 11, 25, 1, 0, tzinfo=UTC))  # Singapore 09:00, Colombo 06:30
    assert told(app) == {("overdue", "focal.my@example.test")}
    run(app, datetime(2026, 11, 25, 2, 30, tzinfo=UTC))  # Colombo 08:00
    assert mail(app, "overdue", "focal.sg@example.test").idempotency_key.endswith(":2026-11-25")


def test_a_run_missed_at_8_is_caught_up_later_that_day_only(app, programme):
    run(app, at("2026-11-25 21:30"))  # the scheduler was down all morning
    assert mail(app, "overdue", "focal.sg@example.test").idempotency_key.endswith(":2026-11-25")
    run(app, at("2026-11-26 09:00"))  # 2 days overdue: nothing new
    assert len(outbox(app)) == 2


# --- idempotency --------------------------------------------------------------------------------------


def test_composing_twice_inserts_each_mail_once(app, programme):
    add_item(app, programme, "Due in 3 days", date(2026, 11, 28))
    first = run(app, at("2026-11-25 09:00"))
    assert {kind for kind, _, _ in first} == {"overdue", "due_soon"}
    assert run(app, at("2026-11-25 09:00")) == []
    assert run(app, at("2026-11-25 09:15")) == []
    assert run(app, at("2026-11-25 23:45")) == []
    assert len(outbox(app)) == len(first) == 3


def test_a_dry_run_writes_nothing(app, programme):
    planned = run(app, at("2026-12-25 09:00"), dry_run=True)
    assert ("escalation", "manager.sg@example.test") in {(kind, email) for kind, email, _ in planned}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Escalation)) == 0


# --- who receives what ----------------------------------------------------------------------------------


def test_an_inactive_owners_reminders_reach_the_deputy(app, programme):
    add_user(app, programme, "deputy_sg", "focal_point", "SG")
    change(
        app,
        ActionItem,
        programme.items["SG"],
        owner_id=programme.user_ids["inactive_sg"],
        deputy_id=programme.user_ids["deputy_sg"],
    )
    run(app, at("2026-11-25 09:00"))
    assert ("overdue", "gone.sg@example.test") not in told(app)
    deputy = mail(app, "overdue", "deputy.sg@example.test")
    assert "E-filing for SG" in deputy.body_text and "Owner: Inactive Sg" in deputy.body_text


def test_without_an_active_owner_or_deputy_the_offices_managers_are_reminded(app, programme):
    change(app, ActionItem, programme.items["SG"], owner_id=programme.user_ids["inactive_sg"], deputy_id=None)
    change(app, ActionItem, programme.items["MY"], owner_id=None)  # MY has no manager: nobody
    run(app, at("2026-11-25 09:00"))
    assert told(app) == {("overdue", "manager.sg@example.test")}
    assert "E-filing for SG" in mail(app, "overdue", "manager.sg@example.test").body_text


def test_a_focal_point_never_receives_another_offices_items(app, programme):
    # MY's focal point named deputy of an SG item, with SG's owner gone: they may not see it.
    change(
        app,
        ActionItem,
        programme.items["SG"],
        owner_id=programme.user_ids["inactive_sg"],
        deputy_id=programme.user_ids["focal_my"],
    )
    add_item(app, programme, "SG due in 3 days", date(2026, 11, 28), owner="inactive_sg", deputy="focal_my")
    run(app, at("2026-11-25 09:00"))
    for row in outbox(app):
        if row.to_address != "manager.sg@example.test":
            assert "SG" not in row.subject and "E-filing for SG" not in row.body_text + row.body_html
    assert "E-filing for SG" in mail(app, "overdue", "manager.sg@example.test").body_text
    assert "SG due in 3 days" in mail(app, "due_soon", "manager.sg@example.test").body_text
    assert mail(app, "overdue", "focal.my@example.test").subject == "1 action overdue — MY"


# --- escalation ----------------------------------------------------------------------------------------


def test_an_item_overdue_more_than_30_days_is_escalated_once_to_its_offices_managers(app, programme):
    add_item(app, programme, "Long overdue", date(2026, 11, 20))  # 35 days overdue on 25 December
    run(app, at("2026-12-25 09:00"))
    # SG's item reaches SG's manager; MY has none, so MY's falls through to the programme managers.
    assert told(app) == {("escalation", "manager.sg@example.test"), ("escalation", "manager@example.test")}
    escalation = mail(app, "escalation", "manager.sg@example.test")
    assert escalation.idempotency_key == f"escalation:user{programme.user_ids['manager_sg']}:2026-12-25"
    assert escalation.subject == "Escalation: 2 actions long overdue — SG"
    assert "Long overdue" in escalation.body_text and "E-filing for SG" in escalation.body_text
    assert "E-filing for MY" not in escalation.body_text
    assert "Owner: Focal Sg" in escalation.body_text
    assert "Escalation level 1: overdue more than 30 days" in escalation.body_text
    assert "E-filing for MY" in mail(app, "escalation", "manager@example.test").body_text
    with app.app_context():
        rows = db.session.execute(sa.select(Escalation.action_item_id, Escalation.level)).all()
    assert sorted(rows) == sorted(
        [(programme.items["SG"], 1), (programme.items["MY"], 1), (programme.items["Long overdue"], 1)]
    )

    run(app, at("2026-12-25 09:00"))
    run(app, at("2026-12-26 09:00"))
    assert len([n for n in outbox(app) if n.kind == "escalation"]) == 2


def test_escalation_is_composed_in_the_offices_morning(app, programme):
    run(app, at("2026-12-25 07:59"))
    assert told(app) == set()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Escalation)) == 0


# --- stale ---------------------------------------------------------------------------------------------


def test_an_item_without_update_for_90_days_earns_its_owner_a_nudge_then_every_90_days(app, programme):
    last = date(2026, 11, 24) - timedelta(days=90)
    updated = datetime(last.year, last.month, last.day, 15, 0, tzinfo=SG)
    add_item(app, programme, "Quiet action", date(2027, 12, 31), updated=updated)
    add_item(
        app, programme, "Quiet MY action", date(2027, 12, 31), office="MY", owner="focal_my", updated=updated
    )
    change(app, User, programme.user_ids["focal_my"], notify_stale=False)
    run(app, at("2026-11-24 09:00"))
    assert told(app) == {("stale", "focal.sg@example.test")}
    nudge = mail(app, "stale", "focal.sg@example.test")
    assert nudge.subject == "1 action without an update for 90 days — SG"
    assert "Quiet action" in nudge.body_text and "90 days ago" in nudge.body_text
    assert nudge.idempotency_key.endswith(":2026-11-24")

    run(app, at("2026-11-25 09:00"))  # 91 days: no nudge (the overdue reminders are another matter)
    assert [n.kind for n in outbox(app)].count("stale") == 1
    run(app, at(f"{date(2026, 11, 24) + timedelta(days=90)} 09:00"))  # 180 days
    assert [n.kind for n in outbox(app)].count("stale") == 2


# --- the reviewers' daily list ----------------------------------------------------------------------------


def _report_completed(app, world, code: str, when: datetime) -> None:
    change(app, ActionItem, world.items[code], status="completed", progress=100, updated_at=when)
    with app.app_context():
        db.session.add(
            ActionUpdate(
                action_item_id=world.items[code],
                author_id=world.user_ids["focal_sg"],
                created_at=when,
                old_status="in_progress",
                new_status="completed",
                note="Done",
            )
        )
        db.session.commit()


def test_reviewers_get_one_daily_list_of_completions_awaiting_verification(app, programme):
    add_user(app, programme, "quiet_reviewer", "reviewer", None, notify_review_queue=False)
    run(app, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))  # an empty queue: nothing
    assert told(app) == set()

    _report_completed(app, programme, "SG", datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    run(app, datetime(2026, 11, 25, 7, 59, tzinfo=UTC))  # the reviewer's zone is UTC: not yet morning
    assert ("review_queue", "reviewer@example.test") not in told(app)
    run(app, datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    queue = mail(app, "review_queue", "reviewer@example.test")
    assert queue.subject == "1 item awaiting your review — SG"
    assert "E-filing for SG" in queue.body_text and "waiting 5 days" in queue.body_text
    assert "http://127.0.0.1:5000/verification" in queue.body_text
    assert {email for kind, email in told(app) if kind == "review_queue"} == {"reviewer@example.test"}


def test_the_daily_list_names_actions_proposed_by_offices(app, programme, world):
    with app.app_context():
        item = ActionItem(
            recommendation_id=world.recommendation_id,
            office_id=world.offices["MY"],
            title="Proposed by MY",
            owner_id=world.user_ids["focal_my"],
            deadline=date(2027, 3, 31),
            agreed_deadline=date(2027, 3, 31),
            status="proposed",
        )
        item.updates = [
            ActionUpdate(
                author_id=world.user_ids["focal_my"],
                created_at=datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
                new_status="proposed",
                event="proposed",
            )
        ]
        db.session.add(item)
        db.session.commit()
    run(app, datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    queue = mail(app, "review_queue", "reviewer@example.test")
    assert queue.subject == "1 item awaiting your review — MY"
    text = queue.body_text
    assert "proposed by its office and awaits your acceptance" in text
    assert "Proposed by MY" in text and "waiting 3 days" in text
    assert "reported completed" not in text  # a proposal is not listed as a completion
    assert "Proposed by MY" in queue.body_html and "awaits your acceptance" in queue.body_html
    # Nobody is reminded about the proposal itself: it is not in the plan yet.
    others = [n for n in outbox(app) if n.kind != "review_queue"]
    assert others and not [n.kind for n in others if "Proposed by MY" in n.body_text]


# --- speed -------------------------------------------------------------------------------------------------


def _statements(app, count_queries, now: datetime) -> tuple[int, int]:
    with count_queries() as statements, app.app_context():
        compose_reminders(now)
        db.session.commit()
    selects = sum(s.lstrip().upper().startswith(("SELECT", "WITH")) for s in statements)
    inserts = sum(s.lstrip().upper().startswith("INSERT") for s in statements)
    return selects, inserts


def _add_many(app, world, start: int, count: int) -> None:
    with app.app_context():
        owners = [world.user_ids["focal_sg"], world.user_ids["focal_my"]]
        for n in range(start, start + count):
            office = ("SG", "MY")[n % 2]
            # Overdue by 1, due in 3 or 14 days, overdue by 31 (escalated), or stale.
            deadline = date(2026, 12, 25) - timedelta(days=(1, -3, -14, 31, -200)[n % 5])
            updated = datetime(2026, 9, 26, 12, tzinfo=UTC) if n % 5 == 4 else SETTLED
            db.session.add(
                ActionItem(
                    recommendation_id=world.recommendation_id,
                    office_id=world.offices[office],
                    title=f"Bulk action {n}",
                    owner_id=owners[n % 2],
                    deadline=deadline,
                    updated_at=updated,
                )
            )
        db.session.commit()


def test_compose_runs_a_bounded_number_of_statements(app, programme, count_queries):
    _report_completed(app, programme, "SG", datetime(2026, 12, 20, tzinfo=UTC))
    now = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)  # everyone's morning has come
    _add_many(app, programme, 0, 10)
    small = _statements(app, count_queries, now)
    kinds = told(app)
    assert {"overdue", "due_soon", "stale", "escalation", "review_queue"} <= {kind for kind, _ in kinds}

    with app.app_context():
        db.session.execute(sa.delete(Notification))
        db.session.execute(sa.delete(Escalation))
        db.session.commit()
    _add_many(app, programme, 10, 90)
    large = _statements(app, count_queries, now)
    assert told(app) == kinds
    # Same SELECTs (people, offices, absences, candidates, rungs, review list, keys, and the listed
    # items with, for the escalation's, their extensions and last update); one INSERT per mail, one
    # for the item notices and one for the escalations.
    assert small == large
    assert small[0] <= 11 and small[1] == len(kinds) + 2


# --- stored renderings -------------------------------------------------------------------------------------


def test_each_reminder_kind_renders_as_stored(app, programme):
    """Every reminder kind's subject, text and HTML, compared with tests/email_expected/."""
    day = date(2026, 11, 25)
    add_item(app, programme, "Open data portal", day + timedelta(days=14))
    add_item(app, programme, "Staff training", day + timedelta(days=3))
    add_item(app, programme, "Legacy archive", day - timedelta(days=31))
    quiet = datetime(2026, 8, 27, 10, 0, tzinfo=SG)  # 90 days before the 25th
    add_item(app, programme, "Forms review", date(2027, 3, 31), updated=quiet)
    add_item(app, programme, "Help desk", date(2026, 12, 31), status="in_progress")
    _report_completed(app, programme, "Help desk", datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    add_extension(
        app, programme, "Open data portal", date(2027, 1, 31), datetime(2026, 11, 22, 3, tzinfo=UTC)
    )
    run(app, datetime(2026, 11, 25, 12, 0, tzinfo=UTC), today=day)
    who = {
        "due_soon": "focal.sg@example.test",
        "overdue": "focal.sg@example.test",
        "escalation": "manager.sg@example.test",
        "stale": "focal.sg@example.test",
        "review_queue": "reviewer@example.test",
    }
    for kind, email in who.items():
        row = mail(app, kind, email)
        text = f"Subject: {row.subject}\n\n{row.body_text}"
        check_expected(f"{kind}.txt", normalised(text, programme))
        check_expected(f"{kind}.html", normalised(row.body_html, programme))
        assert "<script" not in row.body_html and "<img" not in row.body_html
        assert 'href="http://127.0.0.1:5000/' in row.body_html


def test_user_text_is_escaped_in_html_and_plain_in_text(app, programme):
    add_item(app, programme, '<script>alert(1)</script> & "forms"', date(2026, 11, 28))
    run(app, at("2026-11-25 09:00"))
    due = mail(app, "due_soon", "focal.sg@example.test")
    assert '<script>alert(1)</script> & "forms"' in due.body_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;forms&#34;" in due.body_html
    assert "<script" not in due.body_html


# --- the command line ---------------------------------------------------------------------------------------


def test_remind_command_composes_and_reports(app, programme, runner):
    result = runner.invoke(args=["tracker", "remind", "--today", "2026-11-25", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would queue overdue to focal.sg@example.test: 1 action overdue — SG" in result.output
    assert "nothing was written" in result.output
    assert outbox(app) == []

    result = runner.invoke(args=["tracker", "remind", "--today", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "queued overdue to focal.sg@example.test" in result.output
    assert "2 mails queued (2 overdue)." in result.output
    assert told(app) == {("overdue", "focal.sg@example.test"), ("overdue", "focal.my@example.test")}
    again = runner.invoke(args=["tracker", "remind", "--today", "2026-11-25"])
    assert "0 mails queued." in again.output and len(outbox(app)) == 2


def test_remind_command_without_a_date_composes_for_whoevers_morning_has_come(app, programme, runner):
    change(app, User, programme.user_ids["focal_my"], timezone="Europe/Paris")
    with time_machine.travel(datetime(2026, 11, 25, 1, 0, tzinfo=UTC), tick=False):
        result = runner.invoke(args=["tracker", "remind"])
    assert result.exit_code == 0, result.output
    assert told(app) == {("overdue", "focal.sg@example.test")}  # Paris is still asleep


@pytest.mark.parametrize("bad", ["2026-13-40", "25/11/2026", "tomorrow", ""])
def test_remind_command_refuses_a_bad_date(app, programme, runner, bad):
    result = runner.invoke(args=["tracker", "remind", "--today", bad])
    assert result.exit_code == 1
    assert "--today must be a date written YYYY-MM-DD" in result.output
    assert outbox(app) == []
