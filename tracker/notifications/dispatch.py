"""Dispatch: send the outbox over SMTP (or into .eml files), one delivery record per message.

A run claims small batches of due rows (tracker/notifications/claims.py), sends each batch over one
SMTP connection outside any transaction (tracker/notifications/smtp.py), and records every
message in its own short transaction as soon as its try ends:

- sent: right after the relay's 250 at the end of DATA, with the relay's reply and the time read
  then, before the next message is sent. A dispatcher that dies can therefore send again at most
  the one message it had in flight, and that copy carries the same Message-ID (derived from the
  idempotency key), so mail clients show it once;
- a temporary failure (4xx, a broken connection) costs that message one attempt and is tried again
  after an exponential back-off, until ``TRACKER_MAIL_RETRY_WINDOW`` (3 days) after its first try;
- a permanent failure (5xx), an unsafe header, the end of the window, or a message that broke the
  connection ``TRACKER_MAIL_MAX_BREAKS`` times marks that message failed, for the admin outbox page;
- when the relay cannot be reached, no message was in flight: the rest of the batch is given back
  untouched (no attempt charged, its place in the queue kept) and the run stops.

After a break the next message gets a new connection, so one message that makes the relay drop
the connection fails alone while the others go out; two breaks in a row stop the run. The relay's
health (tracker/notifications/relay.py) is recorded on the way.
"""

from __future__ import annotations

import email.policy
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from werkzeug.routing import BuildError

from tracker.extensions import db
from tracker.models import Notification, NotificationState
from tracker.notifications import claims, relay, smtp, tokens
from tracker.notifications.claims import Clock, Outgoing, claim, due_count
from tracker.notifications.outbox import HeaderInjectionError, safe_header
from tracker.notifications.render import absolute_url

__all__ = ["DispatchResult", "MailConfigError", "Outgoing", "claim", "dispatch", "due_count", "retry"]

log = logging.getLogger(__name__)

# Lines end in CRLF as SMTP wants; non-ASCII bodies go quoted-printable or base64 (7bit) so that
# any relay takes them, 8BITMIME or not. Headers set with set_raw() are written as given
# (refold_source="none"): folding a long List-Unsubscribe would RFC 2047-encode the URL, and mail
# clients do not decode that header.
POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")

#: A relay that keeps failing is recorded at each failure; successes at most this often per run.
_SUCCESS_RECORD_EVERY = timedelta(seconds=30)


class MailConfigError(Exception):
    """The mail settings cannot work; the message names the setting."""


@dataclass(frozen=True)
class DispatchResult:
    """What one dispatch did: messages sent, put back for a later try, given up on, and left
    untried because the relay could not be reached (``relay_error`` says why)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    relay_error: str | None = field(default=None, compare=False)

    def __add__(self, other: DispatchResult) -> DispatchResult:
        return DispatchResult(
            self.sent + other.sent,
            self.retried + other.retried,
            self.failed + other.failed,
            self.deferred + other.deferred,
            other.relay_error or self.relay_error,
        )


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The dispatch settings, read once per run."""

    batch: int
    claim: timedelta
    max_breaks: int
    window: timedelta

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            batch=int(config["TRACKER_DISPATCH_BATCH"]),
            claim=timedelta(seconds=int(config["TRACKER_DISPATCH_CLAIM_SECONDS"])),
            max_breaks=int(config["TRACKER_MAIL_MAX_BREAKS"]),
            window=timedelta(seconds=int(config["TRACKER_MAIL_RETRY_WINDOW"])),
        )


def check_mail_config(config: Mapping[str, Any]) -> None:
    """Raise MailConfigError when the mail settings cannot work."""
    if config.get("MAIL_USE_TLS") and config.get("MAIL_USE_SSL"):
        raise MailConfigError("MAIL_USE_TLS and MAIL_USE_SSL exclude each other; set one of them")
    sender = config.get("MAIL_DEFAULT_SENDER") or ""
    if isinstance(sender, tuple):  # Flask-Mail allows (name, address)
        sender = f"{sender[0]} <{sender[1]}>"
    try:
        safe_header(sender)
    except HeaderInjectionError:
        raise MailConfigError("MAIL_DEFAULT_SENDER contains a line break") from None
    if "@" not in parseaddr(sender)[1]:
        raise MailConfigError(f"MAIL_DEFAULT_SENDER is not an email address: {sender!r}")
    base = str(config.get("TRACKER_BASE_URL") or "")
    if not base.isascii() or not urlsplit(base).hostname:
        raise MailConfigError(f"TRACKER_BASE_URL must be an ASCII http(s) address, not {base!r}")
    for name in (
        "MAIL_TIMEOUT",
        "MAIL_DATA_TIMEOUT",
        "TRACKER_DISPATCH_BATCH",
        "TRACKER_DISPATCH_CLAIM_SECONDS",
        "TRACKER_MAIL_MAX_BREAKS",
        "TRACKER_MAIL_RETRY_WINDOW",
    ):
        if int(config.get(name) or 0) < 1:
            raise MailConfigError(f"{name} must be at least 1")


def retry_delay(attempts: int, config: Mapping[str, Any]) -> timedelta:
    """The wait before the next try after ``attempts`` failed ones: base·2^(attempts−1), capped."""
    base = max(1, int(config["TRACKER_MAIL_RETRY_BASE"]))  # never 0: a retried row must not be due at once
    cap = max(base, int(config["TRACKER_MAIL_RETRY_MAX"]))
    # The exponent is bounded so a large attempt count cannot build a huge integer.
    return timedelta(seconds=min(cap, base * 2 ** min(max(attempts - 1, 0), 40)))


# --- building messages ------------------------------------------------------------------------


def message_id(idempotency_key: str) -> str:
    """A Message-ID derived from the idempotency key: the same on every try of one message."""
    host = urlsplit(current_app.config["TRACKER_BASE_URL"]).hostname or "localhost"
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@{host}>"


def unsubscribe_url(recipient_id: int, kind: str) -> str:
    """The one-click unsubscribe link for one recipient and one optional kind of mail."""
    token = tokens.make("unsubscribe", {"u": recipient_id, "k": kind})
    try:
        return absolute_url("notifications.unsubscribe", token=token)
    except BuildError:  # the preferences blueprint is not mounted (yet): its documented address
        return f"{current_app.config['TRACKER_BASE_URL'].rstrip('/')}/unsubscribe/{token}"


def headers_for(row: Outgoing | Notification) -> dict[str, str]:
    """The headers a row is sent with (besides MIME and Date), in order; values are not checked."""
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    if isinstance(sender, tuple):
        sender = f"{sender[0]} <{sender[1]}>"
    headers = {
        "From": sender,
        "To": row.to_address,
        "Subject": row.subject,
        "Message-ID": message_id(row.idempotency_key),
        # RFC 3834: autoresponders must not answer this mail.
        "Auto-Submitted": "auto-generated",
    }
    if row.kind in tokens.OPTIONAL_KINDS and row.recipient_id is not None:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url(row.recipient_id, row.kind)}>"
        # RFC 8058: the mail client POSTs to the link; a GET (a link scanner) changes nothing.
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def build_message(row: Outgoing | Notification, now: datetime) -> EmailMessage:
    """The RFC 5322 message for a row: multipart/alternative, text then HTML, UTF-8.

    Raises HeaderInjectionError when a header value contains a line break: the row must not be sent.
    """
    headers = headers_for(row)
    for value in headers.values():
        safe_header(value)  # user data reaches Subject and To; nothing may add a header line
    if not headers.get("List-Unsubscribe", "").isascii():  # written raw, so it must be plain ASCII
        raise HeaderInjectionError("the unsubscribe link is not ASCII")
    message = EmailMessage(policy=POLICY)
    for name, value in headers.items():
        if name == "List-Unsubscribe":
            message.set_raw(name, value)  # written as is, never folded (see POLICY)
        else:
            message[name] = value
    message["Date"] = format_datetime(now.astimezone(UTC))
    message.set_content(row.body_text, subtype="plain", charset="utf-8")
    message.add_alternative(row.body_html, subtype="html", charset="utf-8")
    return message


# --- one run ----------------------------------------------------------------------------------


def _clock(now: datetime | Clock | None) -> Clock:
    """The clock of a run: the real one, or a fixed time (frozen time in tests and checks)."""
    if now is None:
        return lambda: datetime.now(UTC)
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("dispatch needs an aware datetime")
        return lambda: now
    return now


def _build(row: Outgoing, now: datetime) -> bytes | smtp.Outcome:
    """The bytes to send, or the permanent failure that keeps this row from ever being sent."""
    try:
        return build_message(row, now).as_bytes()
    except HeaderInjectionError as exc:
        return smtp.Outcome("permanent", f"not sent, unsafe header: {exc}")
    except Exception as exc:
        log.exception("notification %s cannot be built", row.id)
        return smtp.Outcome("permanent", f"not sent, the message cannot be built: {exc}")


def _try(row: Outgoing, sender: smtp.SmtpSender | smtp.FileSender, now: datetime) -> smtp.Outcome:
    """Build and send one message; an error nobody foresaw fails this row, not the batch."""
    raw = _build(row, now)
    if isinstance(raw, smtp.Outcome):
        return raw
    try:
        return sender.send(row.id, row.to_address, raw)
    except Exception as exc:
        # Left uncaught, it would leave the batch claimed until the claims lapse, then resend it.
        log.exception("notification %s: unexpected error while sending", row.id)
        return smtp.Outcome("permanent", f"unexpected error while sending: {type(exc).__name__}: {exc}")


def _after_failure(
    row: Outgoing, outcome: smtp.Outcome, now: datetime, settings: Settings, config: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """The new column values of a row after a failed try, and whether it is ``retried`` or ``failed``."""
    attempts = row.attempts + 1
    first = row.first_tried_at or now
    breaks = row.breaks + (outcome.result == "broken")
    error = (outcome.detail or "unknown error")[:2000]
    values: dict[str, Any] = {"attempts": attempts, "first_tried_at": first, "breaks": breaks}
    deadline = first + settings.window
    if outcome.result == "permanent":
        pass
    elif outcome.result == "broken" and breaks >= settings.max_breaks:
        error = f"the connection broke {breaks} times while sending it: {error}"
    elif now >= deadline:
        error = f"gave up after {attempts} attempts since {first:%Y-%m-%d %H:%M} UTC: {error}"
    else:
        # The last try falls on the end of the window, however long the back-off has grown.
        next_try = min(now + retry_delay(attempts, config), deadline)
        return {**values, "next_attempt_at": next_try, "last_error": error}, "retried"
    return {**values, "state": NotificationState.FAILED.value, "last_error": error}, "failed"


@dataclass
class _Run:
    """One dispatch run: its clock, its id, its settings, and what it has seen of the relay."""

    clock: Clock
    holder: str
    settings: Settings
    config: Mapping[str, Any]
    heartbeat: claims.Heartbeat
    last_success_recorded: datetime | None = None

    def mark(self, row: Outgoing, outcome: smtp.Outcome, relay_name: str | None) -> str:
        """Record one try in its own transaction (with the relay's health); what became of the row."""
        now = self.clock()
        try:
            if outcome.result == "sent":
                # Whoever holds the claim now, the relay has the message: record it. last_error is
                # kept: "sent on the third try, after: 451 …" is worth seeing.
                db.session.execute(
                    sa.update(Notification)
                    .where(Notification.id == row.id, Notification.state == claims.PENDING)
                    .values(
                        state=NotificationState.SENT.value,
                        sent_at=now,
                        relay_reply=(outcome.detail or "")[:500],
                        attempts=row.attempts + 1,
                        first_tried_at=row.first_tried_at or now,
                        claimed_until=None,
                        claimed_by=None,
                    )
                    .execution_options(synchronize_session=False)
                )
                if relay_name and self._record_success_due(now):
                    relay.record_success(now)
                    self.last_success_recorded = now
                result = "sent"
            else:
                values, result = _after_failure(row, outcome, now, self.settings, self.config)
                db.session.execute(
                    sa.update(Notification)
                    .where(
                        Notification.id == row.id,
                        Notification.claimed_by == self.holder,
                        Notification.state == claims.PENDING,
                    )
                    .values(**values, claimed_until=None, claimed_by=None)
                    .execution_options(synchronize_session=False)
                )
                if relay_name and outcome.result in ("temporary", "broken"):
                    relay.record_failure(now, outcome.detail or "unknown error")
                    self.last_success_recorded = None
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        finally:
            self.heartbeat.drop(row.id)
        log.info("notification %s to %s: %s %s", row.id, row.to_address, result, outcome.detail or "")
        return result

    def _record_success_due(self, now: datetime) -> bool:
        last = self.last_success_recorded
        return last is None or now - last >= _SUCCESS_RECORD_EVERY

    def relay_unreachable(self, error: str) -> None:
        try:
            relay.record_failure(self.clock(), error)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise

    def send_batch(self, rows: list[Outgoing]) -> tuple[DispatchResult, bool]:
        """Send a claimed batch, recording each message; True as well when the run should stop."""
        counts = {"sent": 0, "retried": 0, "failed": 0}
        relay_error: str | None = None
        breaks_in_a_row = 0
        sender = smtp.open_sender(self.config, self.clock())
        try:
            for index, row in enumerate(rows):
                if not claims.confirm(row.id, self.holder, self.clock(), self.settings.claim):
                    self.heartbeat.drop(row.id)
                    log.warning("notification %s: claim lost to another dispatcher; not sent", row.id)
                    continue
                outcome = _try(row, sender, self.clock())
                if outcome.result == "unreachable":
                    relay_error = outcome.detail or "unreachable"
                    untried = [r.id for r in rows[index:]]
                    claims.release(untried, self.holder)
                    for row_id in untried:
                        self.heartbeat.drop(row_id)
                    self.relay_unreachable(relay_error)
                    result = DispatchResult(**counts, deferred=len(untried), relay_error=relay_error)
                    return result, True
                counts[self.mark(row, outcome, sender.relay)] += 1
                breaks_in_a_row = breaks_in_a_row + 1 if outcome.result == "broken" else 0
                if breaks_in_a_row >= 2:  # two messages in a row: the relay, not a message
                    untried = [r.id for r in rows[index + 1 :]]
                    claims.release(untried, self.holder)
                    for row_id in untried:
                        self.heartbeat.drop(row_id)
                    detail = outcome.detail or "connection broken"
                    return DispatchResult(**counts, deferred=len(untried), relay_error=detail), True
        finally:
            sender.close()
        return DispatchResult(**counts), False


def dispatch(
    now: datetime | Clock | None = None,
    batch_size: int | None = None,
    *,
    holder: str | None = None,
) -> DispatchResult:
    """Send every outbox row that is due, batch by batch, until none is left or the relay fails.

    ``now`` is the clock, read for every claim and every mark: None for the real time, a callable,
    or a fixed aware datetime (frozen time). ``holder`` names the dispatcher in ``claimed_by``
    (the scheduler passes its lease holder id; by default a new one).
    """
    clock = _clock(now)
    config = current_app.config
    check_mail_config(config)
    settings = Settings.from_config(config)
    size = batch_size or settings.batch
    holder = holder or claims.dispatcher_id()
    total = DispatchResult()
    every = max(settings.claim.total_seconds() / 3, 0.5)
    with claims.Heartbeat(holder, clock, settings.claim, every) as heartbeat:
        run = _Run(clock, holder, settings, config, heartbeat)
        while True:
            rows = claim(clock(), size, settings.claim, holder)
            if not rows:
                break
            heartbeat.hold(r.id for r in rows)
            result, stop = run.send_batch(rows)
            total += result
            # Every row of a batch leaves the due set (sent, failed, next try later than now, or
            # held by another dispatcher), so this loop ends; after a relay failure, the next run
            # tries again.
            if stop or len(rows) < size:
                break
    if total != DispatchResult():
        log.info(
            "dispatch: sent %d, retried %d, failed %d, deferred %d",
            total.sent,
            total.retried,
            total.failed,
            total.deferred,
        )
    return total


def next_run_at(now: datetime) -> datetime | None:
    """When rows held by another (possibly dead) dispatcher become free, for the scheduler: a second
    after the first such claim lapses (or now, if one lapsed during the run); None if none is held."""
    expiry = claims.next_expiry()
    return None if expiry is None else max(expiry, now) + timedelta(seconds=1)


def retry(notification_id: int, now: datetime) -> bool:
    """Put a failed row back in the queue for a try at ``now``; False if it is not failed."""
    return bool(requeue_failed(Notification.id == notification_id, now))


def requeue_failed(which: sa.ColumnElement[bool], now: datetime) -> int:
    """Put the failed rows matching ``which`` back in the queue for a try at ``now``; how many.

    The attempts and the last error are kept (the page shows what happened until the next try);
    the retry window and the count of broken connections start afresh. One UPDATE.
    """
    statement = (
        sa.update(Notification)
        .where(which, Notification.state == NotificationState.FAILED.value)
        .values(
            state=NotificationState.PENDING.value,
            next_attempt_at=now,
            claimed_until=None,
            claimed_by=None,
            first_tried_at=None,
            breaks=0,
        )
        .execution_options(synchronize_session=False)
    )
    return db.session.execute(statement).rowcount or 0
