"""Dispatch: send the outbox over SMTP (or into .eml files), with retries and back-off.

One call claims the due rows in short transactions, sends each claimed batch over one SMTP
connection outside any transaction, then marks every row of the batch and commits:

- claim: ``pending``, ``next_attempt_at <= now``, not claimed by a live dispatcher; the claim is
  ``claimed_until = now + lease`` (PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so that two dispatchers
  never take the same row; a claim left by a crashed dispatcher expires and the row is taken again);
- send: one message per row (one recipient), over one connection per batch with a socket timeout;
- mark: sent (with its time); a temporary failure (4xx, refused, timeout, connection lost) is
  tried again after an exponential back-off; a permanent one (5xx), an unsafe header, or too many
  attempts marks the row failed with the error, for the admin outbox page.

Delivery is at least once: a dispatcher that dies between sending and committing sends the batch
again once its claim has expired. The Message-ID is derived from the idempotency key, so a
message sent twice carries the same id and mail clients show it once.
"""

from __future__ import annotations

import email.policy
import hashlib
import logging
import os
import smtplib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from werkzeug.routing import BuildError

from tracker.extensions import db
from tracker.models import Notification, NotificationState
from tracker.notifications import tokens
from tracker.notifications.outbox import HeaderInjectionError, safe_header
from tracker.notifications.render import absolute_url

log = logging.getLogger(__name__)

# Lines end in CRLF as SMTP wants; non-ASCII bodies go quoted-printable or base64 (7bit) so that
# any relay takes them, 8BITMIME or not. Headers set with set_raw() are written as given
# (refold_source="none"): folding a long List-Unsubscribe would RFC 2047-encode the URL, and mail
# clients do not decode that header.
POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")

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
)


class MailConfigError(Exception):
    """The mail settings cannot work; the message names the setting."""


@dataclass(frozen=True)
class DispatchResult:
    """What one dispatch did: messages sent, put back for a later try, and given up on."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __add__(self, other: DispatchResult) -> DispatchResult:
        return DispatchResult(
            self.sent + other.sent, self.retried + other.retried, self.failed + other.failed
        )


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


@dataclass(frozen=True)
class _Outcome:
    """How sending one message went: ``sent``, ``temporary`` or ``permanent`` (with the error)."""

    result: str
    error: str | None = None


# --- settings ---------------------------------------------------------------------------------


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
        "TRACKER_DISPATCH_BATCH",
        "TRACKER_DISPATCH_LEASE",
        "TRACKER_MAIL_MAX_ATTEMPTS",
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


# --- sending ----------------------------------------------------------------------------------


def _open_smtp(config: Mapping[str, Any]) -> smtplib.SMTP:
    """Connect (and STARTTLS, log in) with the configured timeout on every socket operation."""
    timeout = float(config["MAIL_TIMEOUT"])
    smtp_class = smtplib.SMTP_SSL if config.get("MAIL_USE_SSL") else smtplib.SMTP
    smtp = smtp_class(config["MAIL_SERVER"], int(config["MAIL_PORT"]), timeout=timeout)
    try:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME") and config.get("MAIL_PASSWORD"):
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


def _close_smtp(smtp: smtplib.SMTP) -> None:
    """Say QUIT if the connection still works; close the socket in any case."""
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _describe(exc: BaseException) -> str:
    """A one-line description of an SMTP or socket error for last_error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return f"{code} {_text(text)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify(exc: BaseException) -> _Outcome:
    """Temporary (4xx, connection refused or lost, timeout) or permanent (5xx) failure."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next(iter(exc.recipients.values()))[0]
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    else:  # SMTPServerDisconnected, ConnectionRefusedError, TimeoutError, other OSError
        return _Outcome("temporary", _describe(exc))
    return _Outcome("permanent" if 500 <= code < 600 else "temporary", _describe(exc))


class _SmtpSender:
    """Sends the messages of one batch over one connection, opened at the first message."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.smtp: smtplib.SMTP | None = None
        #: Set when the connection failed or was lost: the rest of the batch waits for a later try.
        self.broken: str | None = None
        self.envelope_from = parseaddr(self._sender())[1]

    def _sender(self) -> str:
        sender = self.config["MAIL_DEFAULT_SENDER"]
        return f"{sender[0]} <{sender[1]}>" if isinstance(sender, tuple) else sender

    def send(self, row: Outgoing, raw: bytes) -> _Outcome:
        if self.broken:
            return _Outcome("temporary", f"not tried, the connection failed: {self.broken}")
        if self.smtp is None:
            try:
                self.smtp = _open_smtp(self.config)
            except (smtplib.SMTPException, OSError) as exc:
                # Whatever the code, a failed connection says nothing about this message.
                self.broken = _describe(exc)
                log.warning(
                    "cannot connect to %s:%s: %s",
                    self.config["MAIL_SERVER"],
                    self.config["MAIL_PORT"],
                    self.broken,
                )
                return _Outcome("temporary", f"cannot connect: {self.broken}")
        try:
            self.smtp.sendmail(self.envelope_from, [row.to_address], raw)
        except (smtplib.SMTPException, OSError) as exc:
            outcome = classify(exc)
            if self.smtp.sock is None:  # smtplib closes the socket when the connection is lost
                self.broken = outcome.error
            log.info("notification %s to %s: %s", row.id, row.to_address, outcome.error)
            return outcome
        return _Outcome("sent")

    def close(self) -> None:
        if self.smtp is not None:
            _close_smtp(self.smtp)
            self.smtp = None


class _FileSender:
    """Without an SMTP server: writes each message to <TRACKER_MAIL_DIR>/<time>-<id>.eml."""

    def __init__(self, directory: str, now: datetime) -> None:
        self.directory = Path(directory)
        self.stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.broken: str | None = None

    def send(self, row: Outgoing, raw: bytes) -> _Outcome:
        path = self.directory / f"{self.stamp}-{row.id}.eml"
        partial = path.with_suffix(".eml.part")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(raw)
            os.replace(partial, path)  # a reader never sees half a message
        except OSError as exc:
            return _Outcome("temporary", f"cannot write {path}: {exc}")
        return _Outcome("sent")

    def close(self) -> None:
        pass


@contextmanager
def _sender(config: Mapping[str, Any], now: datetime) -> Iterator[_SmtpSender | _FileSender]:
    sender: _SmtpSender | _FileSender
    if config.get("MAIL_SERVER"):
        sender = _SmtpSender(config)
    else:
        sender = _FileSender(config["TRACKER_MAIL_DIR"], now)
    try:
        yield sender
    finally:
        sender.close()


# --- the outbox -------------------------------------------------------------------------------


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """Rows a dispatcher may take at ``now``."""
    return sa.and_(
        Notification.state == NotificationState.PENDING.value,
        Notification.next_attempt_at <= now,
        sa.or_(Notification.claimed_until.is_(None), Notification.claimed_until < now),
    )


def due_count(now: datetime) -> int:
    """How many outbox rows a dispatch at ``now`` would take."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(_due(now))) or 0


def claim(now: datetime, batch_size: int, lease: timedelta) -> list[Outgoing]:
    """Claim up to ``batch_size`` due rows until ``now + lease`` and commit; oldest due first."""
    # Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE): PostgreSQL may run
    # such a subquery more than once and so claim more than n rows.
    chosen = (
        sa.select(Notification.id)
        .where(_due(now))
        .order_by(Notification.next_attempt_at, Notification.id)
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
        statement = (
            sa.update(Notification)
            .where(Notification.id.in_(ids), _due(now))
            .values(claimed_until=now + lease)
            .returning(*_COLUMNS)
            .execution_options(synchronize_session=False)
        )
        rows = [Outgoing(*row) for row in db.session.execute(statement)]
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return sorted(rows, key=lambda r: (r.next_attempt_at, r.id))


def _mark(
    row: Outgoing, outcome: _Outcome, now: datetime, config: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """The new column values of a row after one try, and what became of it."""
    attempts = row.attempts + 1
    values: dict[str, Any] = {"id": row.id, "attempts": attempts, "claimed_until": None}
    if outcome.result == "sent":
        # last_error is kept: "sent on the third try, after: 451 …" is worth seeing.
        return {**values, "state": NotificationState.SENT.value, "sent_at": now}, "sent"
    error = (outcome.error or "unknown error")[:2000]
    if outcome.result == "temporary" and attempts < int(config["TRACKER_MAIL_MAX_ATTEMPTS"]):
        next_try = now + retry_delay(attempts, config)
        return {**values, "next_attempt_at": next_try, "last_error": error}, "retried"
    if outcome.result == "temporary":
        error = f"gave up after {attempts} attempts: {error}"
    return {**values, "state": NotificationState.FAILED.value, "last_error": error}, "failed"


def _try(row: Outgoing, sender: _SmtpSender | _FileSender, now: datetime) -> _Outcome:
    """Build and send one message; an error nobody foresaw fails this row, not the batch."""
    try:
        raw = build_message(row, now).as_bytes()
    except HeaderInjectionError as exc:
        return _Outcome("permanent", f"not sent, unsafe header: {exc}")
    except Exception as exc:
        log.exception("notification %s cannot be built", row.id)
        return _Outcome("permanent", f"not sent, the message cannot be built: {exc}")
    try:
        return sender.send(row, raw)
    except Exception as exc:
        # Left uncaught, it would leave the batch claimed and resend it after every lease.
        log.exception("notification %s: unexpected error while sending", row.id)
        return _Outcome("permanent", f"unexpected error while sending: {type(exc).__name__}: {exc}")


def _send_batch(
    rows: list[Outgoing], now: datetime, config: Mapping[str, Any]
) -> tuple[DispatchResult, bool]:
    """Send a claimed batch and mark it; True as well when the connection failed."""
    updates: list[dict[str, Any]] = []
    counts = {"sent": 0, "retried": 0, "failed": 0}
    with _sender(config, now) as sender:
        for row in rows:
            outcome = _try(row, sender, now)
            values, result = _mark(row, outcome, now, config)
            updates.append(values)
            counts[result] += 1
        broken = sender.broken is not None
    try:
        # One executemany UPDATE by primary key for the whole batch, one commit.
        db.session.execute(sa.update(Notification), updates)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return DispatchResult(**counts), broken


def dispatch(now: datetime, batch_size: int | None = None) -> DispatchResult:
    """Send every outbox row due at ``now``, batch by batch; stops early when SMTP is unreachable."""
    if now.tzinfo is None:
        raise ValueError("dispatch needs an aware datetime")
    config = current_app.config
    check_mail_config(config)
    size = batch_size or int(config["TRACKER_DISPATCH_BATCH"])
    lease = timedelta(seconds=int(config["TRACKER_DISPATCH_LEASE"]))
    total = DispatchResult()
    while True:
        rows = claim(now, size, lease)
        if not rows:
            break
        result, broken = _send_batch(rows, now, config)
        total += result
        # Every row of a batch leaves the due set (sent, failed, or its next try is later than now),
        # so this loop ends; after a failed connection the next run tries again.
        if broken or len(rows) < size:
            break
    if total != DispatchResult():
        log.info("dispatch: sent %d, retried %d, failed %d", total.sent, total.retried, total.failed)
    return total


def retry(notification_id: int, now: datetime) -> bool:
    """Put a failed row back in the queue for a try at ``now``; False if it is not failed.

    The attempts and the last error are kept: the page shows what happened until the next try.
    """
    statement = (
        sa.update(Notification)
        .where(Notification.id == notification_id, Notification.state == NotificationState.FAILED.value)
        .values(state=NotificationState.PENDING.value, next_attempt_at=now, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(db.session.execute(statement).rowcount)
