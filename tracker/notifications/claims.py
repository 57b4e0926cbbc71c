"""Claims on outbox rows: which dispatcher may send a row, for how long, and the heartbeat that
keeps a claim alive while its dispatcher works.

- A dispatcher (``dispatcher_id()``: host, pid, random part) claims a small batch of due rows
  until ``now + claim`` (``TRACKER_DISPATCH_CLAIM_SECONDS``, 60 s) and writes its id in
  ``claimed_by``. A row is due when it is pending, its next try has come and no live claim holds it.
  On PostgreSQL the choice skips rows another dispatcher is claiming (``FOR UPDATE SKIP LOCKED``).
- While it works, a ``Heartbeat`` thread renews the claim of the rows it still has to send every
  claim/3 seconds, on its own connection, so a slow relay (up to MAIL_DATA_TIMEOUT for one reply)
  never lets a claim lapse under a living dispatcher. A thread, not checks between stages: the
  longest stage is one blocking socket read, which nothing else can interrupt.
- Before each message, ``confirm()`` checks (and extends) the claim in one UPDATE: a dispatcher that
  was stopped longer than a claim (and whose rows another has taken) sends nothing it no longer holds.
- A dead dispatcher's claims lapse within one claim time; ``next_expiry()`` lets the scheduler
  dispatch again the moment they do.

Every function reads the time it is given, and every caller reads its clock for each call.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

import sqlalchemy as sa

from tracker.batches import chunks, size
from tracker.extensions import db
from tracker.models import Notification, NotificationState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

PENDING = NotificationState.PENDING.value

#: Columns copied out of a claimed row, so that sending needs neither the session nor a transaction.
_COLUMNS = (
    Notification.id,
    Notification.kind,
    Notification.recipient_id,
    Notification.to_address,
    Notification.idempotency_key,
    Notification.subject,
    Notification.body_text,
    Notification.body_html,
    Notification.attempts,
    Notification.next_attempt_at,
    Notification.first_tried_at,
    Notification.breaks,
)

#: The order rows are claimed and sent in: messages that broke the connection go after those that
#: never did, so one bad message cannot lead every batch; then oldest due first.
ORDER = (Notification.breaks, Notification.next_attempt_at, Notification.id)


@dataclass(frozen=True)
class Outgoing:
    """A claimed row, detached from the session."""

    id: int
    kind: str
    recipient_id: int | None
    to_address: str
    idempotency_key: str
    subject: str
    body_text: str
    body_html: str
    attempts: int
    next_attempt_at: datetime
    first_tried_at: datetime | None
    breaks: int


def dispatcher_id() -> str:
    """Who is dispatching, for ``claimed_by``: host, pid and a random part."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(3)}"


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """Rows a dispatcher may take at ``now``."""
    return sa.and_(
        Notification.state == PENDING,
        Notification.next_attempt_at <= now,
        sa.or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
    )


def due_count(now: datetime) -> int:
    """How many outbox rows a dispatch at ``now`` would take."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(_due(now))) or 0


def claim(now: datetime, batch_size: int, claim_for: timedelta, holder: str) -> list[Outgoing]:
    """Claim up to ``batch_size`` due rows for ``holder`` until ``now + claim_for``; commits."""
    # Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE): PostgreSQL may run
    # such a subquery more than once and so claim more than n rows.
    chosen = (
        sa.select(Notification.id)
        .where(_due(now))
        .order_by(*ORDER)
        .limit(batch_size)
        # PostgreSQL: rows another dispatcher is claiming are skipped, not waited for.
        .with_for_update(skip_locked=True)
    )
    try:
        ids = list(db.session.scalars(chosen))
        if not ids:
            db.session.commit()
            return []
        # The due condition again: SQLite has no row locks, and its writers take turns, so a
        # dispatcher that read the same ids a moment ago finds them claimed here and skips them.
        # However large TRACKER_DISPATCH_BATCH is, each IN list stays bounded; one transaction.
        rows = []
        for chunk in chunks(ids, size()):
            statement = (
                sa.update(Notification)
                .where(Notification.id.in_(chunk), _due(now))
                .values(claimed_until=now + claim_for, claimed_by=holder)
                .returning(*_COLUMNS)
                .execution_options(synchronize_session=False)
            )
            rows.extend(Outgoing(*row) for row in db.session.execute(statement))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return sorted(rows, key=lambda r: (r.breaks, r.next_attempt_at, r.id))


def _held(ids: Iterable[int], holder: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        Notification.id.in_(list(ids)), Notification.claimed_by == holder, Notification.state == PENDING
    )


def confirm(row_id: int, holder: str, now: datetime, claim_for: timedelta) -> bool:
    """Extend ``holder``'s claim on one row to ``now + claim_for``; False if it no longer holds it.

    Whoever takes a lapsed claim writes its own id in ``claimed_by``, so "still ours" is enough:
    a row we still hold has been sent by nobody else.
    """
    try:
        taken = db.session.execute(
            sa.update(Notification)
            .where(_held([row_id], holder))
            .values(claimed_until=now + claim_for)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return bool(taken)


def release(ids: Iterable[int], holder: str) -> None:
    """Give back rows that were not tried: due again at once, their next try and attempts unchanged."""
    ids = list(ids)
    if not ids:
        return
    try:
        for chunk in chunks(ids, size()):
            db.session.execute(
                sa.update(Notification)
                .where(_held(chunk, holder))
                .values(claimed_until=None, claimed_by=None)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def next_expiry() -> datetime | None:
    """When the first claim on a pending row that is due by then lapses (or lapsed: a claim left
    by a dispatcher that died); None if no row is claimed."""
    return db.session.scalar(
        sa.select(sa.func.min(Notification.claimed_until)).where(
            Notification.state == PENDING,
            Notification.claimed_until.is_not(None),
            Notification.next_attempt_at <= Notification.claimed_until,
        )
    )


class Heartbeat:
    """A thread that renews ``holder``'s claim on the rows still to send, every ``every`` seconds.

    Use as a context manager around a dispatch run; ``hold()`` the rows of each claimed batch and
    ``drop()`` each one once it is marked. It writes on its own connection, in its own short
    transactions, and reads the clock for every renewal.
    """

    def __init__(self, holder: str, clock: Clock, claim_for: timedelta, every: float) -> None:
        self.holder = holder
        self.clock = clock
        self.claim_for = claim_for
        self.every = every
        self.engine = db.engine  # bound now: the thread has no app context
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"claims-{holder}", daemon=True)
        #: How many renewals were written (for tests and logs).
        self.renewals = 0

    def hold(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.update(ids)

    def drop(self, row_id: int) -> None:
        with self._lock:
            self._ids.discard(row_id)

    def renew(self) -> int:
        """Renew the claim of every row still held; the number of rows renewed."""
        with self._lock:
            ids = sorted(self._ids)
        if not ids:
            return 0
        renewed = 0
        with self.engine.begin() as connection:
            until = self.clock() + self.claim_for
            for chunk in chunks(ids, size(dialect=self.engine.dialect)):
                renewed += connection.execute(
                    sa.update(Notification).where(_held(chunk, self.holder)).values(claimed_until=until)
                ).rowcount
        self.renewals += 1
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception:  # a database hiccup: the next beat tries again, confirm() guards sends
                log.exception("dispatcher %s: cannot renew its claims", self.holder)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.every))
