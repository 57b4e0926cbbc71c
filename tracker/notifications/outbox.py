"""The outbox: idempotent inserts keyed by (kind, recipient, period), and header safety.

Mail never leaves from a request or a job directly: rows are inserted here in the caller's
transaction and sent by the dispatcher after the commit, so a rolled-back change sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.extensions import db
from tracker.models import Notification, NotificationKind, NotificationState, User


class HeaderInjectionError(ValueError):
    """A value meant for a mail header contains a line break."""


def safe_header(value: str) -> str:
    """``value`` if it can go into a mail header; raises on CR, LF or other line breaks."""
    if any(ch in value for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        raise HeaderInjectionError(f"line break in a header value: {value[:60]!r}")
    return value


def one_line(value: str) -> str:
    """Fold user text (a title, a name) into one line, for subjects built from user data."""
    return " ".join(value.split())


@dataclass(frozen=True)
class Email:
    """A rendered message: subject and the text + HTML pair."""

    subject: str
    text: str
    html: str


def enqueue(kind: NotificationKind, recipient: User, key: str, email: Email, now: datetime) -> bool:
    """Insert one outbox row unless its idempotency key exists; True if it was inserted."""
    values = {
        "kind": kind.value,
        "recipient_id": recipient.id,
        "to_address": safe_header(recipient.email),
        "idempotency_key": key,
        "subject": safe_header(one_line(email.subject))[:300],
        "body_text": email.text,
        "body_html": email.html,
        "state": NotificationState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    dialect = db.session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](Notification)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=["idempotency_key"])
    result = db.session.execute(statement)
    return bool(result.rowcount)


def exists(key: str) -> bool:
    """Is there an outbox row with this idempotency key?"""
    query = sa.select(Notification.id).where(Notification.idempotency_key == key)
    return db.session.scalar(query) is not None
