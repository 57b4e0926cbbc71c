"""Configuration classes. Every setting comes from the environment; production has no secret defaults.

Pick a class with ``TRACKER_CONFIG`` (``production``, the default, ``development`` or ``testing``):
without it the application runs as production and refuses to start without its secrets.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name)
    if value is None:
        return default
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _env_int_list(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be whole numbers separated by commas, not {value!r}") from None


class Config:
    """Settings shared by every environment."""

    #: Signs sessions, CSRF and mail tokens. Development without it: instance/secret_key (made once).
    SECRET_KEY = os.environ.get("SECRET_KEY") or None
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or (f"sqlite:///{INSTANCE_DIR / 'tracker.db'}")
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    TRACKER_BASE_URL = os.environ.get("TRACKER_BASE_URL", "http://127.0.0.1:5000").rstrip("/")

    # Mail: without MAIL_SERVER the notifications feature writes .eml files under instance/mail/.
    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = _env_int("MAIL_PORT", 25)
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "tracker@localhost")
    #: Seconds to wait for the connection, the greeting and each command's reply.
    MAIL_TIMEOUT = _env_int("MAIL_TIMEOUT", 30)
    #: Seconds to wait for the reply to the end of DATA (RFC 5321 §4.5.3.2.6 asks for 10 minutes):
    #: a relay that is still storing the message must not be given up on, or it gets a second copy.
    MAIL_DATA_TIMEOUT = _env_int("MAIL_DATA_TIMEOUT", 600)
    #: Without MAIL_SERVER, each message is written here as an .eml file (and counts as sent).
    TRACKER_MAIL_DIR = os.environ.get("TRACKER_MAIL_DIR") or str(INSTANCE_DIR / "mail")
    #: Dispatch: rows claimed at a time (sent over one SMTP connection).
    TRACKER_DISPATCH_BATCH = _env_int("TRACKER_DISPATCH_BATCH", 20)
    #: How long a dispatcher's claim on its rows lasts; it renews the claim every third of this
    #: while it works, so the rows of a dispatcher that died are free again at most this long after.
    #: (Replaces TRACKER_DISPATCH_LEASE, which is no longer read.)
    TRACKER_DISPATCH_CLAIM_SECONDS = _env_int("TRACKER_DISPATCH_CLAIM_SECONDS", 60)
    #: Retries after a temporary failure: base × 2^(attempts − 1) seconds apart, at most MAX seconds.
    TRACKER_MAIL_RETRY_BASE = _env_int("TRACKER_MAIL_RETRY_BASE", 60)
    TRACKER_MAIL_RETRY_MAX = _env_int("TRACKER_MAIL_RETRY_MAX", 6 * 3600)
    #: Seconds, from a message's first try, during which temporary failures are tried again (the
    #: last try falls at its end); then the message is marked failed. Replaces
    #: TRACKER_MAIL_MAX_ATTEMPTS, which is no longer read.
    TRACKER_MAIL_RETRY_WINDOW = _env_int("TRACKER_MAIL_RETRY_WINDOW", 3 * 24 * 3600)
    #: A message in flight each time the connection broke this many times is marked failed on its
    #: own (the relay drops it; the other messages go out).
    TRACKER_MAIL_MAX_BREAKS = _env_int("TRACKER_MAIL_MAX_BREAKS", 3)

    #: Admins get a banner and one alert mail when the relay has been failing this long (seconds).
    TRACKER_RELAY_ALERT_AFTER = _env_int("TRACKER_RELAY_ALERT_AFTER", 3600)

    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    #: Interface languages (catalogues in tracker/translations/); the first is the fallback.
    TRACKER_LANGUAGES = ("en", "fr", "es")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session

    TRACKER_PAGE_SIZE = _env_int("TRACKER_PAGE_SIZE", 50)
    #: The scheduler's lease: a standby takes over at most this long after the holder stops.
    TRACKER_LEASE_SECONDS = _env_int("TRACKER_LEASE_SECONDS", 45)
    TRACKER_LEASE_RENEW_SECONDS = _env_int("TRACKER_LEASE_RENEW_SECONDS", 15)
    #: On SIGTERM the scheduler gives running jobs this long to finish, then exits without them.
    TRACKER_SCHEDULER_STOP_SECONDS = _env_int("TRACKER_SCHEDULER_STOP_SECONDS", 10)
    #: How often the scheduler composes (who is in their morning) and dispatches the outbox.
    TRACKER_COMPOSE_EVERY_SECONDS = _env_int("TRACKER_COMPOSE_EVERY_SECONDS", 15 * 60)
    TRACKER_DISPATCH_EVERY_SECONDS = _env_int("TRACKER_DISPATCH_EVERY_SECONDS", 60)
    #: How often the scheduler deletes security events and sessions older than TRACKER_AUDIT_DAYS.
    TRACKER_PURGE_EVERY_SECONDS = _env_int("TRACKER_PURGE_EVERY_SECONDS", 24 * 3600)
    #: Background jobs (large exports and imports), run by the scheduler: how often it looks for
    #: queued ones, how long one run may go on taking jobs, how long a runner's claim holds (it is
    #: renewed while the job runs), how often a job whose runner died is started again, and how
    #: many days finished jobs and their files are kept.
    TRACKER_JOBS_EVERY_SECONDS = _env_int("TRACKER_JOBS_EVERY_SECONDS", 5)
    TRACKER_JOB_BUDGET_SECONDS = _env_int("TRACKER_JOB_BUDGET_SECONDS", 600)
    TRACKER_JOB_CLAIM_SECONDS = _env_int("TRACKER_JOB_CLAIM_SECONDS", 60)
    TRACKER_JOB_MAX_ATTEMPTS = _env_int("TRACKER_JOB_MAX_ATTEMPTS", 3)
    TRACKER_JOB_KEEP_DAYS = _env_int("TRACKER_JOB_KEEP_DAYS", 7)
    #: Action exports with more rows than this are prepared in the background, not in the request.
    TRACKER_EXPORT_INLINE_ROWS_CSV = _env_int("TRACKER_EXPORT_INLINE_ROWS_CSV", 100000)
    TRACKER_EXPORT_INLINE_ROWS_XLSX = _env_int("TRACKER_EXPORT_INLINE_ROWS_XLSX", 20000)
    #: Evidence files: the size of one file, how many one update may carry. They are kept in the
    #: database; TRACKER_UPLOAD_DIR is where they were kept before, read only to serve the files
    #: not yet moved in and by `flask --app wsgi tracker move-uploads`, which moves them.
    TRACKER_UPLOAD_DIR = os.environ.get("TRACKER_UPLOAD_DIR") or str(INSTANCE_DIR / "uploads")
    TRACKER_MAX_UPLOAD_BYTES = _env_int("TRACKER_MAX_UPLOAD_MB", 10) * 1024 * 1024
    TRACKER_MAX_FILES_PER_UPDATE = 5
    #: Imports (CSV, XLSX): the largest file in bytes, and the most rows of data it may hold.
    TRACKER_IMPORT_MAX_BYTES = _env_int("TRACKER_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
    TRACKER_IMPORT_MAX_ROWS = _env_int("TRACKER_IMPORT_MAX_ROWS", 200000)
    #: Imports with more rows than this are previewed and applied in the background (a job).
    TRACKER_IMPORT_INLINE_ROWS = _env_int("TRACKER_IMPORT_INLINE_ROWS", 2000)
    # An uploaded import waits for its confirmation (at most a day) in the database; the former
    # TRACKER_IMPORT_DIR is no longer read.
    # The whole request: every file at its largest, plus the form.
    MAX_CONTENT_LENGTH = TRACKER_MAX_FILES_PER_UPDATE * TRACKER_MAX_UPLOAD_BYTES + 1024 * 1024
    #: Sign-in attempts allowed per client address (Flask-Limiter notation).
    TRACKER_LOGIN_RATE_LIMIT = os.environ.get("TRACKER_LOGIN_RATE_LIMIT", "20 per minute; 200 per hour")
    #: Where the rate limiter counts: memory:// is per process; use redis://host:6379 with
    #: several workers or hosts.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    #: When that storage cannot be reached (Redis restarting), count in each process's memory
    #: until it answers again, and never turn a storage error into a failed request: sign-in
    #: keeps working, held to the limit per process meanwhile.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = _env_bool("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    RATELIMIT_SWALLOW_ERRORS = _env_bool("RATELIMIT_SWALLOW_ERRORS", True)
    RATELIMIT_HEADERS_ENABLED = True
    #: How many reverse proxies in front of the app set X-Forwarded-* headers (0: trust none).
    TRACKER_PROXIES = _env_int("TRACKER_PROXIES", 0)

    # Operations (tracker/ops/): /healthz, /readyz, /metrics, request logs.
    #: Log records as ``text`` lines (the default) or ``json``, one object per line.
    TRACKER_LOG_FORMAT = os.environ.get("TRACKER_LOG_FORMAT") or "text"
    #: /metrics answers a request carrying ``Authorization: Bearer <this token>`` (empty: none) ...
    TRACKER_METRICS_TOKEN = os.environ.get("TRACKER_METRICS_TOKEN") or None
    #: ... or one from these addresses or networks (after TRACKER_PROXIES); anyone else gets a 404.
    TRACKER_METRICS_ALLOW = _env_list("TRACKER_METRICS_ALLOW", ("127.0.0.1", "::1"))

    # Sign-in (tracker/auth/): server-side sessions, the second factor, single sign-on, the audit log.
    #: A session not used for this many hours ends (sessions kept with "Keep me signed in" excepted).
    TRACKER_SESSION_IDLE_HOURS = _env_int("TRACKER_SESSION_IDLE_HOURS", 8)
    #: Every session ends this many days after sign-in, "Keep me signed in" included.
    TRACKER_SESSION_MAX_DAYS = _env_int("TRACKER_SESSION_MAX_DAYS", 30)
    REMEMBER_COOKIE_DURATION = timedelta(days=TRACKER_SESSION_MAX_DAYS)
    #: Roles that must use a second factor (an authenticator app); everyone else may.
    TRACKER_2FA_REQUIRED_ROLES = _env_list("TRACKER_2FA_REQUIRED_ROLES", ("admin", "reviewer"))
    #: Second-factor codes one person may try while signing in (Flask-Limiter notation); each
    #: address is held to TRACKER_LOGIN_RATE_LIMIT as well.
    TRACKER_2FA_RATE_LIMIT = os.environ.get("TRACKER_2FA_RATE_LIMIT", "5 per minute; 20 per hour")
    #: Security events (sign-ins, second factors, sessions, roles, tokens) are kept this many days.
    TRACKER_AUDIT_DAYS = _env_int("TRACKER_AUDIT_DAYS", 400)
    #: Single sign-on with OpenID Connect: off unless the issuer and the client are set.
    TRACKER_SSO_ISSUER = (os.environ.get("TRACKER_SSO_ISSUER") or "").rstrip("/") or None
    TRACKER_SSO_CLIENT_ID = os.environ.get("TRACKER_SSO_CLIENT_ID") or None
    TRACKER_SSO_CLIENT_SECRET = os.environ.get("TRACKER_SSO_CLIENT_SECRET") or None
    #: The organisation named on the button: "Sign in with <label>".
    TRACKER_SSO_LABEL = os.environ.get("TRACKER_SSO_LABEL") or "single sign-on"
    #: A role to give people the provider vouches for who have no account yet; empty: none are created.
    TRACKER_SSO_CREATE_USERS = os.environ.get("TRACKER_SSO_CREATE_USERS") or None
    #: Skip tracker's own second factor after a single sign-on (when the provider asks for one).
    TRACKER_SSO_SKIPS_2FA = _env_bool("TRACKER_SSO_SKIPS_2FA", False)

    # Reminders (tracker/notifications/compose.py); days are counted in the office's time zone.
    #: Days before a deadline on which the owner is reminded.
    TRACKER_DUE_SOON_DAYS = _env_int_list("TRACKER_DUE_SOON_DAYS", (14, 3))
    #: Overdue reminders go out the day after the deadline, then every this many days.
    TRACKER_OVERDUE_REPEAT_DAYS = _env_int("TRACKER_OVERDUE_REPEAT_DAYS", 7)
    #: The escalation ladder: ``days:audience`` rungs, days increasing; an item overdue more than a
    #: rung's days is reported once to that rung's people (office_managers, programme_managers,
    #: reviewers, admins); a rung with nobody falls through to the next, the last to the admins.
    #: Checked when reminders are composed (compose.Settings).
    TRACKER_ESCALATION_LADDER = os.environ.get(
        "TRACKER_ESCALATION_LADDER", "30:office_managers,60:programme_managers,90:reviewers"
    )
    #: An open item without an update for this many days earns its owner a nudge ...
    TRACKER_STALE_DAYS = _env_int("TRACKER_STALE_DAYS", 90)
    #: ... then another every this many days until someone updates it.
    TRACKER_STALE_REPEAT_DAYS = _env_int("TRACKER_STALE_REPEAT_DAYS", 30)
    #: Local hour from which each recipient's daily mail is composed.
    TRACKER_MORNING_HOUR = _env_int("TRACKER_MORNING_HOUR", 8)

    #: Strict-Transport-Security on answers over HTTPS (tracker/security.py); production only.
    TRACKER_HSTS = False

    @staticmethod
    def setup(settings: MutableMapping[str, Any], instance_path: str) -> None:
        """Complete the settings when the application is created (after the test overrides)."""

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        """Refuse settings that must not reach this environment."""


class DevelopmentConfig(Config):
    """`make run`: SQLite under instance/, and a secret key of this checkout's own in instance/secret_key."""

    DEBUG = False  # `flask run --debug` turns the debugger on explicitly
    #: The demo accounts sign in with their password alone (set the variable to try the second factor).
    TRACKER_2FA_REQUIRED_ROLES = _env_list("TRACKER_2FA_REQUIRED_ROLES", ())

    @staticmethod
    def setup(settings: MutableMapping[str, Any], instance_path: str) -> None:
        """Without SECRET_KEY, use the one in <instance>/secret_key, made on first use."""
        if not settings.get("SECRET_KEY"):
            settings["SECRET_KEY"] = instance_secret_key(Path(instance_path) / "secret_key")


class TestingConfig(Config):
    """Used by the test suite; the fixtures pass the database URL."""

    TESTING = True
    SECRET_KEY = "testing-secret-key"
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    MAIL_SERVER = None
    TRACKER_LOGIN_RATE_LIMIT = "1000 per minute"  # the suite signs in often; one test lowers it
    TRACKER_2FA_REQUIRED_ROLES: tuple[str, ...] = ()  # the tests of the second factor set it


class ProductionConfig(Config):
    """Production: secrets and the database come from the environment, or the app will not start."""

    SECRET_KEY = os.environ.get("SECRET_KEY") or None
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or None
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)
    REMEMBER_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", True)
    TRACKER_HSTS = True

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        """Refuse to start without a real SECRET_KEY and an explicit DATABASE_URL."""
        key = settings.get("SECRET_KEY") or ""
        if len(key) < 32:
            raise ConfigError(
                "SECRET_KEY must be set to a random value of at least 32 characters in production"
            )
        if not settings.get("SQLALCHEMY_DATABASE_URI"):
            raise ConfigError("DATABASE_URL must be set in production")


def instance_secret_key(path: Path) -> str:
    """The key kept in ``path``; made (random, mode 0600) if the file is missing.

    Safe when two processes start at once (`make run` starts the scheduler and the server): each
    writes a whole key to a file of its own and links it to ``path``; the first link wins, the
    other process reads the winner's key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(prefix=".secret_key-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: its key is the key
                os.link(draft, path)
        finally:
            os.unlink(draft)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ConfigError(f"{path} holds no usable key (32+ characters): delete it to get a new one")
    return key


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_environment() -> type[Config]:
    """Return the configuration class named by TRACKER_CONFIG."""
    name = os.environ.get("TRACKER_CONFIG") or "production"
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"TRACKER_CONFIG must be one of {', '.join(CONFIGS)}, not {name!r}") from None
