"""/healthz, /readyz and /metrics: the contract deploy/check.sh and Prometheus rely on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import stamp_head
from tracker import ROOT, create_app
from tracker.extensions import db
from tracker.models import Notification, SchedulerLease, SchedulerRun
from tracker.ops.readiness import code_heads, script_directory

MIGRATIONS = str(ROOT / "migrations")
HEAD = ",".join(code_heads(MIGRATIONS))
OUTSIDER = {"REMOTE_ADDR": "203.0.113.9"}


def _count_statements(app):
    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    return statements, lambda: sa.event.remove(engine, "before_cursor_execute", note)


def test_healthz_answers_ok_without_database_session_or_limits(app):
    client = app.test_client()
    statements, stop = _count_statements(app)
    try:
        for _ in range(30):  # no rate limit
            response = client.get("/healthz")
            assert response.status_code == 200
    finally:
        stop()
    assert response.text == "ok" and response.mimetype == "text/plain"
    assert "Set-Cookie" not in response.headers
    assert statements == []


@pytest.fixture
def migrated(app):
    """The test database stamped at ``revision`` (the tests' tables come from create_all)."""

    def stamp(revision: str | None) -> None:
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL)")
            )
            conn.execute(sa.text("DELETE FROM alembic_version"))
            if revision is not None:
                conn.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})

    yield stamp
    with app.app_context():
        stamp_head()  # as conftest left it


def test_readyz_is_ready_at_the_head(app, migrated):
    migrated(HEAD)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {"status": "ready", "database": "ok", "migrations": "current", "revision": HEAD}


def test_readyz_names_migrations_behind_or_ahead(app, migrated):
    previous = script_directory(MIGRATIONS).get_revision(HEAD).down_revision
    client = app.test_client()
    migrated(previous)
    behind = client.get("/readyz")
    assert behind.status_code == 503
    assert behind.json == {
        "status": "not ready",
        "database": "ok",
        "migrations": "behind",
        "revision": HEAD,
        "database_revision": previous,
    }
    migrated(None)  # never migrated
    assert client.get("/readyz").json["migrations"] == "behind"
    migrated("0123456789ab")  # a newer release's revision
    ahead = client.get("/readyz")
    assert ahead.status_code == 503
    assert ahead.json["migrations"] == "ahead" and ahead.json["database_revision"] == "0123456789ab"


def test_readyz_answers_within_3_s_when_postgresql_does_not(tmp_path):
    """A server that takes the connection and never answers: /readyz says so in time; /healthz is fine."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = listener.getsockname()[1]
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"postgresql://nobody@127.0.0.1:{port}/tracker"})
        client = app.test_client()
        started = time.monotonic()
        response = client.get("/readyz")
        took = time.monotonic() - started
        assert response.status_code == 503
        assert response.json["status"] == "not ready"
        assert response.json["database"] in {"ConnectionTimeout", "OperationalError", "timeout"}
        assert took < 3.5, took
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 0.5
    finally:
        listener.close()


def test_readyz_names_a_refused_connection():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"postgresql://nobody@127.0.0.1:{port}/tracker"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["database"] == "OperationalError"


def test_metrics_are_not_advertised_to_others(app, mail_settings):
    client = app.test_client()
    assert client.get("/metrics", environ_base=OUTSIDER).status_code == 404
    mail_settings(TRACKER_METRICS_TOKEN="s3cret-token-for-metrics")
    assert (
        client.get("/metrics", environ_base=OUTSIDER, headers={"Authorization": "Bearer wrong"}).status_code
        == 404
    )
    answer = client.get(
        "/metrics", environ_base=OUTSIDER, headers={"Authorization": "Bearer s3cret-token-for-metrics"}
    )
    assert answer.status_code == 200
    assert client.get("/metrics").status_code == 200  # 127.0.0.1 is allowed by default


def test_metrics_allow_list_takes_networks(app):
    from tracker.ops.views import allowed_networks

    saved = app.extensions["tracker_metrics_allow"]
    app.extensions["tracker_metrics_allow"] = allowed_networks(("10.0.0.0/8", "2001:db8::1"))
    try:
        client = app.test_client()
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::1"}).status_code == 200
        assert client.get("/metrics").status_code == 404  # 127.0.0.1 no longer listed
    finally:
        app.extensions["tracker_metrics_allow"] = saved


def test_metrics_allow_refuses_nonsense(monkeypatch):
    from config import ConfigError

    with pytest.raises(ConfigError, match="TRACKER_METRICS_ALLOW"):
        create_app({"TRACKER_METRICS_ALLOW": ("10.0.0.0/33",)})


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_count_requests_by_endpoint_and_read_the_database(app, world):
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(
            SchedulerLease(
                name="main",
                holder="host:1:abc",
                expires_at=now + timedelta(seconds=30),
                heartbeat_at=now - timedelta(seconds=5),
            )
        )
        db.session.add(
            SchedulerRun(
                job_id="compose",
                holder="host:1:abc",
                started_at=now - timedelta(seconds=2),
                finished_at=now - timedelta(seconds=1),
                duration_seconds=0.42,
                succeeded=True,
                detail="2 reminders, 0 digests",
            )
        )
        db.session.add(
            SchedulerRun(
                job_id="dispatch",
                holder="host:1:abc",
                started_at=now,
                finished_at=now,
                duration_seconds=0.1,
                succeeded=False,
                detail="OSError: boom",
            )
        )
        owner = world.user_ids["focal_sg"]
        for n, state in enumerate(["pending", "pending", "sent"]):
            db.session.add(
                Notification(
                    kind="overdue",
                    recipient_id=owner,
                    to_address="focal.sg@example.test",
                    idempotency_key=f"k{n}",
                    subject="s",
                    body_text="t",
                    body_html="h",
                    state=state,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now - timedelta(minutes=10 - n),
                )
            )
        db.session.commit()
    client = app.test_client()
    before = _samples(client.get("/metrics").text)
    key = 'tracker_http_requests_total{endpoint="ops.healthz",method="GET",status="200"}'
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no/such/page/4711")
    client.open("/healthz", method="BREW")
    text = client.get("/metrics").text
    samples = _samples(text)
    assert samples[key] - before.get(key, 0) == 2
    assert 'tracker_http_requests_total{endpoint="unmatched",method="GET",status="404"}' in samples
    # A routing error matched no endpoint; an unknown method is "other".
    assert 'tracker_http_requests_total{endpoint="unmatched",method="other",status="405"}' in samples
    assert "/no/such/page" not in text  # paths never become labels
    assert 'tracker_http_request_duration_seconds_count{endpoint="ops.healthz"}' in samples
    assert samples['tracker_outbox_messages{state="pending"}'] == 2
    assert samples['tracker_outbox_messages{state="sent"}'] == 1
    assert samples['tracker_outbox_messages{state="failed"}'] == 0
    assert 595 <= samples["tracker_outbox_oldest_pending_age_seconds"] <= 660
    assert samples['tracker_scheduler_lease_holder{holder="host:1:abc"}'] == 1
    assert samples["tracker_scheduler_lease_valid"] == 1
    assert 4 <= samples["tracker_scheduler_heartbeat_age_seconds"] <= 60
    assert samples['tracker_job_last_duration_seconds{job="compose"}'] == pytest.approx(0.42)
    assert samples['tracker_job_last_succeeded{job="compose"}'] == 1
    assert samples['tracker_job_last_succeeded{job="dispatch"}'] == 0
    assert abs(samples['tracker_job_last_run_timestamp_seconds{job="compose"}'] - (now.timestamp() - 1)) < 1
    assert samples["tracker_metrics_database_ok"] == 1


def test_metrics_without_lease_or_runs(app):
    samples = _samples(app.test_client().get("/metrics").text)
    assert not any(name.startswith("tracker_scheduler_lease_holder") for name in samples)
    assert samples["tracker_scheduler_lease_valid"] == 0
    assert samples["tracker_outbox_oldest_pending_age_seconds"] == 0
    assert {samples[f'tracker_outbox_messages{{state="{s}"}}'] for s in ("pending", "sent", "failed")} == {0}


def test_metrics_read_the_database_in_four_statements(app, world):
    now = datetime.now(UTC)
    with app.app_context():
        for job in ("compose", "dispatch", "purge", "jobs"):
            db.session.add(
                SchedulerRun(
                    job_id=job,
                    holder="h",
                    started_at=now,
                    finished_at=now,
                    duration_seconds=1,
                    succeeded=True,
                )
            )
        db.session.commit()
    client = app.test_client()
    statements, stop = _count_statements(app)
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        stop()
    assert len(statements) == 4, statements


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_workers_add_their_counts_up_in_multiprocess_mode(database_url, app, tmp_path):
    """Two real gunicorn workers, one PROMETHEUS_MULTIPROC_DIR: a scrape counts every worker's requests."""
    port = _free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over by an earlier run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL"))}
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="gunicorn-test-secret",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/metrics", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)

        def get(n: int) -> str:
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
                assert answer.read() == b"ok"
                return answer.headers["X-Request-ID"]

        # A half-sent request keeps one sync worker busy, so the other answers the next 40.
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        time.sleep(0.5)
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(get, range(40)))
        held.sendall(b"Connection: close\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        held.close()
        with ThreadPoolExecutor(4) as pool:
            ids += list(pool.map(get, range(39)))
        assert len(set(ids)) == 79
        writers = {p.name for p in metrics_dir.glob("counter_*.db")}
        assert "counter_999999.db" not in writers  # emptied at start
        assert len(writers) == 2, writers  # both workers counted some
        text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert (
            _samples(text)['tracker_http_requests_total{endpoint="ops.healthz",method="GET",status="200"}']
            == 80
        )
        assert "# HELP tracker_http_requests_total" in text
        log_text = (tmp_path / "gunicorn.log").read_text()
        assert (
            log_text.count("GET /healthz 200") == 80
        )  # the application's lines; no access log of gunicorn's
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def test_the_default_registry_counts_this_process_only(app):
    """Without PROMETHEUS_MULTIPROC_DIR (this test process) the counts live in the app's registry."""
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    from prometheus_client import values

    assert values.ValueClass.__name__ != "MmapedValue"
    client = app.test_client()
    registry = app.extensions["tracker_metrics"].registry
    labels = {"endpoint": "ops.healthz", "method": "GET", "status": "200"}
    before = registry.get_sample_value("tracker_http_requests_total", labels) or 0
    client.get("/healthz")
    assert registry.get_sample_value("tracker_http_requests_total", labels) == before + 1


def test_gunicorn_writes_json_lines_with_the_json_log_format(database_url, app, tmp_path):
    """TRACKER_LOG_FORMAT=json: gunicorn's own lines and the application's are all JSON objects."""
    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "PROMETHEUS"))
    }
    env.update(
        TRACKER_CONFIG="development",
        DATABASE_URL=database_url,
        SECRET_KEY="gunicorn-test-secret",
        WEB_CONCURRENCY="1",
        TRACKER_LOG_FORMAT="json",
    )
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    loggers = {e["logger"] for e in entries}
    assert {"gunicorn.error", "tracker.request"} <= loggers, entries
    assert any("Booting worker" in e["message"] for e in entries)
    requests = [e for e in entries if e["logger"] == "tracker.request"]
    assert requests and all(e.get("request_id") for e in requests)
    assert len({e["request_id"] for e in requests}) == len(requests)  # each line once, not doubled
