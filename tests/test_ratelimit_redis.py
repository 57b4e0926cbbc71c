"""Sign-in limits counted in a real Redis keep sign-in working while Redis is down and restarts.

Real processes: a redis-server on a free port (no persistence) and tracker under gunicorn (one
worker, production settings, SQLite in a temporary folder). Flask-Limiter keeps its storage in
process-wide state, so the app under test runs in its own process rather than in the suite's.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-enough-password"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


class Redis:
    """A redis-server of the test's own, stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.process = free_port(), folder, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def keys(self) -> int:
        """How many keys Redis holds (the limiter's counters), over the wire protocol."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"DBSIZE\r\n")
            return int(re.match(rb":(\d+)", conn.recv(64)).group(1))


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def login_limit() -> str:
    """TRACKER_LOGIN_RATE_LIMIT of the app under test (a test may parametrize it)."""
    return "100 per minute"


@pytest.fixture
def tracker(tmp_path: Path, redis: Redis, login_limit: str) -> Iterator[str]:
    """tracker in production settings under gunicorn, its limits in ``redis``; its base URL."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "TRACKER_CONFIG": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
        "SESSION_COOKIE_SECURE": "false",
        "TRACKER_2FA_REQUIRED_ROLES": "",
        "TRACKER_UPLOAD_DIR": str(tmp_path / "uploads"),
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis.port}",
        "TRACKER_LOGIN_RATE_LIMIT": login_limit,
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    subprocess.run(
        [*flask, "tracker", "create-user", "admin@example.test", "--role", "admin", "--password", PASSWORD],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(port, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def sign_in(base: str) -> int:
    """Sign in through the form with a new session; the status of the POST."""
    session = requests.Session()
    page = session.get(f"{base}/auth/login", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{base}/auth/login",
        data={"email": "admin@example.test", "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    return answer.status_code


def test_sign_in_survives_a_redis_restart(tracker: str, redis: Redis):
    assert sign_in(tracker) == 302
    assert redis.keys() > 0  # the attempt was counted in Redis

    redis.stop()
    assert sign_in(tracker) == 302  # counted in memory meanwhile, not a 500
    assert sign_in(tracker) == 302

    redis.start()  # empty: no snapshot
    assert redis.keys() == 0
    assert sign_in(tracker) == 302
    # Once Redis answers again, the counts go back to it.
    deadline = time.monotonic() + 30
    while redis.keys() == 0 and time.monotonic() < deadline:
        time.sleep(1)
        assert sign_in(tracker) == 302
    assert redis.keys() > 0


@pytest.mark.parametrize("login_limit", ["2 per minute"])
def test_limit_still_holds_while_redis_is_down(redis: Redis, tracker: str):
    redis.stop()
    # Counted in the worker's memory: the third attempt within the minute is refused.
    assert [sign_in(tracker) for _ in range(3)] == [302, 302, 429]
