"""Bounded assignment mails: an owner or deputy given thousands of actions at once (an import, a
reassignment) gets one mail that lists the 50 earliest deadlines, then "… and N more" with a link
to a list that shows them; no mail passes 200 KB as sent; the statements do not grow with the items.

Mail goes to the aiosmtpd server of tests/mailserver.py through the real dispatcher.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_token
from tests.test_import_bulk import NOW, _apply, _new
from tracker.extensions import db
from tracker.models import ActionItem, Notification, Recommendation, User
from tracker.notifications import account
from tracker.notifications.digest import LIST_LIMIT
from tracker.notifications.dispatch import dispatch
from tracker.notifications.render import MAIL_BYTES

MANY = 3_000
FIRST = date(2027, 1, 4)
LATER = NOW + timedelta(minutes=5)


def deadline(n: int) -> date:
    """Deadlines that are not in the order of the rows: 97 dates, each shared by about 31 rows."""
    return FIRST + timedelta(days=n % 97)


def earliest(count: int, prefix: str) -> list[str]:
    """The titles of the first ``count`` rows by (deadline, row): the order a mail lists them in."""
    return [f"{prefix} {n}" for n in sorted(range(count), key=lambda n: (deadline(n), n))][:LIST_LIMIT]


def assignment(app, email: str) -> Notification:
    with app.app_context():
        row = db.session.scalars(
            sa.select(Notification).where(Notification.kind == "assignment", Notification.to_address == email)
        ).one()
        db.session.expunge(row)
        return row


def mails(app) -> int:
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(Notification).where(Notification.kind == "assignment")
        return db.session.scalar(query) or 0


def sent(app, smtp_server, at: datetime = LATER) -> dict[str, list[bytes]]:
    """Dispatch the outbox at ``at`` to the SMTP server; the raw messages it received, by recipient."""
    with app.app_context():
        result = dispatch(at)
    assert result.failed == 0 and result.deferred == 0
    received: dict[str, list[bytes]] = {}
    for message in smtp_server.messages:
        received.setdefault(message.rcpt_tos[0], []).append(message.raw)
    return received


def listed(text: str) -> list[str]:
    return re.findall(r"^- (.+)$", text, re.MULTILINE)


def follow(client, url: str, page: int = 1):
    parts = urlsplit(url)
    response = client.get(
        f"{parts.path}?{parts.query}&page={page}" if parts.query else f"{parts.path}?page={page}"
    )
    assert response.status_code == 200, url
    return response.text


def test_an_import_of_3000_actions_sends_each_new_owner_and_deputy_one_bounded_mail(
    app, world, login_as, smtp_server
):
    rows = [
        _new(
            n,
            action_title=f"Bulk {n}",
            deadline=deadline(n).isoformat(),
            deputy_email="manager.sg@example.test",
        )
        for n in range(MANY)
    ]
    counts = _apply(app, rows, world, "many.csv", one_by_one=False)
    assert counts["actions_create"] == MANY
    assert mails(app) == 2  # one for the owner, one for the deputy, for the whole import

    owner = assignment(app, world.users["focal_sg"])
    assert owner.subject == f"You are now owner of {MANY} actions — SG"
    assert listed(owner.body_text) == earliest(MANY, "Bulk")
    found = re.search(r"^… and 2950 more: (\S+)$", owner.body_text, re.MULTILINE)
    assert found, owner.body_text[-400:]
    url = found.group(1)
    assert url == "http://127.0.0.1:5000/?office=SG&owner=focal.sg%40example.test"
    assert f'href="{url.replace("&", "&amp;")}"' in owner.body_html
    assert ">… and 2950 more</a>" in owner.body_html
    assert owner.body_html.count('style="color:#0b5cad;font-weight:bold;">Bulk ') == LIST_LIMIT
    assert "That list may also show other actions" in owner.body_text

    deputy = assignment(app, world.users["manager_sg"])
    assert deputy.subject == f"You are now deputy of {MANY} actions — SG"
    assert "… and 2950 more: http://127.0.0.1:5000/my\n" in deputy.body_text

    # The owner's link, followed as the owner: their actions (and the world's one, due earlier),
    # the first listed on the first page, the first the mail did not list where it belongs.
    c = login_as(world.users["focal_sg"])
    first = follow(c, url)
    assert f"{MANY + 1:,} actions" in first or f"{MANY + 1} actions" in first
    assert f">{earliest(MANY, 'Bulk')[0]}<" in first
    unlisted = [f"Bulk {n}" for n in sorted(range(MANY), key=lambda n: (deadline(n), n))][LIST_LIMIT]
    position = 1 + LIST_LIMIT  # after the world's item and the fifty listed
    assert f">{unlisted}<" in follow(c, url, position // app.config["TRACKER_PAGE_SIZE"] + 1)
    # The deputy's link: My work, where a manager sees the open actions of the office.
    assert f">{earliest(MANY, 'Bulk')[0]}<" in follow(login_as(world.users["manager_sg"]), "/my")

    received = sent(app, smtp_server)
    for email in (world.users["focal_sg"], world.users["manager_sg"]):
        assert len(received[email]) == 1 and len(received[email][0]) < MAIL_BYTES, email


def add_backlog(app, world, count: int, owner: str, title: str = "Old {n}") -> list[int]:
    """``count`` open SG actions of ``owner``, written with one core executemany; their ids."""
    rows = [
        {
            "recommendation_id": world.recommendation_id,
            "office_id": world.offices["SG"],
            "title": title.format(n=n),
            "owner_id": world.user_ids[owner],
            "deadline": deadline(n),
            "agreed_deadline": deadline(n),
            "status": "not_started",
            "progress": 0,
            "version": 1,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for n in range(count)
    ]
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.max(ActionItem.id))) or 0
        db.session.execute(sa.insert(ActionItem), rows)
        db.session.commit()
        return list(
            db.session.scalars(sa.select(ActionItem.id).where(ActionItem.id > before).order_by(ActionItem.id))
        )


def test_a_reassignment_of_3000_actions_sends_one_bounded_mail(app, world, login_as, smtp_server):
    add_backlog(app, world, MANY, "inactive_sg")
    c = login_as(world.users["reviewer"])
    data = {
        "csrf_token": csrf_token(c.get("/offices/SG/reassign").text),
        "leaving_id": str(world.user_ids["inactive_sg"]),
        "successor_id": str(world.user_ids["focal_sg"]),
        "preview": "y",
    }
    preview = c.post("/offices/SG/reassign", data=data)
    assert f"{MANY} actions will change:" in preview.text
    form = preview.text[preview.text.index('class="reassign-confirm"') :]
    confirm = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form[: form.index("</form>")])
    )
    assert c.post("/offices/SG/reassign", data={**confirm, "confirm": "y"}).status_code == 302
    assert mails(app) == 1

    row = assignment(app, world.users["focal_sg"])
    assert row.subject == f"You are now owner of {MANY} actions — SG"
    assert listed(row.body_text) == earliest(MANY, "Old")
    assert (
        "… and 2950 more: http://127.0.0.1:5000/?office=SG&owner=focal.sg%40example.test\n" in row.body_text
    )
    page = follow(
        login_as(world.users["focal_sg"]), "http://127.0.0.1:5000/?office=SG&owner=focal.sg%40example.test"
    )
    assert f">{earliest(MANY, 'Old')[0]}<" in page
    # Queued by the request at the real time.
    received = sent(app, smtp_server, datetime.now(UTC) + timedelta(minutes=1))[world.users["focal_sg"]]
    assert len(received) == 1 and len(received[0]) < MAIL_BYTES


def _notify_statements(app, world, count_queries, count: int, *, loaded: bool) -> tuple[int, str]:
    """Statements of one assignment mail for ``count`` actions (given loaded, or by id); its text."""
    with app.app_context():
        db.session.execute(sa.delete(Notification))
        db.session.execute(sa.delete(ActionItem).where(ActionItem.title.like("Old %")))
        db.session.commit()
    ids = add_backlog(app, world, count, "focal_sg")
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        items = (
            list(db.session.scalars(sa.select(ActionItem).where(ActionItem.id.in_(ids)))) if loaded else []
        )
        with count_queries() as seen:
            account.notify_assignment(items, user, "owner", NOW, ids=[] if loaded else ids)
        db.session.commit()
    return len(seen), assignment(app, world.users["focal_sg"]).body_text


@pytest.mark.parametrize("loaded", [False, True], ids=["by id", "at hand"])
def test_the_mail_takes_the_same_statements_for_60_actions_or_3000(app, world, count_queries, loaded):
    """By id (an import's new actions): a count by office, the first fifty, what they show, the
    office, the INSERT. At hand (a reassignment's): the office and recommendation, the INSERT."""
    few, few_text = _notify_statements(app, world, count_queries, 60, loaded=loaded)
    many, many_text = _notify_statements(app, world, count_queries, MANY, loaded=loaded)
    assert few == many <= 5, (few, many)
    assert "… and 10 more: " in few_text and "… and 2950 more: " in many_text
    assert listed(many_text) == earliest(MANY, "Old")


def test_actions_at_hand_and_by_id_are_listed_together_by_deadline(app, world):
    """An import's changed actions (at hand) and its new ones (by id) make one list; the world's
    item, due first, comes first; what the person may not see is neither listed nor counted."""
    ids = add_backlog(app, world, 70, "focal_sg")
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        mine = db.session.get(ActionItem, world.items["SG"])
        other_office = db.session.get(ActionItem, world.items["MY"])
        assert account.notify_assignment(
            [mine, other_office], user, "owner", NOW, ids=[*ids, world.items["MY"]]
        )
        db.session.commit()
    row = assignment(app, world.users["focal_sg"])
    assert row.subject == "You are now owner of 71 actions — SG"
    assert listed(row.body_text) == ["E-filing for SG", *earliest(70, "Old")[: LIST_LIMIT - 1]]
    assert "… and 21 more: " in row.body_text and "E-filing for MY" not in row.body_text


def test_the_longest_data_in_a_three_byte_script_stays_under_200_kb(app, world, smtp_server):
    """Titles and the recommendation at their longest, in Thai, with characters HTML escapes: the
    mail lists fewer than fifty rather than pass 200 KB, and counts the rest."""
    thai = "การพัฒนาระบบ & <ข้อมูล> " * 20
    with app.app_context():
        db.session.execute(sa.update(Recommendation).values(title=thai[:300], code="R-" + "ก" * 30))
        db.session.commit()
    ids = add_backlog(app, world, 300, "focal_sg", title="{n:03d} " + thai[:290])
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        account.notify_assignment([], user, "owner", NOW, ids=ids)
        db.session.commit()
    row = assignment(app, world.users["focal_sg"])
    shown = len(re.findall(r"^- ", row.body_text, re.MULTILINE))
    assert 1 <= shown < LIST_LIMIT
    assert f"… and {300 - shown} more: " in row.body_text
    received = sent(app, smtp_server)[world.users["focal_sg"]]
    assert len(received) == 1 and len(received[0]) < MAIL_BYTES, len(received[0])


@pytest.mark.parametrize(
    ("language", "more", "intro"),
    [
        ("en", "… and 10 more", "You are now the owner of these actions:"),
        ("fr", "… et 10 autres", None),
        ("es", "… y 10 más", None),
    ],
)
def test_the_bounded_mail_in_three_languages(app, world, language, more, intro):
    ids = add_backlog(app, world, 60, "focal_sg")
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        user.language = language
        account.notify_assignment([], user, "owner", NOW, ids=ids)
        db.session.commit()
    row = assignment(app, world.users["focal_sg"])
    assert more in row.body_text and "http://127.0.0.1:5000/?office=SG&owner=" in row.body_text
    assert f">{more}</a>" in row.body_html
    english = ("You are now the owner of these actions:", "That list may also show other actions")
    if intro is None:
        assert not any(sentence in row.body_text + row.body_html + row.subject for sentence in english)
        assert "60" in row.subject
    else:
        assert intro in row.body_text
