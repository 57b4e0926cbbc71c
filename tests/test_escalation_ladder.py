"""The escalation ladder, stale nudges and catch-up that never skip, and absences in mail routing.

Driven through the scheduler's job functions (compose, then dispatch over the loopback SMTP server)
and the ``remind`` command. The world: SG (manager_sg) and MY (no manager) items due 2026-11-24;
``manager`` is programme-wide, ``reviewer`` and ``admin`` programme staff.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.test_compose import SG, add_extension, add_item, add_user, at, change, mail, outbox, told
from tracker.extensions import db
from tracker.models import Absence, ActionItem, ActionUpdate, Escalation, ExtensionRequest, ItemNotice, User
from tracker.scheduler import compose_job, dispatch_job

DEADLINE = date(2026, 11, 24)
SETTLED = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def programme(app, world):
    """The world with nothing stale (items last changed on 1 November 2026)."""
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(updated_at=SETTLED))
        db.session.commit()
    return world


def job(app, day: date, hour: str = "09:00") -> None:
    """The scheduler's compose job at ``hour`` Singapore time on ``day``, committed like the scheduler."""
    with app.app_context():
        compose_job(at(f"{day} {hour}"))
        db.session.commit()


def deliver(app, day: date, hour: str = "10:00") -> None:
    """The scheduler's dispatch job, later that day."""
    with app.app_context():
        dispatch_job(at(f"{day} {hour}"))
        db.session.commit()


def escalations(app) -> list[tuple[int, int]]:
    with app.app_context():
        return sorted(
            [tuple(r) for r in db.session.execute(sa.select(Escalation.action_item_id, Escalation.level))]
        )


def days_of(kind: str, email: str, app) -> list[str]:
    """The local dates (from the keys) of every mail of a kind to an address."""
    return sorted(
        n.idempotency_key.rsplit(":", 1)[1] for n in outbox(app) if n.kind == kind and n.to_address == email
    )


def away(app, world, label: str, first: date, last: date) -> None:
    with app.app_context():
        db.session.add(Absence(user_id=world.user_ids[label], starts_on=first, ends_on=last))
        db.session.commit()


# --- the ladder ----------


def test_each_rung_is_told_once_and_the_mail_says_how_long_extensions_and_last_update(
    app, programme, smtp_server
):
    with app.app_context():
        db.session.add_all(
            [
                ActionUpdate(
                    action_item_id=programme.items["SG"],
                    author_id=programme.user_ids["focal_sg"],
                    created_at=datetime(2026, 11, 10, 3, tzinfo=UTC),
                    note="Waiting for the vendor's quote",
                ),
                ExtensionRequest(
                    action_item_id=programme.items["SG"],
                    requested_by_id=programme.user_ids["focal_sg"],
                    current_deadline=date(2026, 10, 24),
                    requested_deadline=DEADLINE,
                    reason="Budget",
                    state="approved",
                ),
            ]
        )
        db.session.commit()
    change(app, ActionItem, programme.items["MY"], status="cancelled")  # SG's item only
    with app.app_context():  # the plan was agreed long before
        db.session.execute(
            sa.update(ActionUpdate)
            .where(ActionUpdate.note == "Agreed")
            .values(created_at=datetime(2026, 6, 1, tzinfo=UTC))
        )
        db.session.commit()
    day = DEADLINE
    while day <= DEADLINE + timedelta(days=95):
        job(app, day)
        day += timedelta(days=1)
    assert days_of("escalation", "manager.sg@example.test", app) == ["2026-12-25"]  # 31 days
    assert days_of("escalation", "manager@example.test", app) == ["2027-01-24"]  # 61 days
    assert days_of("escalation", "reviewer@example.test", app) == ["2027-02-23"]  # 91 days
    assert escalations(app) == [
        (programme.items["SG"], 1),
        (programme.items["SG"], 2),
        (programme.items["SG"], 3),
    ]

    deliver(app, DEADLINE + timedelta(days=95))
    received = {
        m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages if "Escalation" in m.parsed()["Subject"]
    }
    assert set(received) == {"manager.sg@example.test", "manager@example.test", "reviewer@example.test"}
    text = received["reviewer@example.test"].get_body(("plain",)).get_content()
    assert "91 days overdue" in text
    assert "Escalation level 3: overdue more than 90 days" in text
    assert "1 extension granted" in text
    assert "Last update Nov 10, 2026: Waiting for the vendor's quote" in text
    assert received["manager.sg@example.test"]["Subject"] == "Escalation: 1 action long overdue — SG"


def test_an_office_without_a_manager_reaches_the_programme_managers(app, programme):
    change(app, ActionItem, programme.items["SG"], status="cancelled")
    job(app, DEADLINE + timedelta(days=31))
    assert told(app) == {("escalation", "manager@example.test")}
    body = mail(app, "escalation", "manager@example.test").body_text
    assert "E-filing for MY" in body and "Sent to you because nobody at that level could be told." in body
    assert escalations(app) == [(programme.items["MY"], 1)]


def test_no_escalation_row_without_a_mail(app, programme):
    change(app, ActionItem, programme.items["SG"], status="cancelled")
    for label in ("manager", "reviewer", "admin"):
        change(app, User, programme.user_ids[label], active=False)
    job(app, DEADLINE + timedelta(days=31))
    assert [n for n in outbox(app) if n.kind == "escalation"] == []
    assert escalations(app) == []


def test_an_empty_rung_falls_through_and_the_last_reaches_the_admins(app, programme, monkeypatch):
    monkeypatch.setitem(app.config, "TRACKER_ESCALATION_LADDER", "10:office_managers,20:reviewers")
    change(app, ActionItem, programme.items["SG"], status="cancelled")
    change(app, User, programme.user_ids["reviewer"], active=False)
    job(app, DEADLINE + timedelta(days=11))  # MY has no manager, no reviewer is active: the admins
    assert told(app) == {("escalation", "admin@example.test")}
    job(app, DEADLINE + timedelta(days=21))  # rung 2: again nobody but the admins
    assert days_of("escalation", "admin@example.test", app) == ["2026-12-05", "2026-12-15"]
    assert escalations(app) == [(programme.items["MY"], 1), (programme.items["MY"], 2)]


def test_an_away_manager_is_skipped(app, programme):
    change(app, ActionItem, programme.items["MY"], status="cancelled")
    away(app, programme, "manager_sg", date(2026, 12, 20), date(2027, 1, 5))
    job(app, DEADLINE + timedelta(days=31))
    assert told(app) == {("escalation", "manager@example.test")}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30:office_managers,60:bosses", "TRACKER_ESCALATION_LADDER must be days:audience pairs"),
        ("thirty:office_managers", "TRACKER_ESCALATION_LADDER must be days:audience pairs"),
        (
            "60:office_managers,30:reviewers",
            "TRACKER_ESCALATION_LADDER must list its days in increasing order",
        ),
    ],
)
def test_a_bad_ladder_is_refused_naming_the_setting(app, programme, runner, monkeypatch, value, message):
    monkeypatch.setitem(app.config, "TRACKER_ESCALATION_LADDER", value)
    result = runner.invoke(args=["tracker", "remind", "--today", "2026-12-25"])
    assert result.exit_code == 1 and message in result.output
    assert outbox(app) == []


# --- offices without a manager are flagged to admins ----------


def test_offices_without_a_manager_are_flagged(app, programme, runner, login_as):
    result = runner.invoke(args=["tracker", "remind", "--today", "2026-12-25", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "office MY has no active manager: its escalations go to the next level" in result.output
    assert "office SG" not in result.output
    assert "would queue escalation to manager@example.test" in result.output
    admin = login_as("admin@example.test")
    outbox_page = admin.get("/admin/outbox").text
    assert (
        "Offices without an active manager" in outbox_page
        and "1 office has no active manager: MY." in outbox_page
    )
    offices_page = admin.get("/offices").text
    assert offices_page.count("No active manager") == 1
    assert "No active manager" not in login_as("reviewer@example.test").get("/offices").text


# --- stale nudges ----------


def test_stale_nudges_at_90_then_every_30_days_whatever_day_the_job_runs(app, programme):
    quiet = add_item(
        app, programme, "Quiet action", date(2028, 12, 31), updated=datetime(2026, 1, 1, 12, tzinfo=SG)
    )
    start = date(2026, 1, 1)
    # The job runs only on some days: 89 (too early), 91 (90 was skipped), 95, 121, 130, 151.
    for age in (89, 91, 95, 121, 130, 151):
        job(app, start + timedelta(days=age))
    nudges = days_of("stale", "focal.sg@example.test", app)
    assert nudges == [str(start + timedelta(days=n)) for n in (91, 121, 151)]
    with app.app_context():
        periods = db.session.scalars(
            sa.select(ItemNotice.period).where(ItemNotice.action_item_id == quiet, ItemNotice.kind == "stale")
        ).all()
    assert sorted(periods) == [start + timedelta(days=n) for n in (90, 120, 150)]


def test_an_item_idle_598_days_gets_a_nudge_once(app, programme):
    add_item(
        app, programme, "Forgotten action", date(2028, 12, 31), updated=datetime(2025, 4, 1, 12, tzinfo=SG)
    )
    day = date(2025, 4, 1) + timedelta(days=598)
    job(app, day)
    job(app, day + timedelta(days=1))
    assert days_of("stale", "focal.sg@example.test", app) == [str(day)]
    assert "598 days ago" in mail(app, "stale", "focal.sg@example.test").body_text


def test_an_update_starts_the_idle_count_again(app, programme, monkeypatch):
    monkeypatch.setitem(app.config, "TRACKER_STALE_REPEAT_DAYS", 10)
    item = add_item(
        app, programme, "Quiet action", date(2028, 12, 31), updated=datetime(2026, 1, 1, 12, tzinfo=SG)
    )
    job(app, date(2026, 4, 1))  # 90 days
    change(app, ActionItem, item, updated_at=datetime(2026, 4, 5, 12, tzinfo=SG))
    job(app, date(2026, 4, 11))  # 6 days after the update: nothing
    job(app, date(2026, 7, 4))  # 90 days after it
    assert days_of("stale", "focal.sg@example.test", app) == ["2026-04-01", "2026-07-04"]


# --- catch-up ----------


def test_a_scheduler_back_after_five_days_sends_the_first_overdue_notice_once(app, programme, smtp_server):
    job(app, DEADLINE)  # then down from the 25th to the 29th
    for offset in (6, 6, 7, 8, 9):  # back on the 30th (twice), then daily
        job(app, DEADLINE + timedelta(days=offset))
    assert days_of("overdue", "focal.sg@example.test", app) == ["2026-11-30", "2026-12-02"]
    deliver(app, date(2026, 12, 2))
    subjects = [
        m.parsed()["Subject"] for m in smtp_server.messages if m.rcpt_tos == ["focal.sg@example.test"]
    ]
    assert subjects == ["1 action overdue — SG", "1 action overdue — SG"]  # no burst of missed repeats


def test_a_new_deadline_earns_a_new_first_notice(app, programme):
    job(app, DEADLINE + timedelta(days=1))
    change(app, ActionItem, programme.items["SG"], deadline=date(2026, 11, 27))
    job(app, date(2026, 11, 30))  # 3 days past the new deadline, the first run since it passed
    assert days_of("overdue", "focal.sg@example.test", app) == ["2026-11-25", "2026-11-30"]


# --- absences ----------


def test_an_absent_owners_reminders_go_to_the_deputy_saying_whom_they_cover(app, programme, smtp_server):
    add_user(app, programme, "deputy_sg", "focal_point", "SG")
    change(app, ActionItem, programme.items["SG"], deputy_id=programme.user_ids["deputy_sg"])
    away(app, programme, "focal_sg", date(2026, 11, 20), date(2026, 11, 30))
    away(app, programme, "focal_sg", date(2026, 12, 1), date(2026, 12, 3))  # extended: one absence
    job(app, DEADLINE + timedelta(days=1))
    assert ("overdue", "focal.sg@example.test") not in told(app)
    deliver(app, DEADLINE + timedelta(days=1))
    [message] = [m.parsed() for m in smtp_server.messages if m.rcpt_tos == ["deputy.sg@example.test"]]
    text = message.get_body(("plain",)).get_content()
    assert "E-filing for SG" in text
    assert "On behalf of Focal Sg, who is away until Dec 3, 2026" in text
    html = message.get_body(("html",)).get_content()
    assert "On behalf of Focal Sg, who is away until Dec 3, 2026" in html


def test_without_a_deputy_the_offices_other_focal_points_stand_in(app, programme):
    add_user(app, programme, "second_sg", "focal_point", "SG")
    add_user(app, programme, "away_sg", "focal_point", "SG")
    away(app, programme, "focal_sg", date(2026, 11, 25), date(2026, 11, 25))
    away(app, programme, "away_sg", date(2026, 11, 1), date(2026, 12, 31))
    job(app, DEADLINE + timedelta(days=1))
    assert told(app) == {("overdue", "second.sg@example.test"), ("overdue", "focal.my@example.test")}
    assert "who is away until Nov 25, 2026" in mail(app, "overdue", "second.sg@example.test").body_text
    job(app, DEADLINE + timedelta(days=8))  # back: their own reminder again
    assert days_of("overdue", "focal.sg@example.test", app) == ["2026-12-02"]


def test_an_away_reviewer_gets_no_review_list_the_others_do(app, programme, runner):
    add_user(app, programme, "reviewer_two", "reviewer", None)
    away(app, programme, "reviewer", date(2026, 11, 24), date(2026, 11, 26))
    add_extension(app, programme, "SG", date(2027, 1, 31), datetime(2026, 11, 20, 3, tzinfo=UTC))
    result = runner.invoke(args=["tracker", "remind", "--today", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert {email for kind, email in told(app) if kind == "review_queue"} == {"reviewer.two@example.test"}


# --- the review list with extension requests ----------


def test_the_review_list_includes_pending_extension_requests(app, programme, smtp_server):
    add_extension(
        app,
        programme,
        "MY",
        date(2027, 2, 28),
        datetime(2026, 11, 20, 3, tzinfo=UTC),
        reason="New law pending",
    )
    job(app, date(2026, 11, 25), "17:00")  # 09:00 in the reviewer's zone (UTC)
    deliver(app, date(2026, 11, 25), "18:00")
    [message] = [m.parsed() for m in smtp_server.messages if m.rcpt_tos == ["reviewer@example.test"]]
    assert message["Subject"] == "1 item awaiting your review — MY"
    text = message.get_body(("plain",)).get_content()
    assert "This request for a later deadline awaits your decision:" in text
    assert "deadline Nov 24, 2026 → Feb 28, 2027 · waiting 5 days" in text
    assert "Asked by Focal My: New law pending" in text
    assert f"http://127.0.0.1:5000/actions/{programme.items['MY']}" in text
