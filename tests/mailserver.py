"""Real mail servers on loopback for the tests: an SMTP server (aiosmtpd) that records every message
and can be told to misbehave, and a "silent" server that accepts connections and never says a word.

Faults the SMTP server injects (``RecordingHandler``): refuse the next K messages at the end of DATA
(e.g. 451), refuse chosen recipients (e.g. 550), and for chosen recipients (or every message) at the
end of DATA: drop the connection without a reply (not delivered), keep the message and never
answer, or keep it and answer late; ``slow`` delays every reply. ``deliveries()`` counts the copies
the server kept per Message-ID (a kept message counts even when its reply never reached the client:
a real relay would deliver it).

Import the fixtures into conftest.py: ``smtp_server`` and ``silent_server``; ``start_smtp_server()``
runs one outside a fixture (for tests that point processes at it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    #: The bytes after DATA, exactly as sent.
    raw: bytes
    #: Client address and port: messages sent over one connection share it.
    peer: Any
    #: When the server got the end of DATA (time.monotonic()).
    at: float = field(default_factory=time.monotonic)

    def parsed(self) -> EmailMessage:
        """The message, parsed with the standard library."""
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records what it accepts; scripted replies refuse the next tries."""

    messages: list[Received] = field(default_factory=list)
    #: Replies given at the end of DATA instead of 250, one per message, e.g. "451 4.3.0 Try later".
    data_replies: deque[str] = field(default_factory=deque)
    #: Replies given to RCPT TO for one address, one per try, e.g. "550 5.1.1 No such user".
    rcpt_replies: dict[str, deque[str]] = field(default_factory=dict)
    #: How many sessions said EHLO or HELO: one per SMTP connection.
    connections: int = 0
    #: Every refused DATA or RCPT reply, in order.
    refused: list[str] = field(default_factory=list)
    #: Messages refused at the end of DATA (to compare tries of one message).
    refused_messages: list[Received] = field(default_factory=list)
    #: Faults at the end of DATA for one address (lower case), on every try:
    #: ("drop" | "hang" | "late", seconds).
    data_faults: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: The same for every message (after data_faults and data_replies): None, or ("late", seconds) …
    every_data_fault: tuple[str, float] | None = None
    #: Seconds to wait before every reply to MAIL, RCPT and the end of DATA.
    slow: float = 0.0
    #: Messages the connection was dropped on (not delivered).
    dropped: list[Received] = field(default_factory=list)
    #: Serialises appends from the server's thread with reads from the test.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_data(self, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` messages with ``reply`` instead of accepting them."""
        self.data_replies.extend([reply] * times)

    def refuse_rcpt(self, address: str, reply: str, times: int = 1) -> None:
        """Refuse ``address`` at RCPT TO the next ``times`` times."""
        self.rcpt_replies.setdefault(address.lower(), deque()).extend([reply] * times)

    def drop_at_data_end(self, address: str) -> None:
        """Close the connection, without a reply, at the end of DATA of every message to ``address``."""
        self.data_faults[address.lower()] = ("drop", 0.0)

    def hang_at_data_end(self, address: str | None = None) -> None:
        """Keep the message (to ``address``, or every one) and never answer the end of DATA."""
        if address is None:
            self.every_data_fault = ("hang", 0.0)
        else:
            self.data_faults[address.lower()] = ("hang", 0.0)

    def answer_late(self, seconds: float, address: str | None = None) -> None:
        """Keep the message (to ``address``, or every one) and answer 250 after ``seconds``."""
        if address is None:
            self.every_data_fault = ("late", seconds)
        else:
            self.data_faults[address.lower()] = ("late", seconds)

    def heal(self) -> None:
        """No more faults: every message is accepted at once."""
        self.data_replies.clear()
        self.rcpt_replies.clear()
        self.data_faults.clear()
        self.every_data_fault = None
        self.slow = 0.0

    def deliveries(self) -> Counter[str]:
        """Copies kept per Message-ID."""
        with self.lock:
            return Counter(str(m.parsed()["Message-ID"]) for m in self.messages)

    async def _pause(self) -> None:
        if self.slow:
            await asyncio.sleep(self.slow)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        await self._pause()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):  # noqa: N802
        self.connections += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await self._pause()
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            reply = replies.popleft()
            self.refused.append(reply)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        raw = envelope.original_content or envelope.content
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(raw), session.peer)
        await self._pause()
        fault = self.data_faults.get(envelope.rcpt_tos[0].lower()) if envelope.rcpt_tos else None
        if fault is None and self.data_replies:
            reply = self.data_replies.popleft()
            self.refused.append(reply)
            self.refused_messages.append(received)
            return reply
        fault = fault or self.every_data_fault
        if fault is not None and fault[0] == "drop":
            with self.lock:
                self.dropped.append(received)
            server.transport.close()  # the client reads end of file instead of a reply
            await asyncio.sleep(3600)  # cancelled when aiosmtpd sees the connection lost
        with self.lock:
            self.messages.append(received)  # kept: from here on a relay would deliver it
        if fault is not None and fault[0] == "hang":
            await asyncio.sleep(3600)
        if fault is not None and fault[0] == "late":
            await asyncio.sleep(fault[1])
        return "250 Message accepted for delivery"


class _LoopbackController(Controller):
    """aiosmtpd's Controller on 127.0.0.1 with a port chosen by the system (no race for a port)."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0)

    def _create_server(self):
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        return self.loop.create_server(self._factory_invoker, sock=listener)


@dataclass
class SmtpServer:
    """A running server: where it listens and what it received."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def configure(self, app, **settings: Any) -> dict[str, Any]:
        """Point ``app`` at this server (plus ``settings``); returns the old values to restore."""
        new = {"MAIL_SERVER": self.host, "MAIL_PORT": self.port, "MAIL_USE_TLS": False, "MAIL_USE_SSL": False}
        new.update(settings)
        old = {key: app.config.get(key) for key in new}
        app.config.update(new)
        return old


@contextmanager
def start_smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback for the length of the block."""
    handler = RecordingHandler()
    controller = _LoopbackController(handler)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(app) -> Iterator[SmtpServer]:
    """A real SMTP server on loopback; the app sends to it for the length of the test."""
    with start_smtp_server() as server:
        old = server.configure(app, MAIL_TIMEOUT=5)
        try:
            yield server
        finally:
            app.config.update(old)


@dataclass
class SilentServer:
    """Listens on loopback; the system completes connections, nobody ever answers them."""

    host: str
    port: int


@pytest.fixture
def silent_server(app) -> Iterator[SilentServer]:
    """A server that takes the connection and never sends a greeting; the app sends to it."""
    # Connections wait in the listen backlog, accepted by the kernel, never read or answered.
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    host, port = listener.getsockname()[:2]
    old = {key: app.config.get(key) for key in ("MAIL_SERVER", "MAIL_PORT", "MAIL_TIMEOUT")}
    app.config.update(MAIL_SERVER=host, MAIL_PORT=port, MAIL_TIMEOUT=1)
    try:
        yield SilentServer(host, port)
    finally:
        app.config.update(old)
        listener.close()
