"""``make bench``: write a workload of N actions, then measure tracker the way people use it.

Every figure is measured on real processes: the reminder run as two ``flask tracker`` commands
sending to an SMTP sink (aiosmtpd, in this process); the pages and the API through gunicorn
(2 workers, started here on a free port) with a signed-in session and an API token made for the
run; the exports over HTTP, with the peak resident memory of the gunicorn workers (read from
/proc every 50 ms); the import with ``flask tracker import``; the SQL statements per request in
this process, through Flask's test client. A step that fails or runs out of time is reported in
the table as such; the run goes on.

The database is emptied and rebuilt: SQLite by default (``instance/bench/bench.db``), else the
URL given (``--database``, ``DB=`` in make, or ``TEST_DATABASE_URL``), whose name must contain
"bench" or "test" unless ``--force``.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "instance" / "bench"
HOST = "127.0.0.1"


# --- figures and the table -----------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the table: what was measured, its value, the issue's goal, and the verdict."""

    name: str
    value: str
    goal: str = ""
    verdict: str = ""
    #: The number compared with the goal (seconds, req/s, MB …), for the JSON results.
    number: float | None = None


def judge(number: float | None, limit: float, *, at_least: bool = False) -> str:
    """ "met", or by how much the goal is missed."""
    if number is None:
        return "not measured"
    if (number >= limit) if at_least else (number <= limit):
        return "met"
    if not number:
        return "missed"
    factor = limit / number if at_least else number / limit
    return f"missed (×{factor:.1f})"


def table(figures: list[Figure]) -> str:
    """A Markdown table of the figures."""
    lines = ["| figure | measured | goal (issue 13) | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {f.name} | {f.value} | {f.goal} | {f.verdict} |" for f in figures]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share 0.95: the value 95 % of the samples do not exceed)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


# --- the processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Sink:
    """An SMTP server on loopback (aiosmtpd, in a thread) that keeps the size of every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.sizes: list[int] = []
        self.port = free_port()
        # Messages of any size are taken: the benchmark measures them, it does not refuse them.
        self.controller = Controller(self, hostname=HOST, port=self.port, data_size_limit=1 << 30)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.sizes.append(len(envelope.original_content or envelope.content or b""))
        return "250 2.0.0 Accepted"

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Outcome:
    """A finished (or stopped) command: its status, output and wall time."""

    code: int | None
    output: str
    seconds: float
    timed_out: bool = False
    stdout: str = ""


def flask(env: dict[str, str], *args: str, timeout: float) -> Outcome:
    """Run ``flask --app wsgi <args>`` as its own process; its wall time, whole process."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(None, output, time.perf_counter() - started, timed_out=True)
    return Outcome(
        done.returncode, done.stdout + done.stderr, time.perf_counter() - started, stdout=done.stdout
    )


class Gunicorn:
    """gunicorn serving wsgi:app on a free port with deploy/gunicorn.conf.py, as deployed (60 s timeout)."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "--workers",
                str(workers),
                "--bind",
                f"{HOST}:{self.port}",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn stopped (status {self.process.returncode}); see {self.log.name}"
                )
            try:
                status, _, _ = request(self.port, "GET", "/auth/login", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s; see {self.log.name}")

    def workers(self) -> list[int]:
        """The worker processes' ids (children of the master), from /proc."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (VmRSS), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def peak_rss(pids: Callable[[], list[int]]) -> Iterator[dict[str, float]]:
    """Sample the workers' resident memory every 50 ms: ``peak``, the largest seen, and ``growth``,
    the most one worker grew over its size when sampling began."""
    before = {pid: rss_mb(pid) or 0.0 for pid in pids()}
    seen = {"peak": max(before.values(), default=0.0), "growth": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in pids():
                size = rss_mb(pid) or 0.0
                seen["peak"] = max(seen["peak"], size)
                seen["growth"] = max(seen["growth"], size - before.setdefault(pid, size))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


# --- HTTP -----------------------------------------------------------------------------------------------


def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 120,
    into: io.BufferedWriter | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a new connection (gunicorn's sync workers close each one): status, headers,
    body — the body is written to ``into`` instead, if given."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        if into is None:
            return response.status, response.getheaders(), response.read()
        while chunk := response.read(1 << 16):
            into.write(chunk)
        return response.status, response.getheaders(), b""
    finally:
        connection.close()


class Browser:
    """Cookies kept between requests, as a browser would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    def _keep(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]

    def get(self, path: str) -> tuple[int, bytes]:
        status, headers, body = request(self.port, "GET", path, headers=self.headers())
        self._keep(headers)
        return status, body

    def sign_in(self, email: str, password: str) -> None:
        """Through the real form, with its CSRF token."""
        status, page = self.get("/auth/login")
        match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
        if status != 200 or not match:
            raise RuntimeError(f"no sign-in form (HTTP {status})")
        form = urllib.parse.urlencode(
            {"email": email, "password": password, "csrf_token": match.group(1).decode()}
        ).encode()
        headers = {**self.headers(), "Content-Type": "application/x-www-form-urlencoded"}
        status, answer_headers, _ = request(self.port, "POST", "/auth/login", headers=headers, body=form)
        self._keep(answer_headers)
        if status != 302:
            raise RuntimeError(f"sign-in refused (HTTP {status})")
        status, _ = self.get("/")
        if status != 200:
            raise RuntimeError(f"signed in, but the home page answers HTTP {status}")


@dataclass
class Latency:
    """Wall times of successful requests, and the statuses of the others."""

    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.seconds:
            return "failed: " + ", ".join(self.failures[:3])
        text = (
            f"median {ms(statistics.median(self.seconds))}, p95 {ms(percentile(self.seconds, 0.95))} "
            f"(n={len(self.seconds)})"
        )
        if self.failures:
            text += f"; {len(self.failures)} failed ({', '.join(sorted(set(self.failures))[:3])})"
        return text


def measure(port: int, path: str, headers: dict[str, str], count: int, budget: float) -> Latency:
    """``count`` sequential requests (after 4 to warm both workers up), or fewer within ``budget`` s."""
    result = Latency()
    for _ in range(4):
        with suppress(OSError):
            request(port, "GET", path, headers=headers)
    started = time.monotonic()
    while len(result.seconds) + len(result.failures) < count:
        if time.monotonic() - started > budget and len(result.seconds) + len(result.failures) >= 5:
            break
        before = time.perf_counter()
        try:
            status, _, _ = request(port, "GET", path, headers=headers)
        except OSError as exc:
            result.failures.append(type(exc).__name__)
            continue
        if status == 200:
            result.seconds.append(time.perf_counter() - before)
        else:
            result.failures.append(f"HTTP {status}")
    return result


def throughput(
    port: int, path: str, headers: dict[str, str], connections: int, seconds: float
) -> tuple[float, int]:
    """Requests per second done by ``connections`` clients in a loop for ``seconds``; (rate, failures)."""
    done = [0] * connections
    failed = [0] * connections
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        while time.monotonic() < stop:
            try:
                status, _, _ = request(port, "GET", path, headers=headers)
            except OSError:
                failed[k] += 1
                continue
            if status == 200:
                done[k] += 1
            else:
                failed[k] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started), sum(failed)


# --- the steps ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """The run's settings and what it has found so far."""

    actions: int
    database: str
    env: dict[str, str]
    requests: int
    budget: float
    duration: float
    timeout: float
    workers: int
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _token: str | None = None

    def token(self) -> str:
        """The reviewer's API token, made once with ``flask tracker create-token``."""
        if self._token is None:
            from bench.generate import REVIEWER

            made = flask(self.env, "tracker", "create-token", REVIEWER, "--name", "bench", timeout=120)
            if made.code != 0:
                raise RuntimeError(f"create-token failed: {_last_line(made.output)}")
            self._token = made.stdout.strip().splitlines()[-1].strip()
        return self._token

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(
            f"  {figure.name}: {figure.value}" + (f" — {figure.verdict}" if figure.verdict else ""),
            flush=True,
        )

    def step(self, name: str, goal: str, work: Callable[[], None]) -> None:
        """Run one step; a failure becomes a line of the table, never the end of the run."""
        try:
            work()
        except Exception as exc:  # the table says what failed; the next step runs
            self.add(Figure(name, f"failed: {type(exc).__name__}: {str(exc)[:200]}", goal, "failed"))


def write_workload(run: Run) -> None:
    """Empty the database, write the workload (in this process), and say how long it took."""
    from bench.generate import generate, reset_schema
    from tracker import create_app
    from tracker.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": run.database})
    with app.app_context():
        reset_schema()
        workload = generate(run.actions)
        if db.engine.dialect.name == "postgresql":
            # What autovacuum does within a minute of a bulk load in production (the test server
            # here runs without it): planner statistics, and the visibility map that index-only
            # scans need. SQLite's planner uses the indexes without statistics.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        db.engine.dispose()
    kinds = workload.by_kind
    run.add(
        Figure(
            f"workload written ({workload.actions:,} actions, {workload.history:,} history rows)",
            f"{workload.seconds:.1f} s — closed {kinds['closed']:,}, overdue {kinds['overdue']:,}, "
            f"due ahead {kinds['ahead']:,}; {workload.users} people in {workload.offices} offices; "
            f"{workload.measurements:,} indicator values",
            number=workload.seconds,
        )
    )


def reminder_run(run: Run) -> None:
    """``tracker remind`` (compose) then ``tracker send-mail`` (dispatch) to the SMTP sink."""
    today = datetime.now(UTC).date().isoformat()
    with Sink() as sink:
        env = {**run.env, "MAIL_SERVER": HOST, "MAIL_PORT": str(sink.port), "MAIL_TIMEOUT": "60"}
        compose = flask(env, "tracker", "remind", "--today", today, timeout=run.timeout)
        sent = None
        if compose.code == 0:
            sent = flask(env, "tracker", "send-mail", timeout=run.timeout)
    goal = "≤ 5 s (compose and send)"
    if compose.code != 0:
        state = f"stopped after {compose.seconds:.0f} s" if compose.timed_out else _last_line(compose.output)
        run.add(Figure("reminder run: compose (`tracker remind`)", f"failed: {state}", goal, "failed"))
        return
    queued = re.search(r"(\d+) mails queued", compose.output)
    run.add(
        Figure(
            "reminder run: compose (`tracker remind`), whole process",
            f"{compose.seconds:.1f} s, {queued.group(1) if queued else '?'} mails queued",
            number=compose.seconds,
        )
    )
    assert sent is not None
    if sent.code != 0:
        state = f"stopped after {sent.seconds:.0f} s" if sent.timed_out else _last_line(sent.output)
        run.add(Figure("reminder run: send (`tracker send-mail`)", f"failed: {state}", goal, "failed"))
        return
    run.add(
        Figure(
            "reminder run: send (`tracker send-mail`) to the SMTP sink, whole process",
            f"{sent.seconds:.1f} s, {len(sink.sizes)} mails, {sum(sink.sizes) / 1e6:.1f} MB in all",
            number=sent.seconds,
        )
    )
    total = compose.seconds + sent.seconds
    run.add(Figure("reminder run: compose + send", f"{total:.1f} s", goal, judge(total, 5), total))
    largest = max(sink.sizes, default=0)
    run.add(
        Figure(
            "largest mail",
            f"{largest / 1000:,.0f} KB",
            "≤ 200 KB (50 items a mail, then “and N more”)",
            judge(largest / 1000, 200),
            largest / 1000,
        )
    )


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


#: (name, path, goal in ms for the p95) of the pages measured with the signed-in session.
PAGES = [
    ("HTML overdue list (`/?overdue=1`, 100 rows)", "/?overdue=1", 50),
    ("dashboard (`/dashboard`)", "/dashboard", 100),
    ("one office's page (`/offices/SG`)", "/offices/SG", 100),
    ("indicators list (`/indicators/`)", "/indicators/", 100),
    ("an indicator's comparison page (`/indicators/1`)", "/indicators/1", 100),
]
JSON_LIST = "/api/v1/actions?overdue=true&per_page=100"
#: The open statuses, as the export writes them.
OPEN_STATUSES = {"not_started", "in_progress", "blocked"}
JSON_NAME = "JSON overdue list (`/api/v1/actions?overdue=true`, 100 items)"


@contextmanager
def serving(run: Run, name: str) -> Iterator[tuple[Gunicorn, dict[str, str]]]:
    """gunicorn with fresh workers (log: instance/bench/gunicorn-<name>.log), and the cookies of
    the reviewer signed in through the form."""
    from bench.generate import PASSWORD, REVIEWER

    server = Gunicorn(run.env, run.workers, WORK / f"gunicorn-{name}.log")
    try:
        server.wait_ready()
        browser = Browser(server.port)
        browser.sign_in(REVIEWER, PASSWORD)
        yield server, browser.headers()
    finally:
        server.stop()


def web(run: Run) -> None:
    """Pages and API through gunicorn; the exports, each on fresh workers (so that the memory
    measured is the export's); then the import of the exported file."""
    api = {"Authorization": f"Bearer {run.token()}", "Accept": "application/json"}
    with serving(run, "pages") as (server, cookies):
        pages = [(name, path, cookies, goal) for name, path, goal in PAGES]
        pages.insert(1, (JSON_NAME, JSON_LIST, api, 50))
        for name, path, headers, goal in pages:
            run.step(name, f"p95 ≤ {goal} ms", partial(_latency, run, server.port, name, path, headers, goal))
            if path == JSON_LIST:
                run.step(
                    "JSON list, 4 connections", "≥ 100 req/s", partial(_throughput, run, server.port, api)
                )
    exported = WORK / "actions.csv"
    run.step("CSV export of every action", "", partial(_export, run, "/export/actions.csv", exported, None))
    xlsx = WORK / "actions.xlsx"
    run.step(
        "XLSX export of every action",
        "≤ 15 s and < 150 MB",
        partial(_export, run, "/export/actions.xlsx", xlsx, (15, 150)),
    )
    name = f"import of {run.actions:,} new actions (`tracker import`)"
    run.step(name, "≤ 30 s", partial(_import, run, exported))


def _latency(run: Run, port: int, name: str, path: str, headers: dict[str, str], goal_ms: float) -> None:
    result = measure(port, path, headers, run.requests, run.budget)
    p95 = percentile(result.seconds, 0.95) if result.seconds else None
    verdict = judge(p95 * 1000, goal_ms) if p95 is not None else "failed"
    run.add(Figure(name, result.describe(), f"p95 ≤ {goal_ms} ms", verdict, p95 and p95 * 1000))


def _throughput(run: Run, port: int, headers: dict[str, str]) -> None:
    rate, failures = throughput(port, JSON_LIST, headers, 4, run.duration)
    value = f"{rate:.1f} req/s over {run.duration:.0f} s" + (f" ({failures} failed)" if failures else "")
    run.add(Figure("JSON list, 4 connections", value, "≥ 100 req/s", judge(rate, 100, at_least=True), rate))


def _export(run: Run, path: str, out: Path, goal: tuple[float, float] | None) -> None:
    """Download an export from fresh workers: its time, size, and the memory it took.

    An export larger than TRACKER_EXPORT_INLINE_ROWS_* is answered with a redirect to its job's
    page: the job is then run by ``tracker run-jobs`` (as the scheduler would, in a process of its
    own) and its file downloaded; the time runs from the request to the end of the download, and
    the memory is that of the process that made the file (the runner, or the gunicorn worker).
    """
    name = f"{out.suffix[1:].upper()} export of every action (`{path}`)"
    goal_text = f"≤ {goal[0]:.0f} s and < {goal[1]:.0f} MB" if goal else ""
    background = None
    with serving(run, out.suffix[1:]) as (server, headers), out.open("wb") as handle:
        with peak_rss(server.workers) as memory:
            started = time.perf_counter()
            try:
                status, answer, _ = request(
                    server.port, "GET", path, headers=headers, timeout=run.timeout, into=handle
                )
            except OSError as exc:  # a worker killed at gunicorn's timeout closes the connection
                status, answer = f"{type(exc).__name__}", []
        location = dict(answer).get("Location", "")
        if status == 303 and re.search(r"/jobs/\d+$", location):
            job = urllib.parse.urlsplit(location).path
            background = _run_jobs(run)
            memory = background["memory"]
            handle.seek(0)
            handle.truncate()
            try:
                status, _, _ = request(
                    server.port, "GET", f"{job}/download", headers=headers, timeout=run.timeout, into=handle
                )
            except OSError as exc:
                status = f"{type(exc).__name__}"
        seconds = time.perf_counter() - started
    who = "the `tracker run-jobs` process" if background else "worker"
    memory_text = f"peak {who} RSS {memory['peak']:.0f} MB (grew {memory['growth']:.0f} MB)"
    if background:
        memory_text = (
            f"in the background: job {background['seconds']:.1f} s (exit {background['code']}); "
            + memory_text
        )
    if status != 200:
        shown = f"HTTP {status}" if isinstance(status, int) else status
        out.unlink(missing_ok=True)
        run.add(
            Figure(
                name, f"failed: {shown} after {seconds:.1f} s; {memory_text}", goal_text, "failed", seconds
            )
        )
        return
    rows = sum(1 for _ in out.open(encoding="utf-8-sig")) - 1 if out.suffix == ".csv" else None
    size = out.stat().st_size / 1e6
    value = (
        f"{seconds:.1f} s, {size:.1f} MB"
        + (f", {rows:,} rows" if rows is not None else "")
        + f"; {memory_text}"
    )
    verdict = ""
    if goal:  # the memory goal is the export's own: what its worker grew by (or the runner's peak)
        used = memory["peak"] if background else memory["growth"]
        verdict = judge(max(seconds / goal[0], used / goal[1]), 1.0)
    run.add(Figure(name, value, goal_text, verdict, seconds))


def _run_jobs(run: Run) -> dict[str, Any]:
    """``flask tracker run-jobs`` as its own process: its wall time, exit code and peak memory."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "tracker", "run-jobs"]
    started = time.perf_counter()
    with (WORK / "run-jobs.log").open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=run.env, stdout=log, stderr=subprocess.STDOUT)
        with peak_rss(lambda: [process.pid] if process.poll() is None else []) as memory:
            try:
                code: int | None = process.wait(run.timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
    return {"seconds": time.perf_counter() - started, "code": code, "memory": memory}


def _import(run: Run, exported: Path | None) -> None:
    """Import the exported actions back as new ones (no id, a new title) through the CLI."""
    from bench.generate import REVIEWER

    name = f"import of {run.actions:,} new actions (`tracker import`), whole process"
    if exported is None or not exported.exists():
        run.add(Figure(name, "not run: the CSV export failed", "≤ 30 s", "not measured"))
        return
    source = exported.read_text(encoding="utf-8-sig")
    header, *rows = csv.reader(io.StringIO(source))
    column = {label: header.index(label) for label in ("Action ID", "Action title", "Status", "Progress")}
    note = header.index("Note on the change")
    closed = 0
    for row in rows:
        row[column["Action ID"]] = ""
        row[column["Action title"]] = f"{row[column['Action title']]} (imported)"
        row[note] = "Imported by the benchmark."  # a move to "blocked" needs one
        if row[column["Status"]] not in OPEN_STATUSES:
            # The workflow creates no action already closed: these come in as not started.
            row[column["Status"]] = row[column["Progress"]] = ""
            closed += 1
    path = WORK / "import.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    size = path.stat().st_size
    env = {
        **run.env,
        # The defaults (200,000 rows, 50 MB) take 120,000 actions; a larger bench raises them.
        "TRACKER_IMPORT_MAX_ROWS": str(max(200_000, len(rows) + 1)),
        "TRACKER_IMPORT_MAX_BYTES": str(max(50 << 20, size + 1)),
    }
    refused = len(rows) > 200_000 or size > 50 << 20
    run.notes.append(
        f"Import: the CSV export with the ids removed and new titles, so that every row creates an action "
        f"by the commands' rules (checked in bulk, written in batches); its {closed:,} closed rows come in "
        "as not started (the workflow creates no closed action)."
    )
    if refused:
        run.notes.append(
            f"The import file ({len(rows):,} rows, {size / 1e6:.1f} MB) is over the default limits "
            "(200,000 rows, 50 MB): the bench raises TRACKER_IMPORT_MAX_ROWS and _BYTES for it."
        )
    done = flask(env, "tracker", "import", str(path), "--as", REVIEWER, timeout=run.timeout)
    if done.timed_out:
        value = f"stopped after {done.seconds:.0f} s (the step's time limit, --timeout)"
        run.add(Figure(name, value, "≤ 30 s", f"missed (more than ×{done.seconds / 30:.0f})", done.seconds))
    elif done.code != 0 or "Imported: all rows were written." not in done.output:
        run.add(
            Figure(name, f"failed after {done.seconds:.1f} s: {_last_line(done.output)}", "≤ 30 s", "failed")
        )
    else:
        rate = len(rows) / done.seconds
        value = f"{done.seconds:.1f} s, {rate:,.0f} rows/s" + (" (limits raised)" if refused else "")
        run.add(Figure(name, value, "≤ 30 s", judge(done.seconds, 30), done.seconds))


def statements(run: Run) -> None:
    """SQL statements per request, in this process (Flask's test client, an engine listener)."""
    import sqlalchemy as sa

    from bench.generate import PASSWORD, REVIEWER
    from tracker import create_app
    from tracker.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": run.database})
    client = app.test_client()
    page = client.get("/auth/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    signed = client.post(
        "/auth/login",
        data={"email": REVIEWER, "password": PASSWORD, "csrf_token": token.group(1) if token else ""},
    )
    if signed.status_code != 302:
        raise RuntimeError(f"sign-in refused (HTTP {signed.status_code})")
    api_token_ = run.token()
    counts = []
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        for name, path, headers in [
            ("list", "/?overdue=1", {}),
            ("JSON list", JSON_LIST, {"Authorization": f"Bearer {api_token_}"}),
            ("dashboard", "/dashboard", {}),
            ("office page", "/offices/SG", {}),
            ("indicators list", "/indicators/", {}),
            ("indicator page", "/indicators/1", {}),
        ]:
            client.get(path, headers=headers)  # caches warm
            seen.clear()
            status = client.get(path, headers=headers).status_code
            counts.append(f"{name} {len(seen)}" + ("" if status == 200 else f" (HTTP {status})"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
        with app.app_context():
            db.engine.dispose()
    run.add(Figure("SQL statements per request", ", ".join(counts), "flat: the same at 12,000 and 120,000"))


# --- the run --------------------------------------------------------------------------------------------


def database_url(given: str | None, force: bool) -> str:
    """The database to (re)build: the given URL, TEST_DATABASE_URL, or SQLite under instance/bench/."""
    url = given or os.environ.get("TEST_DATABASE_URL") or "sqlite"
    if url == "sqlite":
        WORK.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{WORK / 'bench.db'}"
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    if url.startswith("postgres") and not force and not re.search("bench|test", name):
        raise SystemExit(
            f"bench: the database {name!r} would be emptied; use one whose name contains "
            "'bench' or 'test' (e.g. createdb tracker_bench), or pass --force"
        )
    return url


def machine() -> str:
    """CPU, cores, memory, load, Python: the conditions of the measurement."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except OSError:
        memory = 0
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GB; load average {_load()}; "
        f"Python {platform.python_version()}"
    )


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def database_version(url: str) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                return "SQLite " + connection.execute(sa.text("select sqlite_version()")).scalar_one()
            return connection.execute(sa.text("select version()")).scalar_one().split(" on ")[0]
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every step, print the table (and keep it as JSON in instance/bench/)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", "-n", type=int, default=12_000, help="actions to write (default 12000)")
    parser.add_argument(
        "--database", help="database URL, or 'sqlite' (default: TEST_DATABASE_URL, else SQLite)"
    )
    parser.add_argument("--force", action="store_true", help="empty a database whatever its name")
    parser.add_argument("--requests", type=int, default=50, help="requests per latency figure (default 50)")
    parser.add_argument(
        "--budget", type=float, default=120, help="seconds at most per latency figure (default 120)"
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds of the req/s measurement (default 10)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds at most per command or export (900)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--skip", default="", help="steps to leave out, comma-separated: reminders, web, statements"
    )
    args = parser.parse_args(argv)
    if args.actions < 1:
        parser.error("--actions must be 1 or more")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    WORK.mkdir(parents=True, exist_ok=True)
    database = database_url(args.database, args.force)
    env = {
        **os.environ,
        "TRACKER_CONFIG": "production",
        "DATABASE_URL": database,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "SESSION_COOKIE_SECURE": "0",  # plain HTTP on loopback
        "TRACKER_2FA_REQUIRED_ROLES": "",  # the bench signs in with a password alone
        "TRACKER_LOGIN_RATE_LIMIT": "1000 per minute",
        "TRACKER_PAGE_SIZE": "100",
        "TRACKER_BASE_URL": "http://127.0.0.1:8000",
        "TRACKER_UPLOAD_DIR": str(WORK / "uploads"),
        "TRACKER_MAIL_DIR": str(WORK / "mail"),
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    env.pop("MAIL_SERVER", None)
    os.environ.update(env)  # this process builds the app too (workload, statement counts)
    shutil.rmtree(WORK / "mail", ignore_errors=True)

    run = Run(
        actions=args.actions,
        database=database,
        env=env,
        requests=args.requests,
        budget=args.budget,
        duration=args.duration,
        timeout=args.timeout,
        workers=args.workers,
    )
    started = time.perf_counter()
    shown = re.sub(r"//[^@/]*@", "//", database)
    print(f"bench: {args.actions:,} actions on {shown}", flush=True)
    conditions = machine()
    run.step("workload", "", lambda: write_workload(run))
    if "reminders" not in skip:
        run.step("reminder run", "≤ 5 s", lambda: reminder_run(run))
    if "statements" not in skip:
        run.step("SQL statements per request", "", lambda: statements(run))
    if "web" not in skip:
        run.step("gunicorn", "", lambda: web(run))

    version = "unknown"
    try:
        version = database_version(database)
    except Exception as exc:  # the table matters more than the version line
        version = f"unknown ({type(exc).__name__})"
    print()
    print(f"## tracker at {args.actions:,} actions — {version}")
    print()
    print(table(run.figures))
    print()
    for note in run.notes:
        print(f"- {note}")
    print(f"- Machine: {conditions} at the start; load average {_load()} at the end.")
    print(
        f"- gunicorn: {args.workers} sync workers, deploy/gunicorn.conf.py (60 s timeout); "
        "each export on fresh workers. "
        "Memory: the peak resident size of a worker, sampled from /proc every 50 ms, and what it grew "
        "by during the export (the figure judged). Whole run: "
        f"{time.perf_counter() - started:.0f} s."
    )
    results = (
        WORK / f"results-{'sqlite' if database.startswith('sqlite') else 'postgresql'}-{args.actions}.json"
    )
    results.write_text(
        json.dumps(
            {
                "actions": args.actions,
                "database": version,
                "machine": conditions,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "figures": [asdict(f) for f in run.figures],
                "notes": run.notes,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    print(f"- Kept as {results.relative_to(ROOT)}.")
    return 0
