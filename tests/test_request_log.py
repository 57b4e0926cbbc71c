"""Request ids on every answer and error page, one log line per request, and JSON log lines."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

from tracker import ROOT


def test_a_good_incoming_request_id_is_kept_and_a_bad_one_replaced(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "nginx-42.a_b"}).headers["X-Request-ID"]
        == "nginx-42.a_b"
    )
    for bad in ("has space", "x" * 65, "semi;colon", ""):
        made = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
    first, second = (client.get("/healthz").headers["X-Request-ID"] for _ in range(2))
    assert first != second


def test_error_pages_show_the_request_id(client):
    page = client.get("/no/such/page", headers={"X-Request-ID": "req-404-page"})
    assert page.status_code == 404
    assert "Request ID: req-404-page" in page.text
    api = client.get("/api/v1/actions", headers={"X-Request-ID": "req-api-401"})
    assert api.status_code == 401
    assert api.json["request_id"] == "req-api-401" == api.headers["X-Request-ID"]
    missing = client.get("/api/v1/no-such-thing", headers={"Authorization": "Bearer nonsense"})
    assert missing.json["request_id"] == missing.headers["X-Request-ID"]


def test_one_log_line_per_request(app, world, login_as, caplog):
    caplog.set_level(logging.INFO, logger="tracker.request")
    signed_in = login_as(world.users["focal_sg"])
    caplog.clear()
    response = signed_in.get("/healthz?secret=1", headers={"X-Request-ID": "req-log-1"})
    assert response.status_code == 200
    signed_in.get(f"/actions/{world.items['SG']}", headers={"X-Request-ID": "req-log-2"})
    app.test_client().get("/no/such/page", headers={"X-Request-ID": "req-log-3"})
    lines = [r for r in caplog.records if r.name == "tracker.request"]
    assert len(lines) == 3, [r.getMessage() for r in lines]
    health, page, missing = lines
    assert re.fullmatch(
        r"GET /healthz 200 \d+\.\d ms request_id=req-log-1 user=- remote=127\.0\.0\.1", health.getMessage()
    )
    assert "secret" not in health.getMessage()
    assert page.getMessage().startswith(f"GET /actions/{world.items['SG']} 200 ")
    assert (
        f"user={world.user_ids['focal_sg']}" in page.getMessage()
        and page.user_id == world.user_ids["focal_sg"]
    )
    assert missing.status == 404 and missing.path == "/no/such/page" and missing.request_id == "req-log-3"


def _run_app(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL"))}
    environment.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'log.db'}",
        SECRET_KEY="request-log-test-secret",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


APP_CODE = """
import logging
from wsgi import app
client = app.test_client()
client.get("/healthz", headers={"X-Request-ID": "json-req-1"})
client.get("/no/such/page", headers={"X-Request-ID": "json-req-2"})
logging.getLogger("tracker.somewhere").warning("outside %s", "a request", extra={"office": "SG"})
"""


def test_json_log_format_writes_one_object_per_line(tmp_path):
    done = _run_app(APP_CODE, tmp_path, TRACKER_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every line is an object
    requests = [e for e in entries if e["logger"] == "tracker.request"]
    assert [(e["request_id"], e["status"], e["path"]) for e in requests] == [
        ("json-req-1", 200, "/healthz"),
        ("json-req-2", 404, "/no/such/page"),
    ]
    assert {"time", "level", "message", "method", "duration_ms", "remote_addr"} <= set(requests[0])
    (other,) = [e for e in entries if e["logger"] == "tracker.somewhere"]
    assert other["message"] == "outside a request" and other["office"] == "SG" and other["level"] == "WARNING"
    assert "request_id" not in other


def test_text_log_format_is_the_default(tmp_path):
    done = _run_app(APP_CODE, tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"INFO tracker\.request: GET /healthz 200 .* request_id=json-req-1 ", done.stderr)
    assert "WARNING tracker.somewhere: outside a request" in done.stderr


def test_an_unknown_log_format_is_refused(tmp_path):
    done = _run_app("from wsgi import app", tmp_path, TRACKER_LOG_FORMAT="xml")
    assert done.returncode != 0 and "TRACKER_LOG_FORMAT must be one of text, json" in done.stderr
