"""Configuration from the environment, refused settings, and a bad DATABASE_URL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import config
from config import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestingConfig,
    config_from_environment,
)
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


#: A development process with its key given, so that it makes no instance/secret_key in the checkout.
DEV = {"TRACKER_CONFIG": "development", "SECRET_KEY": "config-test-secret-" + "k" * 20}


def test_bad_database_url_gives_one_line_not_a_traceback():
    result = _flask("tracker", "--help", DATABASE_URL="mysql+nosuchdriver://x/y", **DEV)
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_production_without_secret_key_does_not_start():
    result = _flask("tracker", "--help", TRACKER_CONFIG="production", DATABASE_URL="postgresql://h/db")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path):
    result = _flask(
        "tracker", "seed-demo", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", **DEV
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


# --- safe defaults: production unless told otherwise; the development key of the checkout ---------


def test_without_tracker_config_the_app_is_production_and_refuses_to_start(tmp_path):
    result = _flask("tracker", "--help")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr and "Traceback" not in result.stderr
    with_key = _flask("tracker", "--help", SECRET_KEY="p" * 40)
    assert with_key.returncode != 0 and "DATABASE_URL must be set in production" in with_key.stderr
    db_url = f"sqlite:///{tmp_path}/t.db"
    started = _flask("tracker", "--help", SECRET_KEY="p" * 40, DATABASE_URL=db_url)
    assert started.returncode == 0, started.stderr
    assert config_from_environment_without_variable() is ProductionConfig
    assert not hasattr(config, "_INSECURE_DEV_KEY")


def config_from_environment_without_variable():
    saved = os.environ.pop("TRACKER_CONFIG", None)
    try:
        return config_from_environment()
    finally:
        if saved is not None:
            os.environ["TRACKER_CONFIG"] = saved


def test_development_makes_its_key_once_in_the_instance_folder(tmp_path):
    settings: dict = {"SECRET_KEY": None}
    DevelopmentConfig.setup(settings, str(tmp_path / "instance"))
    key_file = tmp_path / "instance" / "secret_key"
    key = settings["SECRET_KEY"]
    assert len(key) >= 64 and key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secret_key"]  # no draft left behind

    again: dict = {"SECRET_KEY": ""}
    DevelopmentConfig.setup(again, str(tmp_path / "instance"))
    assert again["SECRET_KEY"] == key  # the same key: sessions survive a restart

    given: dict = {"SECRET_KEY": "from-the-environment-" + "x" * 20}
    DevelopmentConfig.setup(given, str(tmp_path / "elsewhere"))
    assert given["SECRET_KEY"].startswith("from-the-environment") and not (tmp_path / "elsewhere").exists()


def test_a_damaged_key_file_is_a_clear_error(tmp_path):
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="delete it"):
        DevelopmentConfig.setup({}, str(tmp_path))


def test_importing_config_makes_no_key(tmp_path):
    code = "import config; print(config.DevelopmentConfig.SECRET_KEY)"
    environ = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "None"


_RACER = """
import sys, time
from pathlib import Path
from config import instance_secret_key
start = float(sys.argv[2])
while time.time() < start:
    pass
print(instance_secret_key(Path(sys.argv[1]) / "secret_key"))
"""


@pytest.mark.parametrize("round_", range(3))
def test_processes_starting_together_get_the_same_key(tmp_path, round_):
    """`make run` starts the scheduler and the server at once: one key, whoever writes first."""
    start = time.time() + 1.5  # every process spins until then, then all make the key at once
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(tmp_path), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    keys = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        keys.append(out.strip())
    assert len(set(keys)) == 1 and len(keys[0]) >= 64
    assert (tmp_path / "secret_key").read_text().strip() == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_development_processes_of_the_app_share_the_instance_key(tmp_path):
    """Two `flask` processes in development with no SECRET_KEY, on an instance folder of their own."""
    code = (
        "import sys; import tracker; "
        "tracker.ROOT = __import__('pathlib').Path(sys.argv[1]); "
        "from tracker import create_app; app = create_app(); "
        "print(app.instance_path, app.config['SECRET_KEY'])"
    )
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    environ["TRACKER_CONFIG"] = "development"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    lines = {out.strip() for out, _err in outputs}
    assert len(lines) == 1
    instance, key = lines.pop().split()
    assert instance == str(tmp_path / "instance")
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == key


def test_hsts_only_in_production():
    assert ProductionConfig.TRACKER_HSTS is True
    assert DevelopmentConfig.TRACKER_HSTS is False and TestingConfig.TRACKER_HSTS is False
