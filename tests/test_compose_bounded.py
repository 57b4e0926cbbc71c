"""Bounded reminder mails: at most 50 items listed, the most urgent first, then "… and N more" with a
link to the list that shows them; no mail passes 200 KB as sent, whatever the backlog and the data.

The world's SG item (owner focal_sg) is due on 2026-11-24; backlogs are written with one core
executemany. Mail goes to the aiosmtpd server of tests/mailserver.py through the real dispatcher.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.test_compose import check_expected, normalised
from tracker.extensions import db
from tracker.models import ActionItem, Escalation, ItemNotice, Notification, Recommendation, User
from tracker.notifications.compose import LIST_LIMIT, MAIL_BYTES, compose_reminders
from tracker.notifications.dispatch import dispatch

CREATED = datetime(2026, 6, 1, tzinfo=UTC)
SETTLED = datetime(2026, 11, 1, tzinfo=UTC)
#: 25 November, 09:00 in Singapore: everyone's morning has come.
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)


def add_backlog(
    app,
    world,
    count: int,
    deadline: date,
    *,
    office: str = "SG",
    owner: str = "focal_sg",
    title: str = "Backlog {n:05d}",
) -> None:
    """``count`` open items of one office and owner, all due on ``deadline``."""
    rows = [
        {
            "recommendation_id": world.recommendation_id,
            "office_id": world.offices[office],
            "title": title.format(n=n),
            "owner_id": world.user_ids[owner],
            "deadline": deadline,
            "agreed_deadline": deadline,
            "status": "not_started",
            "progress": 0,
            "version": 1,
            "created_at": CREATED,
            "updated_at": SETTLED,
        }
        for n in range(count)
    ]
    with app.app_context():
        db.session.execute(sa.update(ActionItem).values(updated_at=SETTLED))
        db.session.execute(sa.insert(ActionItem), rows)
        db.session.commit()


def compose(app, now: datetime = NOW) -> None:
    with app.app_context():
        compose_reminders(now, today=now.astimezone(UTC).date())
        db.session.commit()


def outbox_row(app, kind: str, email: str) -> Notification:
    with app.app_context():
        row = db.session.scalars(
            sa.select(Notification).where(Notification.kind == kind, Notification.to_address == email)
        ).one()
        db.session.expunge(row)
        return row


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def sent(app, smtp_server) -> dict[str, list[bytes]]:
    """Dispatch everything to the SMTP server; the raw messages it received, by recipient."""
    with app.app_context():
        result = dispatch(NOW)
    assert result.failed == 0 and result.deferred == 0
    received: dict[str, list[bytes]] = {}
    for message in smtp_server.messages:
        received.setdefault(message.rcpt_tos[0], []).append(message.raw)
    return received


def test_a_mail_for_5000_overdue_items_lists_50_and_links_to_the_rest(app, world, login_as, smtp_server):
    """4,999 items 8 days overdue (their weekly reminder) and the world's item 1 day overdue."""
    add_backlog(app, world, 4_999, date(2026, 11, 17))
    compose(app)
    row = outbox_row(app, "overdue", world.users["focal_sg"])
    assert row.subject == "5000 actions overdue — SG"
    listed = re.findall(r"^\* (.+)$", row.body_text, re.MULTILINE)
    # The most urgent first: the oldest deadline, then by id (the order they were written in).
    assert listed == [f"Backlog {n:05d}" for n in range(LIST_LIMIT)]
    assert row.body_html.count('style="color:#0b5cad;font-weight:bold;">Backlog ') == LIST_LIMIT
    found = re.search(r"^… and 4950 more: (\S+)$", row.body_text, re.MULTILINE)
    assert found, row.body_text[-600:]
    url = found.group(1)
    assert url == "http://127.0.0.1:5000/?overdue=1&office=SG&owner=focal.sg%40example.test"
    assert f'href="{url.replace("&", "&amp;")}"' in row.body_html
    assert "That list may also show other actions" in row.body_text
    # Every item is recorded as told, listed or counted (and the world's MY item, for focal_my).
    assert count(app, ItemNotice, ItemNotice.kind == "overdue") == 5_001

    # The link, followed as the recipient: the list has them all, the rest after the fifty listed.
    parts = urlsplit(url)
    c = login_as(world.users["focal_sg"])
    first = c.get(f"{parts.path}?{parts.query}")
    assert first.status_code == 200
    assert "5,000 actions" in first.text or "5000 actions" in first.text
    assert "Backlog 00000" in first.text
    size = app.config["TRACKER_PAGE_SIZE"]
    page = LIST_LIMIT // size + 1  # the page holding the first item the mail did not list
    later = c.get(f"{parts.path}?{parts.query}&page={page}")
    assert later.status_code == 200 and f"Backlog {LIST_LIMIT:05d}" in later.text

    # As sent: one message, under 200 KB.
    raw = sent(app, smtp_server)[world.users["focal_sg"]]
    assert len(raw) == 1 and len(raw[0]) < MAIL_BYTES


def test_the_longest_data_in_a_three_byte_script_stays_under_200_kb(app, world, smtp_server):
    """Titles, names and the recommendation at their longest, in Thai (three bytes a character),
    HTML-escaped characters among them: the overdue and escalation mails list fewer than 50 items
    rather than pass 200 KB, and still count the rest."""
    thai = "การพัฒนาระบบ & <ข้อมูล> " * 20
    with app.app_context():
        db.session.execute(sa.update(Recommendation).values(title=thai[:300], code="R-" + "ก" * 30))
        db.session.execute(sa.update(User).values(name=thai[:200]))
        db.session.commit()
    # 36 days overdue on the 25th: the weekly overdue reminder and the first escalation rung.
    add_backlog(app, world, 300, date(2026, 10, 20), title="{n:03d} " + thai[:290])
    compose(app)
    received = sent(app, smtp_server)
    overdue = outbox_row(app, "overdue", world.users["focal_sg"])
    escalation = outbox_row(app, "escalation", world.users["manager_sg"])
    # The overdue mail also counts the world's item (1 day overdue, not escalated).
    for row, total in ((overdue, 301), (escalation, 300)):
        listed = len(re.findall(r"^\* ", row.body_text, re.MULTILINE))
        assert 1 <= listed < LIST_LIMIT
        assert f"… and {total - listed} more: " in row.body_text
    for email in (world.users["focal_sg"], world.users["manager_sg"]):
        assert all(len(raw) < MAIL_BYTES for raw in received[email]), [len(r) for r in received[email]]
    # Escalated once per item, listed or counted.
    assert count(app, Escalation) == 300
    compose(app, datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    assert count(app, Notification, Notification.kind == "escalation") == 1


def test_an_escalation_counts_what_it_does_not_list_and_records_it(app, world):
    """A manager told of 70 items sees 50 and "20 more", with the overdue list of the office; every
    item's rung is recorded, so none is escalated to them again."""
    add_backlog(app, world, 70, date(2026, 10, 20))
    compose(app)
    row = outbox_row(app, "escalation", world.users["manager_sg"])
    assert row.subject == "Escalation: 70 actions long overdue — SG"
    assert len(re.findall(r"^\* ", row.body_text, re.MULTILINE)) == LIST_LIMIT
    assert "… and 20 more: http://127.0.0.1:5000/?overdue=1&office=SG&owner=focal.sg%40example.test" in (
        row.body_text
    )
    assert count(app, Escalation, Escalation.level == 1) == 70
    with app.app_context():  # written as they were given (PostgreSQL: as arrays, see _insert_rows)
        assert set(db.session.scalars(sa.select(Escalation.created_at))) == {NOW}
        assert set(db.session.scalars(sa.select(ItemNotice.period))) == {
            date(2026, 10, 20),
            date(2026, 11, 24),
        }
    compose(app, datetime(2026, 12, 2, 1, 0, tzinfo=UTC))
    assert count(app, Notification, Notification.kind == "escalation") == 1


def test_a_programme_wide_escalation_links_to_every_offices_overdue_list(app, world):
    """MY has no manager: its items fall through to the programme managers, with SG's none; a mail
    of items from several owners links to the overdue list without an owner."""
    add_backlog(app, world, 40, date(2026, 10, 20), office="MY", owner="focal_my")
    add_backlog(app, world, 30, date(2026, 10, 21), office="MY", owner="inactive_sg", title="Other {n:05d}")
    compose(app)
    row = outbox_row(app, "escalation", world.users["manager"])
    assert "… and 20 more: http://127.0.0.1:5000/?overdue=1&office=MY\n" in row.body_text


@pytest.mark.parametrize(
    ("language", "more"),
    [("en", "… and 10 more"), ("fr", "… et 10 autres"), ("es", "… y 10 más")],
)
def test_the_bounded_mail_in_three_languages(app, world, language, more):
    add_backlog(app, world, 59, date(2026, 11, 17))
    with app.app_context():
        db.session.execute(sa.update(User).values(language=language))
        db.session.commit()
    compose(app)
    row = outbox_row(app, "overdue", world.users["focal_sg"])
    assert f"{more}" in row.body_text and f">{more}</a>" in row.body_html


def _statements(app, count_queries) -> tuple[int, int]:
    with count_queries() as statements, app.app_context():
        compose_reminders(NOW, today=TODAY)
        db.session.commit()
    selects = sum(s.lstrip().upper().startswith(("SELECT", "WITH")) for s in statements)
    inserts = sum(s.lstrip().upper().startswith("INSERT") for s in statements)
    return selects, inserts


def test_compose_statements_stay_flat_past_the_listed_fifty(app, world, count_queries):
    """60 items or 400 for each of two owners, overdue and escalated: the same statements (rows
    recorded go 1,000 to an INSERT, see tracker.batches)."""
    add_backlog(app, world, 60, date(2026, 10, 20))
    add_backlog(app, world, 60, date(2026, 10, 20), office="MY", owner="focal_my")
    small = _statements(app, count_queries)
    with app.app_context():
        for model in (Notification, Escalation, ItemNotice):
            db.session.execute(sa.delete(model))
        db.session.commit()
    add_backlog(app, world, 340, date(2026, 10, 20))  # under 1,000 rows recorded: one INSERT each
    add_backlog(app, world, 340, date(2026, 10, 20), office="MY", owner="focal_my")
    large = _statements(app, count_queries)
    assert small == large
    # overdue ×2, escalation ×2 (SG's manager; MY's fall through to the admins), then the notices
    # and the escalations.
    assert large[1] == 4 + 2


def test_a_bounded_mail_renders_as_stored(app, world):
    """The overdue mail of 60 items: 50 lines, the count and the link, in text and HTML
    (tests/email_expected/overdue_more.*; UPDATE_EXPECTED=1 rewrites them)."""
    add_backlog(app, world, 59, date(2026, 11, 17))
    compose(app)
    row = outbox_row(app, "overdue", world.users["focal_sg"])
    check_expected("overdue_more.txt", normalised(f"Subject: {row.subject}\n\n{row.body_text}", world))
    check_expected("overdue_more.html", normalised(row.body_html, world))
