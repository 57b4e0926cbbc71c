"""No statement grows with the data: jobs over more rows than one statement could carry still work.

PostgreSQL refuses a statement with more than 65,535 parameters, SQLite one with more than 32,766.
Each test builds a backlog larger than that (rows written with one core executemany, which
SQLAlchemy cuts to the database's limit itself), runs the real job (the CLI, the pages, the
dispatcher) and checks both what it wrote and the largest statement it sent.
"""

from __future__ import annotations

import csv
import io
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy.dialects import postgresql, sqlite

from tests.conftest import csrf_token
from tracker.batches import MARGIN, ROWS, chunks, size
from tracker.extensions import db
from tracker.models import (
    ActionItem,
    ActionUpdate,
    Escalation,
    ItemNotice,
    Notification,
)
from tracker.notifications import claims
from tracker.notifications.digest import LIST_LIMIT
from tracker.notifications.dispatch import dispatch

SG = ZoneInfo("Asia/Singapore")
#: The most parameters one statement may carry (SQLite 3.32 and later).
LIMITS = {"postgresql": 65_535, "sqlite": 32_766}
CREATED = datetime(2026, 6, 1, tzinfo=UTC)
SETTLED = datetime(2026, 11, 1, tzinfo=UTC)


# --- the helper -------------------------------------------------------------------------------------


def test_chunks_cut_in_order_and_keep_everything():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks(iter("abcd"), 2)) == [["a", "b"], ["c", "d"]]
    assert list(chunks([], 5)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


def test_a_batch_stays_below_each_databases_limit():
    new_sqlite = sqlite.dialect()
    old_sqlite = sqlite.dialect()
    old_sqlite.insertmanyvalues_max_parameters = 999  # SQLAlchemy's value before SQLite 3.32
    assert size(1, new_sqlite) == ROWS
    assert size(4, new_sqlite) == ROWS  # 4,000 parameters
    assert size(50, new_sqlite) * 50 <= 32_766 - MARGIN
    assert size(1, old_sqlite) == 999 - MARGIN
    assert size(3, old_sqlite) * 3 <= 999 - MARGIN
    assert size(2_000, old_sqlite) == 1  # never zero
    assert size(1, postgresql.dialect()) == ROWS


# --- watching the statements ----------------------------------------------------------------------


def _parameters(parameters, executemany: bool) -> int:
    """Parameters of one statement: of one row of an executemany, or all of a statement's (a
    multi-row INSERT that SQLAlchemy builds from an executemany arrives as one flat list)."""
    if isinstance(parameters, dict):
        return len(parameters)
    values = list(parameters or ())
    if executemany and values and isinstance(values[0], (list, tuple, dict)):
        return len(values[0])
    return len(values)


@pytest.fixture
def largest_statement(app) -> Callable[[], Iterator[dict[str, int]]]:
    """Context manager factory: ``{"parameters": n}``, the most parameters one statement carried."""

    @contextmanager
    def watch() -> Iterator[dict[str, int]]:
        seen = {"parameters": 0}

        def record(conn, cursor, statement, parameters, context, executemany):
            seen["parameters"] = max(seen["parameters"], _parameters(parameters, executemany))

        with app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)

    return watch


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def add_items(app, world, count: int, deadline: date, owners: dict[str, str]) -> None:
    """``count`` open items of the world's recommendation, spread over the offices of ``owners``
    (office code → owner label), written with one core executemany."""
    spread = list(owners.items())
    rows = []
    for n in range(count):
        code, owner = spread[n % len(spread)]
        rows.append(
            {
                "recommendation_id": world.recommendation_id,
                "office_id": world.offices[code],
                "title": f"Backlog {code} {n:05d}",
                "owner_id": world.user_ids[owner],
                "deadline": deadline,
                "agreed_deadline": deadline,
                "status": "not_started",
                "progress": 0,
                "version": 1,
                "created_at": CREATED,
                "updated_at": SETTLED,
            }
        )
    with app.app_context():
        db.session.execute(sa.insert(ActionItem), rows)
        db.session.commit()


# --- reminders, escalations and digests -----------------------------------------------------------


def limit(app) -> int:
    """The most parameters one statement may carry on the test's database."""
    return LIMITS[db_name(app)]


def db_name(app) -> str:
    return "postgresql" if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else "sqlite"


def beyond(app, parameters_per_row: int) -> int:
    """The fewest rows whose parameters one statement could not carry on the test's database."""
    return limit(app) // parameters_per_row + 1


def test_escalations_of_a_backlog_beyond_one_statement(app, world, runner, mail_settings, largest_statement):
    """More escalations than one INSERT (3 parameters a row) could carry: one escalation mail per
    recipient, an Escalation row per item and rung, and none twice.

    Three rungs to the same audience: each item is listed once (at its highest rung) and records
    three rows, so the limit is crossed with a third of the items to render.
    """
    mail_settings(TRACKER_ESCALATION_LADDER="30:office_managers,45:office_managers,60:office_managers")
    backlog = beyond(app, 3 * 3)
    add_items(app, world, backlog, date(2026, 10, 20), {"SG": "focal_sg", "MY": "focal_my"})
    rows = 3 * backlog + 2  # 66 days overdue on 25 December; the world's two items 31 days
    assert rows * 3 > limit(app)

    with largest_statement() as seen, time_machine.travel(datetime(2026, 12, 25, 9, 0, tzinfo=SG)):
        result = runner.invoke(args=["tracker", "remind", "--today", "2026-12-25"])
    assert result.exit_code == 0, result.output
    assert "2 mails queued (2 escalation)." in result.output
    assert seen["parameters"] < 5 * ROWS  # bounded, whatever the backlog
    assert _count(app, Escalation) == rows
    assert _count(app, Escalation, Escalation.level == 3) == backlog
    with app.app_context():
        mails = db.session.execute(
            sa.select(Notification.to_address, Notification.subject).order_by(Notification.subject)
        ).all()
    my = backlog // 2 + 1  # the backlog alternates SG, MY, starting with SG
    assert mails == [  # MY has no manager: every rung falls through to the admins
        (world.users["admin"], f"Escalation: {my} actions long overdue — MY"),
        (world.users["manager_sg"], f"Escalation: {backlog + 2 - my} actions long overdue — SG"),
    ]
    with time_machine.travel(datetime(2026, 12, 25, 10, 0, tzinfo=SG)):
        again = runner.invoke(args=["tracker", "remind", "--today", "2026-12-25"])
    assert "0 mails queued." in again.output and _count(app, Escalation) == rows


def test_overdue_notices_of_a_backlog_beyond_one_statement(app, world, runner, largest_statement):
    """More items 8 days overdue than one INSERT of their notices (4 parameters each) could carry:
    one overdue mail per owner and a notice per item."""
    backlog = beyond(app, 4)
    add_items(app, world, backlog, date(2026, 11, 17), {"SG": "focal_sg", "MY": "focal_my"})
    with largest_statement() as seen, time_machine.travel(datetime(2026, 11, 25, 9, 0, tzinfo=SG)):
        result = runner.invoke(args=["tracker", "remind", "--today", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "2 mails queued (2 overdue)." in result.output
    assert seen["parameters"] < 5 * ROWS
    # The world's two items (1 day overdue) get their first notice; the backlog its weekly one.
    assert _count(app, ItemNotice, ItemNotice.kind == "overdue") == backlog + 2
    assert _count(app, Notification, Notification.kind == "overdue") == 2


def test_digests_of_a_backlog_beyond_one_statement(app, world, runner, largest_statement):
    """The quarterly digest counts, lists and sums up a backlog that became overdue in Q4."""
    backlog = beyond(app, 3)
    add_items(app, world, backlog, date(2026, 11, 20), {"SG": "focal_sg", "MY": "focal_my"})
    with largest_statement() as seen, time_machine.travel(datetime(2027, 1, 4, 9, 0, tzinfo=SG)):
        result = runner.invoke(args=["tracker", "digest", "--quarter", "2026Q4"])
    assert result.exit_code == 0, result.output
    assert "2 mails queued (2 digest)." in result.output
    assert seen["parameters"] < 100  # grouped queries, one INSERT per manager
    with app.app_context():
        digest = db.session.scalar(
            sa.select(Notification).where(Notification.to_address == world.users["manager"])
        )
    # Every item became overdue in Q4: the first 50 are listed, the rest summed up.
    assert f"… and {backlog + 2 - LIST_LIMIT} more:" in digest.body_text
    assert len(digest.body_html) < 200_000


# --- the outbox --------------------------------------------------------------------------------------


def _closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_a_dispatch_batch_beyond_one_statement_is_claimed_and_released(
    app, world, mail_settings, largest_statement
):
    """A TRACKER_DISPATCH_BATCH larger than an IN list may be: the claim, its release and the
    heartbeat's renewal each go in bounded statements (one transaction each)."""
    count = beyond(app, 1)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    rows = [
        {
            "kind": "overdue",
            "recipient_id": world.user_ids["focal_sg"],
            "to_address": world.users["focal_sg"],
            "idempotency_key": f"bulk:{n}",
            "subject": "Backlog",
            "body_text": "text",
            "body_html": "<p>html</p>",
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for n in range(count)
    ]
    with app.app_context():
        db.session.execute(sa.insert(Notification), rows)
        db.session.commit()

    # The dispatcher, with a relay that refuses connections: all claimed, none tried, all given back.
    mail_settings(MAIL_SERVER="127.0.0.1", MAIL_PORT=_closed_port())
    with app.app_context(), largest_statement() as seen:
        result = dispatch(now, batch_size=count)
    assert (result.sent, result.failed, result.deferred) == (0, 0, count)
    assert (
        _count(app, Notification, Notification.claimed_by.is_(None), Notification.state == "pending") == count
    )

    # The heartbeat renews every row still held, in bounded statements too.
    with app.app_context(), largest_statement() as renewing:
        taken = claims.claim(now, count, timedelta(seconds=60), "bulk-holder")
        heartbeat = claims.Heartbeat("bulk-holder", lambda: now, timedelta(seconds=120), 60)
        heartbeat.hold(row.id for row in taken)
        assert (len(taken), heartbeat.renew()) == (count, count)
    assert max(seen["parameters"], renewing["parameters"]) <= ROWS + MARGIN


# --- reassignment and import ---------------------------------------------------------------------------


def test_reassigning_more_actions_than_one_statement_carries(app, world, login_as, largest_statement):
    """A leaving owner's actions, more than one INSERT of their history rows could carry, move to the
    successor through the preview and its confirmation, each with its history row, and one mail."""
    reassigned = beyond(app, len(ActionUpdate.__table__.columns))
    add_items(app, world, reassigned, date(2027, 3, 31), {"SG": "inactive_sg"})
    c = login_as(world.users["reviewer"])
    page = c.get("/offices/SG/reassign")
    data = {
        "csrf_token": csrf_token(page.text),
        "leaving_id": str(world.user_ids["inactive_sg"]),
        "successor_id": str(world.user_ids["focal_sg"]),
        "preview": "y",
    }
    preview = c.post("/offices/SG/reassign", data=data)
    assert preview.status_code == 200
    assert f"{reassigned} actions will change:" in preview.text
    form = preview.text[preview.text.index('class="reassign-confirm"') :]
    confirm = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form[: form.index("</form>")])
    )
    confirm["confirm"] = "y"
    with largest_statement() as seen:
        applied = c.post("/offices/SG/reassign", data=confirm)
    assert applied.status_code == 302
    # The flush's history rows: SQLAlchemy cuts them to its dialect's 32,700 parameters a statement.
    assert seen["parameters"] <= sqlite.dialect.insertmanyvalues_max_parameters
    assert _count(app, ActionItem, ActionItem.owner_id == world.user_ids["focal_sg"]) == reassigned + 1
    assert _count(app, ActionUpdate, ActionUpdate.event == "reassigned") == reassigned
    assert _count(app, Notification, Notification.kind == "assignment") == 1


def test_an_import_looks_its_rows_up_in_batches(app, world, login_as, runner, tmp_path, largest_statement):
    """Export more actions than one IN list of a batch holds, change every description, import the
    file back through the CLI: every row is written, and no lookup grew with the file.

    (An import file is limited to TRACKER_IMPORT_MAX_ROWS, below any database's limit; the batches
    keep the lookups bounded when that limit is raised.)
    """
    imported = ROWS + 2 * MARGIN
    add_items(app, world, imported - 2, date(2027, 3, 31), {"SG": "focal_sg", "MY": "focal_my"})
    exported = login_as(world.users["reviewer"]).get("/export/actions.csv")
    assert exported.status_code == 200
    header, *body = csv.reader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff")))
    assert len(body) == imported
    for row in body:
        row[header.index("Description")] = f"Changed {row[header.index('Action title')]}"
    path = tmp_path / "actions.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])

    with largest_statement() as seen:
        result = runner.invoke(args=["tracker", "import", str(path), "--as", world.users["reviewer"]])
    assert result.exit_code == 0, result.output[-3000:]
    assert "Imported: all rows were written." in result.output
    assert seen["parameters"] <= ROWS + MARGIN < imported  # the lookups did not grow with the file
    assert _count(app, ActionItem, ActionItem.description.like("Changed %")) == imported
