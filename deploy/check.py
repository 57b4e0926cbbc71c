"""The end-to-end check (``bash deploy/check.sh``): tracker on several "hosts" on one machine,
parts of it killed under load, and a verdict on whether everything held.

It starts, in a fresh PostgreSQL database (``tracker_check``): its own redis-server (no
persistence, on a free port), an SMTP sink (aiosmtpd, its own process, logging each message's
Message-ID and recipients), two gunicorn "hosts" (deploy/gunicorn.conf.py, 2 workers each, each
with its own empty upload folder and metrics folder), nginx in front of them (a site built from
deploy/nginx/tracker.conf, plain HTTP on a free port) and two schedulers (a short lease). It seeds
the demo data, then drives a mixed load through nginx and both hosts: sign-ins, lists, updates
with evidence files, downloads of every file through each host and nginx, API reads and writes.
Meanwhile it kills the active scheduler (kill -9), one web host (SIGKILL, master and workers),
restarts Redis and brings the host back, polling /readyz and /metrics all along.

It fails (exit 1) unless: no request failed except those in flight on the killed host; every
upload downloads identically through both hosts and nginx; every message sent was delivered
exactly once (one duplicate allowed, from the killed scheduler's message in flight); the standby
took over within 60 s as /metrics shows; /readyz answered 200 for live hosts and nothing (or 503)
for the dead one; /metrics names the lease holder the database names.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LOCAL = "127.0.0.1"
PASSWORD = "demo-password"
OFFICE_CODES = ["SG", "MY", "TH", "ID", "PH", "VN", "KH", "LA", "MN", "BD", "BN", "LK"]
TAKEOVER_LIMIT = 60.0

#: When each fault is made, in seconds from the start of the load (LOAD_SECONDS in all).
LOAD_SECONDS = 75.0
KILL_SCHEDULER_AT = 12.0
KILL_HOST_AT = 22.0
STOP_REDIS_AT = 32.0
START_REDIS_AT = 40.0
RESTART_HOST_AT = 48.0


# --- small helpers ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now (on loopback)."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def message_id(key: str, host: str) -> str:
    """The Message-ID dispatch gives the row with this idempotency key (tracker/notifications/dispatch.py)."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{host}>"


def log(text: str) -> None:
    """One progress line, with the time since the check started."""
    print(f"[{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


STARTED = time.monotonic()


# --- the SMTP sink (a process of its own: `check.py --smtp-sink PORT FILE`) ----------------------


def run_smtp_sink(port: int, path: Path) -> None:
    """Accept every message on loopback; append its Message-ID, recipients and time to ``path``."""
    import asyncio
    from email.parser import BytesHeaderParser

    from aiosmtpd.controller import Controller

    out = path.open("a", encoding="utf-8")

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
            # A little latency, like a real relay: a scheduler killed mid-dispatch has mail in flight.
            await asyncio.sleep(0.1)
            record = {"message_id": headers.get("Message-ID"), "rcpt": envelope.rcpt_tos, "at": time.time()}
            out.write(json.dumps(record) + "\n")
            out.flush()
            return "250 2.0.0 Accepted"

    controller = Controller(Handler(), hostname=LOCAL, port=port, data_size_limit=1 << 26)
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


# --- processes ----------------------------------------------------------------------------------


class Processes:
    """Every process the check starts, so that all of them are stopped however the check ends."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.pidfile = work / "pids"

    def start(
        self, name: str, command: list[str], env: dict[str, str], log_name: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own session (so a kill can take its children), output to a log."""
        path = self.work / "logs" / (log_name or f"{name}.log")
        out = path.open("ab")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.running[name] = process
        self.logs[name] = path
        # deploy/check.sh's EXIT trap ends whatever is listed here, should this process die first.
        with self.pidfile.open("a") as pids:
            pids.write(f"{process.pid}\n")
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole session of ``name`` (a gunicorn master and its workers)."""
        process = self.running.get(name)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        process = self.running.get(name)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill(name)

    def stop_all(self) -> None:
        """Stop every process started (nginx and the hosts first, then the rest)."""
        for name in sorted(self.running, key=lambda n: (not n.startswith(("nginx", "web")), n)):
            self.stop(name)


def flask(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run ``flask --app wsgi <args>``; its standard output; raises with the output on failure."""
    done = subprocess.run(
        [PY, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(
            f"flask {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers with anything below 500."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process for {url} stopped (status {process.returncode})")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=3).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def wait_port(port: int, timeout: float) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOCAL, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


# --- nginx ---------------------------------------------------------------------------------------


def block(text: str, opener: str) -> tuple[int, int]:
    """Start and end offsets of the first ``opener { … }`` block (balanced braces) in ``text``."""
    match = re.search(opener, text)
    if match is None:
        raise ValueError(f"no block matching {opener!r} in the nginx site")
    depth = 0
    for index in range(text.index("{", match.start()), len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return match.start(), index + 1
    raise ValueError(f"unbalanced braces after {opener!r}")


def check_site(site: str, port: int, web_ports: list[int], static_dir: Path) -> str:
    """The check's site, from deploy/nginx/tracker.conf: its upstream with our hosts, and its HTTPS
    server's settings and locations on plain HTTP (the check has no certificate), plus a header
    naming the host that answered (to tell which failures the killed host caused)."""
    start, end = block(site, r"upstream\s+tracker_web\s*\{")
    upstream = site[start:end]
    params = re.search(r"^\s*server\s+\S+([^;]*);", upstream, re.M)
    options = params.group(1) if params else ""
    servers = "".join(f"    server {LOCAL}:{p}{options};\n" for p in web_ports)
    upstream = "upstream tracker_web {\n" + servers + "}\n"

    start, end = block(site, r"server\s*\{(?=[^{}]*listen\s+443)")
    body = site[site.index("{", start) + 1 : end - 1]
    kept = [
        line for line in body.splitlines() if not re.match(r"\s*(listen|server_name|ssl_\w+|http2)\b", line)
    ]
    body = "\n".join(kept)
    body = re.sub(r"alias\s+[^;]+;", f"alias {static_dir}/;", body)
    server = (
        "server {\n"
        f"    listen {LOCAL}:{port};\n"
        "    server_name localhost;\n"
        "    add_header X-Upstream $upstream_addr always;\n"
        f"{body}\n}}\n"
    )
    return upstream + server


def nginx_conf(work: Path, site: str) -> Path:
    """A whole nginx.conf for ``nginx -p <work>/nginx -c …``: everything under the check's folder."""
    prefix = work / "nginx"
    for sub in ("logs", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
        # Run as root, nginx's workers are "nobody": they write request bodies here.
        (prefix / sub).chmod(0o777)
    user = ""
    if os.geteuid() == 0:
        import grp

        group = "nogroup" if any(g.gr_name == "nogroup" for g in grp.getgrall()) else "nobody"
        user = f"user nobody {group};\n"
    conf = f"""{user}worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format check '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                     'upstream=$upstream_addr upstream_status=$upstream_status '
                     'rt=$request_time id=$request_id';
    access_log {prefix}/logs/access.log check;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


# --- what the load records ----------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP request of the load: where it went, when, and how it ended."""

    kind: str
    target: str
    method: str
    path: str
    start: float
    end: float = 0.0
    status: int | None = None
    error: str | None = None
    upstream: str = ""
    ok: bool = False


@dataclass
class Upload:
    """One evidence file sent with an update, and the session that may read it."""

    file_id: int
    name: str
    digest: str
    size: int
    session: Any
    via: str


@dataclass
class Events:
    """When each fault happened (monotonic seconds), for judging what was allowed to fail."""

    scheduler_killed: float | None = None
    scheduler_killed_wall: float | None = None
    killed_holder: str | None = None
    standby_holder: str | None = None
    host_kill_start: float | None = None
    host_kill_end: float | None = None
    host_restart: float | None = None
    host_back: float | None = None
    redis_down: float | None = None
    redis_up: float | None = None


class Check:
    """The whole check: set up, load, faults, verdict."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # deploy/check.sh makes the folder (its EXIT trap reads the process ids kept there).
        self.work = Path(os.environ.get("CHECK_WORK") or tempfile.mkdtemp(prefix="tracker-check-"))
        self.work.chmod(0o755)
        (self.work / "logs").mkdir(exist_ok=True)
        self.procs = Processes(self.work)
        self.ports = {name: free_port() for name in ("nginx", "web1", "web2", "redis", "smtp")}
        self.metrics_token = secrets.token_urlsafe(24)
        self.calls: list[Call] = []
        self.uploads: list[Upload] = []
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.down: set[str] = set()
        self.events = Events()
        self.readyz: list[tuple[float, str, int | None, str]] = []
        self.metrics_holders: list[tuple[float, str, str | None]] = []
        self.db_holders: list[tuple[float, str | None]] = []
        self.missing: list[str] = []
        self.problems: list[str] = []
        self.database_url = ""
        self.tokens: dict[str, str] = {}

    # --- setting up -------------------------------------------------------------------------

    def targets(self) -> dict[str, str]:
        """Base URLs: nginx and each host directly."""
        return {
            "nginx": f"http://{LOCAL}:{self.ports['nginx']}",
            "web1": f"http://{LOCAL}:{self.ports['web1']}",
            "web2": f"http://{LOCAL}:{self.ports['web2']}",
        }

    def database(self) -> str:
        """Drop and create the check's database; its URL."""
        import psycopg

        bases = []
        if os.environ.get("CHECK_PG_URL"):
            bases.append(os.environ["CHECK_PG_URL"].rstrip("/"))
        if os.environ.get("TEST_DATABASE_URL"):
            bases.append(os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0])
        bases += ["postgresql://postgres@127.0.0.1:5432", "postgresql://postgres:postgres@127.0.0.1:5432"]
        last: Exception | None = None
        for base in bases:
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {self.args.database} WITH (FORCE)")
                    conn.execute(f"CREATE DATABASE {self.args.database}")
                return f"{base}/{self.args.database}"
            except psycopg.Error as exc:
                last = exc
        raise RuntimeError(f"cannot create the check database on PostgreSQL at 127.0.0.1:5432: {last}")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every tracker process of the check shares (as a tracker.env would)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "MAIL_", "PROMETHEUS_"))}
        env.update(
            TRACKER_CONFIG="production",
            SECRET_KEY=self.secret_key,
            DATABASE_URL=self.database_url,
            TRACKER_BASE_URL=self.targets()["nginx"],
            TRACKER_PROXIES="1",
            SESSION_COOKIE_SECURE="false",  # plain HTTP in the check
            TRACKER_2FA_REQUIRED_ROLES="",  # the demo accounts sign in with a password
            TRACKER_LOGIN_RATE_LIMIT="3000 per minute",  # every sign-in comes from 127.0.0.1
            RATELIMIT_STORAGE_URI=f"redis://{LOCAL}:{self.ports['redis']}",
            MAIL_SERVER=LOCAL,
            MAIL_PORT=str(self.ports["smtp"]),
            MAIL_DEFAULT_SENDER="tracker@check.test",
            TRACKER_LEASE_SECONDS="20",
            TRACKER_LEASE_RENEW_SECONDS="5",
            TRACKER_DISPATCH_EVERY_SECONDS="2",
            TRACKER_COMPOSE_EVERY_SECONDS="5",
            TRACKER_DISPATCH_CLAIM_SECONDS="15",
            TRACKER_METRICS_TOKEN=self.metrics_token,
            TRACKER_LOG_FORMAT="json",
            TRACKER_UPLOAD_DIR=str(self.work / "shared-nothing"),  # each host overrides it
        )
        env.update(extra)
        return env

    def host_env(self, name: str) -> dict[str, str]:
        """A web host's environment: its own upload folder and metrics folder (emptied)."""
        home = self.work / name
        prom = home / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        (home / "uploads").mkdir(parents=True, exist_ok=True)
        return self.env(
            TRACKER_UPLOAD_DIR=str(home / "uploads"),
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            WEB_CONCURRENCY="2",
        )

    def start_web(self, name: str) -> None:
        """gunicorn with deploy/gunicorn.conf.py (2 workers) on this host's port."""
        conf = ROOT / "deploy" / "gunicorn.conf.py"
        command = [PY, "-m", "gunicorn"]
        if conf.is_file():
            command += ["-c", str(conf)]
        command += ["--workers", "2", "--bind", f"{LOCAL}:{self.ports[name]}", "wsgi:app"]
        process = self.procs.start(name, command, self.host_env(name), log_name=f"{name}.log")
        wait_http(f"{self.targets()[name]}/auth/login", 60, process)

    def start_redis(self) -> None:
        """Our own redis-server: no snapshots, no append-only file, on its own port."""
        process = self.procs.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.ports["redis"]),
                "--bind",
                LOCAL,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work),
            ],
            dict(os.environ),
        )
        wait_port(self.ports["redis"], 10)
        if process.poll() is not None:
            raise RuntimeError("redis-server stopped at once")

    def setup(self) -> None:
        """The database with the demo data, then every process, then tokens and the action lists."""
        self.secret_key = secrets.token_urlsafe(48)
        self.database_url = self.database()
        log(f"database {self.database_url}")
        if not (ROOT / "deploy" / "gunicorn.conf.py").is_file():
            self.missing.append("deploy/gunicorn.conf.py (B): the hosts run with gunicorn's defaults")
        flask(self.env(), "db", "upgrade")
        flask(self.env(), "tracker", "seed-demo", "--password", PASSWORD)
        # The demo's history holds mail marked sent long ago: the check judges only newer rows.
        self.seeded_mail = self.last_notification()
        log("schema and demo data in place")
        for who in ("reviewer@demo.test", "admin@demo.test"):
            self.tokens[who] = flask(self.env(), "tracker", "create-token", who, "--name", "check").strip()
        self.start_redis()
        self.procs.start(
            "smtp",
            [PY, str(Path(__file__).resolve()), "--smtp-sink", str(self.ports["smtp"]), str(self.sink_log)],
            dict(os.environ),
        )
        wait_port(self.ports["smtp"], 15)
        static = self.work / "static"
        shutil.copytree(ROOT / "tracker" / "static", static)  # readable by nginx's "nobody"
        for path in [static, *static.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        site = check_site(
            (ROOT / "deploy" / "nginx" / "tracker.conf").read_text(),
            self.ports["nginx"],
            [self.ports["web1"], self.ports["web2"]],
            static,
        )
        conf = nginx_conf(self.work, site)
        tested = subprocess.run(
            ["nginx", "-t", "-p", str(self.work / "nginx"), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if tested.returncode:
            raise RuntimeError(f"nginx refuses the check's configuration {conf}:\n{tested.stderr}")
        threads = [threading.Thread(target=self.start_web, args=(n,)) for n in ("web1", "web2")]
        for t in threads:
            t.start()
        for n in ("1", "2"):
            self.procs.start(
                f"scheduler{n}", [PY, "-m", "flask", "--app", "wsgi", "tracker", "scheduler"], self.env()
            )
        self.procs.start(
            "nginx", ["nginx", "-p", str(self.work / "nginx"), "-c", str(conf)], dict(os.environ)
        )
        for t in threads:
            t.join()
        for name in ("web1", "web2"):
            if self.procs.running[name].poll() is not None:
                raise RuntimeError(f"{name} did not start; see {self.procs.logs[name]}")
        wait_http(f"{self.targets()['nginx']}/auth/login", 15, self.procs.running["nginx"])
        log(f"2 hosts, nginx, 2 schedulers, redis and the SMTP sink are up; logs in {self.work / 'logs'}")
        self.probe_contract()
        self.load_plan()

    def last_notification(self) -> int:
        """The highest notification id so far (0 for none)."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM notification").fetchone()[0]

    @property
    def sink_log(self) -> Path:
        return self.work / "logs" / "smtp-received.jsonl"

    def probe_contract(self) -> None:
        """Say which parts of the operations contract (B) are missing; check the proxy's own rules."""
        import requests

        base = self.targets()["web1"]
        head = {"Authorization": f"Bearer {self.metrics_token}"}
        health = requests.get(f"{base}/healthz", timeout=10)
        if health.status_code != 200:
            self.missing.append(f"GET /healthz answers {health.status_code} (B: tracker/ops)")
        ready = requests.get(f"{base}/readyz", timeout=10)
        if ready.status_code != 200 or "ready" not in ready.text:
            self.missing.append(f"GET /readyz answers {ready.status_code} (B: tracker/ops)")
        metrics = requests.get(f"{base}/metrics", headers=head, timeout=10)
        if metrics.status_code != 200 or "tracker_scheduler_lease_holder" not in metrics.text:
            self.missing.append(
                f"GET /metrics answers {metrics.status_code} without the lease holder (B: tracker/ops)"
            )
        if "X-Request-ID" not in health.headers:
            self.missing.append("no X-Request-ID on answers (B: tracker/ops)")
        nginx = self.targets()["nginx"]
        outside = requests.get(f"{nginx}/metrics", headers=head, timeout=10)
        if outside.status_code != 403:
            self.problems.append(
                f"nginx lets /metrics through from a non-monitoring address ({outside.status_code})"
            )
        static_file = next(p for p in (ROOT / "tracker" / "static").rglob("*.css"))
        rel = static_file.relative_to(ROOT / "tracker" / "static").as_posix()
        served = requests.get(f"{nginx}/static/{rel}", timeout=10)
        if (
            served.status_code != 200
            or served.content != static_file.read_bytes()
            or "X-Upstream" in served.headers
        ):
            self.problems.append(f"nginx does not serve /static/{rel} itself ({served.status_code})")
        elif "max-age" not in served.headers.get("Cache-Control", ""):
            self.problems.append(f"nginx serves /static/{rel} without a cache lifetime")
        # nginx's request id reaches the application and comes back on the answer.
        traced = requests.get(f"{nginx}/healthz", timeout=10)
        request_id = traced.headers.get("X-Request-ID", "")
        time.sleep(0.2)
        access = (self.work / "nginx" / "logs" / "access.log").read_text()
        if not re.fullmatch(r"[0-9a-f]{32}", request_id) or f"id={request_id}" not in access:
            self.problems.append(f"the answer's X-Request-ID {request_id!r} is not nginx's $request_id")
        print(
            f"  nginx: /static/{rel} served by nginx ({served.headers.get('Cache-Control')}); "
            f"/metrics through nginx {outside.status_code}; X-Request-ID {request_id} in its log: "
            f"{f'id={request_id}' in access}"
        )

    def load_plan(self) -> None:
        """Open actions per office and the recommendations, read through the API as the reviewer."""
        import requests

        head = {"Authorization": f"Bearer {self.tokens['reviewer@demo.test']}"}
        base = self.targets()["nginx"] + "/api/v1"
        self.open_actions: dict[str, list[int]] = {}
        for code in OFFICE_CODES:
            found = requests.get(
                f"{base}/actions", params={"office": code, "per_page": 100}, headers=head, timeout=30
            )
            found.raise_for_status()
            self.open_actions[code] = [
                a["id"]
                for a in found.json()["items"]
                if a["status"] in ("not_started", "in_progress", "blocked")
            ]
        recs = requests.get(f"{base}/recommendations", params={"per_page": 100}, headers=head, timeout=30)
        recs.raise_for_status()
        self.recommendations = [r["id"] for r in recs.json()["items"]]
        log(
            f"{sum(map(len, self.open_actions.values()))} open actions in {len(OFFICE_CODES)} offices, "
            f"{len(self.recommendations)} recommendations"
        )

    # --- the load ---------------------------------------------------------------------------

    def alive(self, target: str) -> bool:
        return target not in self.down

    def pick(self, rng: random.Random, nginx_share: float = 0.6) -> str:
        """nginx most of the time, else a host directly (one that is up)."""
        if rng.random() < nginx_share:
            return "nginx"
        hosts = [h for h in ("web1", "web2") if self.alive(h)]
        return rng.choice(hosts)

    def call(
        self,
        session: Any,
        kind: str,
        target: str,
        method: str,
        path: str,
        expect: tuple[int, ...] = (200,),
        **kw: Any,
    ) -> tuple[Call, Any]:
        """One recorded request; the response (body read) or None."""
        import requests

        if target in self.down:
            # A client that knows the host is gone goes through nginx: only requests already on
            # their way to it when it died may fail.
            target = "nginx"
        url = self.targets()[target] + path
        record = Call(kind, target, method, urlsplit(url).path, time.monotonic())
        response = None
        try:
            response = session.request(method, url, timeout=90, allow_redirects=False, stream=True, **kw)
            record.status = response.status_code
            record.upstream = response.headers.get("X-Upstream", "")
            response.content  # noqa: B018 - read the whole body: a cut answer is a failure
            record.ok = response.status_code in expect
            if not record.ok:
                detail = (
                    " ".join(response.text[:300].split())
                    if "html" not in response.headers.get("Content-Type", "")
                    else ""
                )
                record.error = f"HTTP {response.status_code} {detail}".strip()
        except requests.RequestException as exc:
            record.error = f"{type(exc).__name__}: {str(exc)[:160]}"
            response = None
        record.end = time.monotonic()
        with self.lock:
            self.calls.append(record)
        return record, response if record.ok else None

    def sign_in(self, session: Any, email: str, target: str, kind: str = "sign-in") -> bool:
        """The real form: its CSRF token, then the POST; True when it redirects (signed in)."""
        _rec, page = self.call(session, "sign-in form", target, "GET", "/auth/login")
        if page is None:
            return False
        token = csrf(page.text)
        rec, _ = self.call(
            session,
            kind,
            target,
            "POST",
            "/auth/login",
            expect=(302,),
            data={"email": email, "password": PASSWORD, "csrf_token": token},
        )
        return rec.ok

    def focal_worker(self, number: int, offices: list[str]) -> None:
        """A focal point per office: lists, then updates with evidence files, then downloads."""
        import requests

        rng = random.Random(number)
        sessions: dict[str, Any] = {}
        n = 0
        while not self.stop_load.is_set():
            code = offices[n % len(offices)]
            n += 1
            if code not in sessions or rng.random() < 0.05:
                session = requests.Session()
                if not self.sign_in(session, f"focal.{code.lower()}@demo.test", self.pick(rng)):
                    time.sleep(0.5)
                    continue
                sessions[code] = session
            session = sessions[code]
            for path in rng.sample(["/", "/my", "/recommendations", f"/offices/{code}", "/dashboard"], 2):
                self.call(session, "list", self.pick(rng), "GET", path)
            if self.open_actions.get(code):
                self.update_with_files(session, rng, number, n, rng.choice(self.open_actions[code]))
            time.sleep(rng.uniform(0.05, 0.3))

    def update_with_files(
        self, session: Any, rng: random.Random, worker: int, n: int, action_id: int
    ) -> None:
        """The update form of one action with one or two evidence files; then each file downloaded."""
        target = self.pick(rng)
        _rec, page = self.call(session, "action page", target, "GET", f"/actions/{action_id}")
        if page is None:
            return
        form = re.search(r'<form method="post" enctype="multipart/form-data".*?</form>', page.text, re.S)
        if form is None:
            return  # not ours to update after all
        html = form.group(0)
        version = re.search(r'name="version"[^>]*value="(\d+)"', html)
        statuses = re.findall(r'<option value="([a-z_]*)"', html)
        status = "in_progress" if "in_progress" in statuses else ""
        files = []
        for i in range(rng.choice((1, 1, 2))):
            name, data = evidence_file(rng, f"w{worker}-{n}-{i}")
            files.append(("files", (name, data, "application/octet-stream")))
        data = {
            "csrf_token": csrf(html),
            "version": version.group(1) if version else "",
            "status": status,
            "progress": str(rng.randrange(0, 95, 5)),
            "note": f"check update {worker}-{n}",
            "evidence_url": "",
        }
        _rec, answer = self.call(
            session,
            "update+upload",
            target,
            "POST",
            f"/actions/{action_id}",
            expect=(302,),
            data=data,
            files=files,
        )
        if answer is None:
            return
        _rec, detail = self.call(
            session,
            "action page",
            target,
            "GET",
            urlsplit(answer.headers["Location"]).path,
        )
        if detail is None:
            return
        for _field, (name, content, _type) in files:
            link = re.search(rf'href="/evidence/(\d+)">{re.escape(name)}</a>', detail.text)
            if link is None:
                with self.lock:
                    self.problems.append(f"uploaded {name} is not listed on action {action_id}")
                continue
            upload = Upload(
                int(link.group(1)), name, hashlib.sha256(content).hexdigest(), len(content), session, target
            )
            with self.lock:
                self.uploads.append(upload)
            for where in ("nginx", "web1", "web2"):
                if self.alive(where):
                    self.download(upload, where, "download")

    def download(self, upload: Upload, target: str, kind: str) -> bool:
        """One evidence file through ``target``; True when it is the very file uploaded."""
        rec, answer = self.call(upload.session, kind, target, "GET", f"/evidence/{upload.file_id}")
        if answer is None:
            return False
        if hashlib.sha256(answer.content).hexdigest() != upload.digest:
            rec.ok, rec.error = False, f"different content ({len(answer.content)} of {upload.size} bytes)"
            return False
        return True

    def api_worker(self) -> None:
        """The reviewer's API client: reads, new actions (an assignment mail each), then changes."""
        import requests

        rng = random.Random(99)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.tokens['reviewer@demo.test']}"
        created: list[int] = []
        while not self.stop_load.is_set():
            target = self.pick(rng)
            self.call(
                session,
                "api read",
                target,
                "GET",
                rng.choice(
                    [
                        "/api/v1/me",
                        "/api/v1/offices",
                        "/api/v1/actions?per_page=50",
                        "/api/v1/recommendations",
                    ]
                ),
            )
            if rng.random() < 0.35:
                code = rng.choice(OFFICE_CODES)
                body = {
                    "office": code,
                    "recommendation_id": rng.choice(self.recommendations),
                    "title": f"Check action {secrets.token_hex(4)}",
                    "owner": f"focal.{code.lower()}@demo.test",
                    "deadline": (date.today() + timedelta(days=rng.randint(30, 200))).isoformat(),
                }
                _rec, answer = self.call(
                    session, "api create", self.pick(rng), "POST", "/api/v1/actions", expect=(201,), json=body
                )
                if answer is not None:
                    created.append(answer.json()["id"])
            elif created:
                action = rng.choice(created)
                _rec, answer = self.call(
                    session, "api read", self.pick(rng), "GET", f"/api/v1/actions/{action}"
                )
                if answer is not None:
                    body = {
                        "progress": rng.randrange(0, 100, 10),
                        "note": f"check change {secrets.token_hex(3)}",
                    }
                    if answer.json()["status"] == "not_started":
                        body["status"] = "in_progress"
                    self.call(
                        session,
                        "api change",
                        self.pick(rng),
                        "PATCH",
                        f"/api/v1/actions/{action}",
                        json=body,
                        headers={"If-Match": answer.headers.get("ETag", "*")},
                    )
            time.sleep(rng.uniform(0.1, 0.4))

    def sign_in_worker(self) -> None:
        """Sign-ins all along (through Redis's restart too): a fresh session each time, then a page."""
        import requests

        rng = random.Random(7)
        people = [f"focal.{c.lower()}@demo.test" for c in OFFICE_CODES] + [
            "reviewer@demo.test",
            "manager@demo.test",
            "admin@demo.test",
        ]
        while not self.stop_load.is_set():
            session = requests.Session()
            target = self.pick(rng, 0.4)
            if self.sign_in(session, rng.choice(people), target):
                self.call(
                    session,
                    "list",
                    target,
                    "GET",
                    rng.choice(["/", "/dashboard", "/recommendations", "/my"]),
                )
            time.sleep(rng.uniform(0.3, 0.7))

    # --- watching -----------------------------------------------------------------------------

    def watch(self) -> None:
        """/readyz of each host every second, /metrics every two, the lease row every half second."""
        import psycopg
        import requests

        head = {"Authorization": f"Bearer {self.metrics_token}"}
        tick = 0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.watch_stop.is_set():
                tick += 1
                row = conn.execute("SELECT holder FROM scheduler_lease WHERE expires_at > now()").fetchone()
                self.db_holders.append((time.monotonic(), row[0] if row else None))
                if tick % 2 == 0:
                    for host in ("web1", "web2"):
                        base = self.targets()[host]
                        try:
                            answer = requests.get(
                                f"{base}/readyz", timeout=5
                            )  # a busy live host is slow, not dead
                            self.readyz.append(
                                (time.monotonic(), host, answer.status_code, answer.text[:200])
                            )
                        except requests.RequestException as exc:
                            self.readyz.append((time.monotonic(), host, None, type(exc).__name__))
                        if tick % 4 == 0:
                            with contextlib.suppress(requests.RequestException):
                                answer = requests.get(f"{base}/metrics", headers=head, timeout=5)
                                if answer.status_code == 200:
                                    self.metrics_holders.append(
                                        (time.monotonic(), host, lease_holder(answer.text))
                                    )
                self.watch_stop.wait(0.5)

    # --- the faults ---------------------------------------------------------------------------

    def faults(self, began: float) -> None:
        """Kill the active scheduler, kill a host, restart Redis, bring the host back."""

        def at(seconds: float) -> bool:
            return not self.stop_load.wait(max(0.0, began + seconds - time.monotonic()))

        if at(KILL_SCHEDULER_AT):
            self.kill_mid_dispatch()
        if at(KILL_HOST_AT):
            self.down.add("web1")
            self.events.host_kill_start = time.monotonic()
            self.procs.kill("web1")
            self.events.host_kill_end = time.monotonic()
            log("web1 killed (SIGKILL to its master and workers)")
        if at(STOP_REDIS_AT):
            self.events.redis_down = time.monotonic()
            self.procs.stop("redis")
            log("redis stopped")
        if at(START_REDIS_AT):
            self.start_redis()
            self.events.redis_up = time.monotonic()
            log("redis started again")
        if at(RESTART_HOST_AT):
            self.events.host_restart = time.monotonic()
            try:
                self.start_web("web1")
            except RuntimeError as exc:
                self.problems.append(f"web1 did not come back: {exc}")
                return
            self.events.host_back = time.monotonic()
            self.down.discard("web1")
            log("web1 is back")

    def kill_mid_dispatch(self) -> None:
        """Queue a burst of mail (an action for each office's focal point, so an assignment mail
        each), wait until the active scheduler is sending it, and kill it then."""
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.tokens['reviewer@demo.test']}"
        for code in OFFICE_CODES:
            body = {
                "office": code,
                "recommendation_id": self.recommendations[0],
                "title": f"Check burst {code}",
                "owner": f"focal.{code.lower()}@demo.test",
                "deadline": (date.today() + timedelta(days=90)).isoformat(),
            }
            self.call(session, "api create", "nginx", "POST", "/api/v1/actions", expect=(201,), json=body)
        before = self.delivered()
        deadline = time.monotonic() + 10
        while self.delivered() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        self.kill_active_scheduler()

    def delivered(self) -> int:
        """Messages the SMTP sink has received so far."""
        return self.sink_log.read_text().count("\n") if self.sink_log.exists() else 0

    def kill_active_scheduler(self) -> None:
        """kill -9 the scheduler that holds the lease (its pid is in the holder "host:pid:rand")."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT holder FROM scheduler_lease WHERE expires_at > now()").fetchone()
        if row is None:
            self.problems.append("no scheduler held the lease when the active one was to be killed")
            return
        pid = int(row[0].split(":")[-2])
        name = next(
            (n for n, p in self.procs.running.items() if n.startswith("scheduler") and p.pid == pid), None
        )
        if name is None:
            self.problems.append(f"the lease holder {row[0]} is none of the check's schedulers")
            return
        self.events.killed_holder = row[0]
        self.events.scheduler_killed = time.monotonic()
        self.events.scheduler_killed_wall = time.time()
        self.procs.kill(name)
        log(f"active scheduler {name} ({row[0]}) killed with SIGKILL")

    # --- running and judging ----------------------------------------------------------------

    def run(self) -> int:
        """Everything; 0 when every requirement held."""
        self.setup()
        self.watch_stop = threading.Event()
        watcher = threading.Thread(target=self.watch, daemon=True)
        watcher.start()
        time.sleep(2)
        began = time.monotonic()
        log(f"load for {LOAD_SECONDS:.0f} s: 4 focal points, 1 API client, 1 sign-in client")
        groups = [OFFICE_CODES[i::4] for i in range(4)]
        workers = [threading.Thread(target=self.focal_worker, args=(i, g)) for i, g in enumerate(groups)]
        workers += [threading.Thread(target=self.api_worker), threading.Thread(target=self.sign_in_worker)]
        for w in workers:
            w.start()
        faults = threading.Thread(target=self.faults, args=(began,))
        faults.start()
        time.sleep(max(0.0, began + LOAD_SECONDS - time.monotonic()))
        self.stop_load.set()
        for w in workers:
            w.join(timeout=120)
        faults.join(timeout=120)
        log(f"load over: {len(self.calls)} requests, {len(self.uploads)} files uploaded")
        verified = self.verify_downloads()
        drained = self.drain()
        self.watch_stop.set()
        watcher.join(timeout=10)
        return self.verdict(verified, drained)

    def verify_downloads(self) -> tuple[int, int]:
        """Every uploaded file through each host directly and through nginx: (checked, identical)."""
        checked = same = 0
        for upload in self.uploads:
            for where in ("web1", "web2", "nginx"):
                checked += 1
                same += self.download(upload, where, "final download")
        return checked, same

    def drain(self) -> bool:
        """Wait (at most 90 s) until the outbox holds no pending message and the sink is quiet."""
        import psycopg

        deadline = time.monotonic() + 90
        quiet = 0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                pending = conn.execute(
                    "SELECT count(*) FROM notification WHERE state = 'pending'"
                ).fetchone()[0]
                quiet = quiet + 1 if pending == 0 else 0
                if quiet >= 3:
                    return True
                time.sleep(2)
        return False

    def verdict(self, downloads: tuple[int, int], drained: bool) -> int:
        """Print the figures; 1 unless every requirement held."""
        failures = self.problems + [f"missing: {m}" for m in self.missing]
        failures += self.judge_requests()
        failures += self.judge_files(downloads)
        failures += self.judge_mail(drained)
        failures += self.judge_scheduler()
        failures += self.judge_readyz()
        failures += self.judge_redis()
        print()
        if failures:
            print("CHECK FAILED:")
            for f in failures:
                print(f"  - {f}")
            return 1
        print("CHECK PASSED")
        return 0

    def in_flight_on_killed_host(self, c: Call) -> bool:
        """True for a request sent to web1 (directly, or by nginx with no other host to try) that
        was under way when web1 was killed: the one kind of request allowed to fail."""
        e = self.events
        if e.host_kill_start is None or c.end < e.host_kill_start or c.start > (e.host_kill_end or 0) + 0.05:
            return False
        web1 = f"{LOCAL}:{self.ports['web1']}"
        return c.target == "web1" or (c.target == "nginx" and c.upstream == web1)

    def judge_requests(self) -> list[str]:
        """Requests by kind with p50/p95; every failure not in flight on the killed host counts."""
        failed = [c for c in self.calls if not c.ok]
        with (self.work / "logs" / "failed-requests.txt").open("w") as out:
            for c in failed:
                out.write(f"{c.start - STARTED:.2f}-{c.end - STARTED:.2f} {describe(c)}\n")
        allowed = [c for c in failed if self.in_flight_on_killed_host(c)]
        unexplained = [c for c in failed if c not in allowed]
        print("\n=== requests ===")
        for kind, count in sorted(Counter(c.kind for c in self.calls).items()):
            times = [c.end - c.start for c in self.calls if c.kind == kind and c.ok]
            lost = sum(1 for c in failed if c.kind == kind)
            print(f"  {kind:16} {count:6}  failed {lost:3}  {latency(times)}")
        print(
            f"  {'all':16} {len(self.calls):6}  failed {len(failed):3}  "
            f"{latency([c.end - c.start for c in self.calls if c.ok])}"
        )
        where = Counter(c.target + (f" via {c.upstream}" if c.target == "nginx" else "") for c in failed)
        print(
            f"  failed: {len(failed)}, {len(allowed)} of them in flight on the killed host web1; "
            f"by target {dict(where)}"
        )
        print(f"  (web1 = {LOCAL}:{self.ports['web1']}, web2 = {LOCAL}:{self.ports['web2']})")
        moved = sum(1 for c in self.calls if c.target == "nginx" and "," in c.upstream)
        print(f"  requests nginx moved to the other host: {moved}")
        shown: Counter[str] = Counter()
        for c in unexplained:
            shown[c.kind] += 1
            if shown[c.kind] <= 4:
                print(f"    UNEXPLAINED at {c.start - STARTED:.1f}s: {describe(c)}")
        if unexplained:
            return [f"{len(unexplained)} requests failed that were not in flight on the killed host"]
        return []

    def judge_files(self, downloads: tuple[int, int]) -> list[str]:
        """Every uploaded file downloaded identically through each host and nginx."""
        checked, same = downloads
        during = sum(1 for c in self.calls if c.kind == "download" and c.ok)
        megabytes = sum(u.size for u in self.uploads) / 1e6
        print("\n=== evidence files ===")
        print(f"  uploaded {len(self.uploads)} ({megabytes:.1f} MB); downloaded during the load {during}")
        print(f"  final downloads identical through web1, web2 and nginx: {same}/{checked}")
        failures = []
        if not self.uploads:
            failures.append("no evidence file was uploaded")
        if same != checked:
            failures.append(f"{checked - same} final downloads differ from the uploaded file or failed")
        return failures

    def judge_mail(self, drained: bool) -> list[str]:
        """Every message composed during the check was sent and arrived exactly once, to its recipient."""
        import psycopg

        host = urlsplit(self.targets()["nginx"]).hostname or "localhost"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT idempotency_key, to_address, state, kind, extract(epoch FROM created_at) "
                "FROM notification WHERE id > %s",
                (self.seeded_mail,),
            ).fetchall()
        lines = self.sink_log.read_text().splitlines() if self.sink_log.exists() else []
        received = [json.loads(line) for line in lines if line.strip()]
        copies = Counter(r["message_id"] for r in received)
        by_id = {message_id(key, host): (to.lower(), state) for key, to, state, _kind, _at in rows}
        created = {message_id(key, host): float(at) for key, _to, _state, _kind, at in rows}
        sent = [mid for mid, (_to, state) in by_id.items() if state == "sent"]
        not_sent = Counter(state for _to, state in by_id.values() if state != "sent")
        lost = [mid for mid in sent if copies[mid] == 0]
        duplicates = sum(n - 1 for n in copies.values() if n > 1)
        strangers = [mid for mid in copies if mid not in by_id]
        misdirected = [
            r
            for r in received
            if r["message_id"] in by_id and by_id[r["message_id"]][0] not in map(str.lower, r["rcpt"])
        ]
        print("\n=== mail ===")
        print(f"  composed {len(rows)}: {dict(Counter(kind for _k, _t, _s, kind, _at in rows))}")
        killed_at = self.events.scheduler_killed_wall
        if killed_at is not None:
            left = {
                r["message_id"]
                for r in received
                if r["at"] > killed_at and created.get(r["message_id"], 0) < killed_at
            }
            print(
                f"  composed before the scheduler's kill and delivered after it (by the standby): {len(left)}"
            )
        print(f"  sent {len(sent)}, not sent {dict(not_sent)}, outbox drained: {drained}")
        print(
            f"  delivered {len(received)} copies of {len(copies)} messages: "
            f"lost {len(lost)}, duplicates {duplicates}, "
            f"unknown {len(strangers)}, to a wrong recipient {len(misdirected)}"
        )
        failures = []
        if not rows:
            failures.append("no mail was composed")
        if not drained or not_sent:
            failures.append(f"the outbox did not drain: {dict(not_sent)}")
        if lost:
            failures.append(f"{len(lost)} messages marked sent never reached the SMTP server")
        if duplicates > 1:
            failures.append(
                f"{duplicates} duplicate deliveries (at most 1: the killed scheduler's message in flight)"
            )
        elif duplicates and self.events.scheduler_killed_wall is not None:
            doubled = next(mid for mid, n in copies.items() if n > 1)
            first = min(r["at"] for r in received if r["message_id"] == doubled)
            print(
                f"  the duplicate's first copy arrived "
                f"{first - self.events.scheduler_killed_wall:+.2f} s from the kill"
            )
            if abs(first - self.events.scheduler_killed_wall) > 2:
                failures.append("a duplicate delivery that the killed scheduler did not cause")
        if strangers or misdirected:
            failures.append("messages arrived that the outbox does not hold, or to the wrong recipient")
        return failures

    def judge_scheduler(self) -> list[str]:
        """The standby's takeover, as /metrics showed it, and /metrics against the lease row now."""
        import psycopg
        import requests

        e = self.events
        print("\n=== scheduler ===")
        failures = []
        if e.scheduler_killed is None:
            failures.append("the active scheduler was not killed")
        else:
            killed = e.scheduler_killed
            db_seen = [t for t, h in self.db_holders if t > killed and h and h != e.killed_holder]
            metrics_seen = [
                t for t, _host, h in self.metrics_holders if t > killed and h and h != e.killed_holder
            ]
            in_db = db_seen[0] - killed if db_seen else None
            takeover = metrics_seen[0] - killed if metrics_seen else None
            print(f"  killed {e.killed_holder} (kill -9)")
            print(
                f"  standby took over after {fmt(in_db)} s (lease row), "
                f"seen in /metrics after {fmt(takeover)} s"
            )
            if takeover is None or takeover > TAKEOVER_LIMIT:
                failures.append(
                    f"the standby's takeover was not seen in /metrics within {TAKEOVER_LIMIT:.0f} s"
                )
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT holder FROM scheduler_lease WHERE expires_at > now()").fetchone()
        holder = row[0] if row else None
        shown = {}
        for name in ("web1", "web2"):
            head = {"Authorization": f"Bearer {self.metrics_token}"}
            try:
                answer = requests.get(f"{self.targets()[name]}/metrics", headers=head, timeout=5)
                shown[name] = (
                    lease_holder(answer.text) if answer.status_code == 200 else f"HTTP {answer.status_code}"
                )
            except requests.RequestException as exc:
                shown[name] = type(exc).__name__
        print(f"  lease holder now: database {holder}; /metrics {shown}")
        if not holder or any(v != holder for v in shown.values()):
            failures.append("/metrics does not name the lease holder the database names")
        return failures

    def judge_readyz(self) -> list[str]:
        """200 from live hosts; nothing (or 503) from web1 between its kill and its restart."""
        e = self.events
        dead_from, dead_to = e.host_kill_end or math.inf, e.host_restart or math.inf
        unsure_from, unsure_to = e.host_kill_start or math.inf, e.host_back or math.inf
        print("\n=== /readyz (polled every second) ===")
        failures = []
        for name in ("web1", "web2"):
            seen = [(t, status) for t, host, status, _body in self.readyz if host == name]
            dead = [str(s) for t, s in seen if name == "web1" and dead_from <= t <= dead_to]
            live = [s for t, s in seen if name == "web2" or not unsure_from <= t <= unsure_to]
            while_dead = dict(Counter(dead)) if name == "web1" else "-"
            print(f"  {name}: while live {dict(Counter(live))}; while killed {while_dead} (None: no answer)")
            if not live or any(s != 200 for s in live):
                failures.append(f"/readyz of the live host {name} answered {dict(Counter(live))}")
            if name == "web1" and (not dead or any(s not in ("None", "503") for s in dead)):
                failures.append(
                    f"/readyz of the killed host answered {dict(Counter(dead))} (wanted nothing or 503)"
                )
        return failures

    def judge_redis(self) -> list[str]:
        """Sign-ins went on while Redis was down."""
        e = self.events
        if e.redis_down is None:
            return ["Redis was not restarted"]
        until = e.redis_up or math.inf
        during = [c for c in self.calls if c.kind == "sign-in" and e.redis_down <= c.start <= until]
        print("\n=== Redis restart ===")
        print(
            f"  down {fmt(until - e.redis_down)} s; "
            f"sign-ins meanwhile: {sum(c.ok for c in during)}/{len(during)} succeeded"
        )
        if not during or not all(c.ok for c in during):
            return ["sign-ins failed (or none were tried) while Redis was down"]
        return []

    def tails(self) -> None:
        """The end of every log (after a failure)."""
        paths = [*sorted((self.work / "logs").glob("*.log")), self.work / "nginx" / "logs" / "error.log"]
        for path in paths:
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-15:]
                print(f"\n--- {path} (last {len(lines)} lines) ---")
                print("\n".join(lines))


def fmt(value: float | None) -> str:
    """A number of seconds with one decimal, or "-"."""
    return "-" if value is None else f"{value:.1f}"


def latency(seconds: list[float]) -> str:
    """p50 and p95 in milliseconds."""
    return f"p50 {percentile(seconds, 0.5) * 1000:6.0f} ms  p95 {percentile(seconds, 0.95) * 1000:6.0f} ms"


def describe(c: Call) -> str:
    """One failed request in a line."""
    via = f" [{c.upstream}]" if c.upstream else ""
    return f"{c.kind}: {c.method} {c.path} to {c.target}{via}: {c.error}"


def csrf(html: str) -> str:
    """The CSRF token of the first form in ``html``."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    return match.group(1) if match else ""


def lease_holder(metrics: str) -> str | None:
    """The holder /metrics names: the label of ``tracker_scheduler_lease_holder{holder=…} 1``."""
    for match in re.finditer(
        r'^tracker_scheduler_lease_holder\{[^}]*holder="([^"]*)"[^}]*\}\s+(\S+)', metrics, re.M
    ):
        if float(match.group(2)) == 1:
            return match.group(1)
    return None


def evidence_file(rng: random.Random, stem: str) -> tuple[str, bytes]:
    """A file the evidence check accepts: text, PDF or PNG, mostly small, sometimes 3 MB."""
    size = 3_000_000 if rng.random() < 0.05 else rng.randint(2_000, 200_000)
    kind = rng.choice(("txt", "pdf", "png"))
    if kind == "txt":
        body = secrets.token_hex(size // 2).encode()
        return f"{stem}.txt", b"\n".join(body[i : i + 80] for i in range(0, len(body), 80))
    head = b"%PDF-1.4\n" if kind == "pdf" else b"\x89PNG\r\n\x1a\n"
    return f"{stem}.{kind}", head + rng.randbytes(size)


def main() -> int:
    """Run the check (or, with --smtp-sink, only the SMTP sink process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smtp-sink", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--database", default="tracker_check", help="the PostgreSQL database to drop and create"
    )
    args = parser.parse_args()
    if args.smtp_sink:
        run_smtp_sink(int(args.smtp_sink[0]), Path(args.smtp_sink[1]))
        return 0
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.database) or "check" not in args.database:
        parser.error("the database name must be a plain name containing 'check' (it is dropped)")
    check = Check(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    code = 1
    try:
        code = check.run()
    except Exception as exc:  # any failure of the set-up is the check's failure
        import traceback

        traceback.print_exc()
        print(f"CHECK FAILED: {exc}")
    finally:
        check.stop_load.set()
        check.procs.stop_all()
        if code:
            check.tails()
        print(f"\nlogs: {check.work / 'logs'} (nginx: {check.work / 'nginx' / 'logs'})")
    return code


if __name__ == "__main__":
    sys.exit(main())
