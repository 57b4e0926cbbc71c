"""Configuration from the environment, refused settings, and a bad DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, ProductionConfig
from tracker import create_app, database_url

ROOT = Path(__file__).resolve().parent.parent


def test_postgres_urls_use_psycopg_3():
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u:p@h:5433/db") == "postgresql+psycopg://u:p@h:5433/db"
    assert database_url("sqlite://") == "sqlite://"


@pytest.mark.parametrize(
    ("url", "message"),
    [("not a url", "DATABASE_URL is not a database URL"), ("oracle2://x/y", "unsupported database")],
)
def test_bad_database_url_is_a_config_error(url, message):
    with pytest.raises(ConfigError, match=message):
        database_url(url)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SECRET_KEY": None, "SQLALCHEMY_DATABASE_URI": "postgresql://h/db"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short", "SQLALCHEMY_DATABASE_URI": "postgresql://h/db"}, "SECRET_KEY"),
        ({"SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": None}, "DATABASE_URL"),
    ],
)
def test_production_refuses_missing_secrets(settings, message):
    with pytest.raises(ConfigError, match=message):
        ProductionConfig.check(settings)
    ProductionConfig.check({"SECRET_KEY": "k" * 40, "SQLALCHEMY_DATABASE_URI": "postgresql://h/db"})


def _flask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "TRACKER_CONFIG"}
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_database_url_gives_one_line_not_a_traceback():
    result = _flask("tracker", "--help", DATABASE_URL="mysql+nosuchdriver://x/y")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_without_secret_key_does_not_start():
    result = _flask("tracker", "--help", TRACKER_CONFIG="production", DATABASE_URL="postgresql://h/db")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path):
    result = _flask(
        "tracker", "seed-demo", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    assert result.returncode == 1
    assert "cannot use the database (DATABASE_URL)" in result.stderr and "Traceback" not in result.stderr


def test_the_factory_touches_nothing_and_sqlite_folder_comes_at_first_use(tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/deep/er/t.db"})
    assert app.config["TESTING"] is True
    assert not (tmp_path / "deep").exists()
    with app.app_context():
        from tracker.extensions import db

        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        db.engine.dispose()
    assert (tmp_path / "deep" / "er" / "t.db").is_file()


def test_behind_a_proxy_the_forwarded_scheme_and_host_are_used():
    app = create_app({"TRACKER_PROXIES": 1})
    seen: dict = {}
    app.wsgi_app.app = lambda env, start: seen.update(env) or []  # what Flask would receive
    environ = {
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "internal:8000",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "tracker.example.org",
        "REMOTE_ADDR": "10.0.0.1",
    }
    app.wsgi_app(environ, lambda *args: None)
    assert seen["wsgi.url_scheme"] == "https" and seen["HTTP_HOST"] == "tracker.example.org"
    assert not hasattr(create_app().wsgi_app, "x_proto")  # trusted only when configured
