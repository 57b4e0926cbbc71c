"""Request ids, the one log line per request, and the log format (text or JSON lines).

Every response carries ``X-Request-ID``: the caller's (nginx passes ``$request_id``) when it is a
short token, else one made here. Log records written during a request carry it too (JSON format).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request
from werkzeug.wrappers import Response

from config import ConfigError

log = logging.getLogger("tracker.request")

HEADER = "X-Request-ID"
#: A caller's id is kept when it looks like this (what nginx's $request_id and most proxies send).
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: Attributes every LogRecord has; anything else was passed with ``extra=`` and is written out.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


def request_id() -> str | None:
    """The id of the current request (taken from X-Request-ID or made once); None outside one."""
    if not has_request_context():
        return None
    rid = g.get("request_id")
    if rid is None:
        incoming = request.headers.get(HEADER, "")
        rid = g.request_id = incoming if _ACCEPTED_ID.match(incoming) else uuid.uuid4().hex
    return rid


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _RequestIdFilter(logging.Filter):
    """Adds the request id to records logged during a request (in the thread that logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when the record comes (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(log_format: str, *, install_handler: bool = True) -> None:
    """Give the root logger one handler of ours in ``log_format`` (once per process; handlers
    others installed, pytest's say, are left alone) and let tracker's INFO records through."""
    if log_format not in FORMATS:
        raise ConfigError(f"TRACKER_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    tracker_logger = logging.getLogger("tracker")
    if tracker_logger.level == logging.NOTSET:
        tracker_logger.setLevel(logging.INFO)
    if not install_handler:
        return
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(_RequestIdFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))


def start_request() -> None:
    """Note when the request began (the first before_request hook)."""
    g.ops_started = time.perf_counter()
    request_id()


def finish_request(response: Response) -> Response:
    """Set X-Request-ID and write the request's log line."""
    rid = request_id() or ""
    response.headers[HEADER] = rid
    started = g.get("ops_started")
    elapsed_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    # Only a user already loaded by the request: looking one up here would query the database
    # on answers that need none (/healthz, static files).
    user = g.get("_login_user")
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    log.info(
        "%s %s %s %.1f ms request_id=%s user=%s remote=%s",
        request.method,
        request.path,
        response.status_code,
        elapsed_ms,
        rid,
        user_id if user_id is not None else "-",
        request.remote_addr or "-",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(elapsed_ms, 1),
            "user_id": user_id,
            "remote_addr": request.remote_addr,
            "request_id": rid,
        },
    )
    return response


def register_request_log(app: Flask) -> None:
    """Install the request id and the request log on ``app`` (its first before_request hook)."""
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.after_request(finish_request)
    app.jinja_env.globals["request_id"] = request_id
