"""Prometheus metrics: request counts and durations per process, and figures read from the
database at scrape time (the outbox, the scheduler's lease, each job's last run).

With several gunicorn workers, each process counts its own requests; set PROMETHEUS_MULTIPROC_DIR
(before the workers start, emptied at each start: see deploy/gunicorn.conf.py) and a scrape of any
worker adds every worker's counts up. Without it, the counts are this process's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.wrappers import Response

from tracker.extensions import db
from tracker.models import NotificationState, SchedulerLease, SchedulerRun
from tracker.scheduler import LEASE_NAME

log = logging.getLogger(__name__)

#: Methods counted by name; any other is counted as "other" (label values stay few).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """The per-process request counters of one application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tracker_http_requests",
            "HTTP requests answered, by Flask endpoint (or unmatched), method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "tracker_http_request_duration_seconds",
            "Time to answer a request, by Flask endpoint (or unmatched).",
            ["endpoint"],
            registry=self.registry,
        )

    def observe(self, response: Response) -> Response:
        """Count the request (an after_request hook)."""
        endpoint = request.endpoint or "unmatched"
        method = request.method if request.method in _METHODS else "other"
        self.requests.labels(endpoint, method, str(response.status_code)).inc()
        started = g.get("ops_started")
        if started is not None:
            self.duration.labels(endpoint).observe(time.perf_counter() - started)
        return response


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, if prometheus_client runs in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class DatabaseCollector(Collector):
    """Figures read from the database at each scrape, in four statements."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the outbox, lease and job-run gauges."""
        from tracker.notifications.health import outbox_status

        status = outbox_status(self.now)  # two statements
        messages = GaugeMetricFamily("tracker_outbox_messages", "Outbox messages by state.", labels=["state"])
        for state in NotificationState:
            messages.add_metric([state.value], status.counts.get(state.value, 0))
        yield messages
        age = status.oldest_pending_age.total_seconds() if status.oldest_pending_age else 0.0
        yield GaugeMetricFamily(
            "tracker_outbox_oldest_pending_age_seconds",
            "How long the oldest pending message has waited (0 when none waits).",
            value=age,
        )

        lease = db.session.scalar(sa.select(SchedulerLease).where(SchedulerLease.name == LEASE_NAME))
        holder = GaugeMetricFamily(
            "tracker_scheduler_lease_holder",
            "1 for the scheduler process holding the lease.",
            labels=["holder"],
        )
        if lease is not None:
            holder.add_metric([lease.holder], 1)
        yield holder
        yield GaugeMetricFamily(
            "tracker_scheduler_lease_valid",
            "1 if the scheduler's lease has not expired, else 0.",
            value=1 if lease is not None and lease.expires_at > self.now else 0,
        )
        heartbeat = GaugeMetricFamily(
            "tracker_scheduler_heartbeat_age_seconds", "Seconds since the lease holder last renewed it."
        )
        if lease is not None:
            heartbeat.add_metric([], max((self.now - lease.heartbeat_at).total_seconds(), 0.0))
        yield heartbeat

        runs = db.session.scalars(sa.select(SchedulerRun).order_by(SchedulerRun.job_id)).all()
        last = GaugeMetricFamily(
            "tracker_job_last_run_timestamp_seconds",
            "When each job's last run finished (Unix time).",
            labels=["job"],
        )
        duration = GaugeMetricFamily(
            "tracker_job_last_duration_seconds", "How long each job's last run took.", labels=["job"]
        )
        succeeded = GaugeMetricFamily(
            "tracker_job_last_succeeded", "1 if each job's last run succeeded, else 0.", labels=["job"]
        )
        for run in runs:
            last.add_metric([run.job_id], run.finished_at.timestamp())
            duration.add_metric([run.job_id], run.duration_seconds)
            succeeded.add_metric([run.job_id], 1 if run.succeeded else 0)
        yield last
        yield duration
        yield succeeded


def exposition(app: Flask) -> bytes:
    """The text exposition of every metric: requests (this process's, or every worker's in
    multiprocess mode) and the database's figures now."""
    path = multiprocess_dir()
    if path:
        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests, path=path)
    else:
        requests = app.extensions["tracker_metrics"].registry
    figures = CollectorRegistry(auto_describe=False)
    figures.register(DatabaseCollector(datetime.now(UTC)))
    try:
        database = generate_latest(figures)
        ok = 1
    except sa.exc.SQLAlchemyError:  # the request counts are still worth having
        log.exception("metrics: the database's figures could not be read")
        database, ok = b"", 0
    finally:
        db.session.rollback()  # read-only: end the transaction the figures opened
    scrape = (
        "# HELP tracker_metrics_database_ok 1 if the database's figures were read for this scrape, else 0.\n"
        f"# TYPE tracker_metrics_database_ok gauge\ntracker_metrics_database_ok {ok}\n"
    ).encode()
    return generate_latest(requests) + database + scrape


def register_metrics(app: Flask) -> None:
    """Count every request of ``app``."""
    metrics = app.extensions["tracker_metrics"] = RequestMetrics()
    app.after_request(metrics.observe)


def current_metrics() -> RequestMetrics:
    """The request metrics of the current application."""
    return current_app.extensions["tracker_metrics"]
