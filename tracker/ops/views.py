"""/healthz (the process answers), /readyz (and can use its database), /metrics (Prometheus).

None of them needs a sign-in, a session or a CSRF token; /metrics answers only a bearer token or
an allowed address, and is a plain 404 for anyone else.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from flask import Blueprint, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Response

from tracker.ops import metrics, readiness

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; touches no database."""
    return Response("ok", mimetype="text/plain", headers={"Cache-Control": "no-store"})


@bp.get("/readyz")
def readyz() -> Response:
    """The database answers and its schema is at the code's migration head (else 503)."""
    from tracker import ROOT

    result = readiness.check(current_app._get_current_object(), str(ROOT / "migrations"))  # type: ignore[attr-defined]
    return Response(
        json.dumps(result.body),
        200 if result.ready else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus text exposition, for the metrics token or an allowed address only."""
    if not _may_scrape():
        abort(404)
    body = metrics.exposition(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(body, mimetype=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _may_scrape() -> bool:
    """True for ``Authorization: Bearer <TRACKER_METRICS_TOKEN>`` or an address in TRACKER_METRICS_ALLOW."""
    token = current_app.config.get("TRACKER_METRICS_TOKEN")
    sent = request.headers.get("Authorization", "")
    if (
        token
        and sent.startswith("Bearer ")
        and hmac.compare_digest(sent[len("Bearer ") :].strip().encode(), token.encode())
    ):
        return True
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    return any(address in network for network in current_app.extensions["tracker_metrics_allow"])


def allowed_networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """TRACKER_METRICS_ALLOW as networks (an address is a network of one)."""
    from config import ConfigError

    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"TRACKER_METRICS_ALLOW must list addresses or networks (10.0.0.0/8), not {entry!r}"
            ) from None
    return networks
