"""Talking to the relay: one connection per batch, a timeout per stage, and what each try came to.

Timeouts follow RFC 5321 §4.5.3.2: ``MAIL_TIMEOUT`` (30 s) bounds the connection, the greeting and
every command; the reply to the end of DATA gets ``MAIL_DATA_TIMEOUT`` (600 s, the RFC's 10 minutes),
because a client that gives up there while the relay is still writing the message to disk sends it
again later, and the recipient gets two copies.

A try ends in one of five ways (``Outcome.result``):

- ``sent``: the relay answered 250 at the end of DATA (its reply is kept);
- ``temporary`` / ``permanent``: the relay refused the message with a 4xx / 5xx reply;
- ``broken``: the connection broke, or a reply did not come in time, while this message was in
  flight; it costs this message an attempt and a break, and the next message gets a new connection;
- ``unreachable``: no connection could be made (refused, timed out, TLS or login failed); no message
  was in flight, so none is charged.
"""

from __future__ import annotations

import logging
import os
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How one try went (see the module docstring); ``detail`` is the error or the relay's reply."""

    result: str
    detail: str | None = None


class _StagedTimeouts:
    """smtplib's ``SMTP.data`` with its own socket timeout for the reply to the end of DATA.

    smtplib sends DATA, reads the 354, sends the message with the final dot, and reads the reply,
    all under one socket timeout. This is the same sequence (Lib/smtplib.py, ``SMTP.data``), with
    ``data_timeout`` set on the socket only while waiting for that last reply; the relay's reply is
    kept in ``last_data_reply``.
    """

    data_timeout: float | None = None
    last_data_reply: tuple[int, bytes] | None = None

    def data(self, msg: bytes) -> tuple[int, bytes]:  # type: ignore[override]
        smtp: smtplib.SMTP = self  # type: ignore[assignment]
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        payload = smtplib._quote_periods(msg)  # type: ignore[attr-defined]
        if payload[-2:] != b"\r\n":
            payload += b"\r\n"
        smtp.send(payload + b".\r\n")
        sock = smtp.sock
        previous = sock.gettimeout() if sock is not None else None
        if sock is not None and self.data_timeout is not None:
            sock.settimeout(self.data_timeout)
        try:
            code, reply = smtp.getreply()
        finally:
            if smtp.sock is not None:  # getreply() closes the connection when it breaks
                smtp.sock.settimeout(previous)
        self.last_data_reply = (code, reply)
        return code, reply


class StagedSMTP(_StagedTimeouts, smtplib.SMTP):
    """Plain SMTP (with STARTTLS if asked) and a longer wait for the end-of-DATA reply."""


class StagedSMTPSSL(_StagedTimeouts, smtplib.SMTP_SSL):
    """Implicit TLS (port 465) and a longer wait for the end-of-DATA reply."""


def connect(config: Mapping[str, Any]) -> smtplib.SMTP:
    """Connect (and STARTTLS, log in) with MAIL_TIMEOUT on every operation but the end of DATA."""
    timeout = float(config["MAIL_TIMEOUT"])
    smtp_class = StagedSMTPSSL if config.get("MAIL_USE_SSL") else StagedSMTP
    smtp = smtp_class(config["MAIL_SERVER"], int(config["MAIL_PORT"]), timeout=timeout)
    smtp.data_timeout = float(config["MAIL_DATA_TIMEOUT"])
    try:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME") and config.get("MAIL_PASSWORD"):
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


def close(smtp: smtplib.SMTP) -> None:
    """Say QUIT if the connection still works; close the socket in any case."""
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def describe(exc: BaseException) -> str:
    """A one-line description of an SMTP or socket error for last_error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return f"{code} {_text(text)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc):
        return f"timed out waiting for the relay: {exc}"
    return f"{type(exc).__name__}: {exc}"


def classify(exc: BaseException) -> Outcome:
    """What an error raised while a message was in flight means for that message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next(iter(exc.recipients.values()))[0]
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
    elif isinstance(exc, smtplib.SMTPServerDisconnected | OSError):  # includes timeouts
        return Outcome("broken", describe(exc))
    else:
        return Outcome("temporary", describe(exc))
    return Outcome("permanent" if 500 <= code < 600 else "temporary", describe(exc))


class Sender(Protocol):
    """Sends one message at a time; ``close()`` ends the batch."""

    #: The relay's or the folder's name, for logs; None for senders without a relay to watch.
    relay: str | None

    def send(self, row_id: int, to_address: str, raw: bytes) -> Outcome: ...

    def close(self) -> None: ...


class SmtpSender:
    """Sends the messages of a batch over one connection, opened at the first message and opened
    again after a break."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.smtp: smtplib.SMTP | None = None
        self.relay = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}"
        sender = config["MAIL_DEFAULT_SENDER"]
        if isinstance(sender, tuple):
            sender = f"{sender[0]} <{sender[1]}>"
        self.envelope_from = parseaddr(sender)[1]

    def send(self, row_id: int, to_address: str, raw: bytes) -> Outcome:
        if self.smtp is None:
            try:
                self.smtp = connect(self.config)
            except (smtplib.SMTPException, OSError) as exc:
                # Whatever the code, a failed connection says nothing about this message.
                log.warning("cannot connect to %s: %s", self.relay, describe(exc))
                return Outcome("unreachable", f"cannot connect: {describe(exc)}")
        smtp = self.smtp
        smtp.last_data_reply = None  # type: ignore[attr-defined]
        try:
            smtp.sendmail(self.envelope_from, [to_address], raw)
        except (smtplib.SMTPException, OSError) as exc:
            outcome = classify(exc)
            if smtp.sock is None or outcome.result == "broken":  # smtplib closed it, or it is unusable
                smtp.close()
                self.smtp = None
            return outcome
        code, reply = smtp.last_data_reply or (250, b"")  # type: ignore[attr-defined]
        return Outcome("sent", f"{code} {_text(reply)}".strip())

    def close(self) -> None:
        if self.smtp is not None:
            close(self.smtp)
            self.smtp = None


class FileSender:
    """Without an SMTP server: writes each message to <TRACKER_MAIL_DIR>/<time>-<id>.eml."""

    relay = None

    def __init__(self, directory: str, now: datetime) -> None:
        self.directory = Path(directory)
        self.stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def send(self, row_id: int, to_address: str, raw: bytes) -> Outcome:
        path = self.directory / f"{self.stamp}-{row_id}.eml"
        partial = path.with_suffix(".eml.part")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(raw)
            os.replace(partial, path)  # a reader never sees half a message
        except OSError as exc:
            return Outcome("temporary", f"cannot write {path}: {exc}")
        return Outcome("sent", f"written to {path}")

    def close(self) -> None:
        pass


def open_sender(config: Mapping[str, Any], now: datetime) -> SmtpSender | FileSender:
    """The sender for the settings: SMTP when MAIL_SERVER is set, else .eml files."""
    if config.get("MAIL_SERVER"):
        return SmtpSender(config)
    return FileSender(config["TRACKER_MAIL_DIR"], now)
