"""Operations: health and readiness checks, Prometheus metrics, request ids and request logs."""

from __future__ import annotations

from flask import Flask

from tracker.extensions import csrf


def register_ops(app: Flask) -> None:
    """Install logging, request ids and logs, request metrics and the /healthz /readyz /metrics routes."""
    from tracker.ops import logs, metrics, views

    # Under test the runner owns the handlers (and the captured output); elsewhere, ours.
    logs.configure_logging(app.config["TRACKER_LOG_FORMAT"], install_handler=not app.testing)
    app.extensions["tracker_metrics_allow"] = views.allowed_networks(
        tuple(app.config["TRACKER_METRICS_ALLOW"])
    )
    logs.register_request_log(app)
    metrics.register_metrics(app)
    csrf.exempt(views.bp)  # GET only; exempt anyway, so no check ever touches the session
    app.register_blueprint(views.bp)
