"""`make run` points the app's links at the address it serves on (HOST and PORT), unless
TRACKER_BASE_URL is set: the real Makefile, its real server and scheduler, on a free port."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent  # the Makefile's VENV: the one running these tests

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (VENV / "bin" / "flask").exists(),
    reason="needs make and the virtual environment's flask",
)


def _make(*args: str) -> list[str]:
    # -o: take the installed packages and the compiled catalogues as they are (no pip, and no
    # rewriting of .mo files other tests are reading).
    return ["make", "-s", f"VENV={VENV}", "-o", f"{VENV}/.installed", "-o", "compile-translations", *args]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh checkout, with its database and files under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "DATABASE_URL", "FLASK_"))}
    env.update(
        SECRET_KEY="make-run-test-secret-" + "s" * 24,  # no instance/secret_key written in the checkout
        DATABASE_URL=f"sqlite:///{tmp_path / 'tracker.db'}",
        TRACKER_MAIL_DIR=str(tmp_path / "mail"),
        TRACKER_UPLOAD_DIR=str(tmp_path / "uploads"),
        **extra,
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("variables", "environment", "expected"),
    [
        ({"PORT": "5101"}, {}, "http://127.0.0.1:5101"),
        ({"HOST": "::1", "PORT": "5102"}, {}, "http://[::1]:5102"),
        (
            {"PORT": "5101"},
            {"TRACKER_BASE_URL": "https://tracker.example.org"},
            "https://tracker.example.org",
        ),
        ({"PORT": "5101"}, {"TRACKER_BASE_URL": ""}, "http://127.0.0.1:5101"),  # empty counts as unset
    ],
)
def test_run_derives_the_base_url_unless_it_is_set(tmp_path, variables, environment, expected):
    # Every command of the recipe replaced by one that prints what the app would read.
    flask = "sh -c 'printenv TRACKER_BASE_URL TRACKER_CONFIG' flask"
    args = [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(
        _make("run", f"FLASK={flask}", *args),
        cwd=ROOT,
        env=_env(tmp_path, **environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = [line for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert printed == [expected, "development"] * 4, done.stdout  # upgrade, seed, scheduler, server
    assert f"its links point to {expected}" in done.stdout


def _get(port: int, path: str, process: subprocess.Popen, log: Path) -> bytes:
    """The body of GET path, waiting up to 90 s for the server (it migrates and seeds first)."""
    deadline = time.monotonic() + 90
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status == 200, response.status
            return response.read()
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.25)
        finally:
            connection.close()


def _first_mail_text(database: Path, process: subprocess.Popen, log: Path) -> str:
    """The text of the first mail the scheduler composes (bodies are written when composed)."""
    deadline = time.monotonic() + 30
    while True:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            row = connection.execute("SELECT body_text FROM notification ORDER BY id LIMIT 1").fetchone()
        if row:
            return row[0]
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.25)


def test_the_server_started_by_make_run_links_to_its_own_port(tmp_path):
    port = _free_port()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        # Its own process group: make, its shell, the scheduler and the server stop together.
        process = subprocess.Popen(
            _make("run", "HOST=127.0.0.1", f"PORT={port}"),
            cwd=ROOT,
            env=_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        document = json.loads(_get(port, "/api/v1/openapi.json", process, log))
        assert document["servers"][0]["url"] == f"http://127.0.0.1:{port}/api/v1"
        # The scheduler beside it composes the demo's reminders with links to the same address.
        text = _first_mail_text(tmp_path / "tracker.db", process, log)
        assert f"http://127.0.0.1:{port}/" in text and ":5000" not in text, text
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop make and everything it started (the scheduler finishes its job first), then check none is left."""
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _group_alive(process.pid) and time.monotonic() < deadline:
        process.poll()  # reap make itself
        time.sleep(0.1)
    if _group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("make run left processes running after SIGTERM")
    process.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
