"""The quarterly digest: figures reconstructed from history as of each quarter's end, each manager's scope.

The story, in 2026 (Q2 ends 1 July 00:00 UTC, Q3 ends 1 October 00:00 UTC):
- SG "Registry upgrade": in progress in May, completed 3 Aug, verified 10 Sep;
- SG "Examiner training": in progress since June, deadline 15 Aug: became overdue in Q3;
- SG "Fee schedule": completed 20 June (in Q2);
- SG "Paper forms": cancelled 15 July;
- SG "New portal": created 5 October, after the quarter: not counted;
- SG and MY world items "E-filing for …": not started, due 24 November (next quarter);
- MY "Search tools": completed 5 July, verified 20 July.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import time_machine

from tests.test_compose import add_office, add_user, check_expected, mail, normalised, outbox, told
from tracker.extensions import db
from tracker.models import ActionItem, ActionUpdate, Office, Recommendation, Source, User
from tracker.notifications.compose import compose_digests
from tracker.notifications.digest import Quarter, build_figures, status_counts_at

Q3 = Quarter(2026, 3)
APRIL = datetime(2026, 4, 10, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_story_item(app, world, title, office, deadline, created, history, status) -> int:
    """An item created at ``created`` with its history [(when, new status)] and current ``status``."""
    with app.app_context():
        item = ActionItem(
            recommendation_id=world.recommendation_id,
            office_id=world.offices[office],
            title=title,
            owner_id=world.user_ids["focal_sg" if office == "SG" else "focal_my"],
            deadline=deadline,
            status=status,
            created_at=created,
            updated_at=history[-1][0] if history else created,
        )
        db.session.add(item)
        db.session.flush()
        old = None
        for when, new in [(created, "not_started"), *history]:
            db.session.add(
                ActionUpdate(action_item_id=item.id, created_at=when, old_status=old, new_status=new)
            )
            old = new
        db.session.commit()
        world.items[title] = item.id
        return item.id


@pytest.fixture
def story(app, world):
    """The world plus the items of the module's story."""
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(created_at=APRIL, updated_at=APRIL))
        db.session.execute(sa.update(ActionUpdate).values(created_at=APRIL))
        db.session.commit()
    add_story_item(
        app,
        world,
        "Registry upgrade",
        "SG",
        date(2026, 9, 30),
        APRIL,
        [(utc(2026, 5, 2), "in_progress"), (utc(2026, 8, 3), "completed"), (utc(2026, 9, 10), "verified")],
        "verified",
    )
    add_story_item(
        app,
        world,
        "Examiner training",
        "SG",
        date(2026, 8, 15),
        APRIL,
        [(utc(2026, 6, 1), "in_progress")],
        "in_progress",
    )
    add_story_item(
        app,
        world,
        "Fee schedule",
        "SG",
        date(2026, 6, 30),
        APRIL,
        [(utc(2026, 6, 20), "completed")],
        "completed",
    )
    add_story_item(
        app,
        world,
        "Paper forms",
        "SG",
        date(2026, 12, 1),
        APRIL,
        [(utc(2026, 7, 15), "cancelled")],
        "cancelled",
    )
    add_story_item(app, world, "New portal", "SG", date(2026, 12, 15), utc(2026, 10, 5), [], "not_started")
    add_story_item(
        app,
        world,
        "Search tools",
        "MY",
        date(2026, 9, 1),
        APRIL,
        [(utc(2026, 7, 5), "completed"), (utc(2026, 7, 20), "verified")],
        "verified",
    )
    return world


def digests(app, quarter: Quarter | None, now: datetime, **kwargs) -> list[tuple[str, str]]:
    with app.app_context():
        planned = compose_digests(quarter, now, **kwargs)
        db.session.commit()
        return [(p.recipient.email, p.key) for p in planned]


# --- quarters -----------------------------------------------------------------------------------------


def test_quarters_parse_and_bound():
    assert Quarter.parse("2026Q3") == Q3 == Quarter.parse(" 2026-q3 ")
    assert str(Q3) == "2026Q3"
    assert (Q3.first_day, Q3.last_day) == (date(2026, 7, 1), date(2026, 9, 30))
    assert Q3.ends_at == utc(2026, 10, 1) and Q3.starts_at == utc(2026, 7, 1)
    assert Quarter(2026, 1).previous == Quarter(2025, 4) and Quarter(2026, 4).next == Quarter(2027, 1)
    assert Quarter.containing(date(2026, 10, 1)).previous == Q3
    for bad in ("2026Q5", "2026Q0", "2026", "Q3", "2026Q3x", ""):
        with pytest.raises(ValueError):
            Quarter.parse(bad)


# --- the figures --------------------------------------------------------------------------------------


def test_status_at_a_quarters_end_is_reconstructed_from_history(app, story):
    with app.app_context():
        sg, my = story.offices["SG"], story.offices["MY"]
        end = status_counts_at(Q3.ends_at)
        assert end[sg] == {
            "not_started": 1,  # E-filing for SG (New portal came later)
            "in_progress": 1,  # Examiner training
            "blocked": 0,
            "completed": 1,  # Fee schedule
            "verified": 1,  # Registry upgrade
            "cancelled": 1,  # Paper forms
            "proposed": 0,
        }
        assert end[my]["verified"] == 1 and end[my]["not_started"] == 1
        before = status_counts_at(Q3.previous.ends_at)
        assert before[sg]["in_progress"] == 2 and before[sg]["completed"] == 1
        assert before[sg]["not_started"] == 2 and before[sg]["cancelled"] == 0
        assert before[my] == {**dict.fromkeys(before[my], 0), "not_started": 2}


def test_rates_and_lists_of_a_quarter(app, story):
    with app.app_context():
        figures = build_figures(Q3, list(db.session.scalars(sa.select(Office))))
        by_code = {f.office.code: f for f in figures.offices}
        sg = by_code["SG"]
        assert sg.total == 5 and round(sg.rate, 3) == 0.5  # 2 done of 4 not cancelled
        assert round(sg.previous_rate, 3) == 0.2 and sg.change_points == 30.0  # 1 of 5 before
        assert by_code["MY"].change_points == 50.0
        assert [(e.item.title, e.status, e.on) for e in figures.completed] == [
            ("Search tools", "verified", date(2026, 7, 20)),
            ("Registry upgrade", "verified", date(2026, 9, 10)),
        ]
        assert [(e.item.title, e.on) for e in figures.became_overdue] == [
            ("Examiner training", date(2026, 8, 16))
        ]
        assert [e.item.title for e in figures.due_next] == [
            "E-filing for MY",
            "E-filing for SG",
            "New portal",
        ]


def test_archived_recommendations_are_left_out(app, story):
    with app.app_context():
        source = db.session.get(Source, story.source_id)
        other = Recommendation(
            source=source, code="R-2", title="Old", text="Old", theme="Digital", archived_at=APRIL
        )
        db.session.add(other)
        db.session.flush()
        db.session.add(
            ActionItem(
                recommendation_id=other.id,
                office_id=story.offices["SG"],
                title="Archived work",
                deadline=date(2026, 8, 1),
                created_at=APRIL,
            )
        )
        db.session.commit()
        assert sum(status_counts_at(Q3.ends_at)[story.offices["SG"]].values()) == 5


# --- who gets which digest ----------------------------------------------------------------------------


def test_each_manager_gets_their_scope_once(app, story):
    add_office(app, story, "TH", "Asia/Bangkok")
    add_user(app, story, "manager_th", "manager", "TH")  # nothing in scope: no digest
    add_user(app, story, "quiet_manager", "manager", None, notify_digest=False)
    sent = digests(app, Q3, utc(2026, 10, 1, 9))
    assert sorted(sent) == [
        ("manager.sg@example.test", f"digest:user{story.user_ids['manager_sg']}:2026Q3"),
        ("manager@example.test", f"digest:user{story.user_ids['manager']}:2026Q3"),
    ]
    assert told(app) == {("digest", "manager@example.test"), ("digest", "manager.sg@example.test")}

    everything = mail(app, "digest", "manager@example.test")
    assert everything.subject == "Quarterly digest 2026 Q3 — all offices"
    assert (
        "MY — IP Corporation of Malaysia" in everything.body_text and "Search tools" in everything.body_text
    )

    sg = mail(app, "digest", "manager.sg@example.test")
    assert sg.subject == "Quarterly digest 2026 Q3 — SG"
    for other_office in ("Search tools", "E-filing for MY", "Malaysia", ">MY<"):
        assert other_office not in sg.body_text + sg.body_html
    assert "Registry upgrade" in sg.body_text and "Examiner training" in sg.body_text
    assert "Completion rate 50% (end of 2026 Q2: 20%) · +30.0 points" in sg.body_text
    assert f"http://127.0.0.1:5000/actions/{story.items['Registry upgrade']}" in sg.body_html

    assert digests(app, Q3, utc(2026, 10, 1, 10)) == []  # once per quarter
    assert len(outbox(app)) == 2


def test_the_scheduled_digest_goes_out_on_the_first_day_of_the_quarter_in_each_managers_morning(app, story):
    sg_key = f"digest:user{story.user_ids['manager_sg']}:2026Q3"
    assert digests(app, None, utc(2026, 9, 30, 23, 59)) == []  # Singapore: 07:59 on 1 October
    assert digests(app, None, utc(2026, 10, 1, 0, 0)) == [("manager.sg@example.test", sg_key)]
    # The programme manager has no office: UTC, so their morning comes at 08:00 UTC.
    assert digests(app, None, utc(2026, 10, 1, 7, 59)) == []
    assert [email for email, _ in digests(app, None, utc(2026, 10, 1, 8, 0))] == ["manager@example.test"]
    assert digests(app, None, utc(2026, 10, 2, 8, 0)) == []  # not on other days
    assert len(outbox(app)) == 2


def test_a_digest_dry_run_writes_nothing(app, story):
    planned = digests(app, Q3, utc(2026, 10, 1, 9), dry_run=True)
    assert len(planned) == 2 and outbox(app) == []


def test_digest_statements_do_not_grow_with_the_data(app, story, count_queries):
    def statements() -> int:
        with count_queries() as seen, app.app_context():
            compose_digests(Q3, utc(2026, 10, 1, 9))
            db.session.rollback()
        return sum(s.lstrip().upper().startswith(("SELECT", "WITH")) for s in seen)

    small = statements()
    for n in range(40):
        add_story_item(
            app,
            story,
            f"Extra {n}",
            ("SG", "MY")[n % 2],
            date(2026, 8, 1 + n % 28),
            APRIL,
            [(utc(2026, 7, 1 + n % 28), ("in_progress", "completed", "verified")[n % 3])],
            ("in_progress", "completed", "verified")[n % 3],
        )
    # Managers, keys, offices, five for the actions, one for the indicators (none here).
    assert statements() == small <= 9


# --- stored rendering ---------------------------------------------------------------------------------


def test_the_digest_renders_as_stored(app, story):
    digests(app, Q3, utc(2026, 10, 1, 9))
    for email, name in (("manager@example.test", "digest"), ("manager.sg@example.test", "digest_office")):
        row = mail(app, "digest", email)
        check_expected(f"{name}.txt", normalised(f"Subject: {row.subject}\n\n{row.body_text}", story))
        check_expected(f"{name}.html", normalised(row.body_html, story))
        assert "<script" not in row.body_html and "<img" not in row.body_html


# --- the command line ---------------------------------------------------------------------------------


def test_digest_command(app, story, runner):
    with time_machine.travel(utc(2026, 10, 1, 9), tick=False):
        dry = runner.invoke(args=["tracker", "digest", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "Quarterly digest 2026Q3:" in dry.output
        assert (
            "would queue digest to manager@example.test: Quarterly digest 2026 Q3 — all offices" in dry.output
        )
        assert outbox(app) == []
        done = runner.invoke(args=["tracker", "digest", "--quarter", "2026Q3"])
        assert done.exit_code == 0, done.output
        assert "2 mails queued (2 digest)." in done.output
        assert len(outbox(app)) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("2026Q5", "--quarter must be a quarter written YYYYQn"),
        ("Q3", "YYYYQn"),
        ("2026Q4", "has not ended yet"),
    ],
)
def test_digest_command_refuses_a_bad_quarter(app, story, runner, bad, message):
    with time_machine.travel(utc(2026, 10, 1, 9), tick=False):
        result = runner.invoke(args=["tracker", "digest", "--quarter", bad])
    assert result.exit_code == 1 and message in result.output
    assert outbox(app) == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) > 0


def test_a_scheduler_back_after_the_quarters_first_day_sends_the_digest_late(app, story, smtp_server):
    """Down on 1 October: the next compose job of the quarter sends Q3's digest, saying it is late."""
    from tracker.scheduler import compose_job, dispatch_job

    with app.app_context():  # accounts that existed when Q3 ended, and one made after
        db.session.execute(sa.update(User).values(created_at=APRIL))
        db.session.commit()
    add_user(app, story, "new_manager", "manager", None)
    with app.app_context():
        db.session.execute(
            sa.update(User)
            .where(User.id == story.user_ids["new_manager"])
            .values(created_at=utc(2026, 10, 3))
        )
        db.session.commit()
        compose_job(utc(2026, 10, 6, 9))
        db.session.commit()
        compose_job(utc(2026, 10, 7, 9))  # once
        db.session.commit()
        dispatch_job(utc(2026, 10, 6, 10))
        db.session.commit()
    assert {(kind, email) for kind, email in told(app) if kind == "digest"} == {
        ("digest", "manager@example.test"),
        ("digest", "manager.sg@example.test"),
    }
    received = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages}
    assert received["manager.sg@example.test"]["Subject"] == "Quarterly digest 2026 Q3 — SG"
    late = "This digest is late: it was due on Oct 1, 2026, when the reminders were not running."
    assert late in received["manager.sg@example.test"].get_body(("plain",)).get_content()
    assert late in received["manager@example.test"].get_body(("html",)).get_content()
    programme_wide = mail(app, "digest", "manager@example.test")
    assert programme_wide.idempotency_key == f"digest:user{story.user_ids['manager']}:2026Q3"


def test_and_more_links_open_the_list_of_the_digests_scope(app, story, monkeypatch):
    # With lists cut at 0 every section ends in "… and N more": the link opens the Actions list
    # of the digest's office (all offices for a programme manager), overdue ones for that section.
    monkeypatch.setattr("tracker.notifications.compose.LIST_LIMIT", 0)
    digests(app, Q3, utc(2026, 10, 1, 9))
    sg = mail(app, "digest", "manager.sg@example.test")
    more = re.findall(r"… and \d+ more: (\S+)", sg.body_text)
    assert "http://127.0.0.1:5000/?office=SG&overdue=1" in more, more
    assert more and all(url.startswith("http://127.0.0.1:5000/?office=SG") for url in more), more
    assert 'href="http://127.0.0.1:5000/?office=SG&amp;overdue=1"' in sg.body_html
    everything = mail(app, "digest", "manager@example.test")
    more = re.findall(r"… and \d+ more: (\S+)", everything.body_text)
    assert "http://127.0.0.1:5000/?overdue=1" in more and "http://127.0.0.1:5000/" in more, more


# --- indicators ---------------------------------------------------------------------------------------


def test_the_digest_shows_the_indicators_of_each_managers_scope(app, story, indicators, smtp_server):
    """Q3: SG's ONLINE 65 awaits validation (60 in Q2), EXAM 20 validated; MY reported nothing but
    an EXAM value sent back; nobody reported GUIDE."""
    from tracker.notifications import dispatch

    digests(app, Q3, utc(2026, 10, 1, 9))
    with app.app_context():
        dispatch.dispatch(utc(2026, 10, 1, 9, 5))
        db.session.commit()
    received = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages}
    everything = received["manager@example.test"].get_body(("plain",)).get_content().replace("\r\n", "\n")
    online, exam, guide = (
        f"http://127.0.0.1:5000/indicators/{indicators.indicators[c]}" for c in ("ONLINE", "EXAM", "GUIDE")
    )
    # A programme-wide manager reads validated values only: SG's ONLINE awaits validation.
    assert (
        "ONLINE — Applications filed online\n  SG: awaiting validation\n  Missing reports (1): MY\n"
        f"  {online}\n" in everything
    )
    assert (
        "EXAM — Months to first examination action\n  SG: 20 months · change – · progress 33%\n" in everything
    )
    assert "  Missing reports (1): MY\n" in everything.split("EXAM —")[1]
    assert (
        f"GUIDE — Examination guidelines published online\n  Missing reports (2): MY, SG\n  {guide}"
        in everything
    )
    assert "65" not in everything.split("INDICATORS")[1]
    assert exam in received["manager@example.test"].get_body(("html",)).get_content()

    # SG's manager also reads SG's value awaiting validation, marked; and nothing of MY.
    sg = mail(app, "digest", "manager.sg@example.test")
    assert "  SG: 65 % (not validated yet) · change +5 points · progress 38%\n" in sg.body_text
    assert "Missing reports (1): SG" in sg.body_text  # GUIDE
    assert "MY" not in sg.body_text.split("INDICATORS")[1]
    assert "not validated yet" in sg.body_html and ">MY<" not in sg.body_html


def test_the_indicators_section_is_cut_with_a_link_to_the_indicator(app, story, indicators, monkeypatch):
    monkeypatch.setattr("tracker.notifications.compose.LIST_LIMIT", 0)
    digests(app, Q3, utc(2026, 10, 1, 9))
    sg = mail(app, "digest", "manager.sg@example.test")
    online = f"http://127.0.0.1:5000/indicators/{indicators.indicators['ONLINE']}"
    assert f"  … and 1 more: {online}" in sg.body_text
    assert f'<a href="{online}" style="color:#0b5cad;">… and 1 more</a>' in sg.body_html


def test_indicator_figures_take_the_same_statements_for_two_or_twelve_offices(
    app, story, indicators, count_queries
):
    from tracker.indicators.models import IndicatorTarget, Measurement

    def statements() -> int:
        with count_queries() as seen, app.app_context():
            compose_digests(Q3, utc(2026, 10, 1, 9))
            db.session.rollback()
        return sum(s.lstrip().upper().startswith(("SELECT", "WITH")) for s in seen)

    small = statements()
    for n in range(10):
        office_id = add_office(app, story, f"X{n}", "Asia/Singapore")
        add_user(app, story, f"manager_x{n}", "manager", f"X{n}")
        add_story_item(app, story, f"Work {n}", f"X{n}", date(2026, 8, 1), APRIL, [], "not_started")
        with app.app_context():
            for indicator_id in indicators.indicators.values():
                db.session.add(
                    IndicatorTarget(
                        indicator_id=indicator_id, office_id=office_id, target_value=1, target_period="2027Q4"
                    )
                )
                db.session.add(
                    Measurement(
                        indicator_id=indicator_id,
                        office_id=office_id,
                        period="2026Q3",
                        value=n % 2,
                        state="validated",
                    )
                )
            db.session.commit()
    assert statements() == small <= 11


def test_the_digest_with_indicators_renders_as_stored(app, story, indicators):
    digests(app, Q3, utc(2026, 10, 1, 9))
    ids = {str(i): code for code, i in indicators.indicators.items()}

    def normal(text: str) -> str:
        text = re.sub(r"/indicators/(\d+)", lambda m: f"/indicators/<{ids[m.group(1)]}>", text)
        return normalised(text, story)

    for email, name in (
        ("manager@example.test", "digest_indicators"),
        ("manager.sg@example.test", "digest_office_indicators"),
    ):
        row = mail(app, "digest", email)
        check_expected(f"{name}.txt", normal(f"Subject: {row.subject}\n\n{row.body_text}"))
        check_expected(f"{name}.html", normal(row.body_html))
