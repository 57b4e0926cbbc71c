"""gunicorn settings for tracker: `gunicorn -c deploy/gunicorn.conf.py` (from the checkout's root).

- Workers: WEB_CONCURRENCY (default 2); a request may take up to 60 s (large exports are jobs).
- No access log: the application writes one line per request itself (logger tracker.request,
  with the request id, the user and the duration; JSON with TRACKER_LOG_FORMAT=json).
- Metrics with several workers: set PROMETHEUS_MULTIPROC_DIR to a directory only this service
  writes (e.g. /run/tracker/metrics, RuntimeDirectory= in the systemd unit). It must be empty
  when gunicorn starts (the unit empties it; on_starting below does too), and it must be in the
  environment before gunicorn starts, not set here: prometheus_client reads it at import.
- Bind with --bind (default 127.0.0.1:8000, behind nginx).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Imported here, when gunicorn reads this file, not in child_exit: that hook runs from the master's
# SIGCHLD handling, and an import started there can meet a half-imported module (seen once as a
# circular-import ImportError when a killed worker was reaped).
from prometheus_client import multiprocess

wsgi_app = "wsgi:app"
bind = ["127.0.0.1:8000"]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
timeout = 60
graceful_timeout = 30
accesslog = None
errorlog = "-"

# With TRACKER_LOG_FORMAT=json gunicorn's own lines (booting, worker timeouts, signals) are JSON
# objects too, in the application's format, so that one log reader takes every line.
if os.environ.get("TRACKER_LOG_FORMAT") == "json":
    # gunicorn updates its default dictConfig with this one key by key: every part it names (the
    # "console" handler, the access logger) is given here again. The root logger gets no handler
    # here: the application adds its own (with the request id), which would otherwise double lines.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "formatters": {"json": {"()": "tracker.ops.logs.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }


def on_starting(server: Any) -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR: counts left by an earlier run would be added to this one's."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        if workers > 1:
            server.log.warning(
                "PROMETHEUS_MULTIPROC_DIR is not set: /metrics shows the request counts of one worker only"
            )
        return
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended: drop its live gauges from the multiprocess files (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
