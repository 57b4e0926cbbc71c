"""How the mail relay is doing: one RelayHealth row ("smtp"), written by the dispatcher.

``failing_since`` is set by the first failure after a success and cleared by the next success, so
"the relay has failed for more than an hour" is ``failing_since < now - 1 hour``. A failure is a
relay that cannot be reached, a connection that breaks, or a temporary (4xx) reply; a permanent
refusal of one message (5xx) says the relay works. The functions flush; the caller commits (the
dispatcher does so with the mark of the message concerned). ``alerted_at`` belongs to whoever
tells the admins; nothing here touches it.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.extensions import db
from tracker.models import RelayHealth

log = logging.getLogger(__name__)

#: The one relay there is (MAIL_SERVER).
SMTP = "smtp"


def _ensure_row(name: str) -> None:
    """Insert the relay's row unless it exists (two dispatchers may try at once)."""
    dialect = db.session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](RelayHealth)
    db.session.execute(insert.values(name=name).on_conflict_do_nothing(index_elements=["name"]))


def record_success(now: datetime, name: str = SMTP) -> None:
    """The relay accepted a message at ``now``: it is not failing (any more)."""
    _ensure_row(name)
    db.session.execute(
        sa.update(RelayHealth)
        .where(RelayHealth.name == name)
        .values(last_success_at=now, failing_since=None)
        .execution_options(synchronize_session=False)
    )


def record_failure(now: datetime, error: str, name: str = SMTP) -> None:
    """The relay failed at ``now`` with ``error``; the first failure after a success starts an outage."""
    _ensure_row(name)
    db.session.execute(
        sa.update(RelayHealth)
        .where(RelayHealth.name == name)
        .values(
            last_failure_at=now,
            last_error=error[:2000],
            failing_since=sa.func.coalesce(
                RelayHealth.failing_since, sa.literal(now, RelayHealth.failing_since.type)
            ),
        )
        .execution_options(synchronize_session=False)
    )


def health(name: str = SMTP) -> RelayHealth | None:
    """The relay's row, or None before the first delivery was ever tried."""
    return db.session.get(RelayHealth, name)
