"""The "indicators due" mail: focal points whose office still owes values 14 days after a quarter.

The indicators fixture (see conftest.build_indicators) leaves, for 2026Q3: SG without GUIDE
(ONLINE reported, EXAM validated); MY without ONLINE and GUIDE, and EXAM sent back ("Check the
source"). Q3's last day is 30 September: its values are due from 14 October, office time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from tests.test_compose import add_office, add_user, change, check_expected, mail, outbox, told
from tracker.extensions import db
from tracker.indicators.models import Indicator
from tracker.models import Absence, Notification, User
from tracker.notifications import dispatch
from tracker.notifications.compose import compose
from tracker.notifications.indicators_due import compose_indicators_due, due_quarter
from tracker.quarters import Quarter

SG = ZoneInfo("Asia/Singapore")
Q3 = Quarter(2026, 3)
#: Both offices' (UTC+8) morning of 14 October: the first day Q3's values are due.
DUE = datetime(2026, 10, 14, 8, 0, tzinfo=SG)


def run(app, now: datetime, **kwargs) -> list[tuple[str, str, int]]:
    """Compose the indicators-due mails at ``now`` and commit; (email, key, lines) of each planned."""
    with app.app_context():
        planned = compose_indicators_due(now, **kwargs)
        db.session.commit()
        return sorted((p.recipient.email, p.key, p.items) for p in planned)


def key(world, label: str, quarter: Quarter = Q3) -> str:
    return f"indicators_due:user{world.user_ids[label]}:{quarter}"


def test_due_quarter_counts_14_days_after_the_quarters_last_day():
    assert due_quarter(date(2026, 10, 13)) is None
    assert due_quarter(date(2026, 10, 14)) == Q3
    assert due_quarter(date(2026, 12, 31)) == Q3
    assert due_quarter(date(2027, 1, 13)) is None  # Q4 not yet due; Q3 no longer reminded
    assert due_quarter(date(2027, 1, 14)) == Quarter(2026, 4)


def test_not_before_14_days_after_the_quarter_ended_in_the_offices_zone(app, world, indicators):
    assert run(app, datetime(2026, 10, 13, 12, 0, tzinfo=SG)) == []
    assert run(app, datetime(2026, 10, 14, 7, 59, tzinfo=SG)) == []  # before their morning
    assert run(app, DUE) == [
        ("focal.my@example.test", key(world, "focal_my"), 3),
        ("focal.sg@example.test", key(world, "focal_sg"), 1),
    ]
    # An office in Honolulu is still on 13 October at that moment; its morning of the 14th comes later.
    add_office(app, world, "HI", "Pacific/Honolulu")
    add_user(app, world, "focal_hi", "focal_point", "HI")
    assert run(app, DUE) == []
    assert run(app, datetime(2026, 10, 14, 8, 0, tzinfo=ZoneInfo("Pacific/Honolulu"))) == [
        ("focal.hi@example.test", key(world, "focal_hi"), 3)
    ]


def test_the_mail_lists_missing_and_sent_back_indicators_only(app, world, indicators):
    run(app, DUE)
    my = mail(app, "indicators_due", "focal.my@example.test")
    assert my.subject == "3 indicator values to report for 2026 Q3 — MY"
    assert "EXAM — Months to first examination action" in my.body_text
    # When it was sent back, in MY's zone (03:00 UTC + 8 hours).
    assert re.search(r"Sent back on Oct 10, 2026, 11:00\sAM: Check the source", my.body_text)
    assert "ONLINE — Applications filed online\n  Not reported" in my.body_text
    assert "GUIDE — Examination guidelines published online\n  Not reported" in my.body_text
    assert "http://127.0.0.1:5000/indicators/report?office=MY&period=2026Q3" in my.body_text
    assert 'href="http://127.0.0.1:5000/indicators/report?office=MY&amp;period=2026Q3"' in my.body_html
    sg = mail(app, "indicators_due", "focal.sg@example.test")
    assert sg.subject == "1 indicator value to report for 2026 Q3 — SG"
    assert "GUIDE" in sg.body_text and "ONLINE" not in sg.body_text and "EXAM" not in sg.body_text


def test_once_per_quarter_and_nothing_for_an_office_that_reported_everything(app, world, indicators):
    assert len(run(app, DUE)) == 2
    assert run(app, datetime(2026, 10, 15, 9, 0, tzinfo=SG)) == []
    assert run(app, datetime(2026, 11, 24, 9, 0, tzinfo=SG)) == []
    assert len(outbox(app)) == 2
    with app.app_context():  # archived indicators are not owed
        db.session.execute(sa.update(Indicator).values(archived_at=datetime(2026, 10, 1, tzinfo=UTC)))
        db.session.commit()
    add_user(app, world, "focal_sg2", "focal_point", "SG")
    assert run(app, datetime(2026, 10, 16, 9, 0, tzinfo=SG)) == []


def test_preference_off_inactive_or_away_means_no_mail(app, world, indicators):
    change(app, User, world.user_ids["focal_my"], notify_indicators_due=False)
    add_user(app, world, "away_sg", "focal_point", "SG")
    with app.app_context():
        db.session.add(
            Absence(
                user_id=world.user_ids["away_sg"], starts_on=date(2026, 10, 12), ends_on=date(2026, 10, 14)
            )
        )
        db.session.commit()
    # inactive_sg (a focal point of SG) is inactive: never told.
    assert run(app, DUE) == [("focal.sg@example.test", key(world, "focal_sg"), 1)]
    # Back the next morning: told then, once.
    assert run(app, datetime(2026, 10, 15, 8, 0, tzinfo=SG)) == [
        ("away.sg@example.test", key(world, "away_sg"), 1)
    ]
    assert ("indicators_due", "focal.my@example.test") not in told(app)
    assert ("indicators_due", "gone.sg@example.test") not in told(app)


def test_a_dry_run_writes_nothing(app, world, indicators):
    assert len(run(app, DUE, dry_run=True)) == 2
    assert outbox(app) == []


def test_compose_runs_it_and_a_forced_day_composes_everyone(app, world, indicators):
    with app.app_context():
        planned = compose(datetime(2026, 10, 14, 1, 0, tzinfo=UTC))  # SG and MY: 09:00
        kinds = {(p.kind.value, p.recipient.email) for p in planned}
        db.session.commit()
    assert kinds >= {
        ("indicators_due", "focal.sg@example.test"),
        ("indicators_due", "focal.my@example.test"),
    }
    with app.app_context():
        db.session.execute(sa.delete(Notification))
        db.session.commit()
    # A forced date composes as of its morning whatever the time.
    assert run(app, datetime(2026, 10, 20, tzinfo=UTC), today=date(2026, 10, 13)) == []
    assert len(run(app, datetime(2026, 10, 1, tzinfo=UTC), today=date(2026, 10, 14))) == 2


def test_remind_command_plans_and_queues_it(app, world, indicators, runner):
    dry = runner.invoke(args=["tracker", "remind", "--today", "2026-10-14", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "would queue indicators_due to focal.my@example.test: "
        "3 indicator values to report for 2026 Q3 — MY" in dry.output
    )
    assert outbox(app) == []
    done = runner.invoke(args=["tracker", "remind", "--today", "2026-10-14"])
    assert done.exit_code == 0, done.output
    assert "(2 indicators_due)" in done.output and len(outbox(app)) == 2


def test_delivered_through_smtp_with_a_working_unsubscribe_link(app, world, indicators, smtp_server, client):
    from tracker.scheduler import compose_job

    with app.app_context():
        ran = compose_job(datetime(2026, 10, 14, 1, 0, tzinfo=UTC))
        db.session.commit()
        assert ran.figures.startswith("2 reminders")
        dispatch.dispatch(datetime(2026, 10, 14, 1, 5, tzinfo=UTC))
        db.session.commit()
    received = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages}
    message = received["focal.my@example.test"]
    assert message["Subject"] == "3 indicator values to report for 2026 Q3 — MY"
    text = message.get_body(("plain",)).get_content()
    assert "The values of MY for 2026 Q3 (Jul 1, 2026 – Sep 30, 2026) were due on Oct 14, 2026." in text
    assert "Check the source" in message.get_body(("html",)).get_content()
    match = re.fullmatch(r"<http://127\.0\.0\.1:5000(/\S*unsubscribe/[\w.-]+)>", message["List-Unsubscribe"])
    assert match and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    done = client.post(match.group(1), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    with app.app_context():
        assert db.session.get(User, world.user_ids["focal_my"]).notify_indicators_due is False
        assert db.session.get(User, world.user_ids["focal_my"]).notify_due_soon is True
    # The next quarter: no mail for who unsubscribed.
    assert run(app, datetime(2027, 1, 14, 9, 0, tzinfo=SG)) == [
        ("focal.sg@example.test", key(world, "focal_sg", Quarter(2026, 4)), 3)
    ]


def _statements(app, count_queries) -> tuple[int, int]:
    with count_queries() as statements, app.app_context():
        compose_indicators_due(DUE)
        db.session.commit()
    selects = sum(s.lstrip().upper().startswith(("SELECT", "WITH")) for s in statements)
    inserts = sum(s.lstrip().upper().startswith("INSERT") for s in statements)
    return selects, inserts


def test_statements_do_not_grow_with_offices_and_people(app, world, indicators, count_queries):
    small = _statements(app, count_queries)
    assert small[1] == 2
    with app.app_context():
        db.session.execute(sa.delete(Notification))
        db.session.commit()
    for n in range(10):
        code = f"X{n}"
        add_office(app, world, code, "Asia/Singapore")
        add_user(app, world, f"focal_{code.lower()}", "focal_point", code)
        add_user(app, world, f"other_{code.lower()}", "focal_point", code)
    large = _statements(app, count_queries)
    # Indicators, focal points, keys, absences, measurements; one INSERT per mail.
    assert large[0] == small[0] <= 5
    assert large[1] == 22


def test_the_mail_renders_as_stored(app, world, indicators):
    run(app, DUE)
    row = mail(app, "indicators_due", "focal.my@example.test")
    ids = {str(i): code for code, i in indicators.indicators.items()}
    normal = lambda text: re.sub(r"/indicators/(\d+)", lambda m: f"/indicators/<{ids[m.group(1)]}>", text)  # noqa: E731
    check_expected("indicators_due.txt", normal(f"Subject: {row.subject}\n\n{row.body_text}"))
    check_expected("indicators_due.html", normal(row.body_html))
    assert "<script" not in row.body_html and "<img" not in row.body_html


def test_written_in_the_recipients_language(app, world, indicators):
    change(app, User, world.user_ids["focal_my"], language="fr")
    run(app, DUE)
    my = mail(app, "indicators_due", "focal.my@example.test")
    assert "14 oct. 2026" in my.body_text and 'lang="fr"' in my.body_html
